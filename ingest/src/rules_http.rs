//! `GET/POST/DELETE /api/v1/aggregations` (DESIGN §7): the aggregation rules in force, and
//! changes to them committed through Raft.
//!
//! - `GET` lists the users' rules as [`RuleSpec`] JSON, and the built-in packs' rules by name.
//! - `POST` takes one rule as a JSON object (as in `[[aggregations]]` of the TOML); 200 with
//!   `"changed": false` if it already runs as defined.
//! - `DELETE /api/v1/aggregations/{name}` (or `?name=`) deletes one; its series stay.
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
