//! The read side of [`Store`]: selecting series and samples, label listings, raw events.
//!
//! Reads never take the writer lock: they take the index's read lock briefly, copy each head
//! under its own lock, then read RocksDB.

use std::sync::Arc;

use collabstream_common::{Labels, SeriesId, TimeRange};
use collabstream_proto::v1;

use crate::error::Result;
use crate::head::SeriesEntry;
use crate::keys;
use crate::matcher::Matcher;
use crate::read::{SeriesData, whole_series};
use crate::series_chunks::series_chunks;
use crate::series_cursor::HotCursor;
use crate::store::Store;

impl Store {
    /// The series matching every matcher, with their samples in `range`, whole and sorted by
    /// labels: everything at once, for tests and tools. Readers stream with [`Store::cursor`].
    pub fn select(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<SeriesData>> {
        let mut out = whole_series(&mut self.cursor(matchers, range))?;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// The series matching every matcher with samples in `range`, streamed in ascending id
    /// order (see [`HotCursor`]).
    /// Samples before the cold boundary are not read: they are the cold tier's.
    pub fn cursor(&self, matchers: &[Matcher], range: TimeRange) -> HotCursor<'_> {
        self.cursor_pinned(matchers, range).1
    }

    /// [`Store::cursor`], and the cold boundary it reads from (taken before the call returns,
    /// so a reader that lists the cold tier's files after it reads each sample in one tier or
    /// both). Until the cursor is dropped, the hot data from that boundary on stays (see
    /// `store_cold`), however far the boundary moves meanwhile.
    pub fn cursor_pinned(&self, matchers: &[Matcher], range: TimeRange) -> (i64, HotCursor<'_>) {
        let pin = self.pin_cold();
        let from = pin.at;
        (from, self.cursor_from(Some(pin), from, matchers, range))
    }

    pub(crate) fn cursor_from<'a>(
        &'a self,
        pin: Option<crate::store_cold::ColdPin<'a>>,
        from: i64,
        matchers: &[Matcher],
        mut range: TimeRange,
    ) -> HotCursor<'a> {
        range.start = range.start.max(from);
        let entries: Vec<Arc<SeriesEntry>> = {
            let index = self.index.read();
            index.select(matchers).iter().filter_map(|id| index.get(*id).cloned()).collect()
        };
        HotCursor::new(self, entries, range, pin)
    }

    /// Ids of the series matching every matcher, ascending: the index lookup alone.
    pub fn series_ids(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        self.index.read().select(matchers)
    }

    /// The series matching every matcher, ascending by id, with their labels: every series
    /// ever created, whatever tier its samples are in (the cold tier reads these ids).
    pub fn series_labels(&self, matchers: &[Matcher]) -> Vec<(SeriesId, Labels)> {
        let index = self.index.read();
        index.select(matchers).into_iter().filter_map(|id| Some((id, index.labels_of(id)?.clone()))).collect()
    }

    /// Label sets of the series matching every matcher with samples in `range` (no samples
    /// read; see [`Store::series_ids_in`]), sorted.
    pub fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>> {
        let ids = self.series_ids_in(matchers, range)?;
        let index = self.index.read();
        let ids = ids.unwrap_or_else(|| index.select(&[]));
        let mut out: Vec<Labels> = ids.iter().filter_map(|id| index.labels_of(*id).cloned()).collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Label names of the series matching `matchers` (of all series when empty) with samples
    /// in `range`.
    pub fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        let ids = self.series_ids_in(matchers, range)?;
        Ok(self.index.read().label_names(ids.as_deref()))
    }

    /// Values of label `name` on the series matching `matchers` (on all series when empty)
    /// with samples in `range`.
    pub fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        let ids = self.series_ids_in(matchers, range)?;
        Ok(self.index.read().label_values(name, ids.as_deref()))
    }

    /// The series matching `matchers` with samples in `range`; `None` for every series (no
    /// matchers, the whole time range), which the index answers without a list.
    ///
    /// A series counts if its head has samples in the range or it has a stored chunk of a
    /// block the range overlaps: block granularity, as Prometheus answers label and series
    /// queries (a chunk is never longer than its block, so one seek per series decides).
    fn series_ids_in(&self, matchers: &[Matcher], range: TimeRange) -> Result<Option<Vec<SeriesId>>> {
        if range == TimeRange::ALL {
            return Ok((!matchers.is_empty()).then(|| self.index.read().select(matchers)));
        }
        // What is before the cold boundary is the cold tier's to list.
        let range = TimeRange { start: range.start.max(self.cold_until()), end: range.end };
        if range.start > range.end {
            return Ok(Some(Vec::new()));
        }
        let entries: Vec<Arc<SeriesEntry>> = {
            let index = self.index.read();
            index.select(matchers).iter().filter_map(|id| index.get(*id).cloned()).collect()
        };
        let block_ms = self.settings.read().limits().block_ms;
        let first_block = range.start.div_euclid(block_ms).saturating_mul(block_ms);
        let mut out = Vec::new();
        for e in entries {
            if e.head.lock().overlaps(range) {
                out.push(e.id);
                continue;
            }
            // Bounded to the series' chunks starting in the range (see `series_chunks`).
            let mut it = series_chunks(&self.db, e.id, range.end.checked_add(1));
            it.seek(keys::chunk_key(e.id, first_block));
            if it.valid() {
                out.push(e.id);
            }
            it.status()?;
        }
        Ok(Some(out))
    }

    /// Raw events of the hot store (from the events' cold boundary on) with event time in
    /// `range`, oldest first, at most `limit`.
    pub fn events(&self, range: TimeRange, limit: usize) -> Result<Vec<v1::Event>> {
        let mut out = Vec::new();
        if limit > 0 {
            self.scan_hot_events(range, |e| {
                out.push(e.event);
                out.len() < limit
            })?;
        }
        Ok(out)
    }
}
