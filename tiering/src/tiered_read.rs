//! [`TieredRead`]: the one source PromQL, export and the listing APIs read: the cold tier's
//! files as the manifest lists them, then the hot store from the cold boundary on.
//!
//! Order matters. The cold boundary is taken first and the manifest's files after it, so a
//! block that moves in between is read from both tiers (the merge keeps one sample per
//! timestamp) rather than from neither, and the hot store's lazily dropped chunks
//! (`Store::drop_cold`) are never missed: what it no longer holds, the files taken later do.

use std::sync::Arc;

use collabstream_common::{Labels, TimeRange};
use collabstream_store::{ColdView, Matcher, Result, SeriesCursor, SeriesRead, Store, merge_cursors};
use parking_lot::Mutex;

use crate::cold_read::{ColdFile, ColdRead};
use crate::samples_file::FileSummary;

pub struct TieredRead {
    store: Arc<Store>,
    cold: ColdRead,
    /// The manifest `cold` was last given the files of.
    seen: Mutex<Option<Arc<ColdView>>>,
}

impl std::fmt::Debug for TieredRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredRead").field("cold", &self.cold).finish_non_exhaustive()
    }
}

impl TieredRead {
    pub fn new(store: Arc<Store>, cold: ColdRead) -> Self {
        Self { store, cold, seen: Mutex::new(None) }
    }

    /// The cold reader (its footer cache figures, for `/metrics`).
    pub fn cold(&self) -> &ColdRead {
        &self.cold
    }

    /// Gives the cold reader the files of the manifest as of now, if it changed.
    fn refresh(&self) {
        let view = self.store.cold_view();
        let mut seen = self.seen.lock();
        if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &view)) {
            return;
        }
        self.cold.set_files(view.blocks.iter().map(cold_file).collect());
        *seen = Some(view);
    }
}

/// A manifest entry as the cold reader takes it.
pub fn cold_file(b: &collabstream_proto::v1::ColdBlock) -> ColdFile {
    ColdFile {
        path: b.path.clone(),
        size: b.size,
        summary: FileSummary {
            rows: b.rows,
            series: b.series,
            min_time: b.min_time_ms,
            max_time: b.max_time_ms,
            metrics: b.metrics.clone(),
        },
    }
}

impl SeriesRead for TieredRead {
    fn select<'a>(&'a self, matchers: &[Matcher], range: TimeRange) -> Result<Box<dyn SeriesCursor + 'a>> {
        let cold_until = self.store.cold_until();
        let hot = Box::new(self.store.cursor_since(cold_until, matchers, range));
        // Every cold block ends at or before the boundary: a range from it on is all hot.
        if range.start >= cold_until {
            return Ok(hot);
        }
        self.refresh();
        let cold = self.cold.select(matchers, range)?;
        merge_cursors(vec![cold, hot])
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>> {
        self.union(range, |s| s.series(matchers, range))
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        self.union(range, |s| s.label_names(matchers, range))
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        self.union(range, |s| s.label_values(name, matchers, range))
    }
}

impl TieredRead {
    /// A listing of the hot store (from its boundary), then of the cold files (listed after).
    fn union<T: Ord>(
        &self,
        range: TimeRange,
        each: impl Fn(&dyn SeriesRead) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let cold_until = self.store.cold_until();
        let mut out = each(self.store.as_ref())?;
        if range.start < cold_until {
            self.refresh();
            out.extend(each(&self.cold)?);
            out.sort();
            out.dedup();
        }
        Ok(out)
    }
}
