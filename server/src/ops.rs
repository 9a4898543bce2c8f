//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use collabstream_ingest::IngestMetrics;
use collabstream_store::Store;

#[derive(Debug, Clone)]
pub(crate) struct Ops {
    pub(crate) store: Arc<Store>,
    pub(crate) ingest: Arc<IngestMetrics>,
    /// False once shutdown has begun, so load balancers stop sending traffic.
    pub(crate) ready: Arc<AtomicBool>,
}

pub(crate) fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if ops.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    }
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let store = ops.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats()).await.unwrap_or_default();
    let mut out = String::new();
    ops.ingest.render(&mut out);
    let gauges = [
        ("collabstream_active_series", "Series in the head index.", stats.series),
        ("collabstream_head_samples", "Samples held in memory in open chunks.", stats.head_samples),
        ("collabstream_rocksdb_sst_bytes", "Bytes of RocksDB SST files on disk.", stats.sst_bytes),
        ("collabstream_rocksdb_memtable_bytes", "Bytes in RocksDB memtables.", stats.memtable_bytes),
        ("collabstream_applied_index", "Last applied log index.", ops.store.applied_index()),
        (
            "collabstream_checkpointed_index",
            "Last log index made durable without the log.",
            ops.store.checkpointed_index(),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP collabstream_build_info Build information.\n# TYPE collabstream_build_info gauge\ncollabstream_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
