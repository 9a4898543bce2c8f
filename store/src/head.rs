//! The head: each series' newest samples, in memory until their chunk is cut.
//!
//! A series has one open chunk (sorted, unique timestamps, all in one block) and a small map of
//! accepted out-of-order samples that are older than the open chunk; those are merged into the
//! stored chunks at the next checkpoint. A timestamp written twice keeps the value applied
//! last, in the open chunk, in the out-of-order map and when merging: that is the one rule for
//! duplicates everywhere, and it depends only on log order, so every replica agrees.

use std::collections::BTreeMap;

use collabstream_common::{Labels, SeriesId, TimeRange};
use parking_lot::Mutex;

use crate::chunk;
use crate::error::{Error, Result};
use crate::open_chunk::{OpenChunk, Segment};
use crate::varint::{Reader, put_i64, put_u64};

/// A series: its identity and its head. The head is mutated only by the apply thread (and the
/// checkpoint, which runs on it); readers lock it briefly to copy samples.
#[derive(Debug)]
pub(crate) struct SeriesEntry {
    pub(crate) id: SeriesId,
    pub(crate) labels: Labels,
    pub(crate) head: Mutex<HeadSeries>,
}

impl SeriesEntry {
    pub(crate) fn new(id: SeriesId, labels: Labels, head: HeadSeries) -> Self {
        Self { id, labels, head: Mutex::new(head) }
    }
}

/// Samples of one series, sorted by timestamp, unique timestamps.
pub(crate) type Run = Vec<(i64, f64)>;

/// Limits that decide where chunks are cut and how late a sample may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    pub(crate) window_ms: i64,
    pub(crate) block_ms: i64,
    pub(crate) max_samples: usize,
}

/// What happened to one appended sample.
#[derive(Debug, PartialEq)]
pub(crate) enum Appended {
    Stored,
    /// Stored, and the previous open chunk was closed; the caller writes it out.
    Cut {
        start: i64,
        samples: Vec<(i64, f64)>,
    },
    /// Older than the out-of-order window allows; the series' newest timestamp is given.
    TooOld {
        newest: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeadSeries {
    open: OpenChunk,
    newest: Option<i64>,
    ooo: BTreeMap<i64, f64>,
    /// End of the open chunk's block (exclusive), so appends compare instead of divide;
    /// `i64::MIN` until computed.
    block_end: i64,
    /// Changed since the last checkpoint.
    pub(crate) dirty: bool,
    /// Bumped by every change, so that a checkpoint can tell whether the head changed after it
    /// captured it.
    version: u64,
}

/// What a checkpoint copied of a head, to write: a checkpoint takes it under apply's lock and
/// encodes it once apply goes on. Encoded and batched under the lock, the heads kept apply
/// waiting 15-17 ms a checkpoint of `collabstream bench`; copied, 6-10 ms.
#[derive(Debug)]
pub(crate) struct HeadCopy {
    newest: Option<i64>,
    /// Segments to write, by number, encoded.
    pub(crate) put: Vec<(u32, Vec<u8>)>,
    /// Segment numbers to delete.
    pub(crate) delete: std::ops::Range<u32>,
    tail: Vec<(i64, f64)>,
}

impl HeadCopy {
    /// The head's record as it was copied.
    pub(crate) fn record(&self) -> Vec<u8> {
        let mut record = Vec::new();
        put_u64(&mut record, RECORD_SEGMENTED);
        match self.newest {
            Some(n) => {
                put_u64(&mut record, 1);
                put_i64(&mut record, n);
            }
            None => put_u64(&mut record, 0),
        }
        put_u64(&mut record, u64::from(self.delete.start));
        // The newest timestamp is the base of the tail's first one: both are in the block.
        record.extend_from_slice(&chunk::encode(self.newest.unwrap_or(0), &self.tail));
        record
    }
}

/// What a checkpoint captured of a head ([`HeadSeries::durable_copy`]), to pass to
/// [`HeadSeries::mark_durable`] once written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadWritten {
    version: u64,
    open: crate::open_chunk::Written,
}

impl Default for HeadSeries {
    fn default() -> Self {
        Self {
            open: OpenChunk::default(),
            newest: None,
            ooo: BTreeMap::new(),
            block_end: i64::MIN,
            dirty: false,
            version: 0,
        }
    }
}

fn block_end(ts: i64, block_ms: i64) -> i64 {
    (ts.div_euclid(block_ms) + 1).saturating_mul(block_ms)
}

impl HeadSeries {
    pub(crate) fn append(&mut self, ts: i64, v: f64, lim: HeadLimits) -> Appended {
        if let Some(newest) = self.newest
            && ts < newest.saturating_sub(lim.window_ms)
        {
            return Appended::TooOld { newest };
        }
        self.dirty = true;
        self.version += 1;
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
        let Some(first) = self.open.first() else {
            if self.ooo.range(ts..).next().is_some() {
                // Older than samples that already went to stored chunks.
                self.ooo.insert(ts, v);
            } else {
                self.open.push(ts, v);
                self.block_end = block_end(ts, lim.block_ms);
            }
            return Appended::Stored;
        };
        if ts < first {
            self.ooo.insert(ts, v);
            return Appended::Stored;
        }
        let last = self.open.last().expect("open is not empty");
        if ts > last {
            if self.block_end == i64::MIN {
                self.block_end = block_end(first, lim.block_ms);
            }
            if ts >= self.block_end || self.open.len() >= lim.max_samples {
                let samples = self.open.take();
                self.open.push(ts, v);
                self.block_end = block_end(ts, lim.block_ms);
                return Appended::Cut { start: first, samples };
            }
            self.open.push(ts, v);
            return Appended::Stored;
        }
        self.open.upsert(ts, v);
        if self.open.len() > lim.max_samples {
            // Inserts between the open chunk's first and last sample pass the cut above; without
            // this one series' open chunk (and the head and chunk it is written as) would grow
            // without bound, past what `chunk::decode` accepts at the next start.
            let samples = self.open.take_front(lim.max_samples);
            return Appended::Cut { start: first, samples };
        }
        Appended::Stored
    }

    /// Copies the head's samples in `range`: the out-of-order ones (which override stored
    /// chunks at the same timestamp) and the open chunk's.
    pub(crate) fn read(&self, range: TimeRange) -> (Run, Run) {
        if range.start > range.end {
            return (Vec::new(), Vec::new());
        }
        let ooo = self.ooo.range(range.start..=range.end).map(|(t, v)| (*t, *v)).collect();
        (ooo, self.open.range(range))
    }

    /// Whether the head holds a sample in `range`. The open chunk counts if its span overlaps
    /// the range (without decoding it: a scrape interval longer than the range can make this
    /// a false yes, which label listings accept, as Prometheus's do).
    pub(crate) fn overlaps(&self, range: TimeRange) -> bool {
        let open =
            matches!((self.open.first(), self.open.last()), (Some(f), Some(l)) if range.overlaps(f, l));
        open || (range.start <= range.end && self.ooo.range(range.start..=range.end).next().is_some())
    }

    /// The oldest timestamp held at or after `from`.
    pub(crate) fn first_from(&self, from: i64) -> Option<i64> {
        let ooo = self.ooo.range(from..).next().map(|(t, _)| *t);
        let open = match (self.open.first(), self.open.last()) {
            (Some(f), _) if f >= from => Some(f),
            (Some(_), Some(l)) if l >= from => {
                self.open.range(TimeRange { start: from, end: i64::MAX }).first().map(|s| s.0)
            }
            _ => None,
        };
        ooo.into_iter().chain(open).min()
    }

    /// Drops the samples before `before` (a block boundary: gone to the cold tier), keeping
    /// the newest timestamp, which the out-of-order window is measured from. Gives how many.
    pub(crate) fn drop_before(&mut self, before: i64) -> usize {
        let kept = self.ooo.split_off(&before);
        let mut dropped = self.ooo.len();
        self.ooo = kept;
        // An open chunk lies in one block, so it is wholly before a block boundary or not.
        if self.open.last().is_some_and(|l| l < before) {
            dropped += self.open.take().len();
        }
        if dropped > 0 {
            self.dirty = true;
            self.version += 1;
        }
        dropped
    }

    pub(crate) fn out_of_order(&self) -> &BTreeMap<i64, f64> {
        &self.ooo
    }

    pub(crate) fn clear_out_of_order(&mut self) {
        self.ooo.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len() + self.ooo.len()
    }

    /// What a checkpoint writes for this series, copied out of the head: the head record
    /// (under the series key, [`HeadCopy::record`]) and the open chunk's segment changes
    /// (under [`keys::head_segment_key`](crate::keys)). Out-of-order samples are merged into
    /// stored chunks before this is called, so only the newest timestamp and the open chunk
    /// remain.
    pub(crate) fn durable_copy(&self) -> (HeadCopy, HeadWritten) {
        debug_assert!(self.ooo.is_empty(), "checkpoint merges out-of-order samples first");
        let (changes, open) = self.open.durable_changes();
        let copy = HeadCopy {
            newest: self.newest,
            put: changes.put.iter().map(|(n, segment)| (*n, segment.encode())).collect(),
            delete: changes.delete,
            tail: changes.tail.to_vec(),
        };
        (copy, HeadWritten { version: self.version, open })
    }

    /// Records that what [`durable_copy`](Self::durable_copy) gave is written. A head
    /// changed since stays dirty: apply runs while a checkpoint writes.
    pub(crate) fn mark_durable(&mut self, w: HeadWritten) {
        if self.version == w.version {
            self.dirty = false;
        }
        self.open.mark_durable(w.open);
    }

    /// The head from its record and its segments in order (their keys are numbered from 0).
    pub(crate) fn decode(record: &[u8], segments: &[&[u8]]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "head" };
        let mut r = Reader::new(record);
        let mut tag = r.u64().ok_or_else(corrupt)?;
        // Records written before segments were stored (tags 0 and 1) hold the whole open chunk.
        let segmented = tag == RECORD_SEGMENTED;
        if segmented {
            tag = r.u64().ok_or_else(corrupt)?;
        }
        let newest = match tag {
            0 => None,
            1 => Some(r.i64().ok_or_else(corrupt)?),
            _ => return Err(corrupt()),
        };
        let count = if segmented { r.u64().ok_or_else(corrupt)? } else { 0 };
        if count != segments.len() as u64 {
            return Err(Error::Corrupt { what: "head: segment count" });
        }
        let segments = segments.iter().map(|b| Segment::decode(b)).collect::<Result<Vec<_>>>()?;
        let open = OpenChunk::from_parts(segments, chunk::decode(newest.unwrap_or(0), r.rest())?)?;
        Ok(Self { open, newest, ooo: BTreeMap::new(), block_end: i64::MIN, dirty: false, version: 0 })
    }
}

/// The first number of a head record that has its segments under keys of their own.
const RECORD_SEGMENTED: u64 = 2;

/// What [`merge_sorted`] orders by: a sample's time.
pub(crate) trait Timed: Copy {
    fn time(&self) -> i64;
}

impl Timed for (i64, f64) {
    fn time(&self) -> i64 {
        self.0
    }
}

impl Timed for collabstream_common::Sample {
    fn time(&self) -> i64 {
        self.timestamp_ms
    }
}

/// Merges two sorted, unique-timestamp runs; `newer` wins at equal timestamps.
pub(crate) fn merge_sorted<T: Timed>(older: &[T], newer: &[T]) -> Vec<T> {
    if newer.is_empty() {
        return older.to_vec();
    }
    if older.is_empty() {
        return newer.to_vec();
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        match older[i].time().cmp(&newer[j].time()) {
            std::cmp::Ordering::Less => {
                out.push(older[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(newer[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(newer[j]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&older[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: HeadLimits = HeadLimits { window_ms: 100, block_ms: 1_000, max_samples: 4 };

    #[test]
    fn cuts_on_block_and_size() {
        let mut h = HeadSeries::default();
        for t in [10, 20, 30] {
            assert_eq!(h.append(t, 1.0, LIM), Appended::Stored);
        }
        assert_eq!(
            h.append(1_000, 2.0, LIM),
            Appended::Cut { start: 10, samples: vec![(10, 1.0), (20, 1.0), (30, 1.0)] }
        );
        for t in [1_001, 1_002, 1_003] {
            assert_eq!(h.append(t, 1.0, LIM), Appended::Stored);
        }
        assert!(matches!(h.append(1_004, 1.0, LIM), Appended::Cut { start: 1_000, .. }));
    }

    #[test]
    fn inserts_inside_the_open_chunk_cut_it_at_the_size_limit() {
        let mut h = HeadSeries::default();
        h.append(10, 0.0, LIM);
        h.append(90, 0.0, LIM);
        let mut cut = Vec::new();
        for t in 11..60 {
            if let Appended::Cut { start, samples } = h.append(t, t as f64, LIM) {
                assert!(samples.len() <= LIM.max_samples, "a cut chunk holds {}", samples.len());
                assert_eq!(start, samples[0].0);
                cut.extend(samples);
            }
            assert!(h.open.len() <= LIM.max_samples, "the open chunk holds {}", h.open.len());
        }
        // Nothing lost, nothing twice, and the chunks cut stay older than the open one.
        let (ooo, open) = h.read(TimeRange::ALL);
        assert!(cut.last().unwrap().0 < open[0].0);
        cut.extend(ooo);
        cut.extend(open);
        cut.sort_by_key(|s| s.0);
        assert_eq!(
            cut.iter().map(|s| s.0).collect::<Vec<_>>(),
            [vec![10], (11..60).collect(), vec![90]].concat()
        );
    }

    #[test]
    fn out_of_order_and_duplicates() {
        let mut h = HeadSeries::default();
        h.append(500, 1.0, LIM);
        h.append(520, 2.0, LIM);
        h.append(510, 3.0, LIM); // inside the open chunk
        h.append(520, 4.0, LIM); // duplicate: last applied wins
        h.append(450, 5.0, LIM); // before the open chunk: out-of-order map
        assert_eq!(h.append(419, 6.0, LIM), Appended::TooOld { newest: 520 });
        let (ooo, open) = h.read(TimeRange::ALL);
        assert_eq!(ooo, vec![(450, 5.0)]);
        assert_eq!(open, vec![(500, 1.0), (510, 3.0), (520, 4.0)]);
    }

    /// A checkpoint's writes applied to a map of keys, as RocksDB would.
    fn persist(h: &mut HeadSeries, disk: &mut BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
        let (copy, written) = h.durable_copy();
        let record = copy.record();
        disk.extend(copy.put);
        for n in copy.delete {
            disk.remove(&n);
        }
        h.mark_durable(written);
        record
    }

    /// The samples and newest timestamp (not the cached block end).
    fn held(h: &HeadSeries) -> (Option<i64>, Run) {
        (h.newest, h.open.samples())
    }

    fn reload(record: &[u8], disk: &BTreeMap<u32, Vec<u8>>) -> HeadSeries {
        assert!(disk.keys().copied().eq(0..disk.len() as u32), "segments numbered from 0: {:?}", disk.keys());
        let segments: Vec<&[u8]> = disk.values().map(Vec::as_slice).collect();
        HeadSeries::decode(record, &segments).unwrap()
    }

    #[test]
    fn durable_form_round_trips() {
        let mut h = HeadSeries::default();
        h.append(5, f64::from_bits(collabstream_common::STALE_NAN_BITS), LIM);
        h.append(6, 2.5, LIM);
        let back = reload(&persist(&mut h, &mut BTreeMap::new()), &BTreeMap::new());
        assert_eq!(back.newest, Some(6));
        assert_eq!(back.open.len(), 2);
        assert!(collabstream_common::is_stale_nan(back.open.samples()[0].1));
        let empty = persist(&mut HeadSeries::default(), &mut BTreeMap::new());
        assert_eq!(reload(&empty, &BTreeMap::new()), HeadSeries::default());
    }

    /// A checkpoint captures a head under apply's lock and marks it once its write is done;
    /// apply goes on in between. What it wrote reloads as the head it captured, and whatever
    /// apply did meanwhile (more segments frozen, segments thawed by an older sample, a cut)
    /// keeps the head dirty and is written by the next checkpoint.
    #[test]
    fn changes_made_while_a_checkpoint_writes_are_written_by_the_next() {
        let lim = HeadLimits { window_ms: 1_000, block_ms: 10_000, max_samples: 1 << 20 };
        let meanwhile: [(&str, &[i64]); 4] = [
            ("more segments", &[100, 110, 120, 130, 140]),
            ("a thaw", &[15]),
            ("a cut", &[20_000, 20_010, 20_020, 20_030]),
            ("nothing", &[]),
        ];
        for (what, late) in meanwhile {
            let (mut h, mut disk) = (HeadSeries::default(), BTreeMap::new());
            for t in (0..40).map(|i| i * 10) {
                h.append(t, t as f64, lim);
            }
            persist(&mut h, &mut disk);
            for t in [400, 410, 420, 430] {
                h.append(t, t as f64, lim);
            }
            let captured = held(&h);
            let (copy, written) = h.durable_copy();
            for t in late {
                h.append(*t, -(*t as f64), lim);
            }
            // Encoded after apply went on, as a checkpoint does.
            let record = copy.record();
            disk.extend(copy.put);
            for n in copy.delete {
                disk.remove(&n);
            }
            h.mark_durable(written);
            assert_eq!(held(&reload(&record, &disk)), captured, "{what}: the disk holds what was captured");
            assert_eq!(h.dirty, !late.is_empty(), "{what}");
            let record = persist(&mut h, &mut disk);
            assert_eq!(
                held(&reload(&record, &disk)),
                held(&h),
                "{what}: the next checkpoint writes the rest"
            );
            assert!(!h.dirty);
        }
    }

    #[test]
    fn checkpoints_write_each_frozen_segment_once() {
        let lim = HeadLimits { window_ms: 1_000, block_ms: 1 << 40, max_samples: 1 << 20 };
        let (mut h, mut disk) = (HeadSeries::default(), BTreeMap::new());
        let mut written = 0;
        for round in 0..5i64 {
            for i in 0..7 {
                h.append(round * 100 + i * 10, (round * 7 + i) as f64, lim);
            }
            written += h.durable_copy().0.put.len();
            let record = persist(&mut h, &mut disk);
            assert_eq!(held(&reload(&record, &disk)), held(&h));
            assert!(!h.dirty);
        }
        // 35 samples freeze 11 times (FREEZE is 3 under test) and every four segments of a
        // freeze merge into one (MERGE): 12, 12, 3, 3, 3 on disk. Written: 2 in the first round,
        // the first merged segment in the second, 3 in the third, the second merged one and a
        // new one in the fourth, 2 in the fifth; each segment once, the merged ones instead of
        // what they took in.
        assert_eq!((written, disk.len()), (10, 5));
        // An insert older than the raw tail thaws the segments: they are written again and the
        // keys past the new count are deleted.
        h.append(15, -1.0, lim);
        let record = persist(&mut h, &mut disk);
        assert_eq!(held(&reload(&record, &disk)), held(&h));
        assert_eq!(h.open.samples().iter().find(|s| s.0 == 15), Some(&(15, -1.0)));
        // A cut leaves one sample: every segment key goes.
        let all = h.open.take();
        h.open.push(all[all.len() - 1].0 + 1, 0.0);
        let record = persist(&mut h, &mut disk);
        assert!(disk.is_empty());
        assert_eq!(held(&reload(&record, &disk)), held(&h));
    }

    #[test]
    fn reads_records_written_before_segments() {
        // Tag 1 (a newest timestamp), 6, then the whole open chunk.
        let mut old = Vec::new();
        put_u64(&mut old, 1);
        put_i64(&mut old, 6);
        old.extend_from_slice(&chunk::encode(6, &[(5, 1.0), (6, 2.0)]));
        let h = HeadSeries::decode(&old, &[]).unwrap();
        assert_eq!((h.newest, h.open.samples()), (Some(6), vec![(5, 1.0), (6, 2.0)]));
        assert!(HeadSeries::decode(&old, &[b"x"]).is_err());
    }
}
