//! The ingest HTTP routes and their shared helpers.

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use collabstream_proto::v1;

use crate::error::{Error, http_status, prometheus_error_body};
use crate::ingest::Ingest;
use crate::prepare::Prepared;
use collabstream_proto::events_json::parse_event;

/// `POST /api/v1/write`, `POST /api/v1/events` and `/api/v1/aggregations`.
pub fn router(ingest: Ingest) -> Router {
    use crate::rules_http;
    Router::new()
        .route("/api/v1/write", post(crate::remote_write::handle))
        .route("/api/v1/events", post(events))
        .route(
            "/api/v1/aggregations",
            get(rules_http::list).post(rules_http::create).delete(rules_http::delete_query),
        )
        .route("/api/v1/aggregations/{name}", delete(rules_http::delete_named))
        .route("/api/v1/aggregations/{name}/rows", get(rules_http::rows))
        .with_state(ingest)
}

/// The Prometheus error envelope with the status the error's code maps to.
pub(crate) fn error_response(e: &Error) -> Response {
    let code = e.code();
    (http_status(code), Json(prometheus_error_body(code, &e.message()))).into_response()
}

/// Reads a body up to `limit` bytes; a declared or actual size over it is a 413.
pub(crate) async fn read_body(limit: usize, headers: &HeaderMap, body: Body) -> Result<bytes::Bytes, Error> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|s| *s > limit as u64) {
        return Err(Error::TooLarge { size, limit: limit as u64 });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if over {
            Error::TooLarge { size: limit as u64 + 1, limit: limit as u64 }
        } else {
            Error::BadRequest(format!("could not read the request body: {e}"))
        }
    })
}

/// `POST /api/v1/events`: newline-delimited JSON events. An optional `Idempotency-Key` (or
/// `X-Batch-Id`) header makes a retried request apply once.
async fn events(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(ingest.config().max_request_bytes, &headers, body).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let mut lines = Vec::new();
    let mut parsed = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines.push(i + 1);
        parsed.push(match std::str::from_utf8(line) {
            Ok(s) => parse_event(s, None),
            Err(_) => Err("line is not valid UTF-8".to_string()),
        });
    }
    let batch_id = match idempotency_key(&headers) {
        Ok(id) => id,
        Err(e) => return error_response(&e),
    };
    match ingest.write(Prepared::from_events(batch_id, parsed)).await {
        Ok(resp) => events_response(&resp, &lines),
        Err(e) => error_response(&e),
    }
}

/// The request's idempotency key: `Idempotency-Key` (the IETF draft's name), or `X-Batch-Id`
/// (ours, before); empty when neither is sent.
fn idempotency_key(headers: &HeaderMap) -> Result<String, Error> {
    let mut key: Option<&str> = None;
    for name in ["idempotency-key", "x-batch-id"] {
        let Some(value) = headers.get(name) else { continue };
        let value = value
            .to_str()
            .map_err(|_| Error::BadRequest(format!("the {name} header must be visible ASCII")))?
            .trim();
        match key {
            Some(k) if k != value => {
                return Err(Error::BadRequest(
                    "Idempotency-Key and X-Batch-Id differ; send one of them".to_string(),
                ));
            }
            _ => key = Some(value),
        }
    }
    Ok(key.unwrap_or("").to_string())
}

fn events_response(resp: &v1::WriteResponse, lines: &[usize]) -> Response {
    let rejected: Vec<_> = resp
        .rejected
        .iter()
        .map(|r| serde_json::json!({ "line": lines.get(r.index as usize), "reason": r.reason }))
        .collect();
    let mut body = serde_json::json!({
        "status": "success",
        "accepted": resp.events_accepted,
        "rejected": rejected,
        "duplicate": resp.duplicate_batches > 0,
    });
    if rejected.is_empty() {
        return (StatusCode::OK, Json(body)).into_response();
    }
    let first = &resp.rejected[0];
    let message = format!(
        "{} line(s) rejected, the others were written; line {}: {}",
        rejected.len(),
        lines.get(first.index as usize).copied().unwrap_or(0),
        first.reason
    );
    body["status"] = "error".into();
    body["errorType"] = "bad_data".into();
    body["error"] = message.into();
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}
