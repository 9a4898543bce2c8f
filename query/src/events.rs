//! `GET /api/v1/events/export?start=…&end=…&limit=…`: raw events as JSON lines, oldest first,
//! in the same format `POST /api/v1/events` reads (so an export can be replayed). Like
//! `/api/v1/export`, it takes a read slot and must be answered within `query.timeout`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use collabstream_common::TimeRange;
use collabstream_proto::events_json::to_json;
use collabstream_store::EventRead;

use crate::error::Error;
use crate::params::parse_time;
use crate::read_slots::ReadSlots;

/// What an events export reads from, and the slots it takes one of.
#[derive(Clone)]
pub(crate) struct EventsExport {
    pub(crate) source: Arc<dyn EventRead>,
    pub(crate) slots: ReadSlots,
}

const DEFAULT_LIMIT: usize = 100_000;
/// The most events one request returns (they are held in memory while it is answered): page
/// through more with `start`, from the last timestamp received.
const MAX_LIMIT: usize = 1_000_000;

pub(crate) async fn handle(
    State(EventsExport { source, slots }): State<EventsExport>,
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
    if limit > MAX_LIMIT {
        return Err(Error::BadParam {
            name: "limit",
            reason: format!(
                "at most {MAX_LIMIT} events a request; page with start from the last timestamp received"
            ),
        });
    }
    let slot = slots.take("the events export queue", slots.timeout()).await?;
    let events = tokio::task::spawn_blocking(move || source.events(range, limit))
        .await
        .map_err(|e| Error::BadParam { name: "start", reason: format!("export task failed: {e}") })??;
    // Streamed in pieces: the JSON is several times the size of the events.
    let body = slot.stream(move |send| {
        let mut piece = String::new();
        for e in &events {
            piece.push_str(&to_json(e).to_string());
            piece.push('\n');
            if piece.len() >= 64 << 10 && !send(std::mem::take(&mut piece)) {
                return;
            }
        }
        if !piece.is_empty() {
            send(piece);
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/stream+json")], body).into_response())
}
