//! `collabstream-query`: reading data back (layer L4).
//!
//! The PromQL engine ([`promql`]), the Prometheus HTTP API over it (query, query_range, labels,
//! series, metadata, buildinfo, …), `GET|POST /api/v1/export`, which streams raw samples of the
//! matching series as JSON lines (the VictoriaMetrics export format), and
//! `GET /api/v1/events/export`, raw events as JSON lines in the format `POST /api/v1/events`
//! reads. All of it reads through the [`SeriesRead`] trait. And SQL ([`sql`]): DataFusion over
//! the store's tables and the cold tier's Parquet files, on `POST /api/v1/sql` and the
//! PostgreSQL wire protocol.
//!
//! Must not depend on: ingest. PromQL reads storage only through `collabstream_store::SeriesRead`,
//! so that hot and cold data look the same; SQL reads the cold files directly (DataFusion's
//! Parquet reader), behind the boundary the store holds for it.
//!
//! [`SeriesRead`]: collabstream_store::SeriesRead

mod api;
mod config;
mod error;
mod events;
mod export;
pub mod params;
pub mod promql;
mod query_metrics;
mod read_slots;
pub mod sql;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use collabstream_store::{EventRead, SeriesRead};
use read_slots::ReadSlots;

pub use api::ReadBarrier;
pub use config::QueryConfig;
pub use error::Error;
pub use query_metrics::QueryMetrics;

/// The read routes over `series` and `events`: the Prometheus API, export and event export.
pub fn router(
    series: Arc<dyn SeriesRead>,
    events: Arc<dyn EventRead>,
    config: &QueryConfig,
    barrier: Option<Arc<dyn ReadBarrier>>,
    metrics: Arc<QueryMetrics>,
) -> Router {
    // Queries and exports share one pool of slots (`query.max_concurrency`): each may hold up
    // to `query.max_samples` in memory, so the pool bounds what reads hold together.
    let slots = ReadSlots::new(config);
    api::router(series.clone(), config, barrier, slots.clone(), metrics).merge(
        Router::new()
            .route("/api/v1/export", get(export::handle).post(export::handle))
            .with_state(export::Export {
                source: series,
                max_samples: config.max_samples,
                slots: slots.clone(),
            })
            .merge(
                Router::new()
                    .route("/api/v1/events/export", get(events::handle))
                    .with_state(events::EventsExport { source: events, slots }),
            ),
    )
}
