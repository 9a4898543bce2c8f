//! Kafka spans in writes: a batch consumed twice lands once, and the offsets survive restarts
//! and travel in snapshots.

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use prost::Message;

use super::tests::{open, reopen};
use super::*;
use crate::ApplyOutcome;

fn span(from: i64, to: i64) -> v1::SourceSpan {
    v1::SourceSpan { topic: "chat_events".into(), partition: 0, from_offset: from, to_offset: to }
}

/// A write of chat messages `from..to` (their ids are their offsets), as a leader's consumer
/// would log it.
fn consumed(from: i64, to: i64) -> v1::Command {
    let events = (from..to)
        .map(|o| v1::Event {
            event: Some(v1::event::Event::Chat(v1::ChatEvent {
                meeting_id: "m1".into(),
                user_id: "u1".into(),
                message_id: format!("offset-{o}"),
                timestamp_ms: 1_000 + o,
                ..Default::default()
            })),
        })
        .collect();
    let write = v1::LogWrite { events, sources: vec![span(from, to)], ..Default::default() };
    v1::Command { leader_time_ms: 0, payload: Some(v1::command::Payload::Write(write)) }
}

fn commit(store: &Store, cmd: &v1::Command) -> ApplyOutcome {
    let index = store.applied_index() + 1;
    store.log().append([(index, cmd.encode_to_vec().as_slice())]).unwrap();
    store.apply(index, cmd).unwrap()
}

fn ids(store: &Store) -> Vec<String> {
    let events = store.events(TimeRange::ALL, usize::MAX).unwrap();
    events
        .into_iter()
        .filter_map(|e| match e.event {
            Some(v1::event::Event::Chat(c)) => Some(c.message_id),
            _ => None,
        })
        .collect()
}

fn offsets(store: &Store) -> Vec<((String, i32), i64)> {
    store.source_offsets().into_iter().collect()
}

#[test]
fn a_batch_consumed_twice_is_applied_once_and_offsets_survive_restarts_and_snapshots() {
    let want = |n: i64| (0..n).map(|o| format!("offset-{o}")).collect::<Vec<_>>();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(commit(&store, &consumed(0, 3)).events_accepted, 3);
    assert_eq!(commit(&store, &consumed(3, 5)).events_accepted, 2);
    // A deposed leader's batch, logged after the new leader's: refused whole.
    let late = commit(&store, &consumed(2, 4));
    assert_eq!(late.events_accepted, 0);
    let why = late.refused.expect("refused");
    assert!(why.contains("chat_events/0 [2, 4)") && why.contains("applied offset 5"), "{why}");
    assert_eq!(ids(&store), want(5));
    assert_eq!(offsets(&store), [(("chat_events".to_string(), 0), 5)]);

    // From a checkpoint, then by replaying the log after it.
    store.checkpoint().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(offsets(&store), [(("chat_events".to_string(), 0), 5)]);
    assert!(commit(&store, &consumed(4, 6)).refused.is_some());
    assert_eq!(commit(&store, &consumed(5, 7)).events_accepted, 2);
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(offsets(&store), [(("chat_events".to_string(), 0), 7)]);
    assert_eq!(ids(&store), want(7));

    // A node that installs a snapshot of this one resumes from the same offsets.
    let snap = tempfile::tempdir().unwrap();
    let at = snap.path().join("snap");
    store.create_snapshot(&at).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(other_dir.path());
    other.install_snapshot(&at).unwrap();
    assert_eq!(offsets(&other), [(("chat_events".to_string(), 0), 7)]);
    assert!(commit(&other, &consumed(6, 8)).refused.is_some());
}
