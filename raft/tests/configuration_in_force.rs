//! A node that has just become leader applies the first writes it is sent under its own
//! configuration: its `[store]` settings and its configured aggregation rules are committed
//! before any write. Once a write had gone first, the block length the configuration asked for
//! was lost for good (apply keeps the block length once the store holds data), and a
//! configured rule missed the first events.

use std::sync::Arc;
use std::time::Duration;

use collabstream_common::SystemClock;
use collabstream_proto::v1;
use collabstream_raft::{RaftOptions, Writer};
use collabstream_store::{Settings, Store, StoreConfig};
use prost::Message;

fn rule(name: &str) -> v1::AggregationRule {
    v1::AggregationRule {
        name: name.into(),
        events: "chat".into(),
        value: "length".into(),
        group_by: vec!["meeting_id".into()],
        size_ms: 10_000,
        outputs: vec![v1::RuleOutput { kind: "sum".into(), quantile: 0.0 }],
        allowed_lateness_ms: 60_000,
        idle_timeout_ms: 30_000,
        distinct_threshold: 100,
        origin: "config".into(),
        ..Default::default()
    }
}

fn sample_write(i: usize) -> bytes::Bytes {
    let series = v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: "up".into() },
            v1::Label { name: "job".into(), value: format!("j{i}") },
        ],
        samples: vec![v1::Sample { timestamp_ms: 1_700_000_000_000, value: 1.0 }],
    };
    v1::WriteRequest { series: vec![series], ..Default::default() }.encode_to_vec().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_writes_to_a_new_leader_are_applied_under_its_configuration() {
    // Several fresh nodes: whether a write could go first was a race.
    for attempt in 0..4 {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            block_duration: Duration::from_secs(600),
            out_of_order_window: Duration::from_secs(7_200),
            meetings_pack: false,
            ..StoreConfig::default()
        };
        let wanted = Settings::from_config(&config);
        assert_ne!(wanted, Settings::default(), "the test needs settings other than the defaults");
        let store = Arc::new(Store::open(&dir.path().join("db"), config).unwrap());
        let options = RaftOptions {
            aggregation_rules: vec![rule("chat_length")],
            ..RaftOptions::single(1, "127.0.0.1:1".into(), dir.path().join("snapshots"))
        };
        let (writer, handle) = Writer::start(store.clone(), Arc::new(SystemClock), options).await.unwrap();
        // Sent before the node has even won its election, as a client does that starts with it.
        let writes: Vec<_> = (0..8)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.propose(sample_write(i)).await })
            })
            .collect();
        for w in writes {
            w.await.unwrap().expect("the write is accepted");
            // Answered means applied: the configuration was in force before it.
            assert_eq!(store.settings(), wanted, "attempt {attempt}: settings when a write was answered");
            let (rules, _) = store.aggregation_rules();
            assert!(
                rules.iter().any(|r| r.name == "chat_length"),
                "attempt {attempt}: the configured rule was not in force when a write was answered"
            );
        }
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_rule_apply_refuses_does_not_hold_writes_back() {
    let dir = tempfile::tempdir().unwrap();
    // The configuration check lets it through; apply refuses it (the pack runs a rule so named).
    let taken = rule("meeting_active_users");
    let store = Arc::new(Store::open(&dir.path().join("db"), StoreConfig::default()).unwrap());
    let options = RaftOptions {
        aggregation_rules: vec![taken, rule("chat_length")],
        leader_wait: Duration::from_secs(5),
        ..RaftOptions::single(1, "127.0.0.1:1".into(), dir.path().join("snapshots"))
    };
    let (writer, handle) = Writer::start(store.clone(), Arc::new(SystemClock), options).await.unwrap();
    writer.propose(sample_write(0)).await.expect("the write is accepted");
    let (rules, pack) = store.aggregation_rules();
    assert!(pack.iter().any(|r| r == "meeting_active_users"), "the pack's rule runs: {pack:?}");
    let users: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(users, ["chat_length"], "the other configured rule runs");
    handle.shutdown().await;
}
