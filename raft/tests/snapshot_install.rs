//! A node that stops in the middle of installing a snapshot starts again on its own.
//!
//! openraft purges the log a snapshot covers as soon as it hands the snapshot to the state
//! machine. Once, a crash during the install left a store wiped to empty behind a purged log:
//! every later start failed re-applying entries that no longer existed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_raft::{LogStorage, Request, StateMachine};
use collabstream_store::{Store, StoreConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine, StorageHelper};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, job: &str) -> Entry<collabstream_raft::TypeConfig> {
    let series = v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: "up".into() },
            v1::Label { name: "job".into(), value: job.into() },
        ],
        samples: vec![v1::Sample { timestamp_ms: index as i64 * 1_000, value: index as f64 }],
    };
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(
            v1::WriteRequest { batch_id: String::new(), series: vec![series], events: vec![] }.into(),
        )),
    };
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(Request::new(&cmd)) }
}

struct Node {
    store: Arc<Store>,
    log: LogStorage,
    sm: StateMachine,
}

/// Opens a node's storage as `Writer::start` does. The previous instance's log writer thread
/// may still be closing the database: opening is retried for a bounded time.
fn open(dir: &Path) -> Node {
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match Store::open(&dir.join("db"), StoreConfig::default()) {
            Ok(s) => break Arc::new(s),
            Err(e) if Instant::now() < deadline => {
                eprintln!("store not free yet: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("store does not open: {e}"),
        }
    };
    let log = LogStorage::new(store.log()).expect("log storage").purging_behind(store.clone());
    let sm = StateMachine::new(store.clone(), dir.join("snapshots"))
        .expect("state machine")
        .releasing_purges_of(log.clone());
    Node { store, log, sm }
}

/// Entries `from..=to`; index 0 is openraft's first entry (a blank one here, as at
/// initialisation a membership one).
async fn commit(node: &mut Node, from: u64, to: u64, job: &str) {
    let entries: Vec<_> =
        (from..=to)
            .map(|i| {
                if i == 0 { Entry { log_id: log_id(0), payload: EntryPayload::Blank } } else { entry(i, job) }
            })
            .collect();
    node.log.blocking_append(entries.clone()).await.expect("append");
    node.sm.apply(entries).await.expect("apply");
}

fn samples(store: &Store) -> Vec<(String, usize)> {
    store
        .select(&[], TimeRange::ALL)
        .expect("select")
        .into_iter()
        .map(|s| (s.labels.to_string(), s.samples.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_snapshot_install_is_recovered_at_the_next_start() {
    // The leader: 40 entries, snapshotted.
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = open(leader_dir.path());
    commit(&mut leader, 0, 40, "leader").await;
    let snapshot = leader.sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(40)));

    // A follower far behind: 5 entries of its own, checkpointed, its log purged to 3.
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path());
    commit(&mut follower, 0, 5, "follower").await;
    follower.store.checkpoint().unwrap();
    follower.log.purge(log_id(3)).await.unwrap();

    // What openraft does with a snapshot: purge the log it covers and install it, at once.
    // The install stops half done, as a crash there would leave the store.
    follower.log.purge(log_id(40)).await.unwrap();
    follower.store.fail_next_install_midway();
    let err = follower.sm.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap_err();
    eprintln!("install failed as injected: {err}");
    drop(follower);

    // The next start installs the snapshot again and openraft's recovery succeeds.
    let mut follower = open(dir.path());
    assert!(!follower.store.install_interrupted());
    let state = StorageHelper::new(&mut follower.log, &mut follower.sm).get_initial_state().await.unwrap();
    assert_eq!(state.committed, Some(log_id(40)), "applied up to the snapshot");
    assert_eq!(samples(&follower.store), samples(&leader.store));
    // The log goes on after the snapshot.
    commit(&mut follower, 41, 42, "leader").await;
    assert_eq!(samples(&follower.store), vec![("up{job=\"leader\"}".to_string(), 42)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_past_the_store_waits_for_the_install() {
    // Stopping before the install even began must leave the follower with its own state and
    // the log it needs to replay it, not with the log gone.
    let dir = tempfile::tempdir().unwrap();
    let mut follower = open(dir.path());
    commit(&mut follower, 0, 3, "follower").await;
    follower.store.checkpoint().unwrap();
    commit(&mut follower, 4, 5, "follower").await;
    follower.log.save_committed(Some(log_id(5))).await.unwrap();
    follower.log.purge(log_id(40)).await.unwrap();
    drop(follower);
    let mut follower = open(dir.path());
    let log_state = follower.log.get_log_state().await.unwrap();
    assert_eq!(log_state.last_purged_log_id, None);
    let state = StorageHelper::new(&mut follower.log, &mut follower.sm).get_initial_state().await.unwrap();
    assert_eq!(state.committed, Some(log_id(5)), "entries after the checkpoint replayed");
    assert_eq!(samples(&follower.store), vec![("up{job=\"follower\"}".to_string(), 5)]);
}
