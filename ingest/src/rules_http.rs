//! `GET/POST/DELETE /api/v1/aggregations` (DESIGN §7): the aggregation rules in force, and
//! changes to them committed through Raft.
//!
//! - `GET` lists the users' rules as [`RuleSpec`] JSON, and the built-in packs' rules by name.
//! - `POST` takes one rule as a JSON object (as in `[[aggregations]]` of the TOML); 200 with
//!   `"changed": false` if it already runs as defined.
//! - `DELETE /api/v1/aggregations/{name}` (or `?name=`) deletes one; its series stay (its rows
//!   go with it).
//! - `GET /api/v1/aggregations/{name}/rows?start=&end=&limit=` reads its rows: one per group and
//!   window emitted, with the window's start and end (Unix seconds) and every output; windows
//!   ending in `[start, end]` (Unix seconds or RFC 3339), at most `limit` (10,000 by default).
//!
//! Errors are Prometheus-style JSON: 400 for a rule that does not validate (the message names
//! the field), 409 for a conflict with the rules in force, 503 while no leader is known.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use collabstream_proto::v1::rule_change::Change;
use collabstream_raft::{Writer, change_rule};
use serde::Deserialize;

use crate::ingest::Ingest;
use crate::rule_spec::RuleSpec;

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "status": "error", "errorType": kind, "error": message.into() });
    (status, Json(body)).into_response()
}

fn from_status(s: &tonic::Status) -> Response {
    use tonic::Code;
    let (status, kind) = match s.code() {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "bad_data"),
        Code::AlreadyExists | Code::FailedPrecondition => (StatusCode::CONFLICT, "bad_data"),
        Code::Unavailable | Code::DeadlineExceeded => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, kind, s.message())
}

fn changed(changed: bool) -> Response {
    Json(serde_json::json!({ "status": "success", "data": { "changed": changed } })).into_response()
}

pub(crate) async fn list(State(ingest): State<Ingest>) -> Response {
    let (users, pack) = ingest.writer().store().aggregation_rules();
    let rules: Vec<RuleSpec> = users.iter().map(RuleSpec::from_proto).collect();
    Json(serde_json::json!({
        "status": "success",
        "data": { "rules": rules, "packs": { "meetings": pack } },
    }))
    .into_response()
}

pub(crate) async fn create(State(ingest): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    let body = match crate::http::read_body(ingest.config().max_request_bytes, &headers, body).await {
        Ok(b) => b,
        Err(e) => return crate::http::error_response(&e),
    };
    let spec: RuleSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("the rule is not valid JSON for a rule: {e}"),
            );
        }
    };
    let rule = match spec.to_proto("api") {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_data", format!("rule {:?}: {e}", spec.name)),
    };
    apply(ingest.writer(), Change::Create(rule)).await
}

/// At most this many rows an answer.
const MAX_ROWS: usize = 1_000_000;

#[derive(Debug, Deserialize)]
pub(crate) struct RowsQuery {
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
}

/// Unix seconds (with a fraction) or RFC 3339, as Prometheus' API takes times; in ms.
fn parse_time(name: &str, v: &str) -> Result<i64, String> {
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("{name}: {v:?} is neither Unix seconds nor an RFC 3339 time"))
}

fn number(x: Option<f64>) -> serde_json::Value {
    match x {
        None => serde_json::Value::Null,
        Some(x) if x.is_finite() => serde_json::json!(x),
        // JSON has no NaN or infinities: Prometheus writes them as strings.
        Some(x) => serde_json::Value::String(if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }),
    }
}

pub(crate) async fn rows(
    State(ingest): State<Ingest>,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
) -> Response {
    let bad = |m: String| error(StatusCode::BAD_REQUEST, "bad_data", m);
    let start = match q.start.as_deref().map(|v| parse_time("start", v)).transpose() {
        Ok(t) => t.unwrap_or(i64::MIN),
        Err(e) => return bad(e),
    };
    let end = match q.end.as_deref().map(|v| parse_time("end", v)).transpose() {
        Ok(t) => t.unwrap_or(i64::MAX),
        Err(e) => return bad(e),
    };
    if start > end {
        return bad("end: must not be before start".into());
    }
    let limit = q.limit.unwrap_or(10_000);
    if limit == 0 || limit > MAX_ROWS {
        return bad(format!("limit: must be between 1 and {MAX_ROWS}, got {limit}"));
    }
    let store = ingest.writer().store().clone();
    let range = collabstream_common::TimeRange { start, end };
    let read =
        tokio::task::spawn_blocking(move || store.aggregation_rows(&name, range, limit).map(|r| (name, r)))
            .await;
    let (name, (columns, rows)) = match read {
        Ok(Ok((name, Some(found)))) => (name, found),
        Ok(Ok((name, None))) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no aggregation rule named {name:?} runs; GET /api/v1/aggregations lists them"),
            );
        }
        Ok(Err(e)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("reading the rows: {e}"));
        }
        Err(e) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("reading the rows: {e}"));
        }
    };
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            let group: serde_json::Map<String, serde_json::Value> =
                r.group.into_iter().map(|(n, v)| (n, serde_json::Value::String(v))).collect();
            serde_json::json!({
                "group": group,
                "start": r.start as f64 / 1000.0,
                "end": r.end as f64 / 1000.0,
                "values": r.values.into_iter().map(number).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(serde_json::json!({ "status": "success", "data": { "rule": name, "columns": columns, "rows": rows } })).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct NameQuery {
    name: Option<String>,
}

pub(crate) async fn delete_named(State(ingest): State<Ingest>, Path(name): Path<String>) -> Response {
    apply(ingest.writer(), Change::Delete(name)).await
}

pub(crate) async fn delete_query(State(ingest): State<Ingest>, Query(q): Query<NameQuery>) -> Response {
    match q.name {
        Some(name) => apply(ingest.writer(), Change::Delete(name)).await,
        None => error(
            StatusCode::BAD_REQUEST,
            "bad_data",
            "name the rule: DELETE /api/v1/aggregations/<name> or ?name=<name>",
        ),
    }
}

async fn apply(writer: &Writer, change: Change) -> Response {
    match change_rule(writer, change).await {
        Ok(c) => changed(c),
        Err(s) => from_status(&s),
    }
}
