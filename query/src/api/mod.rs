//! The Prometheus HTTP API (`/api/v1/query`, `query_range`, `labels`, `label/<name>/values`,
//! `series`, `metadata`, `query_exemplars`, `status/buildinfo`, `rules`, `format_query`), so
//! that Grafana's Prometheus datasource and other Prometheus clients work unchanged.

mod json;
mod meta;
mod query;

impl Api {
    /// Honours `consistency`: `local` (the default) reads this replica as it is, which may lag
    /// the leader by the replication delay; `strong` first waits for the read barrier.
    pub(crate) async fn consistency(&self, p: &crate::params::Params) -> Result<(), crate::Error> {
        match p.get("consistency") {
            None | Some("") | Some("local") => Ok(()),
            Some("strong") => match &self.barrier {
                Some(b) => b.wait().await.map_err(crate::Error::Unavailable),
                None => Err(crate::Error::Unavailable("strong reads need the replication layer".into())),
            },
            Some(other) => Err(crate::Error::BadParam {
                name: "consistency",
                reason: format!("{other:?}: use \"local\" (default) or \"strong\""),
            }),
        }
    }
}

use std::sync::Arc;

use crate::read_slots::ReadSlots;
use axum::Router;
use axum::routing::get;
use collabstream_store::SeriesRead;

use crate::config::QueryConfig;
use crate::promql::Engine;
use crate::query_metrics::QueryMetrics;

/// Makes this node's data current before a `consistency=strong` read: it returns once
/// everything committed cluster-wide before the call is applied here. The replication layer
/// implements it; without one, strong reads are refused.
pub trait ReadBarrier: Send + Sync {
    fn wait(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>>;
}

/// What the API handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    engine: Engine,
    source: Arc<dyn SeriesRead>,
    barrier: Option<Arc<dyn ReadBarrier>>,
    /// One slot per query evaluated at once, shared with exports.
    slots: ReadSlots,
    metrics: Arc<QueryMetrics>,
}

/// The Prometheus API routes over `source`; a query takes one of `slots` while it runs.
pub(crate) fn router(
    source: Arc<dyn SeriesRead>,
    config: &QueryConfig,
    barrier: Option<Arc<dyn ReadBarrier>>,
    slots: ReadSlots,
    metrics: Arc<QueryMetrics>,
) -> Router {
    let engine = Engine::new(source.clone(), config.engine_options());
    let api = Api { engine, source, barrier, slots, metrics };
    Router::new()
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/format_query", get(query::format).post(query::format))
        .route("/api/v1/labels", get(meta::labels).post(meta::labels))
        .route("/api/v1/label/{name}/values", get(meta::label_values))
        .route("/api/v1/series", get(meta::series).post(meta::series))
        .route("/api/v1/metadata", get(meta::metadata))
        .route("/api/v1/query_exemplars", get(meta::exemplars).post(meta::exemplars))
        .route("/api/v1/status/buildinfo", get(meta::buildinfo))
        .route("/api/v1/rules", get(meta::rules))
        .route("/api/v1/alerts", get(meta::alerts))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::response::IntoResponse;

    use super::*;
    use crate::test_support::Slow;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_over_the_concurrency_limit_wait_then_time_out() {
        let config =
            QueryConfig { max_concurrency: 1, timeout: Duration::from_millis(300), ..Default::default() };
        let source: Arc<dyn SeriesRead> = Arc::new(Slow(Duration::from_millis(900)));
        let api = Api {
            engine: Engine::new(source.clone(), config.engine_options()),
            source,
            barrier: None,
            slots: ReadSlots::new(&config),
            metrics: Arc::default(),
        };
        let ask = |api: Api| async move {
            query::instant(State(api), RawQuery(Some("query=up&time=1".into())), Bytes::new())
                .await
                .into_response()
                .status()
                .as_u16()
        };
        // The first query holds the only slot for 900 ms; the second waits 300 ms for it.
        let first = tokio::spawn(ask(api.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        let second = ask(api.clone()).await;
        assert_eq!(second, 503, "a queued query past its timeout gets Prometheus's timeout error");
        assert!(started.elapsed() < Duration::from_millis(800), "it did not wait for the slot");
        // The first finishes (its reads are not interrupted; the engine checks the deadline
        // between steps) with the timeout error too: 900 ms > 300 ms.
        assert_eq!(first.await.unwrap(), 503);
        let mut page = String::new();
        api.metrics.render(&mut page);
        assert!(
            page.contains("collabstream_promql_queries_total{kind=\"instant\",outcome=\"error\"} 1"),
            "{page}"
        );
        // A slot is free again.
        let api_fast =
            Api { engine: Engine::new(Arc::new(Slow(Duration::ZERO)), config.engine_options()), ..api };
        assert_eq!(ask(api_fast).await, 200);
    }
}
