//! The tiering pass over a single store whose log commits at once: blocks move in order and
//! answer as before they moved, late samples are refused, a block is never recorded twice, an
//! unreachable object store keeps everything hot, retention and orphans are collected (this
//! cluster's only).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use collabstream_common::TimeRange;
use collabstream_proto::v1::{self, command::Payload};
use collabstream_store::{Matcher, SeriesRead, whole_series};
use collabstream_tiering::{ColdRead, ObjectStoreConfig, Objects, TieredRead, Tierer, TieringConfig};
use common::{BLOCK, HOUR, LocalLog, commit, local_objects, store_with_three_hours};

fn config(orphan_age: Duration) -> TieringConfig {
    TieringConfig { hot_retention: Duration::from_secs(3600), orphan_age, ..Default::default() }
}

/// Every series and sample `source` answers for `range`, as comparable bits.
fn read(source: &dyn SeriesRead, range: TimeRange) -> Vec<(String, Vec<(i64, u64)>)> {
    whole_series(&mut *source.select(&[], range).expect("select"))
        .expect("read")
        .into_iter()
        .map(|s| {
            (s.labels.to_string(), s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect())
        })
        .collect()
}

#[test]
fn blocks_move_in_order_and_answer_as_before() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_with_three_hours(&dir.path().join("store")));
    let everything = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    let before = read(store.as_ref(), everything);
    let objects = local_objects(dir.path());
    // Data from BLOCK - 30 min to BLOCK + 2 h 30 min; an hour of hot retention three hours
    // after the first sample seals [.., BLOCK + 2 h) but not the last block.
    let log = Arc::new(LocalLog { store: store.clone(), now: AtomicI64::new(BLOCK + 3 * HOUR + 60_000) });
    let tierer = Tierer::new(store.clone(), objects.clone(), config(Duration::ZERO), log.clone());
    let tiered =
        TieredRead::new(store.clone(), ColdRead::new(objects.clone(), runtime.handle().clone(), 10_000_000));

    let report = runtime.block_on(tierer.run_once()).expect("pass");
    assert_eq!(report.sealed_before_ms, Some(BLOCK + 2 * HOUR));
    let spans = |table: &str| -> Vec<(i64, i64, bool)> {
        report
            .tiered
            .iter()
            .filter(|b| b.table == table)
            .map(|b| (b.from_ms, b.to_ms, !b.path.is_empty()))
            .collect()
    };
    assert_eq!(spans("samples"), [(i64::MIN, BLOCK, true), (BLOCK, BLOCK + 2 * HOUR, true)], "{report:?}");
    assert_eq!(spans("events"), [(i64::MIN, BLOCK + 2 * HOUR, false)], "no events: one empty span");
    assert_eq!(report.tiered.iter().map(|b| b.rows).sum::<u64>(), 9 * 600);
    assert_eq!(store.cold_until(), BLOCK + 2 * HOUR);
    assert_eq!(tierer.stats.objects_tiered.load(Ordering::Relaxed), 2);

    // The same answers, through the hot store's boundary and after its cold data is dropped.
    assert_eq!(read(&tiered, everything), before);
    store.checkpoint().expect("checkpoint");
    assert!(store.drop_cold().expect("drop").chunks > 0);
    assert_eq!(read(&tiered, everything), before);
    let across = TimeRange::new(BLOCK + 2 * HOUR - 60_000, BLOCK + 2 * HOUR + 60_000);
    assert_eq!(read(&tiered, across), read_filtered(&before, across));
    let only_up = [Matcher::equal("__name__", "up")];
    assert_eq!(tiered.series(&only_up, everything).expect("series").len(), 2);
    assert_eq!(
        tiered.label_values("instance", &[], TimeRange::new(BLOCK - HOUR, BLOCK)).expect("values").len(),
        4
    );

    // A late sample for a cold block is refused, counted, and changes no answer.
    let late = v1::Command {
        leader_time_ms: 0,
        payload: Some(Payload::Write(
            v1::WriteRequest {
                series: vec![v1::TimeSeries {
                    labels: vec![v1::Label { name: "__name__".into(), value: "up".into() }],
                    samples: vec![v1::Sample { timestamp_ms: BLOCK + 1, value: 1.0 }],
                }],
                ..Default::default()
            }
            .into(),
        )),
    };
    assert_eq!(commit(&store, &late).rejected.len(), 1);
    assert_eq!(store.cold_refused(), 1);
    assert_eq!(read(&tiered, everything), before);

    // A second pass has nothing to move; a block proposed again (a leader that did not see the
    // first commit) is refused, and its upload is an orphan, collected.
    let again = runtime.block_on(tierer.run_once()).expect("pass");
    assert!(again.tiered.is_empty() && again.orphans_deleted.is_empty(), "{again:?}");
    let token = store.cold_view().object_token.clone();
    assert_eq!(token.len(), 8, "fixed by the first seal");
    assert!(store.cold_view().blocks.iter().all(|b| b.path.contains(&format!("-{token}-"))));
    let hour = "samples/date=2024-11-28/hour=08";
    let stray = objects.path(&format!("{hour}/1732780800000-{token}-00000000000000aa.parquet"));
    runtime.block_on(objects.put_verified(&stray, bytes::Bytes::from_static(b"PAR1"))).expect("put");
    // Another cluster's objects under the same prefix, with a token of its own or none (as
    // written before tokens): never this cluster's orphans.
    let foreign = [
        objects.path(&format!("{hour}/1732780800000-0badcafe-00000000000000bb.parquet")),
        objects.path(&format!("{hour}/1732780800000-00000000000000cc.parquet")),
    ];
    for f in &foreign {
        runtime.block_on(objects.put_verified(f, bytes::Bytes::from_static(b"PAR1"))).expect("put");
    }
    let replay =
        v1::Command { leader_time_ms: 0, payload: Some(Payload::Tier(store.cold_view().blocks[1].clone())) };
    assert!(commit(&store, &replay).refused.expect("refused").contains("tiered already"));
    assert_eq!(store.cold_view().blocks.len(), 2);
    // An index whose file was never committed is an orphan too; the committed blocks' indexes
    // are not.
    let stray_index = objects.path(&format!("index/{hour}/1732780800000-{token}-00000000000000aa.idx"));
    runtime.block_on(objects.put_verified(&stray_index, bytes::Bytes::from_static(b"CSIX"))).expect("put");
    let mut collected = runtime.block_on(tierer.run_once()).expect("pass").orphans_deleted;
    collected.sort();
    let mut strays = vec![stray, stray_index];
    strays.sort();
    assert_eq!(collected, strays);
    assert!(foreign.iter().all(|f| runtime.block_on(objects.get(f)).is_ok()), "another cluster's, kept");
    assert_eq!(tierer.stats.foreign_objects.load(Ordering::Relaxed), 2);
    assert_eq!(read(&tiered, everything), before);

    // Cold retention: past it, the first block leaves the manifest and its object is deleted.
    let first = store.cold_view().blocks[0].path.clone();
    let first_index = store.cold_view().blocks[0].index_path.clone();
    assert!(runtime.block_on(objects.get(&first_index)).is_ok(), "a samples block has its series index");
    let first = [first, first_index];
    let retention = TieringConfig { cold_retention: Duration::from_secs(4 * 3600), ..config(Duration::ZERO) };
    let expiring = Tierer::new(store.clone(), objects.clone(), retention, log.clone());
    log.now.store(BLOCK + 5 * HOUR + 60_000, Ordering::Relaxed);
    let expired = runtime.block_on(expiring.run_once()).expect("pass");
    assert_eq!(expired.expired, first);
    assert_eq!(store.cold_view().blocks.len(), 2, "the last block moved, the first left");
    assert!(
        first.iter().all(|p| runtime.block_on(objects.get(p)).is_ok()),
        "kept for readers until the next pass"
    );
    let mut next = runtime.block_on(expiring.run_once()).expect("pass").orphans_deleted;
    next.sort();
    let mut want = first.to_vec();
    want.sort();
    assert_eq!(next, want);
    assert!(first.iter().all(|p| runtime.block_on(objects.get(p)).is_err()), "deleted");
    assert!(read(&tiered, TimeRange::new(BLOCK - HOUR, BLOCK - 1)).is_empty());
    assert_eq!(
        read(&tiered, TimeRange::new(BLOCK, BLOCK + 4 * HOUR)),
        read_filtered(&before, TimeRange::new(BLOCK, BLOCK + 4 * HOUR))
    );
}

fn read_filtered(all: &[(String, Vec<(i64, u64)>)], range: TimeRange) -> Vec<(String, Vec<(i64, u64)>)> {
    all.iter()
        .map(|(l, s)| (l.clone(), s.iter().copied().filter(|(t, _)| range.contains(*t)).collect::<Vec<_>>()))
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

#[test]
fn an_unreachable_object_store_keeps_the_blocks_hot() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_with_three_hours(&dir.path().join("store")));
    let everything = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    let before = read(store.as_ref(), everything);
    // Nothing listens on port 9 of loopback: every request is refused at once.
    let config = ObjectStoreConfig {
        url: "s3://bucket/prefix".into(),
        endpoint: "http://127.0.0.1:9".into(),
        region: "us-east-1".into(),
        access_key: "a".into(),
        secret_key: "b".into(),
        allow_http: true,
        path_style: true,
    };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let log = Arc::new(LocalLog { store: store.clone(), now: AtomicI64::new(BLOCK + 3 * HOUR) });
    let tierer = Tierer::new(store.clone(), objects.clone(), config_fast(), log);
    let err = runtime.block_on(tierer.run_once()).expect_err("the store is down");
    assert!(err.contains("upload of"), "{err}");
    assert_eq!(tierer.stats.failures.load(Ordering::Relaxed), 1);
    assert_eq!(store.cold_until(), i64::MIN, "nothing committed");
    assert_eq!(store.cold_view().sealed_before, BLOCK + 2 * HOUR, "sealed: the export waits for the store");
    let tiered = TieredRead::new(store.clone(), ColdRead::new(objects, runtime.handle().clone(), 10_000_000));
    assert_eq!(read(&tiered, everything), before);
}

fn config_fast() -> TieringConfig {
    config(Duration::from_secs(3600))
}
