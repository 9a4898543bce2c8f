//! `collabstream-query`: reading data back (layer L4).
//!
//! Today: the request parameters shared by the Prometheus HTTP API ([`params`]: times and
//! `match[]` selectors) and `GET|POST /api/v1/export`, which streams raw samples of the matching
//! series as JSON lines (the VictoriaMetrics export format), and `GET /api/v1/events/export`, raw
//! events as JSON lines in the format `POST /api/v1/events` reads. The PromQL engine and the rest of
//! the Prometheus API build on the same [`SeriesRead`] trait.
//!
//! Must not depend on: ingest. Reads storage only through `collabstream_store::SeriesRead`, so
//! that hot and cold data look the same.
//!
//! [`SeriesRead`]: collabstream_store::SeriesRead

mod error;
mod events;
mod export;
pub mod params;
pub mod promql;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use collabstream_store::{EventRead, SeriesRead};

pub use error::Error;

/// The read routes over `series` and `events`.
pub fn router(series: Arc<dyn SeriesRead>, events: Arc<dyn EventRead>) -> Router {
    Router::new()
        .route("/api/v1/export", get(export::handle).post(export::handle))
        .with_state(series)
        .merge(Router::new().route("/api/v1/events/export", get(events::handle)).with_state(events))
}
