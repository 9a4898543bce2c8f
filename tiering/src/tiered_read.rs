//! [`TieredRead`]: the one source PromQL, export and the listing APIs read: the cold tier's
//! files as the manifest lists them, then the hot store from the cold boundary on.
//!
//! Order matters. The cold boundary is taken first and the manifest's files after it, so a
//! block that moves in between is read from both tiers (the merge keeps one sample per
//! timestamp) rather than from neither, and the hot store's lazily dropped chunks
//! (`Store::drop_cold`) are never missed: what it no longer holds, the files taken later do.

use std::sync::Arc;

use collabstream_common::{Labels, TimeRange};
use collabstream_store::{
    ColdView, EVENTS_TABLE, EventRead, Matcher, Result, SAMPLES_TABLE, SeriesCursor, SeriesRead, Store,
    StoredEvent, VecCursor, merge_cursors,
};
use parking_lot::Mutex;

use crate::cold_read::{ColdFile, ColdRead, IndexObject, sorted};
use crate::samples_file::FileSummary;

/// A manifest and its files as the cold reader takes them: the samples', the events'.
type ViewFiles = (Arc<ColdView>, [Arc<Vec<ColdFile>>; 2]);

pub struct TieredRead {
    store: Arc<Store>,
    cold: ColdRead,
    /// The files of the manifest last read, converted for the cold reader (the manifest
    /// changes a few times a block; queries come far more often).
    files: Mutex<Option<ViewFiles>>,
}

impl std::fmt::Debug for TieredRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredRead").field("cold", &self.cold).finish_non_exhaustive()
    }
}

impl TieredRead {
    pub fn new(store: Arc<Store>, cold: ColdRead) -> Self {
        Self { store, cold, files: Mutex::new(None) }
    }

    /// The cold reader (its footer cache figures, for `/metrics`).
    pub fn cold(&self) -> &ColdRead {
        &self.cold
    }

    /// The samples files of the manifest as of now. Each reader keeps the list it took: a
    /// reader that took a later one cannot take a block away from it.
    fn files(&self) -> Arc<Vec<ColdFile>> {
        self.view_files().1[0].clone()
    }

    /// The manifest as of now, with its samples and events files.
    fn view_files(&self) -> ViewFiles {
        let view = self.store.cold_view();
        let mut cached = self.files.lock();
        if let Some((seen, files)) = cached.as_ref()
            && Arc::ptr_eq(seen, &view)
        {
            return (view, files.clone());
        }
        let of = |table| sorted(view.blocks_of(table).map(cold_file).collect());
        let files = [of(SAMPLES_TABLE), of(EVENTS_TABLE)];
        *cached = Some((view.clone(), files.clone()));
        (view, files)
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
        index: (!b.index_path.is_empty()).then(|| IndexObject {
            path: b.index_path.clone(),
            size: b.index_size,
            checksum: b.index_checksum,
        }),
    }
}

impl SeriesRead for TieredRead {
    fn select<'a>(&'a self, matchers: &[Matcher], range: TimeRange) -> Result<Box<dyn SeriesCursor + 'a>> {
        let (cold_until, hot) = self.store.cursor_pinned(matchers, range);
        let hot = Box::new(hot);
        // Every cold block ends at or before the boundary: a range from it on is all hot.
        if range.start >= cold_until {
            return Ok(hot);
        }
        // The series the index resolves (it keeps every series, cold ones too), read from
        // the files of the manifest as of now: the query's own from here.
        let known = self.store.series_labels(matchers);
        let parts = self.cold.with_files(self.files()).select_known(&known, range)?;
        merge_cursors(vec![Box::new(VecCursor::new(parts)), hot])
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>> {
        self.union(matchers, range, |s| s.series(matchers, range), |l| vec![l.clone()])
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        self.union(
            matchers,
            range,
            |s| s.label_names(matchers, range),
            |l| l.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        )
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        self.union(
            matchers,
            range,
            |s| s.label_values(name, matchers, range),
            |l| l.get(name).map(str::to_string),
        )
    }
}

impl TieredRead {
    /// A listing of the hot store, then of the cold files if the range reaches below the
    /// boundary as read after it: the hot listing stopped at a boundary no later than that
    /// one, and the files are taken later still, so no series is left out. The cold tier is
    /// asked which of the series the index resolves have rows in range (`of`: what a label
    /// set adds to the listing).
    fn union<T: Ord, I: IntoIterator<Item = T>>(
        &self,
        matchers: &[Matcher],
        range: TimeRange,
        hot: impl Fn(&dyn SeriesRead) -> Result<Vec<T>>,
        of: impl Fn(&Labels) -> I,
    ) -> Result<Vec<T>> {
        let mut out = hot(self.store.as_ref())?;
        if range.start < self.store.cold_until() {
            let known = self.store.series_labels(matchers);
            let cold = self.cold.with_files(self.files()).list_known(&known, range)?;
            out.extend(cold.iter().flat_map(of));
            out.sort();
            out.dedup();
        }
        Ok(out)
    }
}

impl EventRead for TieredRead {
    /// The cold files' events below the events' cold boundary, then the hot store's from it.
    /// The hot store is read first, from the boundary it pins; the files are listed after,
    /// from a manifest whose boundary is the same or later, and the hot events below that
    /// one are left out (those moved meanwhile, and the files have them).
    fn events(&self, range: TimeRange, limit: usize) -> Result<Vec<collabstream_proto::v1::Event>> {
        let mut hot = Vec::new();
        let pinned = self.store.scan_hot_events(range, |e| {
            hot.push(e);
            hot.len() < limit
        })?;
        let mut out: Vec<StoredEvent> = Vec::new();
        if range.start < pinned {
            let (view, [_, files]) = self.view_files();
            self.cold.runtime.block_on(self.cold.read_events(&files, range, limit, &mut out))?;
            let until = view.events_cold_until;
            hot.retain(|e| e.timestamp_ms >= until);
        }
        out.extend(hot);
        out.truncate(limit);
        Ok(out.into_iter().map(|e| e.event).collect())
    }
}
