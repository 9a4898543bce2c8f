//! `GET /api/v1/events/export?start=…&end=…&limit=…`: raw events as JSON lines, oldest first,
//! in the same format `POST /api/v1/events` reads (so an export can be replayed).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use collabstream_common::TimeRange;
use collabstream_proto::events_json::to_json;
use collabstream_store::EventRead;

use crate::error::Error;
use crate::params::parse_time;

const DEFAULT_LIMIT: usize = 100_000;

pub(crate) async fn handle(
    State(source): State<Arc<dyn EventRead>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Error> {
    let mut range = TimeRange::ALL;
    let mut limit = DEFAULT_LIMIT;
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "start" => range.start = parse_time("start", &v)?,
            "end" => range.end = parse_time("end", &v)?,
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| Error::BadParam { name: "limit", reason: format!("{v:?} is not a count") })?
            }
            _ => {}
        }
    }
    let events = tokio::task::spawn_blocking(move || source.events(range, limit))
        .await
        .map_err(|e| Error::BadParam { name: "start", reason: format!("export task failed: {e}") })??;
    let mut body = String::new();
    for e in &events {
        body.push_str(&to_json(e).to_string());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/stream+json")], body).into_response())
}
