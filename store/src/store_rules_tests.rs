//! Users' aggregation rules inside apply: created and deleted by log entries, answered alike
//! on every replica, and run exactly once across restarts.

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_proto::v1::event::Event;

use super::agg_tests::{config, open};
use super::tests::{all, commit, write};
use super::*;
use crate::matcher::{MatchOp, Matcher};
use crate::{AggRow, RuleOutcome};

fn chat(meeting: &str, user: &str, length: u32, ts: i64) -> v1::Event {
    let e = v1::ChatEvent {
        meeting_id: meeting.into(),
        user_id: user.into(),
        length,
        timestamp_ms: ts,
        ..Default::default()
    };
    v1::Event { event: Some(Event::Chat(e)) }
}

/// Chat messages' length per meeting, in 10 s windows.
fn rule(name: &str) -> v1::AggregationRule {
    v1::AggregationRule {
        name: name.into(),
        events: "chat".into(),
        value: "length".into(),
        group_by: vec!["meeting_id".into()],
        size_ms: 10_000,
        outputs: ["count", "sum", "max"]
            .iter()
            .map(|k| v1::RuleOutput { kind: (*k).into(), quantile: 0.0 })
            .collect(),
        allowed_lateness_ms: 60_000,
        idle_timeout_ms: 30_000,
        distinct_threshold: 100,
        origin: "api".into(),
        ..Default::default()
    }
}

fn change(c: v1::rule_change::Change) -> v1::Command {
    v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Rules(v1::RuleChange { change: Some(c) })),
    }
}

fn create(def: v1::AggregationRule) -> v1::Command {
    change(v1::rule_change::Change::Create(def))
}

fn delete(name: &str) -> v1::Command {
    change(v1::rule_change::Change::Delete(name.into()))
}

fn outcome(store: &Store, cmd: &v1::Command) -> RuleOutcome {
    commit(store, cmd).catalog_change.expect("a rule change is answered")
}

fn values(store: &Store, metric: &str) -> Vec<(String, i64, f64)> {
    let m = [Matcher::new(MatchOp::Equal, "__name__", metric).unwrap()];
    let mut out = Vec::new();
    for s in store.select(&m, TimeRange::ALL).unwrap() {
        for x in &s.samples {
            out.push((s.labels.to_string(), x.timestamp_ms, x.value));
        }
    }
    out
}

#[test]
fn a_rule_runs_from_its_entry_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Before the rule: not counted.
    commit(&store, &write("", vec![], vec![chat("m1", "u1", 100, 500)]));
    assert_eq!(outcome(&store, &create(rule("chat_len"))), RuleOutcome::Changed);
    let events = vec![chat("m1", "u1", 10, 1_000), chat("m1", "u2", 32, 2_000), chat("m2", "u3", 5, 3_000)];
    commit(&store, &write("", vec![], events));
    commit(&store, &write("", vec![], vec![chat("m3", "x", 1, 10_000)]));
    assert_eq!(
        values(&store, "chat_len_count"),
        [
            (r#"chat_len_count{meeting_id="m1"}"#.to_string(), 10_000, 2.0),
            (r#"chat_len_count{meeting_id="m2"}"#.to_string(), 10_000, 1.0),
        ]
    );
    assert_eq!(values(&store, "chat_len_sum")[0].2, 42.0);
    assert_eq!(values(&store, "chat_len_max")[0].2, 32.0);
    let (users, pack) = store.aggregation_rules();
    assert_eq!(users, [rule("chat_len")]);
    assert!(pack.contains(&"meeting_health".to_string()), "{pack:?}");
}

#[test]
fn changes_are_answered_alike_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(outcome(&store, &create(rule("r"))), RuleOutcome::Changed);
    assert_eq!(outcome(&store, &create(rule("r"))), RuleOutcome::Unchanged, "the same again");
    let other = v1::AggregationRule { size_ms: 20_000, ..rule("r") };
    let RuleOutcome::Refused(why) = outcome(&store, &create(other)) else { panic!("another definition") };
    assert!(why.contains("another definition; delete it first"), "{why}");
    let late = v1::AggregationRule { allowed_lateness_ms: 7_200_000, ..rule("late") };
    let RuleOutcome::Refused(why) = outcome(&store, &create(late)) else { panic!("too late for the store") };
    assert!(why.contains("store.out_of_order_window"), "{why}");
    let RuleOutcome::Refused(why) = outcome(&store, &delete("meeting_health")) else { panic!("a pack rule") };
    assert!(why.contains("store.meetings_pack = false"), "{why}");
    assert_eq!(outcome(&store, &delete("nothing")), RuleOutcome::Unchanged);
    assert_eq!(outcome(&store, &delete("r")), RuleOutcome::Changed);
    assert!(store.aggregation_rules().0.is_empty());
    // Users' rules run in name order whatever order they came in.
    for name in ["b", "a", "c"] {
        commit(&store, &create(rule(name)));
    }
    let names: Vec<_> = store.aggregation_rules().0.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn rules_and_their_windows_survive_restarts_exactly_once() {
    let batches: Vec<Vec<v1::Event>> = (0..10)
        .map(|b| {
            (0..4)
                .map(|i| chat(&format!("m{}", i % 2), "u", (b * 4 + i) as u32, b * 3_000 + i * 10))
                .collect()
        })
        .collect();
    let run = |dir: &std::path::Path, stop_at: Option<(usize, usize)>| {
        let mut store = open(dir);
        commit(&store, &create(rule("chat_len")));
        // Deleted and created again between two checkpoints: nothing of the first survives.
        commit(&store, &create(rule("gone")));
        commit(&store, &write("", vec![], vec![chat("m9", "u", 7, 0)]));
        for (i, b) in batches.iter().enumerate() {
            commit(&store, &write("", vec![], b.clone()));
            if let Some((checkpoint, stop)) = stop_at {
                if i == checkpoint {
                    store.checkpoint().unwrap();
                    commit(&store, &delete("gone"));
                }
                if i == stop {
                    drop(store);
                    store = super::tests::reopen_with(dir, config());
                }
            } else if i == 2 {
                commit(&store, &delete("gone"));
            }
        }
        store
    };
    let whole_dir = tempfile::tempdir().unwrap();
    let want = all(&run(whole_dir.path(), None));
    assert!(want.iter().any(|(s, _)| s.starts_with("chat_len_sum")), "{want:?}");
    let dir = tempfile::tempdir().unwrap();
    let store = run(dir.path(), Some((2, 6)));
    assert_eq!(all(&store), want);
    assert_eq!(store.aggregation_rules().0, [rule("chat_len")]);
    store.checkpoint().unwrap();
    drop(store);
    let store = super::tests::reopen_with(dir.path(), config());
    assert_eq!(all(&store), want);
    assert_eq!(store.aggregation_rules().0, [rule("chat_len")], "the deleted rule stays deleted");
    // Created again: its windows start empty, and stay so after a restart (the first rule's
    // rows, with m9's pane, were deleted, not read back in).
    commit(&store, &create(rule("gone")));
    commit(&store, &write("", vec![], vec![chat("m1", "u", 1, 40_000), chat("m1", "u", 1, 50_000)]));
    assert_eq!(values(&store, "gone_count"), [(r#"gone_count{meeting_id="m1"}"#.to_string(), 50_000, 1.0)]);
    store.checkpoint().unwrap();
    drop(store);
    let store = super::tests::reopen_with(dir.path(), config());
    let gone = store.aggregation_stats().into_iter().find(|s| s.rule == "gone").unwrap();
    // m1's two panes (the first kept for its allowed lateness); a third would be m9's.
    assert_eq!(gone.open_keys, 2);
}

#[test]
fn a_rules_rows_are_its_windows_corrected_in_place_and_dropped_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert_eq!(store.aggregation_rows("chat_len", TimeRange::ALL, 10).unwrap(), None);
    commit(&store, &create(rule("chat_len")));
    let events = vec![chat("m1", "u1", 10, 1_000), chat("m1", "u2", 32, 2_000), chat("m2", "u3", 5, 3_000)];
    commit(&store, &write("", vec![], events));
    commit(&store, &write("", vec![], vec![chat("m3", "x", 1, 10_000)]));
    let (columns, rows) = store.aggregation_rows("chat_len", TimeRange::ALL, 10).unwrap().unwrap();
    assert_eq!(columns, ["chat_len_count", "chat_len_sum", "chat_len_max"]);
    let m1 = |values: Vec<Option<f64>>| AggRow {
        group: vec![("meeting_id".to_string(), "m1".to_string())],
        start: 0,
        end: 10_000,
        values,
    };
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0], m1(vec![Some(2.0), Some(42.0), Some(32.0)]));
    // A late message (within the allowed lateness) corrects the row in place.
    commit(&store, &write("", vec![], vec![chat("m1", "u9", 50, 4_000)]));
    let (_, rows) = store.aggregation_rows("chat_len", TimeRange::ALL, 10).unwrap().unwrap();
    assert_eq!(rows[0], m1(vec![Some(3.0), Some(92.0), Some(50.0)]));
    assert!(
        store
            .aggregation_rows("chat_len", TimeRange { start: 10_001, end: i64::MAX }, 10)
            .unwrap()
            .unwrap()
            .1
            .is_empty()
    );
    // Dropped with the rule: created again, it has none of the old rows.
    commit(&store, &delete("chat_len"));
    commit(&store, &create(rule("chat_len")));
    assert!(store.aggregation_rows("chat_len", TimeRange::ALL, 10).unwrap().unwrap().1.is_empty());
    // The pack's rows are there too, its columns named after its series.
    let (columns, rows) = store.aggregation_rows("meeting_health", TimeRange::ALL, 10).unwrap().unwrap();
    assert_eq!(
        columns,
        ["meeting_health_good", "meeting_health_fair", "meeting_health_poor", "meeting_health_score"]
    );
    assert!(rows.is_empty(), "no quality reports");
}

#[test]
fn a_rule_and_an_external_sql_table_never_share_a_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let table = |name: &str| v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::SqlTable(v1::SqlTableChange {
            change: Some(v1::sql_table_change::Change::Create(v1::SqlTable {
                name: name.into(),
                statement: format!("CREATE EXTERNAL TABLE {name} STORED AS CSV LOCATION 's3://b/{name}.csv'"),
            })),
        })),
    };
    assert_eq!(outcome(&store, &table("history")), RuleOutcome::Changed);
    let refused = outcome(&store, &create(rule("history")));
    assert!(
        matches!(&refused, RuleOutcome::Refused(why) if why.contains("DROP TABLE history")),
        "{refused:?}"
    );
    assert!(!store.aggregation_tables().iter().any(|t| t.name == "history"));

    assert_eq!(outcome(&store, &create(rule("chat_len"))), RuleOutcome::Changed);
    let refused = outcome(&store, &table("chat_len"));
    assert!(matches!(&refused, RuleOutcome::Refused(why) if why.contains("rule")), "{refused:?}");
    let names: Vec<String> = store.sql_tables().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["history"]);
}
