//! Checkpoints taken while apply goes on: what apply does between a checkpoint's capture and
//! its write (samples that freeze head segments, out-of-order merges, batch ids, window
//! state) is neither lost nor counted twice, across restarts.

use collabstream_common::TimeRange;
use collabstream_proto::v1;

use super::tests::{all, commit, reopen_with, series, write};
use super::*;

/// The meetings pack's out-of-order window, and room for two window panes in memory, so that
/// checkpoints let panes go while others are being changed.
fn config() -> StoreConfig {
    StoreConfig { aggregation_keys_in_memory: 2, ..super::agg_tests::config() }
}

fn open(path: &std::path::Path) -> Store {
    super::tests::open_with(path, config())
}

/// Batch `b`: four samples for each of three series (enough to freeze head segments), one of
/// them older than its series' open chunk from the third batch on (an out-of-order merge at
/// the next checkpoint), and joins to four meetings; every fourth a tick too.
fn batches() -> Vec<v1::Command> {
    let mut out = Vec::new();
    for b in 0..16i64 {
        let t = 100_000 + b * 4_000;
        let mut wire: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|job| series("m", job, &[(t, 1.0), (t + 1, 2.0), (t + 2, 3.0), (t + 3, 4.0)]))
            .collect();
        if b >= 2 {
            wire.push(series("m", "late", &[(t - 30_000 + b, b as f64)]));
        }
        let events = (0..8)
            .map(|i| {
                let e = v1::UserEvent {
                    meeting_id: format!("m{}", i % 4),
                    user_id: format!("u{}", (b + i) % 5),
                    action: v1::UserAction::Join as i32,
                    timestamp_ms: t + i * 100,
                    ..Default::default()
                };
                v1::Event { event: Some(v1::event::Event::User(e)) }
            })
            .collect();
        let mut cmd = write(&format!("b{b}"), wire, events);
        cmd.leader_time_ms = t;
        out.push(cmd);
        if b % 4 == 3 {
            out.push(v1::Command {
                leader_time_ms: t + 60_000,
                payload: Some(v1::command::Payload::Tick(v1::Tick {})),
            });
        }
    }
    out
}

fn events(store: &Store) -> usize {
    store.events(TimeRange::ALL, 1 << 20).unwrap().len()
}

#[test]
fn checkpoints_count_what_they_cost_and_one_with_nothing_to_write_counts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The default room for window panes: apply takes no checkpoint of its own here.
    let store = super::tests::open(dir.path());
    commit(&store, &batches()[0]);
    let before = store.checkpoint_totals();
    store.checkpoint().unwrap();
    let after = store.checkpoint_totals();
    assert_eq!(after.count, before.count + 1);
    assert!(after.written_bytes > before.written_bytes, "three series' heads at least: {after:?}");
    assert!(after.seconds > before.seconds, "{after:?}");
    // Each part is part of its checkpoint's time, so the sums keep that order too.
    assert!(after.apply_wait_seconds <= after.seconds && after.flush_seconds <= after.seconds, "{after:?}");
    store.checkpoint().unwrap();
    assert_eq!(store.checkpoint_totals(), after, "nothing applied since: no checkpoint to count");
}

#[test]
fn entries_applied_while_a_checkpoint_writes_survive_restarts_once() {
    let cmds = batches();
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = open(whole_dir.path());
    let mut half = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        commit(&whole, c);
        if i == 9 {
            half = all(&whole);
        }
    }
    let (want, want_events) = (all(&whole), events(&whole));
    assert!(want.iter().any(|(s, _)| s.starts_with("meeting_active_users")), "{want:?}");

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for c in &cmds[..4] {
        commit(&store, c);
    }
    // A checkpoint under way (as `Store::checkpoint` holds this): apply's own, forced by the
    // panes in memory, waits for the next entry. Captured after six entries (the last one
    // with samples: their series are among what it writes); four more applied before its
    // write.
    let one = store.checkpointing.lock();
    commit(&store, &cmds[4]);
    commit(&store, &cmds[5]);
    let mut ran = false;
    let (at, _) = store
        .checkpoint_in_steps(|| {
            cmds[6..10].iter().for_each(|c| drop(commit(&store, c)));
            ran = true;
        })
        .unwrap();
    drop(one);
    assert!(ran, "the checkpoint had something to write");
    assert_eq!(at, store.applied_index() - 4);
    // The next checkpoint, with nothing applied since, finds what the four changed still to
    // be written; a restart right after it needs no log.
    store.checkpoint().unwrap();
    drop(store);
    let store = reopen_with(dir.path(), config());
    assert_eq!(all(&store), half);
    for c in &cmds[10..13] {
        commit(&store, c);
    }
    drop(store);
    let store = reopen_with(dir.path(), config());
    for c in &cmds[13..] {
        commit(&store, c);
    }
    assert_eq!(all(&store), want);
    assert_eq!(events(&store), want_events);
    // Once more from a checkpoint with nothing after it.
    store.checkpoint().unwrap();
    drop(store);
    let store = reopen_with(dir.path(), config());
    assert_eq!(all(&store), want);
    assert_eq!(events(&store), want_events);
    // Batch ids applied while the first checkpoint wrote are still known.
    for id in ["b3", "b5", "b7", "b8"] {
        assert!(commit(&store, &write(id, vec![], vec![])).duplicate, "{id} is remembered");
    }
}
