//! The cold tier on a node: the read source every query goes through (cold files and the hot
//! store merged), the leader's tiering pass over Raft, the drop of tiered hot data on every
//! node, `POST /api/v1/admin/tiering/run` and the tiering figures of `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use collabstream_proto::v1::{self, command::Payload};
use collabstream_raft::Writer;
use collabstream_store::Store;
use collabstream_tiering::{ColdRead, CommitFuture, ManifestLog, Objects, TieredRead, Tierer};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use crate::error::Error;

/// How often every node looks whether the cold boundary moved, to drop what it no longer reads.
const DROP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct NodeTiering {
    pub(crate) read: Arc<TieredRead>,
    /// The object store cold blocks are in (paths as the manifest names them).
    objects: Arc<dyn object_store::ObjectStore>,
    tierer: Arc<Tierer>,
    store: Arc<Store>,
    writer: Writer,
    /// Hot chunks dropped on this node since start because the cold tier holds them.
    dropped: Arc<DropTotals>,
}

/// What the background drops removed on this node since start.
#[derive(Debug, Default)]
struct DropTotals {
    chunks: AtomicU64,
    events: AtomicU64,
}

impl NodeTiering {
    /// Opens the object store and starts the leader's passes and this node's drops, until
    /// `shutdown`.
    pub(crate) fn start(
        config: &ServerConfig,
        store: Arc<Store>,
        writer: Writer,
        shutdown: CancellationToken,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), Error> {
        let objects = Objects::open(&config.object_store, &config.data_dir).map_err(Error::Config)?;
        if !config.tiering.hot_retention.is_zero() {
            tracing::info!(objects = %objects.url, hot_retention = ?config.tiering.hot_retention, "tiering on");
            if config.tiering.hot_retention < config.store.out_of_order_window {
                tracing::warn!(
                    hot_retention = ?config.tiering.hot_retention,
                    out_of_order_window = ?config.store.out_of_order_window,
                    "tiering.hot_retention is shorter than store.out_of_order_window: samples older than the \
                     hot retention are refused (their block is sealed for the cold tier) although the window \
                     would take them"
                );
            }
        }
        let cold =
            ColdRead::new(objects.clone(), tokio::runtime::Handle::current(), config.query.max_samples);
        let read = Arc::new(TieredRead::new(store.clone(), cold));
        let log = Arc::new(RaftLog(writer.clone()));
        let object_store = objects.store();
        let tierer = Arc::new(Tierer::new(store.clone(), objects, config.tiering.clone(), log));
        let passes = tokio::spawn(tierer.clone().run(shutdown.clone().cancelled_owned()));
        let dropped = Arc::new(DropTotals::default());
        let drops = tokio::spawn(drop_tiered(store.clone(), dropped.clone(), shutdown));
        Ok((
            Arc::new(Self { read, objects: object_store, tierer, store, writer, dropped }),
            vec![passes, drops],
        ))
    }

    /// The object store cold blocks are in, for readers of their files.
    pub(crate) fn objects(&self) -> Arc<dyn object_store::ObjectStore> {
        self.objects.clone()
    }

    pub(crate) fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/admin/tiering/run", post(run))
            .route("/api/v1/admin/tiering", get(manifest))
            .with_state(self)
    }

    /// The tiering figures, in Prometheus's text format.
    pub(crate) fn render(&self, out: &mut String) {
        let s = &self.tierer.stats;
        let (hits, misses) = self.read.cold().footer_cache();
        let (range_hits, range_misses) = self.read.cold().range_cache();
        let (index_hits, index_misses) = self.read.cold().index_cache();
        let (decoded_hits, decoded_misses) = self.read.cold().decoded_cache();
        let counters = [
            (
                "collabstream_tiering_passes_total",
                "Tiering passes run on this node (it led).",
                s.passes.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_failures_total",
                "Tiering passes that failed (object store unreachable, erroring or slow); the blocks stay hot and the next pass retries.",
                s.failures.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_objects_total",
                "Blocks written to the object store by this node (a samples block with its series index counts once).",
                s.objects_tiered.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_bytes_total",
                "Bytes written to the object store by this node.",
                s.bytes_tiered.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_samples_total",
                "Samples moved to the object store by this node.",
                s.samples_tiered.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_events_total",
                "Raw events moved to the object store by this node.",
                s.events_tiered.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_objects_expired_total",
                "Blocks taken out of the manifest by cold retention (their objects are deleted by the next pass).",
                s.objects_expired.load(Ordering::Relaxed),
            ),
            (
                "collabstream_tiering_orphans_deleted_total",
                "Objects no manifest entry named, deleted.",
                s.orphans_deleted.load(Ordering::Relaxed),
            ),
            (
                "collabstream_samples_refused_cold_total",
                "Samples refused because their block is sealed for the cold tier ([tiering] hot_retention).",
                self.store.cold_refused(),
            ),
            (
                "collabstream_events_refused_cold_total",
                "Events refused because their block is sealed for the cold tier ([tiering] hot_retention).",
                self.store.events_cold_refused(),
            ),
            (
                "collabstream_cold_dropped_chunks_total",
                "Hot chunks dropped on this node because the cold tier holds their block.",
                self.dropped.chunks.load(Ordering::Relaxed),
            ),
            (
                "collabstream_cold_dropped_events_total",
                "Hot events dropped on this node because the cold tier holds their block.",
                self.dropped.events.load(Ordering::Relaxed),
            ),
            (
                "collabstream_cold_page_cache_hits_total",
                "Byte ranges (pages) of cold blocks found in the cache (256 MiB).",
                range_hits,
            ),
            (
                "collabstream_cold_page_cache_misses_total",
                "Byte ranges (pages) of cold blocks fetched from the object store.",
                range_misses,
            ),
            (
                "collabstream_cold_index_cache_hits_total",
                "Series indexes of cold blocks found in the cache.",
                index_hits,
            ),
            (
                "collabstream_cold_index_cache_misses_total",
                "Series indexes of cold blocks fetched from the object store.",
                index_misses,
            ),
            (
                "collabstream_cold_decoded_cache_hits_total",
                "Series of cold blocks asked for again and found decoded in the cache (64 MiB; reads of a few series fill it).",
                decoded_hits,
            ),
            (
                "collabstream_cold_decoded_cache_misses_total",
                "Series of cold blocks read and decoded for a read of a few series.",
                decoded_misses,
            ),
            (
                "collabstream_cold_footer_cache_hits_total",
                "Parquet footers of cold blocks found in the cache.",
                hits,
            ),
            (
                "collabstream_cold_footer_cache_misses_total",
                "Parquet footers of cold blocks fetched from the object store.",
                misses,
            ),
        ];
        for (name, help, v) in counters {
            crate::ops::family(out, "counter", name, help, v);
        }
        let view = self.store.cold_view();
        let seconds = |ms: i64| if ms == i64::MIN { 0.0 } else { ms as f64 / 1000.0 };
        let oldest = s.oldest_hot_block_ms.load(Ordering::Relaxed);
        let age =
            if oldest == i64::MIN { 0.0 } else { (self.writer.now_ms() - oldest).max(0) as f64 / 1000.0 };
        let gauges = [
            (
                "collabstream_cold_blocks",
                "Blocks the manifest lists on the object store.",
                view.blocks.len() as f64,
            ),
            (
                "collabstream_cold_bytes",
                "Bytes of the objects the manifest lists (blocks and their series indexes).",
                view.blocks.iter().map(|b| b.size + b.index_size).sum::<u64>() as f64,
            ),
            (
                "collabstream_cold_until_timestamp_seconds",
                "The cold tier holds the samples before this (0: none).",
                seconds(view.cold_until),
            ),
            (
                "collabstream_events_cold_until_timestamp_seconds",
                "The cold tier holds the raw events before this (0: none).",
                seconds(view.events_cold_until),
            ),
            (
                "collabstream_sealed_before_timestamp_seconds",
                "Samples and events before this are refused (0: none).",
                seconds(view.sealed_before),
            ),
            (
                "collabstream_tiering_oldest_hot_block_age_seconds",
                "Age of the oldest block still in the hot store, as of the leader's last pass (0: none or not the leader).",
                age,
            ),
            (
                "collabstream_tiering_foreign_objects",
                "Objects under the cold tier's prefix that no manifest entry names and that lack this cluster's token, as of the leader's last pass: another cluster's, left alone.",
                s.foreign_objects.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, help, v) in gauges {
            crate::ops::family(out, "gauge", name, help, v);
        }
    }
}

/// `GET /api/v1/admin/tiering`: the manifest this node applied (every node holds the same).
async fn manifest(State(t): State<Arc<NodeTiering>>) -> impl IntoResponse {
    let view = t.store.cold_view();
    let bound = |ms: i64| (ms != i64::MIN).then_some(ms);
    let blocks: Vec<serde_json::Value> = view
        .blocks
        .iter()
        .map(|b| {
            serde_json::json!({
                "table": b.table, "from_ms": bound(b.from_ms), "to_ms": b.to_ms, "path": b.path,
                "bytes": b.size, "rows": b.rows, "series": b.series,
                "index_path": b.index_path, "index_bytes": b.index_size,
                "min_time_ms": b.min_time_ms, "max_time_ms": b.max_time_ms, "metrics": b.metrics,
            })
        })
        .collect();
    axum::Json(serde_json::json!({"status": "success", "data": {
        "sealed_before_ms": bound(view.sealed_before),
        "cold_until_ms": bound(view.cold_until),
        "events_cold_until_ms": bound(view.events_cold_until),
        "object_token": view.object_token,
        "dropped_chunks": t.dropped.chunks.load(Ordering::Relaxed),
        "dropped_events": t.dropped.events.load(Ordering::Relaxed),
        "blocks": blocks,
    }}))
}

/// `POST /api/v1/admin/tiering/run`: one pass now, answering what moved. On any node: a
/// follower passes it on to the leader.
async fn run(State(t): State<Arc<NodeTiering>>) -> impl IntoResponse {
    match collabstream_raft::run_tiering(&t.writer, Some(t.as_ref())).await {
        Ok(report) => {
            let data: serde_json::Value = serde_json::from_str(&report).unwrap_or(serde_json::Value::Null);
            (StatusCode::OK, axum::Json(serde_json::json!({"status": "success", "data": data})))
        }
        Err(status) => {
            let body = serde_json::json!({"status": "error", "errorType": "unavailable", "error": format!(
                "{}; the blocks not moved stay hot and nothing is lost: the next pass (or a retry) goes on",
                status.message()
            )});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
        }
    }
}

impl collabstream_raft::TieringPass for NodeTiering {
    fn run(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + '_>> {
        Box::pin(async move {
            let report = self.tierer.run_once().await?;
            serde_json::to_string(&report).map_err(|e| e.to_string())
        })
    }
}

/// The log as the tiering pass uses it: entries this node proposes while it leads.
struct RaftLog(Writer);

impl ManifestLog for RaftLog {
    fn leads(&self) -> bool {
        let m = self.0.raft().metrics();
        let m = m.borrow();
        m.current_leader == Some(self.0.node_id()) && m.state.is_leader()
    }

    fn now_ms(&self) -> i64 {
        self.0.now_ms()
    }

    fn applied_all(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move { self.0.read_barrier().await.map(|_| ()).map_err(|e| e.to_string()) })
    }

    fn commit(&self, payload: Payload) -> CommitFuture<'_> {
        Box::pin(async move {
            let cmd = v1::Command { leader_time_ms: self.0.now_ms(), payload: Some(payload) };
            let outcomes = self
                .0
                .commit(&cmd)
                .await
                .map_err(|e| format!("the manifest change was not committed: {e}"))?;
            Ok(outcomes.into_iter().next().unwrap_or_default())
        })
    }
}

/// Drops the hot data the cold tier now holds whenever a checkpoint records a new boundary,
/// and once at start (drops are not logged, so those a crash lost are made again).
async fn drop_tiered(store: Arc<Store>, dropped: Arc<DropTotals>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(DROP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let bounds = |s: &Store| (s.cold_until(), s.events_cold_until());
    let durable = |s: &Store| (s.durable_cold_until(), s.durable_events_cold_until());
    let mut dropped_until = (i64::MIN, i64::MIN);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if bounds(&store) == dropped_until {
            continue;
        }
        let s = store.clone();
        // A checkpoint first records the new boundaries (drops go no further than one has),
        // which also makes the tier entries durable without waiting for the next timed one.
        let done = tokio::task::spawn_blocking(move || {
            if durable(&s) != bounds(&s) {
                s.checkpoint()?;
            }
            Ok::<_, collabstream_store::Error>((durable(&s), s.drop_cold()?))
        });
        match done.await {
            Ok(Ok((until, d))) => {
                // Held back by an open reader: tried again at the next tick.
                if !d.held_back {
                    dropped_until = until;
                }
                dropped.chunks.fetch_add(d.chunks, Ordering::Relaxed);
                dropped.events.fetch_add(d.events, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "dropping tiered hot data failed; retried shortly"),
            Err(e) => tracing::warn!(error = %e, "dropping tiered hot data failed; retried shortly"),
        }
    }
}
