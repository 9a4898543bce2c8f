//! A checkpoint and a restart in the middle of a stream change nothing: the engines restored
//! from their rows and fed the steps after the checkpoint again end with the same rows, byte
//! for byte, and the same published outputs as engines that never stopped.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::agg::distinct::hash;
use crate::agg::state::{RowSink, time_bound};
use crate::agg::windows_tests::{Step, clock, steps};
use crate::agg::{
    ColdRows, Emission, EmissionKind, Formula, Observation, Sessions, WindowKind, WindowRule, Windows,
};

/// The windows tests' rule, and for windows a `total` too: its carries are state as well.
fn rule(window: WindowKind) -> WindowRule {
    let mut r = crate::agg::windows_tests::rule(window);
    if !matches!(window, WindowKind::Session { .. }) {
        r.outputs.push(Formula::Total { measure: 0 });
    }
    r
}

/// A rule's rows changed since the last checkpoint, collected: the meta row (watermark and
/// counters), the state rows, and the time before which rows are deleted.
#[derive(Debug, Clone, PartialEq, Default)]
struct Changes {
    meta: Vec<u8>,
    rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    delete_before: Option<i64>,
}

impl RowSink for Changes {
    fn delete_before(&mut self, time: i64) {
        self.delete_before = Some(time);
    }

    fn row(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.rows.push((key.to_vec(), value.map(<[u8]>::to_vec)));
    }
}

trait Engine: Sized {
    fn create(r: WindowRule) -> Self;
    fn restore_from(r: WindowRule, disk: &Disk) -> Self;
    /// One step; panes out of memory are read from `disk`.
    fn step(&mut self, i: usize, s: &Step, disk: &Disk, out: &mut Vec<Emission>);
    fn changes(&mut self) -> Changes;
    /// The end of an entry.
    fn flush(&mut self, disk: &Disk, out: &mut Vec<Emission>);
    fn bytes(&self) -> u64;
}

macro_rules! engine {
    ($t:ty, $flush:expr, $observe:expr, $tick:expr) => {
        impl Engine for $t {
            fn create(r: WindowRule) -> Self {
                <$t>::new(r)
            }
            fn restore_from(r: WindowRule, disk: &Disk) -> Self {
                let rows = disk.rows.iter().map(|(k, v)| (k.as_slice(), v.as_slice()));
                <$t>::restore(r, &disk.meta, rows).unwrap()
            }
            fn step(&mut self, i: usize, s: &Step, disk: &Disk, out: &mut Vec<Emission>) {
                match s {
                    Step::Event { ts, group, value, user } => {
                        let o = Observation::single(*ts, *value, Some(hash(&[*user])));
                        $observe(self, clock(i), &[*group], &o, disk, out);
                    }
                    Step::Tick => $tick(self, clock(i), disk, out),
                }
                // Each step an entry of its own.
                self.flush(disk, out);
            }
            fn changes(&mut self) -> Changes {
                let mut c = Changes::default();
                c.meta = self.write_changes(&mut c);
                c
            }
            fn flush(&mut self, disk: &Disk, out: &mut Vec<Emission>) {
                $flush(self, disk, out)
            }
            fn bytes(&self) -> u64 {
                self.state_bytes()
            }
        }
    };
}
engine!(
    Windows,
    |w: &mut Windows, d: &Disk, out: &mut Vec<Emission>| w.flush_corrections(d, out).unwrap(),
    |w: &mut Windows, c, g: &[u8], o: &Observation, d: &Disk, out: &mut Vec<Emission>| w
        .observe(c, g, o, d, out)
        .unwrap(),
    |w: &mut Windows, c, d: &Disk, out: &mut Vec<Emission>| w.tick(c, d, out).unwrap()
);
engine!(
    Sessions,
    |_: &mut Sessions, _: &Disk, _: &mut Vec<Emission>| {},
    |s: &mut Sessions, c, g: &[u8], o: &Observation, _: &Disk, out: &mut Vec<Emission>| s
        .observe(c, g, o, out),
    |s: &mut Sessions, c, _: &Disk, out: &mut Vec<Emission>| s.tick(c, out)
);

/// What a checkpoint has written.
#[derive(Debug, Default, PartialEq)]
struct Disk {
    meta: Vec<u8>,
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Disk {
    /// The bytes of its rows' values: what an engine's `state_bytes` says right after the
    /// checkpoint that wrote them.
    fn bytes(&self) -> u64 {
        self.rows.values().map(|v| v.len() as u64).sum()
    }

    fn write(&mut self, c: Changes) {
        self.meta = c.meta;
        if let Some(before) = c.delete_before {
            let bound = time_bound(before);
            self.rows.retain(|k, _| k.as_slice() >= bound.as_slice());
        }
        for (k, v) in c.rows {
            match v {
                Some(v) => self.rows.insert(k, v),
                None => self.rows.remove(&k),
            };
        }
    }
}

impl ColdRows for Disk {
    fn get(&self, key: &[u8]) -> crate::Result<Option<Vec<u8>>> {
        Ok(self.rows.get(key).cloned())
    }
}

/// The outputs a reader sees at the end: (group, end) → values.
fn publish(published: &mut BTreeMap<(Vec<u8>, i64), Vec<Option<f64>>>, emitted: Vec<Emission>) {
    for e in emitted {
        if e.kind == EmissionKind::Retraction {
            published.remove(&(e.group, e.end));
        } else {
            published.insert((e.group, e.end), e.values);
        }
    }
}

fn check<E: Engine>(
    window: WindowKind,
    steps: &[Step],
    checkpoint: usize,
    crash: usize,
) -> Result<(), TestCaseError> {
    let r = rule(window);
    let (checkpoint, crash) = (checkpoint.min(steps.len()), crash.min(steps.len()));
    let (checkpoint, crash) = (checkpoint.min(crash), checkpoint.max(crash));
    // Never stopped.
    let mut whole = E::create(r.clone());
    let (mut whole_disk, mut whole_seen, mut out) = (Disk::default(), BTreeMap::new(), Vec::new());
    for (i, s) in steps.iter().enumerate() {
        whole.step(i, s, &whole_disk, &mut out);
    }
    publish(&mut whole_seen, std::mem::take(&mut out));
    whole_disk.write(whole.changes());
    // Checkpointed after `checkpoint` steps, stopped after `crash`, restored and replayed.
    let mut first = E::create(r.clone());
    let (mut disk, mut seen) = (Disk::default(), BTreeMap::new());
    for (i, s) in steps.iter().enumerate().take(crash) {
        first.step(i, s, &disk, &mut out);
        if i + 1 == checkpoint {
            disk.write(first.changes());
            prop_assert_eq!(first.bytes(), disk.bytes());
        }
    }
    publish(&mut seen, std::mem::take(&mut out));
    drop(first);
    let mut second = if checkpoint == 0 { E::create(r.clone()) } else { E::restore_from(r, &disk) };
    for (i, s) in steps.iter().enumerate().skip(checkpoint) {
        second.step(i, s, &disk, &mut out);
    }
    publish(&mut seen, out);
    disk.write(second.changes());
    prop_assert_eq!(second.bytes(), disk.bytes());
    prop_assert_eq!(whole.bytes(), whole_disk.bytes());
    prop_assert_eq!(seen, whole_seen);
    prop_assert_eq!(disk, whole_disk);
    Ok(())
}

/// Windows that let go of all but `keep` panes after each checkpoint (every `every` steps)
/// and read them back from the rows publish and write exactly what windows holding every
/// pane do.
fn check_evicting(
    window: WindowKind,
    steps: &[Step],
    every: usize,
    keep: usize,
) -> Result<(), TestCaseError> {
    let r = rule(window);
    let (mut whole, mut whole_disk, mut whole_seen) =
        (Windows::new(r.clone()), Disk::default(), BTreeMap::new());
    let (mut small, mut disk, mut seen) = (Windows::new(r), Disk::default(), BTreeMap::new());
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        whole.step(i, s, &whole_disk, &mut out);
        publish(&mut whole_seen, std::mem::take(&mut out));
        small.step(i, s, &disk, &mut out);
        publish(&mut seen, std::mem::take(&mut out));
        if (i + 1) % every == 0 {
            whole_disk.write(whole.changes());
            disk.write(small.changes());
            prop_assert_eq!(small.bytes(), disk.bytes());
            small.evict(keep);
            prop_assert!(small.hot_panes() <= keep);
            prop_assert_eq!(small.open_panes(), whole.open_panes());
        }
    }
    whole_disk.write(whole.changes());
    disk.write(small.changes());
    prop_assert_eq!(seen, whole_seen);
    prop_assert_eq!(&disk, &whole_disk);
    prop_assert_eq!(small.bytes(), disk.bytes());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    #[test]
    fn tumbling_windows_out_of_memory_give_the_same(steps in steps(), every in 1usize..30, keep in 0usize..4) {
        check_evicting(WindowKind::Tumbling { size_ms: 5_000 }, &steps, every, keep)?;
    }

    #[test]
    fn sliding_windows_out_of_memory_give_the_same(steps in steps(), every in 1usize..30, keep in 0usize..4) {
        check_evicting(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 }, &steps, every, keep)?;
    }

    #[test]
    fn tumbling_windows_survive_a_restart(steps in steps(), checkpoint in 0usize..250, crash in 0usize..250) {
        check::<Windows>(WindowKind::Tumbling { size_ms: 5_000 }, &steps, checkpoint, crash)?;
    }

    #[test]
    fn sliding_windows_survive_a_restart(steps in steps(), checkpoint in 0usize..250, crash in 0usize..250) {
        check::<Windows>(WindowKind::Sliding { size_ms: 6_000, hop_ms: 2_000 }, &steps, checkpoint, crash)?;
    }

    #[test]
    fn sessions_survive_a_restart(steps in steps(), checkpoint in 0usize..250, crash in 0usize..250) {
        check::<Sessions>(WindowKind::Session { gap_ms: 1_500 }, &steps, checkpoint, crash)?;
    }
}

#[test]
fn a_session_emitted_after_the_checkpoint_is_written_as_emitted() {
    let event = |ts| Step::Event { ts, group: 0, value: Some(1.0), user: 0 };
    let steps = [event(110_000), event(113_000), event(113_500)];
    // Checkpointed while [110 s, 111.5 s) waits for the watermark, which the next event moves.
    check::<Sessions>(WindowKind::Session { gap_ms: 1_500 }, &steps, 1, 3).unwrap();
    check::<Windows>(WindowKind::Tumbling { size_ms: 1_000 }, &steps, 1, 3).unwrap();
}
