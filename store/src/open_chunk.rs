//! [`OpenChunk`]: a series' newest samples, compact in memory.
//!
//! The newest samples stay raw (16 bytes each) so appends are a push; every `FREEZE` of them
//! are encoded into a frozen segment with the chunk codec's column encoding (without zstd,
//! about 1–3 bytes a sample), which keeps memory per active series small without slowing the
//! append path. Frozen segments are older than every raw sample.
//!
//! Frozen segments are also what a checkpoint writes once each: it writes the segments frozen
//! since the last one and the raw tail, not the whole chunk again ([`OpenChunk::durable_changes`]).
//! The head of a steady scrape was otherwise rewritten whole at every checkpoint (every snapshot
//! takes one), and the stale copies were most of the live data directory during ingestion.

use collabstream_common::TimeRange;

use crate::chunk;
use crate::error::{Error, Result};
use crate::head::Run;
use crate::varint::{Reader, put_i64};

/// Raw samples kept before they are frozen into a segment. Tiny under test, so that the
/// store's model tests (which cut chunks every few samples) go through frozen segments too.
/// 32, not 120 as first: the raw tail (16 bytes a sample, and its Vec's spare capacity) was
/// most of a series' head, and the memory `collabstream bench` measured moved with where the
/// workload's chunk boundaries left the tails (docs/benchmarks.md, session 23).
const FREEZE: usize = if cfg!(test) { 3 } else { 32 };

/// Segments frozen from the tail that are merged into one once there are this many: small
/// segments keep the raw tail short, larger ones encode and compress better on disk. With
/// segments of 32 and no merging, the compacted store took 0.70 bytes a sample against 0.63
/// with segments of 120, when the heads held two thirds of the samples (docs/benchmarks.md,
/// session 23).
const MERGE: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    first: i64,
    last: i64,
    bytes: Vec<u8>,
}

impl Segment {
    /// `samples` (at least one, sorted) encoded.
    fn of(samples: &[(i64, f64)]) -> Self {
        Segment {
            first: samples[0].0,
            last: samples[samples.len() - 1].0,
            bytes: chunk::encode_plain(samples[0].0, samples),
        }
    }

    /// The durable form: first and last timestamp, then the encoded samples.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 12);
        put_i64(&mut out, self.first);
        put_i64(&mut out, self.last);
        out.extend_from_slice(&self.bytes);
        out
    }

    /// The segment and its number of samples.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Self, usize)> {
        let corrupt = || Error::Corrupt { what: "head segment" };
        let mut r = Reader::new(bytes);
        let (first, last) = (r.i64().ok_or_else(corrupt)?, r.i64().ok_or_else(corrupt)?);
        let seg = Segment { first, last, bytes: r.rest().to_vec() };
        // Checked here so that reads of a segment loaded from disk cannot fail later.
        let samples = chunk::decode(first, &seg.bytes)?;
        if samples.first().map(|s| s.0) != Some(first) || samples.last().map(|s| s.0) != Some(last) {
            return Err(corrupt());
        }
        Ok((seg, samples.len()))
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct OpenChunk {
    frozen: Vec<Segment>,
    frozen_len: usize,
    tail: Run,
    /// How many leading frozen segments are on disk as they are here...
    durable: usize,
    /// ...and how many segment keys the series has on disk (more once a rebuild shrank it).
    on_disk: usize,
    /// Bumped whenever the frozen segments are replaced (thawed, taken or merged): a segment
    /// numbered `n` before is then not the segment numbered `n` after.
    generation: u64,
    /// How many of the last frozen segments were frozen from the tail and not merged yet.
    small: usize,
}

/// What a checkpoint captured of an open chunk, to mark once its write is done (apply may
/// have changed the chunk in between).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    frozen: usize,
    generation: u64,
}

/// Equal samples in the same segments, whatever is on disk.
impl PartialEq for OpenChunk {
    fn eq(&self, other: &Self) -> bool {
        self.frozen == other.frozen && self.tail == other.tail
    }
}

/// What a checkpoint writes for one open chunk: segments by their number, the segment numbers
/// to delete, and the raw tail.
#[derive(Debug, PartialEq)]
pub(crate) struct DurableChanges<'a> {
    pub(crate) put: Vec<(u32, &'a Segment)>,
    pub(crate) delete: std::ops::Range<u32>,
    pub(crate) tail: &'a [(i64, f64)],
}

impl OpenChunk {
    pub(crate) fn from_run(samples: Run) -> Self {
        let mut c = OpenChunk::default();
        for s in samples {
            c.push(s.0, s.1);
        }
        c
    }

    pub(crate) fn first(&self) -> Option<i64> {
        self.frozen.first().map(|s| s.first).or_else(|| self.tail.first().map(|s| s.0))
    }

    pub(crate) fn last(&self) -> Option<i64> {
        self.tail.last().map(|s| s.0).or_else(|| self.frozen.last().map(|s| s.last))
    }

    pub(crate) fn len(&self) -> usize {
        self.frozen_len + self.tail.len()
    }

    /// Appends a sample newer than every sample held.
    pub(crate) fn push(&mut self, ts: i64, v: f64) {
        debug_assert!(self.last().is_none_or(|l| ts > l));
        if self.tail.capacity() == 0 {
            // The tail grows to FREEZE samples before it is frozen: starting at a quarter of
            // that saves the first doublings (each a reallocation) of every segment of every
            // series, without reserving it all for series that get a sample an hour.
            self.tail.reserve_exact(FREEZE / 4);
        }
        self.tail.push((ts, v));
        if self.tail.len() >= FREEZE {
            let tail = std::mem::take(&mut self.tail);
            self.frozen_len += tail.len();
            self.frozen.push(Segment::of(&tail));
            self.small += 1;
            if self.small == MERGE {
                self.merge_small();
            }
        }
    }

    /// Replaces the last [`MERGE`] segments with one holding their samples; the disk gets it in
    /// their place at the next checkpoint.
    fn merge_small(&mut self) {
        let start = self.frozen.len() - MERGE;
        let mut run = Vec::with_capacity(MERGE * FREEZE);
        for s in self.frozen.drain(start..) {
            run.extend(chunk::decode(s.first, &s.bytes).expect("segments are encoded by this process"));
        }
        self.frozen.push(Segment::of(&run));
        self.small = 0;
        self.durable = self.durable.min(start);
        self.generation += 1;
    }

    /// Inserts or replaces a sample between the first and the last held.
    pub(crate) fn upsert(&mut self, ts: i64, v: f64) {
        if self.tail.first().is_none_or(|f| ts < f.0) {
            // Older than the raw part: thaw everything (rare: out-of-order within a chunk).
            self.tail = self.samples();
            self.frozen.clear();
            self.frozen_len = 0;
            self.durable = 0;
            self.small = 0;
            self.generation += 1;
        }
        match self.tail.binary_search_by_key(&ts, |s| s.0) {
            Ok(i) => self.tail[i].1 = v,
            Err(i) => self.tail.insert(i, (ts, v)),
        }
    }

    /// Every sample, oldest first.
    pub(crate) fn samples(&self) -> Run {
        let mut out = Vec::with_capacity(self.len());
        for s in &self.frozen {
            out.extend(chunk::decode(s.first, &s.bytes).expect("segments are encoded by this process"));
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// Samples in `range`, decoding only the segments that overlap it.
    pub(crate) fn range(&self, range: TimeRange) -> Run {
        let mut out = Vec::new();
        for s in self.frozen.iter().filter(|s| range.overlaps(s.first, s.last)) {
            let decoded = chunk::decode(s.first, &s.bytes).expect("segments are encoded by this process");
            out.extend(decoded.into_iter().filter(|x| range.contains(x.0)));
        }
        let lo = self.tail.partition_point(|s| s.0 < range.start);
        let hi = self.tail.partition_point(|s| s.0 <= range.end);
        out.extend_from_slice(&self.tail[lo..hi]);
        out
    }

    /// Takes the oldest `n` samples out (at least one sample stays).
    pub(crate) fn take_front(&mut self, n: usize) -> Run {
        let mut all = self.samples();
        let rest = all.split_off(n.min(all.len().saturating_sub(1)));
        self.replace(OpenChunk::from_run(rest));
        all
    }

    /// Takes every sample out, leaving the chunk empty.
    pub(crate) fn take(&mut self) -> Run {
        let out = self.samples();
        self.replace(OpenChunk::default());
        out
    }

    /// Replaces the samples; what is on disk stays to be overwritten or deleted.
    fn replace(&mut self, new: OpenChunk) {
        let (on_disk, generation) = (self.on_disk, self.generation);
        *self = new;
        self.on_disk = on_disk;
        self.generation = generation + 1;
    }

    /// The chunk as loaded from disk: its stored segments (with their sample counts), then the
    /// raw tail.
    pub(crate) fn from_parts(segments: Vec<(Segment, usize)>, tail: Run) -> Result<Self> {
        let frozen_len = segments.iter().map(|s| s.1).sum();
        // The trailing segments of one freeze each are the ones not merged yet, so that the
        // segments after a restart are those the chunk would have had without it.
        let small = segments.iter().rev().take_while(|s| s.1 == FREEZE).count() % MERGE;
        let frozen: Vec<Segment> = segments.into_iter().map(|s| s.0).collect();
        let ordered = frozen.windows(2).all(|w| w[0].last < w[1].first)
            && tail.windows(2).all(|w| w[0].0 < w[1].0)
            && match (frozen.last(), tail.first()) {
                (Some(s), Some(t)) => s.last < t.0,
                _ => true,
            };
        if !ordered {
            return Err(Error::Corrupt { what: "head segments out of order" });
        }
        let n = frozen.len();
        Ok(Self { frozen, frozen_len, tail, durable: n, on_disk: n, generation: 0, small })
    }

    /// What a checkpoint must write so that the disk holds this chunk, and what to pass to
    /// [`mark_durable`](Self::mark_durable) once it is written.
    pub(crate) fn durable_changes(&self) -> (DurableChanges<'_>, Written) {
        let n = self.frozen.len();
        let changes = DurableChanges {
            put: (self.durable..n).map(|i| (i as u32, &self.frozen[i])).collect(),
            delete: n as u32..self.on_disk.max(n) as u32,
            tail: &self.tail,
        };
        (changes, Written { frozen: n, generation: self.generation })
    }

    /// Records that the changes [`durable_changes`](Self::durable_changes) gave are written:
    /// the disk holds exactly the `n` segments it had then, and they are still this chunk's
    /// first `n` unless the segments were replaced since.
    pub(crate) fn mark_durable(&mut self, w: Written) {
        self.on_disk = w.frozen;
        if self.generation == w.generation {
            self.durable = w.frozen;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Pushes `n` samples after `c`'s last, 10 ms apart.
    fn push_n(c: &mut OpenChunk, n: usize) {
        let from = c.last().unwrap_or(0);
        for i in 1..=n as i64 {
            c.push(from + i * 10, (from + i) as f64 / 4.0);
        }
    }

    /// What a checkpoint writes of `c`, applied to `disk`.
    fn write(c: &OpenChunk, disk: &mut BTreeMap<u32, Vec<u8>>) -> Written {
        let (changes, written) = c.durable_changes();
        for (n, seg) in changes.put {
            disk.insert(n, seg.encode());
        }
        for n in changes.delete {
            disk.remove(&n);
        }
        written
    }

    /// `c` as a restart loads it: the segments on `disk` and the tail the checkpoint kept.
    fn load(c: &OpenChunk, disk: &BTreeMap<u32, Vec<u8>>) -> OpenChunk {
        let segments = disk.values().map(|b| Segment::decode(b).unwrap()).collect();
        OpenChunk::from_parts(segments, c.tail.clone()).unwrap()
    }

    #[test]
    fn merged_segments_replace_the_small_ones_on_disk_and_after_a_restart() {
        let (mut c, mut disk) = (OpenChunk::default(), BTreeMap::new());
        push_n(&mut c, 3 * FREEZE);
        c.mark_durable(write(&c, &mut disk));
        assert_eq!(disk.len(), 3);
        push_n(&mut c, FREEZE + 1);
        assert_eq!(c.frozen.len(), 1, "four segments of a freeze merge into one");
        c.mark_durable(write(&c, &mut disk));
        assert_eq!(disk.len(), 1);
        push_n(&mut c, 3 * FREEZE);
        c.mark_durable(write(&c, &mut disk));
        // Loaded, it holds the same segments and merges where the running one does.
        let mut loaded = load(&c, &disk);
        assert_eq!(loaded, c);
        push_n(&mut c, FREEZE);
        push_n(&mut loaded, FREEZE);
        assert_eq!(loaded, c);
        assert_eq!(c.frozen.len(), 2);
    }

    #[test]
    fn a_merge_while_a_checkpoint_is_written_is_written_by_the_next() {
        let (mut c, mut disk) = (OpenChunk::default(), BTreeMap::new());
        push_n(&mut c, 2 * FREEZE);
        let in_flight = write(&c, &mut disk);
        // Apply goes on and the segments just written merge with two more.
        push_n(&mut c, 2 * FREEZE);
        c.mark_durable(in_flight);
        c.mark_durable(write(&c, &mut disk));
        assert_eq!(disk.len(), 1);
        assert_eq!(load(&c, &disk).samples(), c.samples());
    }

    #[test]
    fn freezes_and_reads_back() {
        let mut c = OpenChunk::default();
        for i in 0..300 {
            c.push(i * 10, i as f64 * 0.5);
        }
        assert_eq!(c.frozen.len(), 300 / (FREEZE * MERGE));
        assert_eq!((c.first(), c.last(), c.len()), (Some(0), Some(2990), 300));
        c.upsert(15, 9.0); // inside a frozen segment: thaws
        c.upsert(2990, 1.0); // replaces
        let all = c.samples();
        assert_eq!(all.len(), 301);
        assert_eq!(all[2], (15, 9.0));
        assert_eq!(all[300], (2990, 1.0));
        assert_eq!(c.range(TimeRange::new(10, 20)), vec![(10, 0.5), (15, 9.0), (20, 1.0)]);
        assert_eq!(OpenChunk::from_run(all.clone()).samples(), all);
        assert_eq!(c.take().len(), 301);
        assert_eq!(c.len(), 0);
    }
}
