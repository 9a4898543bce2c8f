//! `GET|POST /api/v1/export?match[]=…&start=…&end=…`: raw samples as JSON lines, one series a
//! line: `{"metric":{…},"values":[…],"timestamps":[…]}` (the VictoriaMetrics export format).
//! Non-finite values are written as the strings `"NaN"`, `"+Inf"` and `"-Inf"`.
//!
//! What is read is bounded by `query.max_samples` (an export over it fails with 422 before any
//! byte is sent), and the answer is streamed in pieces, never built whole. An export takes a
//! slot of the pool queries use (`query.max_concurrency`), waiting for one at most
//! `query.timeout` (503), and must be answered within that same time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use collabstream_common::TimeRange;
use collabstream_store::{SeriesData, SeriesRead};

use crate::error::Error;
use crate::params::{parse_selector, parse_time};
use crate::read_slots::ReadSlots;

/// What an export reads from, and how much it may read.
#[derive(Clone)]
pub(crate) struct Export {
    pub(crate) source: Arc<dyn SeriesRead>,
    pub(crate) max_samples: usize,
    pub(crate) slots: ReadSlots,
}

/// Bytes of JSON lines sent at a time.
const PIECE: usize = 64 << 10;

pub(crate) async fn handle(
    State(Export { source, max_samples, slots }): State<Export>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    // Prometheus reads parameters from the query string and from a form body alike.
    let mut pairs = form_urlencoded_pairs(query.unwrap_or_default().as_bytes());
    pairs.extend(form_urlencoded_pairs(&body));
    let mut selectors = Vec::new();
    let mut range = TimeRange::ALL;
    for (k, v) in &pairs {
        match k.as_str() {
            "match[]" => selectors.push(parse_selector(v)?),
            "start" => range.start = parse_time("start", v)?,
            "end" => range.end = parse_time("end", v)?,
            _ => {}
        }
    }
    if range.start > range.end {
        return Err(Error::BadParam {
            name: "end",
            reason: "end timestamp must not be before start time".into(),
        });
    }
    if selectors.is_empty() {
        return Err(Error::BadParam { name: "match[]", reason: "at least one match[] is required".into() });
    }
    let slot = slots.take("the export queue", slots.timeout()).await?;
    // Read first (bounded), so that a limit is a proper error rather than a cut-off stream.
    let selected = tokio::task::spawn_blocking(move || -> Result<Vec<SeriesData>, Error> {
        let mut out: Vec<SeriesData> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut held = 0usize;
        for matchers in &selectors {
            let mut cursor = source.select(matchers, range)?;
            let mut taking = false;
            while let Some(part) = cursor.next_part()? {
                // A series' parts are adjacent: its first decides whether an earlier selector
                // had it already.
                let continues = taking && out.last().is_some_and(|last| last.id == part.id);
                if !continues {
                    taking = seen.insert(part.id);
                }
                if !taking {
                    continue;
                }
                held += part.samples.len();
                if held > max_samples {
                    return Err(collabstream_store::Error::TooManySamples { limit: max_samples }.into());
                }
                match out.last_mut() {
                    Some(last) if continues => last.samples.extend(part.samples),
                    _ => out.push(part),
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::Task(format!("export task failed: {e}")))??;
    let body = slot.stream(move |send| {
        let mut piece = String::with_capacity(PIECE + 1024);
        for s in selected {
            let metric: serde_json::Map<String, serde_json::Value> =
                s.labels.iter().map(|l| (l.name.clone(), l.value.clone().into())).collect();
            let values: Vec<serde_json::Value> = s.samples.iter().map(|x| json_value(x.value)).collect();
            let timestamps: Vec<i64> = s.samples.iter().map(|x| x.timestamp_ms).collect();
            piece.push_str(
                &serde_json::json!({ "metric": metric, "values": values, "timestamps": timestamps })
                    .to_string(),
            );
            piece.push('\n');
            if piece.len() >= PIECE && !send(std::mem::take(&mut piece)) {
                return; // The client went away, or the time is up.
            }
        }
        if !piece.is_empty() {
            send(piece);
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/stream+json")], body).into_response())
}

fn json_value(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::Number::from_f64(v).map(Into::into).unwrap_or(serde_json::Value::Null)
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}
