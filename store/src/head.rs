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
use crate::open_chunk::OpenChunk;
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
}

impl Default for HeadSeries {
    fn default() -> Self {
        Self {
            open: OpenChunk::default(),
            newest: None,
            ooo: BTreeMap::new(),
            block_end: i64::MIN,
            dirty: false,
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

    pub(crate) fn out_of_order(&self) -> &BTreeMap<i64, f64> {
        &self.ooo
    }

    pub(crate) fn clear_out_of_order(&mut self) {
        self.ooo.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.open.len() + self.ooo.len()
    }

    /// The durable form written at a checkpoint. Out-of-order samples are merged into stored
    /// chunks before this is called, so only the newest timestamp and the open chunk remain.
    pub(crate) fn encode(&self) -> Vec<u8> {
        debug_assert!(self.ooo.is_empty(), "checkpoint merges out-of-order samples first");
        let mut out = Vec::new();
        match self.newest {
            Some(n) => {
                put_u64(&mut out, 1);
                put_i64(&mut out, n);
            }
            None => put_u64(&mut out, 0),
        }
        // The newest timestamp is the base of the open chunk's first one: both are in the block.
        out.extend_from_slice(&chunk::encode(self.newest.unwrap_or(0), &self.open.samples()));
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "head" };
        let mut r = Reader::new(bytes);
        let newest = match r.u64().ok_or_else(corrupt)? {
            0 => None,
            1 => Some(r.i64().ok_or_else(corrupt)?),
            _ => return Err(corrupt()),
        };
        let open = OpenChunk::from_run(chunk::decode(newest.unwrap_or(0), r.rest())?);
        Ok(Self { open, newest, ooo: BTreeMap::new(), block_end: i64::MIN, dirty: false })
    }
}

/// Merges two sorted, unique-timestamp runs; `newer` wins at equal timestamps.
pub(crate) fn merge_sorted(older: &[(i64, f64)], newer: &[(i64, f64)]) -> Vec<(i64, f64)> {
    if newer.is_empty() {
        return older.to_vec();
    }
    if older.is_empty() {
        return newer.to_vec();
    }
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        match older[i].0.cmp(&newer[j].0) {
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

    #[test]
    fn durable_form_round_trips() {
        let mut h = HeadSeries::default();
        h.append(5, f64::from_bits(collabstream_common::STALE_NAN_BITS), LIM);
        h.append(6, 2.5, LIM);
        let back = HeadSeries::decode(&h.encode()).unwrap();
        assert_eq!(back.newest, Some(6));
        assert_eq!(back.open.len(), 2);
        assert!(collabstream_common::is_stale_nan(back.open.samples()[0].1));
        assert_eq!(HeadSeries::decode(&HeadSeries::default().encode()).unwrap(), HeadSeries::default());
    }
}
