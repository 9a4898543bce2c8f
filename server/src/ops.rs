//! Operational endpoints: `/healthz`, `/readyz`, `/metrics`, and `POST /api/v1/admin/compact`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use collabstream_ingest::IngestMetrics;
use collabstream_ingest::kafka::KafkaMetrics;
use collabstream_raft::Writer;
use collabstream_store::Store;

#[derive(Debug, Clone)]
pub(crate) struct Ops {
    pub(crate) store: Arc<Store>,
    pub(crate) ingest: Arc<IngestMetrics>,
    /// False once shutdown has begun, so load balancers stop sending traffic.
    pub(crate) ready: Arc<AtomicBool>,
    pub(crate) writer: Writer,
    /// The Kafka consumer's counters, when it is configured.
    pub(crate) kafka: Option<Arc<KafkaMetrics>>,
    pub(crate) tiering: Arc<crate::tiering::NodeTiering>,
    pub(crate) http: Arc<crate::http_metrics::HttpMetrics>,
    pub(crate) query: Arc<collabstream_query::QueryMetrics>,
}

pub(crate) fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/admin/compact", post(compact))
        .with_state(ops)
}

/// Ready unless shutting down, or the node can no longer apply writes: its state machine
/// stopped (after a failed write, or at an entry it cannot read), or Raft stopped. The answer
/// says why.
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    if !ops.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_string());
    }
    if let Some(reason) = ops.store.stopped() {
        let why = collabstream_store::Error::Stopped { reason };
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n"));
    }
    if let Some(failing) = ops.store.disk_failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: writes to the data directory fail and are being retried ({failing}); \
                 free disk space and the node goes on by itself, losing nothing acknowledged\n"
            ),
        );
    }
    let raft = ops.writer.raft().metrics().borrow().clone();
    if let Err(fatal) = &raft.running_state {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: raft stopped: {fatal}\n"));
    }
    // Without a leader the node can take no write: a load balancer (and a rolling update)
    // should wait until the cluster has one.
    if raft.current_leader.is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader known (the cluster is forming or electing, or this node cannot reach a \
             majority of --peers)\n"
                .to_string(),
        );
    }
    (StatusCode::OK, "ready\n".to_string())
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    let store = ops.store.clone();
    let stats = tokio::task::spawn_blocking(move || store.stats()).await.unwrap_or_default();
    let mut out = String::new();
    ops.ingest.render(&mut out);
    crate::self_metrics::render_process(&mut out);
    crate::self_metrics::render_raft(&mut out, &ops.writer);
    ops.writer.stats().render(&mut out);
    ops.query.render(&mut out);
    ops.http.render(&mut out);
    let gauges = [
        ("collabstream_active_series", "Series in the head index.", stats.series),
        (
            "collabstream_head_samples",
            "Samples held in memory in open chunks (recounted at most every 5 s).",
            stats.head_samples,
        ),
        ("collabstream_rocksdb_sst_bytes", "Bytes of RocksDB SST files on disk.", stats.sst_bytes),
        (
            "collabstream_rocksdb_log_sst_bytes",
            "Of the SST bytes, the replicated log's (dropped behind snapshots).",
            stats.log_sst_bytes,
        ),
        ("collabstream_rocksdb_memtable_bytes", "Bytes in RocksDB memtables.", stats.memtable_bytes),
        (
            "collabstream_rocksdb_block_cache_bytes",
            "Bytes in RocksDB's block caches.",
            stats.block_cache_bytes,
        ),
        (
            "collabstream_rocksdb_table_reader_bytes",
            "Bytes of RocksDB's open SST files' indexes and filters held in memory.",
            stats.table_reader_bytes,
        ),
        (
            "collabstream_rocksdb_running_compactions",
            "RocksDB compactions running now.",
            stats.running_compactions,
        ),
        (
            "collabstream_rocksdb_running_flushes",
            "RocksDB memtable flushes running now.",
            stats.running_flushes,
        ),
        (
            "collabstream_rocksdb_pending_compaction_bytes",
            "Bytes RocksDB estimates its compactions must still rewrite (a backlog that grows means writes outpace them).",
            stats.pending_compaction_bytes,
        ),
        (
            "collabstream_rocksdb_write_stopped",
            "1 while RocksDB stops writes (too many level-0 files, memtables or pending compaction bytes).",
            u64::from(stats.write_stopped),
        ),
        (
            "collabstream_rocksdb_delayed_write_rate_bytes",
            "The rate in bytes/s RocksDB slows writes to while it delays them (0: not delayed).",
            stats.delayed_write_rate,
        ),
        ("collabstream_applied_index", "Last applied log index.", ops.store.applied_index()),
        (
            "collabstream_write_queue_bytes",
            "Bytes of writes waiting to be logged or in flight on this node (limit: raft.max_queued_bytes).",
            ops.writer.queued_bytes() as u64,
        ),
        (
            "collabstream_state_machine_stopped",
            "1 once the state machine stopped: a failed write, or an entry it cannot read (see /readyz).",
            u64::from(ops.store.stopped().is_some()),
        ),
        (
            "collabstream_disk_writes_failing",
            "1 while writes to the data directory fail (a full disk) and are being retried.",
            u64::from(ops.store.disk_failing().is_some()),
        ),
        (
            "collabstream_checkpointed_index",
            "Last log index made durable without the log.",
            ops.store.checkpointed_index(),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, "gauge", name, help, value);
    }
    let name = "collabstream_rocksdb_cf_sst_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Bytes of RocksDB SST files of each column family (the log database's: log and log_meta).\n# TYPE {name} gauge"
    );
    for (cf, bytes) in &stats.sst_bytes_by_cf {
        let _ = writeln!(out, "{name}{{cf=\"{cf}\"}} {bytes}");
    }
    let (name, refused) = ("collabstream_series_refused_total", ops.store.series_refused());
    let _ = writeln!(
        out,
        "# HELP {name} New series refused at the series limit (store.max_series).\n# TYPE {name} counter\n{name} {refused}"
    );
    let (name, refused) = ("collabstream_aggregation_outputs_refused_total", ops.store.outputs_refused());
    let _ = writeln!(
        out,
        "# HELP {name} Aggregation output samples refused: corrections older than store.out_of_order_window allows.\n# TYPE {name} counter\n{name} {refused}"
    );
    if let Some(k) = &ops.kafka {
        for (name, help, v) in [
            (
                "collabstream_kafka_messages_total",
                "Kafka messages consumed and applied (while this node led).",
                &k.messages,
            ),
            ("collabstream_kafka_bytes_total", "Bytes of Kafka message values consumed.", &k.bytes),
            ("collabstream_kafka_events_total", "Events read from Kafka messages and proposed.", &k.events),
            (
                "collabstream_kafka_poison_messages_total",
                "Kafka messages that are not events, skipped.",
                &k.poison,
            ),
            (
                "collabstream_kafka_messages_lost_total",
                "Kafka messages removed by retention before they were read, skipped.",
                &k.lost,
            ),
            (
                "collabstream_kafka_dead_lettered_total",
                "Poison messages copied to the dead-letter topic.",
                &k.dead_lettered,
            ),
            (
                "collabstream_kafka_group_commit_failures_total",
                "Offset commits to the consumer group (for Kafka's lag tools) that failed.",
                &k.group_commit_failures,
            ),
            (
                "collabstream_kafka_batches_refused_total",
                "Consumed batches apply refused: their messages were logged already (by another leader).",
                &k.refused,
            ),
        ] {
            let v = v.load(Ordering::Relaxed);
            family(&mut out, "counter", name, help, v);
        }
        let name = "collabstream_kafka_lag_messages";
        let _ = writeln!(
            out,
            "# HELP {name} Messages of each partition not yet applied, as of the last fetch (only on the leader).\n# TYPE {name} gauge"
        );
        for ((topic, partition), lag) in k.lags() {
            let _ = writeln!(out, "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}");
        }
    }
    let rules = ops.store.aggregation_stats();
    for (name, help, kind, value) in [
        (
            "collabstream_late_events_dropped_total",
            "Events past their windows' allowed lateness, dropped, by rule.",
            "counter",
            &(|r: &collabstream_store::RuleStats| r.late_dropped.to_string())
                as &dyn Fn(&collabstream_store::RuleStats) -> String,
        ),
        ("collabstream_aggregation_open_keys", "Window panes or sessions held, by rule.", "gauge", &|r| {
            r.open_keys.to_string()
        }),
        (
            "collabstream_aggregation_events_total",
            "Events (or samples) each rule took, since start.",
            "counter",
            &|r| r.events.to_string(),
        ),
        (
            "collabstream_aggregation_samples_ignored_total",
            "Samples a rule over samples ignored as at or before their series' last (resent or out of order), since start.",
            "counter",
            &|r| r.samples_ignored.to_string(),
        ),
        (
            "collabstream_aggregation_state_bytes",
            "Bytes of a rule's state rows as its checkpoints wrote them (windows or sessions, and a sample rule's last sample per series).",
            "gauge",
            &|r| r.state_bytes.to_string(),
        ),
        (
            "collabstream_aggregation_input_series",
            "Input series a rule over samples remembers a last sample of.",
            "gauge",
            &|r| r.input_series.to_string(),
        ),
        (
            "collabstream_aggregation_windows_emitted_total",
            "Windows emitted when the watermark reached their end, by rule, since start.",
            "counter",
            &|r| r.emitted.to_string(),
        ),
        (
            "collabstream_aggregation_corrections_total",
            "Windows emitted again for late events (or withdrawn sessions), by rule, since start.",
            "counter",
            &|r| r.corrections.to_string(),
        ),
        (
            "collabstream_aggregation_watermark_seconds",
            "Event time up to which each rule takes its windows to be complete.",
            "gauge",
            &|r| {
                if r.watermark == i64::MIN {
                    "NaN".to_string()
                } else {
                    format!("{}", r.watermark as f64 / 1000.0)
                }
            },
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in &rules {
            let _ = writeln!(out, "{name}{{rule=\"{}\"}} {}", r.rule, value(r));
        }
    }
    ops.tiering.render(&mut out);
    let c = ops.store.checkpoint_totals();
    family(
        &mut out,
        "counter",
        "collabstream_checkpoints_total",
        "Store checkpoints (each lets the log be dropped up to it).",
        c.count,
    );
    family(
        &mut out,
        "counter",
        "collabstream_checkpoint_seconds_total",
        "Time spent in store checkpoints, start to end.",
        c.seconds,
    );
    family(
        &mut out,
        "counter",
        "collabstream_checkpoint_apply_wait_seconds_total",
        "Of the checkpoints' time, what apply waited for (taking their state, or all of one apply asked for).",
        c.apply_wait_seconds,
    );
    family(
        &mut out,
        "counter",
        "collabstream_checkpoint_flush_seconds_total",
        "Of the checkpoints' time, flushing the data RocksDB holds without its WAL.",
        c.flush_seconds,
    );
    family(
        &mut out,
        "counter",
        "collabstream_checkpoint_written_bytes_total",
        "Bytes of the fsynced batches checkpoints wrote (heads, deduplication ids, window state, meta).",
        c.written_bytes,
    );
    let (name, retries) = ("collabstream_disk_write_retries_total", ops.store.disk_retries());
    let _ = writeln!(
        out,
        "# HELP {name} Writes to the data directory that failed and were retried.\n# TYPE {name} counter\n{name} {retries}"
    );
    let _ = writeln!(
        out,
        "# HELP collabstream_build_info Build information.\n# TYPE collabstream_build_info gauge\ncollabstream_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// One unlabelled metric family in Prometheus's text format.
pub(crate) fn family(out: &mut String, kind: &str, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// Makes everything applied durable (a checkpoint), then flushes and fully compacts RocksDB,
/// and answers with the resulting sizes: for maintenance windows and for measuring bytes per
/// sample. Heavy: it rewrites every SST file.
async fn compact(State(ops): State<Ops>) -> impl IntoResponse {
    let store = ops.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let index = store.checkpoint()?;
        store.compact()?;
        Ok::<_, collabstream_store::Error>((index, store.stats()))
    })
    .await;
    match done {
        Ok(Ok((index, stats))) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "success",
                "data": {
                    "checkpointed_index": index,
                    "sst_bytes": stats.sst_bytes,
                    "log_sst_bytes": stats.log_sst_bytes,
                    "series": stats.series,
                }
            })),
        ),
        Ok(Err(e)) => internal(format!("compaction failed: {e}; the node keeps running, try again later")),
        Err(e) => internal(format!("compaction task failed: {e}")),
    }
}

fn internal(error: String) -> (StatusCode, axum::Json<serde_json::Value>) {
    let body = serde_json::json!({"status": "error", "errorType": "internal", "error": error});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body))
}
