//! Inputs that once could wedge a node or lose data quietly, each reproduced here.

use std::time::Duration;

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use rocksdb::IteratorMode;

use super::tests::{all, commit, config, open, reopen, series, write};
use super::*;
use crate::chunk;
use crate::read::{SeriesCursor, VecCursor, whole_series};

/// Every stored chunk and head, decoded: what `Store::open` must read back.
fn stored_chunk_sizes(store: &Store) -> Vec<usize> {
    let mut sizes = Vec::new();
    for item in
        store.db.iterator_cf_opt(cf(&store.db, CF_CHUNKS), crate::db::total_order(), IteratorMode::Start)
    {
        let (k, v) = item.unwrap();
        let (_, start) = keys::parse_chunk_key(&k).unwrap();
        sizes.push(chunk::decode(start, &v).unwrap().len());
    }
    sizes.extend(load_heads(&store.db).unwrap().values().map(HeadSeries::len));
    sizes
}

#[test]
fn inserts_inside_an_open_chunk_and_merges_stay_within_the_chunk_size() {
    // Once, samples inside an open chunk's span were inserted without the size check, and
    // out-of-order merges grew stored chunks without bound: one series could write a chunk
    // that `chunk::decode` refuses, and then no replica could open its store.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let max = config().chunk_max_samples;
    // The open chunk spans 1s..9s of one block (inside the 10 s out-of-order window); then 200
    // samples land inside that span.
    commit(&store, &write("", vec![series("up", "a", &[(1_000, 0.0), (9_000, 0.0)])], vec![]));
    let inside: Vec<_> = (0..200).map(|i| (1_001 + i * 30, i as f64)).collect();
    commit(&store, &write("", vec![series("up", "a", &inside)], vec![]));
    // Out-of-order samples for a stored chunk's span, merged at the checkpoint.
    let older: Vec<_> = (0..50).map(|i| (1_002 + i * 30, -1.0)).collect();
    commit(&store, &write("", vec![series("up", "a", &older)], vec![]));
    store.checkpoint().unwrap();
    let sizes = stored_chunk_sizes(&store);
    assert!(sizes.iter().all(|&n| n <= max), "chunks and heads hold {sizes:?} samples, limit {max}");

    let mut expect: BTreeMap<i64, f64> = [(1_000, 0.0), (9_000, 0.0)].into_iter().collect();
    expect.extend(inside.iter().copied());
    expect.extend(older.iter().copied());
    let expect: Vec<_> = expect.into_iter().map(|(t, v)| (t, v.to_bits())).collect();
    assert_eq!(all(&store)[0].1, expect);
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(all(&store)[0].1, expect, "the store opens again with every sample");
}

#[test]
fn events_of_a_batch_never_share_a_key() {
    // Event positions were `(write << 20) + position`: the 2^20th event of one write took the
    // key of the next write's first, overwritten but counted as accepted.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ev = |user: &str| v1::Event {
        event: Some(v1::event::Event::User(v1::UserEvent {
            meeting_id: "m".into(),
            user_id: user.into(),
            action: v1::UserAction::Join as i32,
            timestamp_ms: 5,
            ..Default::default()
        })),
    };
    let first = v1::LogWrite { events: vec![ev("a"); (1 << 20) + 1], ..Default::default() };
    let second = v1::LogWrite { events: vec![ev("b")], ..Default::default() };
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Batch(v1::WriteBatch { writes: vec![first, second] })),
    };
    let outcomes = store.apply_batch(2, &prost::Message::encode_to_vec(&cmd), None).unwrap();
    let accepted: u64 = outcomes.iter().map(|o| o.events_accepted).sum();
    assert_eq!(accepted, (1 << 20) + 2);
    let stored = store.events(TimeRange::ALL, usize::MAX).unwrap();
    assert_eq!(stored.len() as u64, accepted, "every accepted event is stored");
    assert!(stored.iter().any(|e| matches!(&e.event, Some(v1::event::Event::User(u)) if u.user_id == "b")));
}

#[test]
fn replicas_configured_differently_apply_the_log_alike() {
    // The out-of-order window and the dedup capacity came from each node's TOML: nodes
    // configured differently, or one whose TOML changed before a replay, kept different data.
    let log = [
        v1::Command {
            leader_time_ms: 0,
            payload: Some(v1::command::Payload::Settings(v1::ApplySettings {
                out_of_order_window_ms: 10_000,
                dedup_capacity: 2,
                ..Default::default()
            })),
        },
        write("b1", vec![series("up", "a", &[(100_000, 1.0)])], vec![]),
        // 50 s behind the newest sample: outside the 10 s window the log set.
        write("b2", vec![series("up", "a", &[(50_000, 2.0)])], vec![]),
        write("b3", vec![], vec![]),
        write("b4", vec![], vec![]),
        // b1 has left the dedup window of 2: applied again (samples are idempotent).
        write("b1", vec![series("up", "a", &[(100_000, 1.0)])], vec![]),
    ];
    let mut results = Vec::new();
    for (window, dedup) in [(Duration::from_secs(10), 2), (Duration::from_secs(3600), 100_000)] {
        let dir = tempfile::tempdir().unwrap();
        let local = StoreConfig { out_of_order_window: window, dedup_capacity: dedup, ..config() };
        let store = Store::open(dir.path(), local.clone()).unwrap();
        let outcomes: Vec<_> = log.iter().map(|cmd| commit(&store, cmd)).collect();
        let summary: Vec<_> =
            outcomes.iter().map(|o| (o.samples_accepted, o.rejected.len(), o.duplicate)).collect();
        store.checkpoint().unwrap();
        drop(store);
        // Restarted with yet another configuration: the settings come from the store.
        let other = StoreConfig { out_of_order_window: Duration::from_secs(7200), ..local };
        let store = Store::open(dir.path(), other).unwrap();
        assert_eq!(store.settings().out_of_order_window_ms, 10_000);
        let late = commit(&store, &write("", vec![series("up", "a", &[(60_000, 3.0)])], vec![]));
        results.push((summary, late.rejected.len(), all(&store)));
    }
    assert_eq!(results[0].0[2], (0, 1, false), "the late sample is refused");
    assert_eq!(results[0].0[5], (1, 0, false), "the evicted batch id is applied again");
    assert_eq!(results[0].1, 1);
    assert_eq!(results[0], results[1], "both replicas hold the same");
}

#[test]
fn a_failed_write_stops_apply_and_checkpoints_until_a_restart() {
    // Apply changed the series index, the next series id and the heads before its RocksDB
    // write. When that write failed (a full disk), a later checkpoint could still persist the
    // half-applied entry: here the next series id, so that after a restart the replayed series
    // got another id than on every other replica.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![series("up", "a", &[(1_000, 1.0)])], vec![]));
    store.checkpoint().unwrap();
    let clean_ids = {
        let twin = tempfile::tempdir().unwrap();
        let twin = open(twin.path());
        commit(&twin, &write("", vec![series("up", "a", &[(1_000, 1.0)])], vec![]));
        commit(&twin, &write("", vec![series("up", "b", &[(2_000, 2.0)])], vec![]));
        twin.series_ids(&[])
    };

    store.fail_next_apply_write();
    let cmd = write("", vec![series("up", "b", &[(2_000, 2.0)])], vec![]);
    let index = store.applied_index() + 1;
    store.log().append([(index, prost::Message::encode_to_vec(&cmd).as_slice())]).unwrap();
    assert!(store.apply(index, &cmd).is_err());
    let reason = store.stopped().expect("the state machine says it stopped");
    assert!(reason.contains("injected"), "{reason}");
    // Neither more applies nor a checkpoint: either could make the half-applied entry durable.
    let next = write("", vec![series("up", "c", &[(3_000, 3.0)])], vec![]);
    assert!(matches!(store.apply(index + 1, &next), Err(Error::Stopped { .. })));
    assert!(matches!(store.checkpoint(), Err(Error::Stopped { .. })));
    assert!(store.stopped().unwrap().contains("injected"), "the first cause is kept");
    drop(store);

    // The restart replays the entry from the log: the same ids as a replica that never failed.
    let store = reopen(dir.path());
    assert!(store.stopped().is_none());
    assert_eq!(store.series_ids(&[]), clean_ids);
    assert_eq!(all(&store).len(), 2);
}

#[test]
fn new_series_beyond_the_limit_are_refused_alike_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let limit = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Settings(v1::ApplySettings {
            max_series: 2,
            ..crate::Settings::from_config(&config()).to_proto()
        })),
    };
    commit(&store, &limit);
    let out = commit(
        &store,
        &write(
            "",
            vec![
                series("up", "a", &[(1, 1.0)]),
                series("up", "b", &[(1, 1.0)]),
                series("up", "c", &[(1, 1.0)]),
            ],
            vec![],
        ),
    );
    assert_eq!(out.samples_accepted, 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].index, 2);
    assert!(out.rejected[0].reason.contains("store.max_series"), "{}", out.rejected[0].reason);
    // Series that exist still take samples.
    let more = commit(&store, &write("", vec![series("up", "a", &[(2, 1.0)])], vec![]));
    assert_eq!((more.samples_accepted, more.rejected.len()), (1, 0));
    assert_eq!(store.series_refused(), 1);
}

#[test]
fn a_selection_streams_in_parts_instead_of_holding_everything() {
    // Once, a selection read every sample of every matching series before its reader could
    // count one (a budget passed down stopped it early, but it still held up to the budget).
    // A cursor now hands out bounded parts, in id order, oldest first, that join up to what
    // the whole selection holds.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let max = config().chunk_max_samples;
    // "b" is created first (the lower id) though it sorts after "a" by labels.
    let long: Vec<_> = (0..5_000).map(|i| (1_000 + i * 1_000, i as f64)).collect();
    commit(&store, &write("", vec![series("up", "b", &long[..10])], vec![]));
    commit(&store, &write("", vec![series("up", "a", &long), series("up", "b", &long[10..])], vec![]));
    store.checkpoint().unwrap();
    // Out of order (inside the window), in the head, inside the stored chunks' span; and newer
    // ones, outside the range, in the open chunk.
    let late: Vec<_> = (0..30).map(|i| (4_990_250 + i * 300, -1.0)).collect();
    let newer: Vec<_> = (0..100).map(|i| (6_000_000 + i * 1_000, 1.0)).collect();
    let out = commit(&store, &write("", vec![series("up", "a", &late), series("up", "a", &newer)], vec![]));
    assert_eq!(out.samples_accepted, 130);

    let range = TimeRange::new(2_000, 5_900_000);
    let mut cursor = store.cursor(&[], range);
    let mut parts = Vec::new();
    while let Some(p) = cursor.next_part().unwrap() {
        parts.push(p);
    }
    assert!(parts.len() > 4, "{} parts", parts.len());
    assert!(parts.iter().all(|p| !p.samples.is_empty() && p.samples.len() <= 1_000 + max + late.len()));
    let ids: Vec<_> = parts.iter().map(|p| p.id).collect();
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "ids ascending: {ids:?}");
    assert_eq!(parts[0].labels, store.select(&[], range).unwrap()[1].labels, "\"b\" first");
    for w in parts.windows(2).filter(|w| w[0].id == w[1].id) {
        assert!(w[0].samples.last().unwrap().timestamp_ms < w[1].samples[0].timestamp_ms);
    }
    let mut joined = whole_series(&mut VecCursor::new(parts)).unwrap();
    joined.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert!(joined == store.select(&[], range).unwrap(), "the parts join up to the whole selection");
    // Everything in the range, the late samples included, nothing outside it.
    let a = &joined[0].samples;
    let mut want: Vec<(i64, f64)> =
        long.iter().chain(&late).copied().filter(|s| range.contains(s.0)).collect();
    want.sort_by_key(|s| s.0);
    let got: Vec<(i64, f64)> = a.iter().map(|s| (s.timestamp_ms, s.value)).collect();
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    assert!(got == want, "{} samples, {} expected; missing {missing:?}", got.len(), want.len());
    assert_eq!(joined[1].samples.len(), long.iter().filter(|s| range.contains(s.0)).count());
}

#[test]
fn an_entry_with_a_command_this_version_does_not_know_stops_apply() {
    // Once, an entry that could not be read was applied as an empty one, and unknown fields
    // were skipped: replicas on different versions could diverge without a sign.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![series("up", "a", &[(1_000, 1.0)])], vec![]));
    let index = store.applied_index() + 1;
    // Field 12 of Command, a length-delimited payload this version has never heard of.
    let entry = [(12 << 3) | 2, 3, 1, 2, 3];
    let Err(e) = store.apply_batch(index, &entry, None) else { panic!("applied an entry it cannot read") };
    let msg = e.to_string();
    assert!(msg.contains(&format!("log entry {index}")) && msg.contains("newer version"), "{msg}");
    assert_eq!(store.applied_index(), index - 1, "nothing of it applied");
    let reason = store.stopped().expect("the node reports why it stopped");
    assert!(reason.contains("Command field"), "{reason}");
    let next = write("", vec![series("up", "b", &[(2_000, 2.0)])], vec![]);
    assert!(matches!(store.apply(index + 1, &next), Err(Error::Stopped { .. })));
}
