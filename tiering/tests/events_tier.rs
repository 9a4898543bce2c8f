//! Raw events in the cold tier: a pass moves each block of events after the samples', reads
//! through `TieredRead` answer as before (every range and limit, across the boundary, after the
//! hot copies are dropped), late events are refused, and pyarrow and DuckDB (PyPI, installed by
//! `scripts/install-deps.sh`) read the files as the same events.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arrow::array::{Array, AsArray};
use collabstream_common::TimeRange;
use collabstream_proto::events_json::to_json;
use collabstream_proto::v1::{self, command::Payload};
use collabstream_store::EventRead;
use collabstream_tiering::{
    ColdRead, EventsFile, TieredRead, Tierer, TieringConfig, events_schema, export_events, object_name,
};
use common::{BLOCK, HOUR, LocalLog, add_events, commit, local_objects, store_with_three_hours};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn in_range(all: &[v1::Event], range: TimeRange, limit: usize) -> Vec<v1::Event> {
    all.iter()
        .filter(|e| range.contains(collabstream_proto::events::timestamp_ms(e).unwrap_or(i64::MIN)))
        .take(limit)
        .cloned()
        .collect()
}

/// Ranges inside blocks, across the boundaries, all of it; limits that end inside a block.
fn ranges() -> Vec<(TimeRange, usize)> {
    let all = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    vec![
        (all, usize::MAX),
        (all, 1),
        (all, 700),
        (TimeRange::new(BLOCK - 60_000, BLOCK + 60_000), usize::MAX),
        (TimeRange::new(BLOCK + 2 * HOUR - 30_000, BLOCK + 2 * HOUR + 30_000), 9),
        (TimeRange::new(BLOCK + HOUR, BLOCK + HOUR), usize::MAX),
        (TimeRange::new(BLOCK + 5 * HOUR, BLOCK + 6 * HOUR), usize::MAX),
    ]
}

#[test]
fn events_move_after_the_samples_and_answer_as_before() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_with_three_hours(&dir.path().join("store")));
    let all = add_events(&store);
    let objects = local_objects(dir.path());
    let log = Arc::new(LocalLog { store: store.clone(), now: AtomicI64::new(BLOCK + 3 * HOUR + 60_000) });
    let tierer = Tierer::new(
        store.clone(),
        objects.clone(),
        TieringConfig { hot_retention: std::time::Duration::from_secs(3600), ..Default::default() },
        log.clone(),
    );
    let tiered =
        TieredRead::new(store.clone(), ColdRead::new(objects.clone(), runtime.handle().clone(), 1 << 20));
    for (range, limit) in ranges() {
        assert_eq!(tiered.events(range, limit).expect("read"), in_range(&all, range, limit), "{range:?}");
    }

    let report = runtime.block_on(tierer.run_once()).expect("pass");
    let events: Vec<_> = report.tiered.iter().filter(|b| b.table == "events").collect();
    let spans: Vec<(i64, i64)> = events.iter().map(|b| (b.from_ms, b.to_ms)).collect();
    assert_eq!(spans, [(i64::MIN, BLOCK), (BLOCK, BLOCK + 2 * HOUR)], "{report:?}");
    assert!(events.iter().all(|b| b.path.starts_with("events/date=2024-11-28/")), "{events:?}");
    let moved = in_range(&all, TimeRange::new(i64::MIN, BLOCK + 2 * HOUR - 1), usize::MAX).len() as u64;
    assert_eq!(events.iter().map(|b| b.rows).sum::<u64>(), moved);
    assert_eq!(tierer.stats.events_tiered.load(Ordering::Relaxed), moved);
    assert_eq!(store.events_cold_until(), BLOCK + 2 * HOUR);
    assert_eq!(store.cold_until(), BLOCK + 2 * HOUR, "the samples moved too");

    let check = || {
        for (range, limit) in ranges() {
            assert_eq!(
                tiered.events(range, limit).expect("read"),
                in_range(&all, range, limit),
                "{range:?} {limit}"
            );
        }
    };
    check();
    // The hot store answers from the boundary on only, and drops what is below it.
    let hot = store.events(TimeRange::ALL, usize::MAX).expect("hot");
    assert_eq!(hot, in_range(&all, TimeRange::new(BLOCK + 2 * HOUR, i64::MAX), usize::MAX));
    store.checkpoint().expect("checkpoint");
    assert_eq!(store.drop_cold().expect("drop").events, moved);
    check();

    // A late event for a cold block is refused, counted, and changes no answer.
    let late = v1::Command {
        leader_time_ms: 0,
        payload: Some(Payload::Write(
            v1::WriteRequest { events: vec![all[3].clone()], ..Default::default() }.into(),
        )),
    };
    let outcome = commit(&store, &late);
    assert_eq!((outcome.events_accepted, outcome.rejected.len()), (0, 1), "{outcome:?}");
    assert_eq!(store.events_cold_refused(), 1);
    check();

    // Cold retention takes the events' blocks with the samples'.
    let retention = TieringConfig {
        hot_retention: std::time::Duration::from_secs(3600),
        cold_retention: std::time::Duration::from_secs(4 * 3600),
        ..Default::default()
    };
    let expiring = Tierer::new(store.clone(), objects.clone(), retention, log.clone());
    log.now.store(BLOCK + 5 * HOUR + 60_000, Ordering::Relaxed);
    let expired = runtime.block_on(expiring.run_once()).expect("pass");
    assert_eq!(expired.expired.iter().filter(|p| p.starts_with("events/")).count(), 1, "{expired:?}");
    let left = TimeRange::new(BLOCK, BLOCK + 4 * HOUR);
    assert_eq!(tiered.events(left, usize::MAX).expect("read"), in_range(&all, left, usize::MAX));
}

#[test]
fn a_file_of_many_row_groups_reads_back_in_order_and_stops_at_the_limit() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_with_three_hours(&dir.path().join("store")));
    let all = add_events(&store);
    let objects = local_objects(dir.path());
    // The first block written by hand in row groups of 100 events.
    let block = TimeRange::new(BLOCK - 2 * HOUR, BLOCK - 1);
    let mut file = EventsFile::with_row_group_rows(100).expect("file");
    store.scan_hot_events(block, |e| file.append(e).is_ok()).expect("scan");
    let (bytes, summary) = file.finish().expect("finish").expect("events");
    let meta =
        SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).expect("parquet").metadata().clone();
    assert!(meta.num_row_groups() > 2, "{}", meta.num_row_groups());
    // Each row group is sorted by meeting (the page index prunes by it), and follows the one
    // before in time.
    let mut last_max = i64::MIN;
    for rg in 0..meta.num_row_groups() {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            bytes::Bytes::from(bytes.clone()),
        )
        .expect("reader")
        .with_row_groups(vec![rg])
        .build()
        .expect("reader");
        let (mut meetings, mut times) = (Vec::new(), Vec::new());
        for batch in reader {
            let batch = batch.expect("batch");
            let m = batch.column_by_name("meeting_id").expect("meeting_id").as_string::<i32>().clone();
            meetings.extend((0..m.len()).map(|i| m.value(i).to_string()));
            let t = batch.column_by_name("timestamp").expect("timestamp");
            times.extend(
                t.as_primitive::<arrow::datatypes::TimestampMillisecondType>().values().iter().copied(),
            );
        }
        assert!(meetings.windows(2).all(|w| w[0] <= w[1]), "row group {rg}: {meetings:?}");
        assert!(meetings.first() != meetings.last(), "row group {rg} holds several meetings");
        assert!(times.iter().all(|t| *t > last_max), "row group {rg} overlaps the one before");
        last_max = times.iter().copied().max().expect("rows");
    }
    let path = objects.path(&object_name(
        "events",
        BLOCK - 2 * HOUR,
        "0badcafe",
        xxhash_rust::xxh3::xxh3_64(&bytes),
    ));
    let stored = runtime.block_on(objects.put_verified(&path, bytes.into())).expect("put");
    commit(
        &store,
        &v1::Command {
            leader_time_ms: 0,
            payload: Some(Payload::Seal(v1::Seal { before_ms: BLOCK, events: true })),
        },
    );
    let entry = v1::ColdBlock {
        table: "events".into(),
        from_ms: i64::MIN,
        to_ms: BLOCK,
        path: stored.path,
        size: stored.size,
        checksum: stored.checksum,
        rows: summary.rows,
        min_time_ms: summary.min_time,
        max_time_ms: summary.max_time,
        ..Default::default()
    };
    assert!(
        commit(&store, &v1::Command { leader_time_ms: 0, payload: Some(Payload::Tier(entry)) })
            .refused
            .is_none()
    );
    let tiered = TieredRead::new(store.clone(), ColdRead::new(objects, runtime.handle().clone(), 1 << 20));
    for (range, limit) in
        ranges().into_iter().chain([(block, 250), (TimeRange::new(BLOCK - HOUR / 4, BLOCK), 33)])
    {
        assert_eq!(
            tiered.events(range, limit).expect("read"),
            in_range(&all, range, limit),
            "{range:?} {limit}"
        );
    }
}

#[tokio::test]
async fn pyarrow_and_duckdb_read_the_same_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_three_hours(&dir.path().join("store"));
    let all = add_events(&store);
    let block = TimeRange::new(BLOCK, BLOCK + 2 * HOUR - 1);
    let (bytes, summary) = export_events(&store, block).expect("export").expect("events");
    let want = in_range(&all, block, usize::MAX);
    assert_eq!(summary.rows, want.len() as u64);
    assert!(export_events(&store, TimeRange::new(0, 1_000)).expect("export").is_none(), "no events, no file");
    // The page index is there to prune meetings with, and the schema is the documented one.
    let file = SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).expect("parquet");
    let rg = file.metadata().row_group(0);
    assert!(rg.columns().iter().all(|c| c.column_index_offset().is_some()));
    let arrow_schema =
        parquet::arrow::parquet_to_arrow_schema(file.metadata().file_metadata().schema_descr(), None)
            .expect("schema");
    assert_eq!(arrow_schema.fields(), events_schema().fields());

    let objects = local_objects(dir.path());
    let root = dir.path().join("objects");
    let name = objects.path(&object_name("events", BLOCK, "0badcafe", xxhash_rust::xxh3::xxh3_64(&bytes)));
    objects.put_verified(&name, bytes.into()).await.expect("upload");
    // Each engine rebuilds the JSON format's object from the columns (nulls left out) and
    // orders by time: the events must be ours, field for field.
    let script = r#"
import json, sys
import duckdb, pyarrow.dataset as ds
root = sys.argv[1]
cols = ["type", "tenant", "meeting_id", "user_id", "action", "message_id", "length", "kind", "latency_ms", "jitter_ms", "packet_loss_pct"]
def obj(row, ts):
    o = {c: row[c] for c in cols if row[c] is not None}
    o["timestamp"] = ts
    return o
t = ds.dataset(root + "/events", format="parquet", partitioning="hive").to_table().sort_by([("timestamp", "ascending"), ("log_index", "ascending"), ("position", "ascending")])
times = t.column("timestamp").cast("int64").to_pylist()
pa_rows = [obj(r, ts) for r, ts in zip(t.select(cols).to_pylist(), times)]
con = duckdb.connect()
q = f"SELECT {', '.join(cols)}, epoch_ms(timestamp) FROM read_parquet('{root}/events/**/*.parquet', hive_partitioning = 1) ORDER BY timestamp, log_index, position"
duck_rows = [obj(dict(zip(cols, r[:-1])), r[-1]) for r in con.execute(q).fetchall()]
print(json.dumps({"pyarrow": pa_rows, "duckdb": duck_rows}))
"#;
    let out = Command::new("python3").arg("-c").arg(script).arg(&root).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let want: Vec<serde_json::Value> = want.iter().map(to_json).map(without_defaults).collect();
    for engine in ["pyarrow", "duckdb"] {
        let rows = got[engine].as_array().expect("rows");
        assert_eq!(rows.len(), want.len(), "{engine}");
        for (row, e) in rows.iter().zip(&want) {
            assert_eq!(&without_defaults(row.clone()), e, "{engine}");
        }
    }
}

/// The JSON format writes every field of an event's kind; the files leave out those another
/// kind has (null), and both carry the kind's own: compare what is not empty.
fn without_defaults(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !(x.is_null() || x.as_str() == Some("")));
        for x in o.values_mut() {
            if let Some(f) = x.as_f64()
                && f.fract() == 0.0
                && !x.is_i64()
                && !x.is_u64()
            {
                *x = serde_json::json!(f as i64);
            }
        }
    }
    v
}
