//! `POST /api/v1/sql` (DESIGN §7): the statement in a form field `query`, a JSON body
//! `{"query": …}` or a plain-text body (`Content-Type: application/sql` or `text/plain`); also
//! `GET ?query=…`. The answer's format follows `Accept`: JSON `{"columns","rows"}` (default),
//! `text/csv`, or an Arrow IPC stream (`application/vnd.apache.arrow.stream`). Errors come in
//! Prometheus's envelope: 400 `bad_data` for a statement that does not parse or plan (with
//! DataFusion's message), 422 `execution` for one that fails running, 503 `timeout`.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use collabstream_common::ErrorCode;
use serde_json::json;

use crate::params::Params;
use crate::sql::format::{arrow_ipc, csv, json_rows};
use crate::sql::{SqlEngine, SqlError};

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

pub fn router(engine: SqlEngine) -> Router {
    Router::new().route("/api/v1/sql", get(handle).post(handle)).with_state(engine)
}

impl SqlError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SqlError::Invalid(_) | SqlError::Refused(_) => ErrorCode::InvalidArgument,
            SqlError::Timeout(_) => ErrorCode::Timeout,
            SqlError::TooManyRows(_) | SqlError::Resources(_) => ErrorCode::ResourceExhausted,
            SqlError::Execution(_) => ErrorCode::Execution,
        }
    }
}

fn error(code: ErrorCode, message: String) -> Response {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "status": "error", "errorType": code.prometheus_error_type(), "error": message });
    (status, Json(body)).into_response()
}

impl IntoResponse for SqlError {
    fn into_response(self) -> Response {
        error(self.code(), self.to_string())
    }
}

/// The statement of a request, wherever it put it.
fn statement(headers: &HeaderMap, raw_query: Option<&str>, body: &[u8]) -> Result<String, String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let found = match mime.as_str() {
        "application/json" => {
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("the JSON body does not parse: {e}"))?;
            match v.get("query") {
                Some(serde_json::Value::String(q)) => Some(q.clone()),
                Some(_) => return Err("\"query\" must be a string".into()),
                None => Params::new(raw_query, &[]).get("query").map(str::to_string),
            }
        }
        "application/sql" | "text/plain" => {
            Some(String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8 text".to_string())?)
        }
        _ => Params::new(raw_query, body).get("query").map(str::to_string),
    };
    match found {
        Some(q) if !q.trim().is_empty() => Ok(q),
        _ => Err("no statement: send it as the form field \"query\", a JSON body {\"query\": \"SELECT …\"} \
                  or a body of Content-Type application/sql"
            .into()),
    }
}

async fn handle(
    State(engine): State<SqlEngine>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let sql = match statement(&headers, raw.as_deref(), &body) {
        Ok(s) => s,
        Err(e) => return error(ErrorCode::InvalidArgument, e),
    };
    let answer = match engine.run(&sql).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let made = if accept.contains(ARROW_STREAM) {
        arrow_ipc(&answer).map(|b| ([(header::CONTENT_TYPE, ARROW_STREAM)], b).into_response())
    } else if accept.contains("text/csv") {
        csv(&answer).map(|s| ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], s).into_response())
    } else {
        json_rows(&answer).map(|v| Json(v).into_response())
    };
    made.unwrap_or_else(|e| error(ErrorCode::Internal, format!("cannot encode the answer: {e}")))
}
