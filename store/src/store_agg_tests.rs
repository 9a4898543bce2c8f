//! The meetings pack inside apply: events become meeting series, exactly once across restarts.

use std::time::Duration;

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use super::tests::{all, commit, write};
use super::*;
use crate::matcher::{MatchOp, Matcher};

/// The pack needs an out-of-order window of at least 5 min 5 s (its corrections); the rules'
/// tests use the same.
pub(crate) fn config() -> StoreConfig {
    StoreConfig { out_of_order_window: Duration::from_secs(3600), ..StoreConfig::default() }
}

pub(crate) fn open(path: &std::path::Path) -> Store {
    super::tests::open_with(path, config())
}

fn reopen(path: &std::path::Path) -> Store {
    super::tests::reopen_with(path, config())
}

fn join(meeting: &str, user: &str, ts: i64) -> v1::Event {
    let e = v1::UserEvent {
        meeting_id: meeting.into(),
        user_id: user.into(),
        action: v1::UserAction::Join as i32,
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::User(e)) }
}

fn quality(meeting: &str, latency_ms: f64, ts: i64) -> v1::Event {
    let e = v1::MeetingEvent {
        meeting_id: meeting.into(),
        kind: v1::MeetingKind::Quality as i32,
        latency_ms,
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::Meeting(e)) }
}

fn tick(clock: i64) -> v1::Command {
    v1::Command { leader_time_ms: clock, payload: Some(v1::command::Payload::Tick(v1::Tick {})) }
}

/// The samples of `metric` for meeting `m`, with the other labels.
fn values(store: &Store, metric: &str, m: &str) -> Vec<(String, i64, f64)> {
    let matchers = [
        Matcher::new(MatchOp::Equal, "__name__", metric).unwrap(),
        Matcher::new(MatchOp::Equal, "meeting_id", m).unwrap(),
    ];
    let mut out = Vec::new();
    for s in store.select(&matchers, TimeRange::ALL).unwrap() {
        for x in &s.samples {
            out.push((s.labels.to_string(), x.timestamp_ms, x.value));
        }
    }
    out
}

#[test]
fn events_become_meeting_series_when_their_windows_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let events = vec![join("m1", "u1", 1_000), join("m1", "u2", 2_000), quality("m1", 420.0, 3_000)];
    commit(&store, &write("", vec![], events));
    assert!(values(&store, "meeting_active_users", "m1").is_empty(), "the window is still open");
    // An event 5 s (max out-of-orderness) past 30 s closes [0, 30 s).
    commit(&store, &write("", vec![], vec![join("m2", "x", 35_000)]));
    assert_eq!(
        values(&store, "meeting_active_users", "m1"),
        [(r#"meeting_active_users{meeting_id="m1"}"#.to_string(), 30_000, 2.0)]
    );
    let health = values(&store, "meeting_health", "m1");
    assert_eq!(health.len(), 3);
    assert!(health.contains(&(r#"meeting_health{meeting_id="m1", status="poor"}"#.to_string(), 30_000, 1.0)));
    assert!(health.contains(&(r#"meeting_health{meeting_id="m1", status="good"}"#.to_string(), 30_000, 0.0)));
    assert_eq!(values(&store, "meeting_health_score", "m1")[0].2, 0.0);
}

#[test]
fn a_tick_closes_the_windows_of_an_idle_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Events stamped with the leader's clock at 1 s; then nothing.
    let mut cmd = write("", vec![], vec![join("m1", "u1", 1_000)]);
    cmd.leader_time_ms = 1_000;
    commit(&store, &cmd);
    commit(&store, &tick(30_000));
    assert!(values(&store, "meeting_active_users", "m1").is_empty(), "idle for 29 s only");
    // Idle for 30 s: the watermark moves to the clock minus 5 s (36 s), past the window's end.
    commit(&store, &tick(41_000));
    assert_eq!(values(&store, "meeting_active_users", "m1").len(), 1);
}

/// Outputs go to their series in two steps (found while the rules are borrowed, created
/// after): two windows of one group that close in one entry, before its series exists, must
/// make one series with two samples, and a series id each new series only.
#[test]
fn two_windows_closing_in_one_entry_make_one_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let series_before = store.stats().series;
    // Two 30 s windows of m1 with events, then one event 5 s past the second's end: both
    // close in that entry.
    commit(&store, &write("", vec![], vec![join("m1", "u1", 1_000), join("m1", "u2", 31_000)]));
    assert!(values(&store, "meeting_active_users", "m1").is_empty(), "both windows are still open");
    commit(&store, &write("", vec![], vec![join("m2", "x", 65_000)]));
    assert_eq!(
        values(&store, "meeting_active_users", "m1"),
        [
            (r#"meeting_active_users{meeting_id="m1"}"#.to_string(), 30_000, 1.0),
            (r#"meeting_active_users{meeting_id="m1"}"#.to_string(), 60_000, 1.0),
        ]
    );
    // Each output series of m1 made once: as many as one window's outputs make.
    let matchers = [Matcher::new(MatchOp::Equal, "meeting_id", "m1").unwrap()];
    let m1 = store.select(&matchers, TimeRange::ALL).unwrap();
    let mut names: Vec<String> = m1.iter().map(|s| s.labels.to_string()).collect();
    let all = names.len();
    names.dedup();
    assert_eq!(names.len(), all, "no series twice: {names:?}");
    assert!(m1.iter().all(|s| s.samples.len() == 2 || !s.labels.to_string().contains("active_users")));
    assert_eq!(store.stats().series - series_before, all as u64, "one id a series");
}

#[test]
fn a_restart_neither_loses_nor_counts_twice() {
    let batches: Vec<Vec<v1::Event>> = (0..12)
        .map(|b| {
            (0..5)
                .map(|i| join(&format!("m{}", i % 2), &format!("u{}", (b * 5 + i) % 7), b * 4_000 + i * 100))
                .collect()
        })
        .collect();
    // Never stopped.
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = open(whole_dir.path());
    for b in &batches {
        commit(&whole, &write("", vec![], b.clone()));
    }
    let want = all(&whole);
    assert!(want.iter().any(|(s, _)| s.starts_with("meeting_active_users")), "{want:?}");
    // Checkpointed after 4 batches, stopped after 8 (dropped: RocksDB flushes what it holds,
    // so the replay starts over state written after the checkpoint too), restarted.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for (i, b) in batches.iter().enumerate().take(8) {
        commit(&store, &write("", vec![], b.clone()));
        if i == 3 {
            store.checkpoint().unwrap();
        }
    }
    drop(store);
    let store = reopen(dir.path());
    for b in &batches[8..] {
        commit(&store, &write("", vec![], b.clone()));
    }
    assert_eq!(all(&store), want);
    // And again from a checkpoint taken after everything.
    store.checkpoint().unwrap();
    drop(store);
    assert_eq!(all(&reopen(dir.path())), want);
}

#[test]
fn turning_the_pack_off_and_on_leaves_no_old_state_behind() {
    let settings = |pack: u32| v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Settings(v1::ApplySettings {
            meetings_pack: pack,
            ..crate::Settings::from_config(&config()).to_proto()
        })),
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![], vec![join("m9", "u1", 1_000), join("m9", "u2", 2_000)]));
    store.checkpoint().unwrap();
    // Off and on again before the next checkpoint: the windows start over, empty.
    let tables =
        |store: &Store| -> Vec<String> { store.aggregation_tables().into_iter().map(|t| t.name).collect() };
    assert!(tables(&store).contains(&"meeting_active_users".to_string()));
    commit(&store, &settings(2));
    assert_eq!(tables(&store), Vec::<String>::new(), "SQL's tables follow the pack");
    commit(&store, &settings(1));
    assert!(tables(&store).contains(&"meeting_active_users".to_string()));
    commit(&store, &write("", vec![], vec![join("m1", "u3", 3_000)]));
    store.checkpoint().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert!(tables(&store).contains(&"meeting_active_users".to_string()));
    commit(&store, &write("", vec![], vec![join("m2", "x", 40_000)]));
    // m1's window from after the switch; nothing of m9's, whose rows were deleted, not mixed in.
    assert_eq!(values(&store, "meeting_active_users", "m1")[0].2, 1.0);
    assert_eq!(values(&store, "meeting_active_users", "m9"), []);
}

#[test]
fn windows_out_of_memory_give_the_same_series() {
    // Forty meetings over three minutes, with late joins: every rule holds more panes than
    // one, so the small store checkpoints often and reads panes back from its rows.
    let batches: Vec<Vec<v1::Event>> = (0..36)
        .map(|b| {
            (0..8)
                .map(|i| {
                    let late = if i == 7 { 40_000 } else { 0 };
                    join(
                        &format!("m{}", (b * 8 + i) % 40),
                        &format!("u{}", (b + i) % 9),
                        b * 5_000 + i * 100 - late,
                    )
                })
                .collect()
        })
        .collect();
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = open(whole_dir.path());
    for b in &batches {
        commit(&whole, &write("", vec![], b.clone()));
    }
    let want = all(&whole);
    assert!(want.iter().filter(|(s, _)| s.starts_with("meeting_active_users")).count() >= 30, "{want:?}");
    let small_config = || StoreConfig { aggregation_keys_in_memory: 1, ..config() };
    let dir = tempfile::tempdir().unwrap();
    let small = Store::open(dir.path(), small_config()).unwrap();
    let settings = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Settings(
            crate::Settings::from_config(&small_config()).to_proto(),
        )),
    };
    commit(&small, &settings);
    let mut small = small;
    for (i, b) in batches.iter().enumerate() {
        commit(&small, &write("", vec![], b.clone()));
        if i == 20 {
            drop(small);
            small = super::tests::reopen_with(dir.path(), small_config());
        }
    }
    assert_eq!(all(&small), want);
    let held = small.aggregation_stats();
    assert!(held.iter().any(|r| r.open_keys > 2), "{held:?}");
}

/// A series' id, labels and samples (timestamp, value bits).
type IdSeries = (u64, String, Vec<(i64, u64)>);

/// Rules take a write of many events on several threads: the outputs, and the ids their new
/// series get (which replicas must assign alike), are the same for any number of threads.
/// Writes of 1,000 events (past the size at which threads start), out of order in sixes so
/// that late events correct emitted windows, with ticks between them.
#[test]
fn threads_change_neither_outputs_nor_series_ids() {
    let mut workload = collabstream_workload::Meetings::new(300, 11);
    let mut commands = Vec::new();
    let mut pending = Vec::new();
    let mut t = 1_764_547_200_000i64;
    for _ in 0..150 {
        t += 1_000;
        pending.extend(workload.tick(t, 1_000));
        while pending.len() >= 1_000 {
            let rest = pending.split_off(1_000);
            commands.push(write("", vec![], std::mem::replace(&mut pending, rest)));
        }
        commands.push(tick(t));
    }
    for pair in commands.chunks_mut(6) {
        pair.reverse();
    }
    let writes =
        commands.iter().filter(|c| matches!(c.payload, Some(v1::command::Payload::Write(_)))).count();
    assert!(writes >= 20, "{writes} writes");
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let store =
            super::tests::open_with(dir.path(), StoreConfig { aggregation_threads: threads, ..config() });
        for c in &commands {
            commit(&store, c);
        }
        let outputs = [Matcher::new(MatchOp::Regex, "__name__", "meeting_.*").unwrap()];
        let series: Vec<IdSeries> = store
            .select(&outputs, TimeRange::ALL)
            .unwrap()
            .into_iter()
            .map(|s| {
                let samples = s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect();
                (s.id.0, s.labels.to_string(), samples)
            })
            .collect();
        let stats: Vec<(u64, u64, u64)> =
            store.aggregation_stats().iter().map(|r| (r.events, r.emitted, r.corrections)).collect();
        (series, stats)
    };
    let (one, one_stats) = run(1);
    assert!(one.len() > 100, "{} output series", one.len());
    assert!(one_stats.iter().any(|s| s.2 > 0), "late events corrected windows: {one_stats:?}");
    for threads in [2, 4] {
        let (many, many_stats) = run(threads);
        assert_eq!(many_stats, one_stats, "{threads} threads");
        assert!(many == one, "{threads} threads: the outputs or their series ids differ");
    }
}
