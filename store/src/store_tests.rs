use std::collections::BTreeMap;
use std::time::Duration;

use collabstream_common::TimeRange;
use collabstream_proto::known_series::KnownFormat;
use collabstream_proto::log_write::canonical_labels;
use collabstream_proto::v1::{self, ItemKind};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::ApplyOutcome;

use crate::matcher::{MatchOp, Matcher};

pub(crate) fn config() -> StoreConfig {
    StoreConfig {
        out_of_order_window: Duration::from_secs(10),
        block_duration: Duration::from_secs(60),
        chunk_max_samples: 5,
        ..StoreConfig::default()
    }
}

pub(crate) fn series(name: &str, job: &str, samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: name.into() },
            v1::Label { name: "job".into(), value: job.into() },
        ],
        samples: samples.iter().map(|&(t, v)| v1::Sample { timestamp_ms: t, value: v }).collect(),
    }
}

pub(crate) fn write(batch_id: &str, series: Vec<v1::TimeSeries>, events: Vec<v1::Event>) -> v1::Command {
    v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(
            v1::WriteRequest { batch_id: batch_id.into(), series, events }.into(),
        )),
    }
}

/// Appends to the log, then applies: what a single-node writer does.
pub(crate) fn commit(store: &Store, cmd: &v1::Command) -> ApplyOutcome {
    let index = store.applied_index() + 1;
    store.log().append([(index, cmd.encode_to_vec().as_slice())]).unwrap();
    store.apply(index, cmd).unwrap()
}

/// A new store with the test settings (`config()`) set by the log, as a leader sets them.
pub(crate) fn open(path: &std::path::Path) -> Store {
    open_with(path, config())
}

/// [`open`] with another configuration, whose settings the log sets.
pub(crate) fn open_with(path: &std::path::Path, config: StoreConfig) -> Store {
    let settings = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Settings(crate::Settings::from_config(&config).to_proto())),
    };
    let store = Store::open(path, config).unwrap();
    assert_eq!(store.applied_index(), 0, "a new store");
    commit(&store, &settings);
    store
}

/// Opens a store and applies the log after its checkpoint, as the node does at start.
pub(crate) fn reopen(path: &std::path::Path) -> Store {
    reopen_with(path, config())
}

/// [`reopen`] with another configuration.
pub(crate) fn reopen_with(path: &std::path::Path, config: StoreConfig) -> Store {
    let store = Store::open(path, config).unwrap();
    let from = store.checkpointed_index() + 1;
    let entries: Vec<_> = store.log().read_from(from).map(|r| r.unwrap()).collect();
    for (index, bytes) in entries {
        store.apply(index, &v1::Command::decode(&*bytes).unwrap()).unwrap();
    }
    store
}

pub(crate) fn all(store: &Store) -> Vec<(String, Vec<(i64, u64)>)> {
    store
        .select(&[], TimeRange::ALL)
        .unwrap()
        .into_iter()
        .map(|s| {
            (s.labels.to_string(), s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect())
        })
        .collect()
}

#[test]
fn written_series_are_queryable_at_once_and_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let stale = f64::from_bits(collabstream_common::STALE_NAN_BITS);
    let pts: Vec<_> = (0..12).map(|i| (1_000 + i * 1_000, i as f64)).collect();
    let out = commit(
        &store,
        &write("", vec![series("up", "api", &pts), series("up", "web", &[(5, stale)])], vec![]),
    );
    assert_eq!(out.samples_accepted, 13);
    let m = [Matcher::new(MatchOp::Equal, "job", "api").unwrap()];
    let got = store.select(&m, TimeRange::new(2_000, 4_000)).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(), [2_000, 3_000, 4_000]);
    let before = all(&store);
    store.checkpoint().unwrap();
    commit(
        &store,
        &write("", vec![series("up", "api", &[(13_000, 13.0)]), series("down", "x", &[(1, 1.0)])], vec![]),
    );
    let before_more = all(&store);
    assert_ne!(before, before_more);
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(all(&store), before_more);
    assert_eq!(store.label_values("job", &[], TimeRange::ALL).unwrap(), ["api", "web", "x"]);
    assert_eq!(
        store.label_names(&[Matcher::equal("__name__", "down")], TimeRange::ALL).unwrap(),
        ["__name__", "job"]
    );
}

#[test]
fn listings_hold_the_series_with_samples_in_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Blocks are a minute: `old` has a stored chunk in block 0 and its newest sample in the
    // head (block 2); `new` only a sample in the head; `early` one at 3 s, in its head.
    commit(
        &store,
        &write(
            "",
            vec![
                series("m", "old", &[(1_000, 1.0), (2_000, 2.0), (125_000, 3.0)]),
                series("m", "new", &[(125_000, 1.0)]),
                series("m", "early", &[(3_000, 1.0)]),
            ],
            vec![],
        ),
    );
    let jobs = |start, end| store.label_values("job", &[], TimeRange::new(start, end)).unwrap();
    assert_eq!(jobs(100_000, 130_000), ["new", "old"]);
    // The stored chunk counts at block granularity; a head counts by the span it holds.
    assert_eq!(jobs(1_500, 1_600), ["old"]);
    assert_eq!(jobs(2_500, 3_500), ["early", "old"]);
    assert!(jobs(70_000, 80_000).is_empty());
    assert!(jobs(10, 5).is_empty());
    assert_eq!(jobs(i64::MIN, i64::MAX), ["early", "new", "old"]);
    let m = [Matcher::equal("job", "old")];
    assert!(store.label_names(&m, TimeRange::new(70_000, 80_000)).unwrap().is_empty());
    assert_eq!(store.label_names(&m, TimeRange::new(0, 200_000)).unwrap(), ["__name__", "job"]);
    assert_eq!(store.series(&[], TimeRange::new(2_500, 2_600)).unwrap().len(), 1);
}

#[test]
fn a_series_named_by_id_is_the_known_series_and_an_unknown_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("", vec![series("up", "api", &[(1_000, 1.0)])], vec![]));
    let canonical = |pairs: [(&str, &str); 2]| {
        let mut out = Vec::new();
        canonical_labels(pairs, &mut out);
        out
    };
    let find = |key: Vec<u8>| {
        let mut out = Vec::new();
        store.known_series().find_raw(&[key.as_slice()], &mut out);
        out[0]
    };
    let id = find(canonical([("__name__", "up"), ("job", "api")])).expect("applied series is known");
    assert_eq!(find(canonical([("job", "api"), ("__name__", "up")])), None);
    let mut known = collabstream_proto::known_series::KnownWriter::default();
    known.push(id, &[(2_000, 2f64.to_bits())]);
    known.push(id + 1_000, &[(2_000, 2f64.to_bits())]);
    let mut bytes = Vec::new();
    known.finish_into(&mut bytes);
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(v1::LogWrite {
            series: vec![series("up", "web", &[(1, 1.0)])],
            known_compact: v1::LogWrite::decode(bytes.as_slice()).unwrap().known_compact,
            ..Default::default()
        })),
    };
    let out = commit(&store, &cmd);
    assert_eq!(out.samples_accepted, 2);
    assert_eq!(out.rejected.len(), 1);
    // Numbered after the one series sent with labels: the known ones are items 1 and 2.
    assert_eq!((out.rejected[0].kind, out.rejected[0].index), (ItemKind::Series as i32, 2));
    assert!(out.rejected[0].reason.contains("unknown"), "{}", out.rejected[0].reason);
    // An entry logged before the compact form (values as IEEE bytes in `known`) applies alike.
    let mut raw = collabstream_proto::known_series::KnownWriter::of(KnownFormat::Raw);
    raw.push(id, &[(3_000, 2.5f64.to_bits())]);
    let mut bytes = Vec::new();
    raw.finish_into(&mut bytes);
    let old = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(v1::LogWrite {
            known: v1::LogWrite::decode(bytes.as_slice()).unwrap().known,
            ..Default::default()
        })),
    };
    assert_eq!(commit(&store, &old).samples_accepted, 1);
    let expected = vec![
        (
            r#"up{job="api"}"#.to_string(),
            vec![(1_000, 1f64.to_bits()), (2_000, 2f64.to_bits()), (3_000, 2.5f64.to_bits())],
        ),
        (r#"up{job="web"}"#.to_string(), vec![(1, 1f64.to_bits())]),
    ];
    assert_eq!(all(&store), expected);
    drop(store);
    // Replayed from the log after a restart, the ids name the same series.
    assert_eq!(all(&reopen(dir.path())), expected);
}

#[test]
fn a_repeated_batch_id_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cmd = write("b-1", vec![series("up", "a", &[(1, 1.0)])], vec![]);
    assert!(!commit(&store, &cmd).duplicate);
    let again = commit(&store, &write("b-1", vec![series("up", "a", &[(1, 99.0)])], vec![]));
    assert!(again.duplicate);
    assert_eq!(again.samples_accepted, 0);
    store.checkpoint().unwrap();
    drop(store);
    let store = reopen(dir.path());
    assert!(commit(&store, &cmd).duplicate, "dedup state survives a restart");
    assert_eq!(all(&store)[0].1, vec![(1, 1.0f64.to_bits())]);
}

#[test]
fn replay_after_a_restart_without_checkpoint_keeps_batches_with_ids() {
    // Closing RocksDB persists the WAL-less writes made after the checkpoint; replay must still
    // apply the entries after the checkpoint, not take their batch ids for duplicates.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    commit(&store, &write("first", vec![series("up", "a", &[(1, 1.0)])], vec![]));
    store.checkpoint().unwrap();
    commit(&store, &write("second", vec![series("up", "a", &[(2, 2.0)])], vec![]));
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(all(&store)[0].1, vec![(1, 1.0f64.to_bits()), (2, 2.0f64.to_bits())]);
    assert!(commit(&store, &write("second", vec![], vec![])).duplicate);
}

#[test]
fn events_are_kept_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ev = |ts: i64, user: &str| v1::Event {
        event: Some(v1::event::Event::User(v1::UserEvent {
            meeting_id: "m1".into(),
            user_id: user.into(),
            action: v1::UserAction::Join as i32,
            timestamp_ms: ts,
            ..Default::default()
        })),
    };
    commit(&store, &write("", vec![], vec![ev(30, "c"), ev(10, "a")]));
    commit(&store, &write("", vec![], vec![ev(20, "b")]));
    let got = store.events(TimeRange::new(0, 25), 100).unwrap();
    let ts: Vec<_> = got.iter().filter_map(collabstream_proto::events::timestamp_ms).collect();
    assert_eq!(ts, [10, 20]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Events of entries of one to three writes, spread over several minutes of event time in
    /// any order, some of them refused: any time range reads back the accepted ones in (time,
    /// log index, position) order, cut at the limit, before and after a restart.
    #[test]
    fn events_read_back_by_time_whatever_order_they_came_in(
        entries in prop::collection::vec(
            prop::collection::vec(prop::collection::vec((-200_000i64..400_000, any::<bool>()), 0..6), 1..4),
            1..8,
        ),
        ranges in prop::collection::vec((-250_000i64..450_000, 0i64..300_000, 1usize..40), 1..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let ev = |ts: i64, valid: bool| v1::Event {
            event: valid.then(|| v1::event::Event::Chat(v1::ChatEvent {
                meeting_id: "m1".into(),
                user_id: "u1".into(),
                message_id: format!("msg-{ts}"),
                timestamp_ms: ts,
                ..Default::default()
            })),
        };
        let mut model = Vec::new();
        for writes in &entries {
            let index = store.applied_index() + 1;
            let mut position = 0u32;
            let mut logged = Vec::new();
            for w in writes {
                for &(ts, valid) in w {
                    if valid {
                        model.push(((ts, index, position), format!("msg-{ts}")));
                    }
                    position += 1;
                }
                let events = w.iter().map(|&(ts, valid)| ev(ts, valid)).collect();
                logged.push(v1::WriteRequest { batch_id: String::new(), series: vec![], events }.into());
            }
            let cmd = v1::Command {
                leader_time_ms: 0,
                payload: Some(v1::command::Payload::Batch(v1::WriteBatch { writes: logged })),
            };
            store.log().append([(index, cmd.encode_to_vec().as_slice())]).unwrap();
            store.apply(index, &cmd).unwrap();
        }
        model.sort();
        for restart in [false, true] {
            if restart {
                drop(store);
                store = reopen(dir.path());
            }
            for &(start, len, limit) in &ranges {
                let range = TimeRange::new(start, start + len);
                let want: Vec<_> = model
                    .iter()
                    .filter(|((ts, _, _), _)| range.start <= *ts && *ts <= range.end)
                    .take(limit)
                    .map(|(_, id)| id.clone())
                    .collect();
                let got: Vec<_> = store
                    .events(range, limit)
                    .unwrap()
                    .into_iter()
                    .map(|e| match e.event {
                        Some(v1::event::Event::Chat(c)) => c.message_id,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                prop_assert_eq!(got, want, "range {:?} limit {} restart {}", range, limit, restart);
            }
        }
    }
}

#[test]
fn too_old_samples_are_rejected_with_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let out = commit(
        &store,
        &write("", vec![series("up", "a", &[(100_000, 1.0), (80_000, 2.0), (95_000, 3.0)])], vec![]),
    );
    assert_eq!(out.samples_accepted, 2);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!((out.rejected[0].index, out.rejected[0].sample_index), (0, 1));
    assert!(out.rejected[0].reason.contains("out-of-order window"), "{}", out.rejected[0].reason);
}

/// One step of the model test: a batch of samples, maybe followed by a checkpoint or a restart.
#[derive(Debug, Clone)]
struct Step {
    samples: Vec<(usize, i64, i64)>,
    checkpoint: bool,
    restart: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec((0usize..3, 0i64..400, -5i64..5), 1..20),
        any::<bool>(),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(samples, checkpoint, restart)| Step { samples, checkpoint, restart })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Out-of-order and duplicate handling, chunk cuts, merges, checkpoints and restarts give
    /// exactly what a simple model gives: per series, the last value applied at each
    /// timestamp, and samples older than the window behind the newest one are refused.
    #[test]
    fn matches_an_in_memory_model(steps in prop::collection::vec(step(), 1..25)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let jobs = ["a", "b", "c"];
        let mut model: Vec<BTreeMap<i64, f64>> = vec![BTreeMap::new(); 3];
        let mut newest: Vec<Option<i64>> = vec![None; 3];
        let window = config().out_of_order_window.as_millis() as i64;
        let mut base = 0i64;
        for st in steps {
            base += 2_000;
            let mut wire = Vec::new();
            let mut expect_rejected = 0;
            for &(s, dt, v) in &st.samples {
                // Timestamps wander around a rising base, in 1 s steps, crossing 60 s blocks.
                let ts = (base + dt * 250).max(0);
                wire.push(series("m", jobs[s], &[(ts, v as f64)]));
                if newest[s].is_some_and(|n| ts < n - window) {
                    expect_rejected += 1;
                } else {
                    model[s].insert(ts, v as f64);
                    newest[s] = Some(newest[s].map_or(ts, |n| n.max(ts)));
                }
            }
            let out = commit(&store, &write("", wire, vec![]));
            prop_assert_eq!(out.rejected.len(), expect_rejected);
            if st.checkpoint {
                store.checkpoint().unwrap();
            }
            if st.restart {
                drop(store);
                store = reopen(dir.path());
            }
            let got = all(&store);
            let want: Vec<_> = (0..3)
                .filter(|s| !model[*s].is_empty())
                .map(|s| (format!("m{{job={:?}}}", jobs[s]), model[s].iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>()))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn label_bytes_that_are_not_utf8_refuse_only_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let cmd = write("", vec![series("m", "BAD!", &[(1, 1.0)]), series("m", "good", &[(1, 2.0)])], vec![]);
    // The proposer never sends such bytes; a corrupted entry must still not corrupt the index.
    let mut bytes = cmd.encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"BAD!").unwrap();
    bytes[at] = 0xff;
    let outcome = store.apply_batch(store.applied_index() + 1, &bytes, None).unwrap().pop().unwrap();
    assert_eq!(outcome.samples_accepted, 1);
    assert_eq!(outcome.rejected.len(), 1);
    assert_eq!(
        (outcome.rejected[0].index, outcome.rejected[0].reason.as_str()),
        (0, "label names and values must be UTF-8")
    );
    assert_eq!(all(&store).len(), 1);
}

#[test]
fn an_unreadable_entry_stops_apply_and_names_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // A length running past the end: no write can be read from it. It was once applied as an
    // empty entry; the replicas that could read it would then differ from this one.
    let index = store.applied_index() + 1;
    let Err(e) = store.apply_batch(index, &[0x12, 0x7f, 0x0a], None) else { panic!("applied garbage") };
    assert!(e.to_string().contains(&format!("log entry {index} cannot be applied")), "{e}");
    assert_eq!(store.applied_index(), index - 1);
    assert!(store.stopped().is_some());
}

#[test]
fn a_replay_after_a_clean_close_cuts_chunks_where_the_first_run_did() {
    // RocksDB flushes the WAL-less memtables when it closes, so the series created after the
    // last checkpoint are on disk when the log is replayed. The settings entry that sets the
    // block duration was then refused ("the store holds data"): the replay kept 2 h blocks,
    // cut the chunks elsewhere, and read every sample of a chunk twice.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for tss in [vec![2_000, 60_000], vec![60_250, 60_500, 60_750, 61_000], vec![61_250]] {
        let wire = tss.iter().map(|t| series("m", "a", &[(*t, 0.0)])).collect();
        commit(&store, &write("", wire, vec![]));
    }
    assert_eq!(store.checkpointed_index(), 0, "no checkpoint: the restart replays everything");
    let before = all(&store);
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(all(&store), before);
}
