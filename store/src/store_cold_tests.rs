//! The cold tier inside apply: the seal refuses late samples (counted, with the reason); a
//! tiered block is no longer read from the hot store and is dropped from it; a block is
//! recorded once; the manifest survives a restart and a replay, and travels in snapshots.
//! Events the same way, with a boundary of their own.

use collabstream_common::TimeRange;
use collabstream_proto::v1::{self, ItemKind};

use super::tests::{all, commit, open, reopen, series, write};
use super::*;
use crate::cold_manifest::{EVENTS_TABLE, SAMPLES_TABLE};
use crate::read::whole_series;
use crate::store_cold;

/// `config()` cuts blocks of 60 s.
const BLOCK: i64 = 60_000;

fn seal(before_ms: i64) -> v1::Command {
    v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Seal(v1::Seal { before_ms, events: true })),
    }
}

fn tier(from_ms: i64, to_ms: i64, path: &str) -> v1::Command {
    tier_table(SAMPLES_TABLE, from_ms, to_ms, path)
}

fn tier_table(table: &str, from_ms: i64, to_ms: i64, path: &str) -> v1::Command {
    let block = v1::ColdBlock {
        table: table.into(),
        from_ms,
        to_ms,
        path: path.into(),
        min_time_ms: from_ms.max(0),
        max_time_ms: to_ms - 1,
        ..Default::default()
    };
    v1::Command { leader_time_ms: 0, payload: Some(v1::command::Payload::Tier(block)) }
}

/// Three series over three blocks (every 10 s), the last one still open in the head.
fn three_blocks(store: &Store) {
    let samples: Vec<(i64, f64)> = (0..18).map(|i| (i * 10_000, i as f64)).collect();
    // "c" has two samples in the first block, which stay in its head (its open chunk).
    let c = series("m", "c", &[(1_000, 1.0), (2_000, 2.0)]);
    commit(store, &write("w", vec![series("m", "a", &samples), series("m", "b", &samples[..7]), c], vec![]));
}

fn times(store: &Store) -> Vec<Vec<i64>> {
    store
        .select(&[], TimeRange::ALL)
        .unwrap()
        .into_iter()
        .map(|s| s.samples.iter().map(|x| x.timestamp_ms).collect())
        .collect()
}

#[test]
fn sealed_blocks_refuse_late_samples_and_tiered_ones_leave_the_hot_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    three_blocks(&store);
    assert_eq!(store.oldest_hot_sample().unwrap(), Some(0));

    assert!(commit(&store, &seal(BLOCK)).refused.is_none());
    let late =
        commit(&store, &write("late", vec![series("m", "b", &[(5_000, 9.0), (BLOCK + 5_000, 9.0)])], vec![]));
    assert_eq!(late.samples_accepted, 1, "{late:?}");
    assert_eq!(late.rejected.len(), 1);
    let r = &late.rejected[0];
    assert_eq!((r.kind, r.index, r.sample_index), (ItemKind::Sample as i32, 0, 0));
    assert!(r.reason.contains("sealed for the cold tier"), "{}", r.reason);
    assert_eq!(store.cold_refused(), 1);
    // Sealed, not yet tiered: still read from the hot store.
    assert_eq!(times(&store)[1], vec![0, 10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 65_000]);

    // A block past the seal, and one that does not start where the cold tier ends, are refused.
    assert!(commit(&store, &tier(i64::MIN, 2 * BLOCK, "x")).refused.unwrap().contains("not sealed"));
    assert!(commit(&store, &tier(0, BLOCK, "x")).refused.unwrap().contains("does not start"));
    assert!(commit(&store, &tier(i64::MIN, BLOCK, "b0")).refused.is_none());
    assert!(commit(&store, &tier(i64::MIN, BLOCK, "b0-again")).refused.unwrap().contains("tiered already"));
    let view = store.cold_view();
    assert_eq!((view.sealed_before, view.cold_until, view.blocks.len()), (BLOCK, BLOCK, 1));

    // The first block is no longer read, listed or counted as the oldest hot sample...
    let t = times(&store);
    assert_eq!(t[0][0], BLOCK);
    assert_eq!(t[1], vec![BLOCK, BLOCK + 5_000]);
    let first_block = TimeRange { start: 0, end: BLOCK - 1 };
    assert!(store.series(&[], first_block).unwrap().is_empty());
    assert_eq!(store.oldest_hot_sample().unwrap(), Some(BLOCK));
    // ...and dropping removes it from disk and heads, once a checkpoint has recorded the
    // boundary (a crash before would reopen with the old one), and once only.
    assert_eq!(store.drop_cold().unwrap(), store_cold::Dropped::default());
    store.checkpoint().unwrap();
    let dropped = store.drop_cold().unwrap();
    assert!(dropped.chunks > 0 && dropped.head_samples == 2, "{dropped:?}");
    assert_eq!(times(&store).len(), 2, "c had nothing after the first block");
    assert_eq!(store.drop_cold().unwrap(), store_cold::Dropped::default());
    // Read from before the boundary, the hot store holds nothing of the first block any more.
    let parts = whole_series(&mut store.cursor_from(None, i64::MIN, &[], TimeRange::ALL)).unwrap();
    assert!(parts.iter().flat_map(|p| &p.samples).all(|s| s.timestamp_ms >= BLOCK));
}

/// A dropped block gives its disk back without waiting for the column family to grow: the
/// tombstones of the drop mark their file for compaction, which removes them and what they
/// cover.
#[test]
fn a_dropped_block_gives_its_disk_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // 2,000 series over three blocks: the first two in chunks, the third still open.
    let samples: Vec<(i64, f64)> = (0..18).map(|i| (i * 10_000, ((i * 7_919) % 1_000) as f64)).collect();
    let all: Vec<v1::TimeSeries> = (0..2_000).map(|i| series("m", &format!("s{i}"), &samples)).collect();
    commit(&store, &write("w", all, vec![]));
    store.checkpoint().unwrap();
    let chunk_bytes = |store: &Store| {
        store.stats().sst_bytes_by_cf.iter().find(|(cf, _)| *cf == "chunks").map(|(_, b)| *b).unwrap()
    };
    let before = chunk_bytes(&store);
    assert!(before > 0);
    commit(&store, &seal(BLOCK));
    assert!(commit(&store, &tier(i64::MIN, BLOCK, "b0")).refused.is_none());
    store.checkpoint().unwrap();
    assert!(store.drop_cold().unwrap().chunks >= 2_000, "every series has chunks in the first block");
    // The drop's tombstones reach a file with the next checkpoint that has an entry to record.
    commit(&store, &write("next", vec![series("m", "s0", &[(180_000, 1.0)])], vec![]));
    store.checkpoint().unwrap();
    // Compaction runs in the background; bounded wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut now = chunk_bytes(&store);
    while now * 4 > before * 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = chunk_bytes(&store);
    }
    assert!(now * 4 <= before * 3, "the chunks' files are {now} bytes after dropping half of {before}");
    assert_eq!(times(&store).iter().map(|t| t[0]).min(), Some(BLOCK));
}

#[test]
fn the_manifest_survives_restarts_replays_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let expected = {
        let store = open(dir.path());
        three_blocks(&store);
        commit(&store, &seal(2 * BLOCK));
        commit(&store, &tier(i64::MIN, BLOCK, "b0"));
        store.checkpoint().unwrap();
        // After the checkpoint: replayed at the restart.
        commit(&store, &tier(BLOCK, 2 * BLOCK, ""));
        let late = commit(&store, &write("late", vec![series("m", "a", &[(BLOCK + 1, 1.0)])], vec![]));
        assert_eq!(late.rejected.len(), 1);
        (store.cold_view(), all(&store))
    };
    let store = reopen(dir.path());
    assert_eq!((store.cold_view(), all(&store)), expected);
    assert_eq!(store.cold_until(), 2 * BLOCK);
    // Nothing was dropped before the restart; the reopened store drops below the boundary its
    // checkpoint recorded, then below the replayed one once a checkpoint records that.
    assert_eq!(store.durable_cold_until(), BLOCK);
    let first = store.drop_cold().unwrap();
    store.checkpoint().unwrap();
    assert_eq!(store.durable_cold_until(), 2 * BLOCK);
    let second = store.drop_cold().unwrap();
    assert!(first.chunks > 0 && second.chunks > 0, "{first:?} {second:?}");
    assert_eq!(all(&store), expected.1);

    let snap = tempfile::tempdir().unwrap();
    store.checkpoint().unwrap();
    let made = snap.path().join("s");
    store.create_snapshot(&made).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other.install_snapshot(&made).unwrap();
    assert_eq!((other.cold_view(), all(&other)), expected);
}

#[test]
fn an_open_cursor_keeps_the_hot_data_it_may_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    three_blocks(&store);
    commit(&store, &seal(2 * BLOCK));
    // A cursor opened before the first block moves, not read yet.
    let (from, cursor) = store.cursor_pinned(&[], TimeRange::ALL);
    assert_eq!(from, i64::MIN);
    commit(&store, &tier(i64::MIN, BLOCK, "b0"));
    store.checkpoint().unwrap();
    let held = store.drop_cold().unwrap();
    assert_eq!(
        held,
        store_cold::Dropped { held_back: true, ..Default::default() },
        "kept for the open cursor"
    );
    let read = whole_series(&mut { cursor }).unwrap();
    assert!(read.iter().any(|s| s.samples.first().is_some_and(|x| x.timestamp_ms < BLOCK)), "read it whole");
    // Closed: dropped.
    assert!(store.drop_cold().unwrap().chunks > 0);
}

fn chat(ts: i64) -> v1::Event {
    v1::Event {
        event: Some(v1::event::Event::Chat(v1::ChatEvent {
            meeting_id: "m1".into(),
            user_id: "u1".into(),
            message_id: format!("msg-{ts}"),
            timestamp_ms: ts,
            ..Default::default()
        })),
    }
}

fn event_times(events: &[v1::Event]) -> Vec<i64> {
    events.iter().filter_map(collabstream_proto::events::timestamp_ms).collect()
}

#[test]
fn sealed_events_are_refused_and_tiered_ones_leave_the_hot_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // One write whose events span the first two blocks, one in the first block alone.
    commit(
        &store,
        &write("a", vec![], vec![chat(1_000), chat(BLOCK - 1), chat(BLOCK), chat(BLOCK + 30_000)]),
    );
    commit(&store, &write("b", vec![], vec![chat(2_000)]));
    assert_eq!(store.oldest_hot_event().unwrap(), Some(1_000));

    // A seal logged before events moved (without `events`) refuses no event.
    let samples_only = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Seal(v1::Seal { before_ms: BLOCK, events: false })),
    };
    commit(&store, &samples_only);
    assert_eq!(commit(&store, &write("old", vec![], vec![chat(3_000)])).events_accepted, 1);
    commit(&store, &seal(BLOCK));
    let late = commit(&store, &write("late", vec![], vec![chat(5_000), chat(BLOCK + 1)]));
    assert_eq!(late.events_accepted, 1, "{late:?}");
    let r = &late.rejected[0];
    assert_eq!((r.kind, r.index), (ItemKind::Event as i32, 0));
    assert!(r.reason.contains("sealed for the cold tier"), "{}", r.reason);
    assert_eq!(store.events_cold_refused(), 1);

    // The events' cold tier is apart from the samples': the samples' boundary moves nothing.
    commit(&store, &tier(i64::MIN, BLOCK, ""));
    assert_eq!(store.events(TimeRange::ALL, 100).unwrap().len(), 7);
    assert!(
        commit(&store, &tier_table(EVENTS_TABLE, 0, BLOCK, "e")).refused.unwrap().contains("does not start")
    );
    // A hot reader open while the block moves keeps it on disk until it is done.
    let mut held = Vec::new();
    let from = store
        .scan_hot_events(TimeRange::ALL, |e| {
            held.push(e.timestamp_ms);
            assert!(commit(&store, &tier_table(EVENTS_TABLE, i64::MIN, BLOCK, "e0")).refused.is_none());
            store.checkpoint().unwrap();
            assert_eq!(store.drop_cold().unwrap().events, 0, "held by the open reader");
            false
        })
        .unwrap();
    assert_eq!((from, held), (i64::MIN, vec![1_000]));
    assert_eq!(store.events_cold_until(), BLOCK);
    let later = [BLOCK, BLOCK + 1, BLOCK + 30_000];
    assert_eq!(event_times(&store.events(TimeRange::ALL, 100).unwrap()), later);
    assert_eq!(store.oldest_hot_event().unwrap(), Some(BLOCK));

    // Dropped once no reader holds it (and a checkpoint recorded the boundary, above), the
    // spanning write's later events kept.
    assert_eq!(store.drop_cold().unwrap().events, 4);
    assert_eq!(store.drop_cold().unwrap().events, 0);
    let on_disk = crate::event_blocks::read(&store.db, TimeRange::ALL, 100).unwrap();
    assert_eq!(event_times(&on_disk), later, "below the boundary, nothing left on disk");

    // The boundary survives a restart (a clean one: the drop's unlogged deletes are flushed
    // at close), and the next drop finds nothing more to take.
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(store.events_cold_until(), BLOCK);
    assert_eq!(event_times(&store.events(TimeRange::ALL, 100).unwrap()), later);
    assert_eq!(store.drop_cold().unwrap().events, 0);
    let on_disk = crate::event_blocks::read(&store.db, TimeRange::ALL, 100).unwrap();
    assert_eq!(event_times(&on_disk), later);
}

#[test]
fn a_drop_leaves_no_row_naming_a_dropped_block() {
    use crate::event_blocks::{EventBlock, drop_before, read};
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let db = &store.db;
    let raw = |ts: i64| prost::Message::encode_to_vec(&chat(ts));
    let mut batch = rocksdb::WriteBatch::default();
    // Written in an order their keys do not sort in. Block 9 only before the boundary's minute;
    // 2 across it; 5 inside the boundary's minute, which is kept whole; 3 is named by a row
    // but gone, as a crash between the two column families' flushes can leave it.
    let blocks =
        [(9u64, vec![70_000]), (2, vec![80_000, 100_000, 130_000]), (5, vec![125_000]), (3, vec![75_000])];
    for (index, times) in blocks {
        let mut b = EventBlock::default();
        for (p, ts) in times.iter().enumerate() {
            b.push(*ts, p as u32, &raw(*ts));
        }
        b.write(db, &mut batch, index, 0);
    }
    batch
        .delete_cf(cf(db, crate::db::CF_EVENTS), [&3u64.to_be_bytes()[..], &0u32.to_be_bytes()[..]].concat());
    store.write("test", &batch, &no_wal()).unwrap();
    db.flush_cf(cf(db, crate::db::CF_EVENTS)).unwrap();

    let write = |b: &rocksdb::WriteBatch| store.write("drop", b, &no_wal());
    // A boundary at 150 s drops the minutes before 120 s.
    assert_eq!(drop_before(db, 150_000, write).unwrap(), 3);
    assert_eq!(event_times(&read(db, TimeRange::new(150_000, i64::MAX), 100).unwrap()), Vec::<i64>::new());
    assert_eq!(event_times(&read(db, TimeRange::ALL, 100).unwrap()), [125_000, 130_000]);
    let rows = db.iterator_cf(cf(db, crate::db::CF_EVENT_TIMES), rocksdb::IteratorMode::Start).count();
    assert_eq!(rows, 2, "only the rows of the minute kept are left");
    assert_eq!(drop_before(db, 150_000, write).unwrap(), 0);
}

/// After a tiering pass drops every stored chunk (what is left hot is all in heads), reading
/// each series skips only its own tombstones: unbounded seeks walked those of every other
/// series, once per series (a full scan of 10,000 series spun for minutes). Counted with
/// RocksDB's per-thread perf counters, not timed.
#[test]
fn reads_after_a_drop_skip_only_their_own_series_tombstones() {
    use rocksdb::perf::{PerfContext, PerfMetric, PerfStatsLevel, set_perf_stats};
    const SERIES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Each series: a chunk of the first block (cut when its second block starts), and one
    // sample of the second block in its head.
    let samples: Vec<(i64, f64)> = (0..7).map(|i| (i * 10_000, i as f64)).collect();
    let all_series = (0..SERIES).map(|i| series("m", &format!("s{i:03}"), &samples)).collect();
    commit(&store, &write("w", all_series, vec![]));
    store.checkpoint().unwrap();
    commit(&store, &seal(BLOCK));
    commit(&store, &tier(i64::MIN, BLOCK, "b0"));
    store.checkpoint().unwrap();
    assert!(store.drop_cold().unwrap().chunks >= SERIES as u64, "every series' first block dropped");

    set_perf_stats(PerfStatsLevel::EnableCount);
    let mut perf = PerfContext::default();
    let mut skipped = |what: &str, read: &mut dyn FnMut()| {
        perf.reset();
        read();
        let n = perf.metric(PerfMetric::InternalDeleteSkippedCount)
            + perf.metric(PerfMetric::InternalKeySkippedCount);
        // Each series' own tombstone (and the value under it), a few times over; unbounded
        // seeks skipped about SERIES² / 2.
        assert!(n <= 8 * SERIES as u64, "{what} skipped {n} deleted keys for {SERIES} series");
    };
    skipped("a cursor", &mut || {
        let parts = whole_series(&mut store.cursor_from(None, i64::MIN, &[], TimeRange::ALL)).unwrap();
        assert_eq!(parts.len(), SERIES);
        assert!(parts.iter().all(|p| p.samples.iter().map(|s| s.timestamp_ms).eq([BLOCK])));
    });
    skipped("a listing", &mut || assert_eq!(store.series(&[], TimeRange::ALL).unwrap().len(), SERIES));
    skipped("the oldest hot sample", &mut || assert_eq!(store.oldest_hot_sample().unwrap(), Some(BLOCK)));
    skipped("another drop", &mut || assert_eq!(store.drop_cold().unwrap(), store_cold::Dropped::default()));
    set_perf_stats(PerfStatsLevel::Disable);
}
