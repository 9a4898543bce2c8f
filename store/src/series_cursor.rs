//! [`HotCursor`]: the store's side of the read seam. Streams the selected series in ascending id
//! order, each as one or more parts of at most about [`PART_SAMPLES`] samples, so that no
//! reader holds more than a batch of heads and one part at a time.
//!
//! Consistency, the rule `select` has always kept: a series' head is copied before the RocksDB
//! iterator its chunks are read with is created. A chunk cut from the head (or merged) in
//! between is then seen twice and merged, never missed. Heads are copied a batch of series at
//! a time, so a long cursor does not copy every head first; then one iterator is created for
//! the batch's chunks and sought from series to series, each seek kept to its series' keys
//! (`chunks_by_series`: after a tiering pass a seek skips only its own series' tombstones).

use std::collections::VecDeque;
use std::sync::Arc;

use collabstream_common::TimeRange;
use rocksdb::DBRawIteratorWithThreadMode;

use crate::db::Rocks;
use crate::error::{Error, Result};
use crate::head::{Run, SeriesEntry, merge_sorted};
use crate::read::{SeriesCursor, SeriesData};
use crate::series_chunks::chunks_by_series;
use crate::store::Store;
use crate::store_cold::ColdPin;
use crate::{chunk, keys};

/// Samples of stored chunks after which a part is cut (at a chunk's end); small in tests, so
/// that they cut parts with little data.
const PART_SAMPLES: usize = if cfg!(test) { 1_000 } else { 64 * 1024 };
/// Series whose heads are copied together, before one iterator reads their chunks.
const BATCH: usize = 256;

pub struct HotCursor<'a> {
    store: &'a Store,
    range: TimeRange,
    entries: std::vec::IntoIter<Arc<SeriesEntry>>,
    /// Series of the current batch with their head samples (open chunk and out-of-order ones,
    /// merged), not started yet.
    batch: VecDeque<(Arc<SeriesEntry>, Run)>,
    current: Option<Current>,
    /// The chunks of the current batch's series, created after their heads were copied.
    chunks: Option<DBRawIteratorWithThreadMode<'a, Rocks>>,
    /// Keeps the hot data from the cold boundary it reads from until it is dropped.
    _pin: Option<ColdPin<'a>>,
}

/// The series being read.
struct Current {
    entry: Arc<SeriesEntry>,
    head: Run,
    /// Head samples before this were sent.
    head_at: usize,
    /// Where its next chunk starts at the earliest; `None` before the first part.
    resume: Option<i64>,
    /// Every chunk in the range was read.
    chunks_done: bool,
}

impl std::fmt::Debug for HotCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotCursor")
            .field("range", &self.range)
            .field("series_left", &(self.entries.len() + self.batch.len()))
            .field("current", &self.current.as_ref().map(|c| c.entry.id))
            .finish()
    }
}

impl<'a> HotCursor<'a> {
    pub(crate) fn new(
        store: &'a Store,
        entries: Vec<Arc<SeriesEntry>>,
        range: TimeRange,
        pin: Option<ColdPin<'a>>,
    ) -> Self {
        let entries = if range.start > range.end { Vec::new() } else { entries };
        Self {
            store,
            range,
            entries: entries.into_iter(),
            batch: VecDeque::new(),
            current: None,
            chunks: None,
            _pin: pin,
        }
    }

    /// Copies the next batch's heads.
    fn next_batch(&mut self) -> bool {
        for e in self.entries.by_ref().take(BATCH) {
            let (ooo, open) = e.head.lock().read(self.range);
            let head = if ooo.is_empty() { open } else { merge_sorted(&open, &ooo) };
            self.batch.push_back((e, head));
        }
        self.chunks = (!self.batch.is_empty()).then(|| chunks_by_series(&self.store.db));
        !self.batch.is_empty()
    }

    /// The current series' next part: `None` once it has been sent whole.
    fn read_part(&mut self) -> Result<Option<Run>> {
        let range = self.range;
        let (Some(cur), Some(it)) = (self.current.as_mut(), self.chunks.as_mut()) else {
            return Ok(None);
        };
        if cur.chunks_done {
            return Ok(None);
        }
        let id = cur.entry.id;
        match cur.resume {
            // The chunk that starts at or before the range's start may reach into it.
            None => {
                it.seek_for_prev(keys::chunk_key(id, range.start));
                if !it.valid() {
                    it.seek(keys::chunk_key(id, range.start));
                }
            }
            Some(from) => it.seek(keys::chunk_key(id, from)),
        }
        let mut stored = Vec::new();
        let mut full = false;
        // The iterator stops at the series' last chunk; the range's end is ours to stop at.
        while let Some((_, start)) = it
            .key()
            .and_then(keys::parse_chunk_key)
            .filter(|&(key_id, start)| key_id == id && start <= range.end)
        {
            let value = it.value().ok_or(Error::Corrupt { what: "chunk" })?;
            stored.extend(chunk::decode(start, value)?.into_iter().filter(|s| range.contains(s.0)));
            it.next();
            if stored.len() >= PART_SAMPLES {
                cur.resume = Some(start.saturating_add(1));
                full = true;
                break;
            }
        }
        it.status()?;
        // Chunks of one series do not overlap in time: what the next part holds is later than
        // this one's last stored sample, so head samples up to it go with this part.
        let upto = match (full, stored.last()) {
            (true, Some(&(last, _))) => {
                cur.head[cur.head_at..].partition_point(|s| s.0 <= last) + cur.head_at
            }
            _ => cur.head.len(),
        };
        let part = merge_sorted(&stored, &cur.head[cur.head_at..upto]);
        cur.head_at = upto;
        cur.chunks_done = !full;
        Ok(Some(part))
    }
}

impl SeriesCursor for HotCursor<'_> {
    fn next_part(&mut self) -> Result<Option<SeriesData>> {
        loop {
            if self.current.is_none() {
                if self.batch.is_empty() && !self.next_batch() {
                    return Ok(None);
                }
                let (entry, head) = self.batch.pop_front().expect("a batch has series");
                self.current = Some(Current { entry, head, head_at: 0, resume: None, chunks_done: false });
            }
            match self.read_part()? {
                Some(samples) if !samples.is_empty() => {
                    let entry = &self.current.as_ref().expect("a series is being read").entry;
                    return Ok(Some(SeriesData::new(entry.id, entry.labels.clone(), samples)));
                }
                Some(_) => {}
                None => self.current = None,
            }
        }
    }
}
