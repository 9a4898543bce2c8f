//! [`ColdRead`]: samples files on the object store read through the store's read seam, so
//! that PromQL, export and SQL see cold blocks exactly as hot ones.
//!
//! Pruning, coarse to fine: a file is opened only if its samples' span overlaps the range and
//! it holds a metric the matchers can select (from what the manifest records); then only the
//! row groups whose statistics (metric, time) can match are fetched, by range requests; then
//! rows are kept by time and by the matchers, decided once per series.
//!
//! What a selection reads is held until it is handed out (in id order across files), and
//! bounded by `max_samples`: past it the read fails as the hot store's reader would make a
//! query fail. Streaming across files without holding them is left for later. Listings read
//! the label columns only and count a series when its file's span overlaps the range (file
//! granularity, where the hot store's is the block's).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMillisecondType, UInt64Type};
use collabstream_common::{Label, Labels, METRIC_NAME, Sample, SeriesId, TimeRange};
use collabstream_store::{Error, MatchOp, Matcher, SeriesCursor, SeriesData, SeriesRead, VecCursor};
use futures::TryStreamExt;
use parking_lot::RwLock;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

use crate::object_file::{Footers, ObjectFile};
use crate::objects::Objects;
use crate::range_cache::RangeCache;
use crate::samples_file::FileSummary;

/// A samples file the manifest knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdFile {
    pub path: String,
    pub size: u64,
    pub summary: FileSummary,
}

/// Leaf column indexes of the samples schema (see `samples_schema`): metric, the labels map's
/// keys and values, series id, time, value.
pub(crate) const METRIC_COLUMN: usize = 0;
pub(crate) const SERIES_COLUMN: usize = 3;
pub(crate) const TIME_COLUMN: usize = 4;

#[derive(Debug)]
pub struct ColdRead {
    pub(crate) objects: Objects,
    /// Sorted oldest first; replaced whole, so a reader keeps the list it started with.
    files: RwLock<Arc<Vec<ColdFile>>>,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) max_samples: usize,
    pub(crate) footers: std::sync::Arc<Footers>,
    pub(crate) ranges: std::sync::Arc<RangeCache>,
}

/// Bytes of parsed Parquet footers kept (a footer of a block of 20,000 series is tens of KiB).
const FOOTER_CACHE_BYTES: usize = 64 << 20;
/// Bytes of cold files' pages kept, as read (compressed).
const RANGE_CACHE_BYTES: usize = 256 << 20;

impl ColdRead {
    /// Reads with `runtime` (the seam is called from blocking threads; object-store calls are
    /// async). `max_samples` bounds what one selection holds.
    pub fn new(objects: Objects, runtime: tokio::runtime::Handle, max_samples: usize) -> Self {
        let footers = std::sync::Arc::new(Footers::new(FOOTER_CACHE_BYTES));
        let ranges = std::sync::Arc::new(RangeCache::new(RANGE_CACHE_BYTES));
        Self { objects, files: RwLock::new(Arc::new(Vec::new())), runtime, max_samples, footers, ranges }
    }

    /// The files to read from now on (the manifest's, as it changes).
    pub fn set_files(&self, files: Vec<ColdFile>) {
        *self.files.write() = sorted(files);
    }

    /// A reader of `files` (from [`sorted`]) rather than of the list set last: for a caller
    /// that must read the files of the manifest it looked at.
    pub fn with_files(&self, files: Arc<Vec<ColdFile>>) -> ColdFiles<'_> {
        ColdFiles { reader: self, files }
    }

    /// Footer cache (hits, misses) since start.
    pub fn footer_cache(&self) -> (u64, u64) {
        self.footers.counts()
    }

    /// `file` as the Parquet reader reads it, through the caches.
    pub(crate) fn open(&self, file: &ColdFile) -> ObjectFile {
        ObjectFile {
            store: self.objects.store(),
            path: file.path.clone(),
            size: file.size,
            footers: self.footers.clone(),
            ranges: self.ranges.clone(),
        }
    }

    /// Page cache (hits, misses) since start: byte ranges of cold files.
    pub fn range_cache(&self) -> (u64, u64) {
        self.ranges.counts()
    }

    /// Bytes of cold files fetched since start (through the page cache).
    pub fn fetched_bytes(&self) -> u64 {
        self.ranges.fetched()
    }

    /// The files read from, oldest first.
    pub fn files(&self) -> Vec<ColdFile> {
        self.files.read().as_ref().clone()
    }

    /// Files whose time span overlaps `range` and that hold a metric `matchers` may select.
    fn candidates(files: &[ColdFile], matchers: &[Matcher], range: TimeRange) -> Vec<ColdFile> {
        let names: Vec<&Matcher> = matchers.iter().filter(|m| m.name == METRIC_NAME).collect();
        files
            .iter()
            .filter(|f| range.overlaps(f.summary.min_time, f.summary.max_time))
            .filter(|f| f.summary.metrics.iter().any(|m| names.iter().all(|n| n.matches(m))))
            .cloned()
            .collect()
    }

    /// The selected series with their samples in `range`, in id order.
    async fn read(
        &self,
        files: &[ColdFile],
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut series: BTreeMap<SeriesId, SeriesData> = BTreeMap::new();
        let mut held = 0usize;
        self.scan(files, matchers, range, true, |id, labels, sample| {
            let Some(sample) = sample else { return Ok(()) };
            held += 1;
            if held > self.max_samples {
                return Err(Error::TooManySamples { limit: self.max_samples });
            }
            series
                .entry(id)
                .or_insert_with(|| SeriesData { id, labels: labels.clone(), samples: Vec::new() })
                .samples
                .push(sample);
            Ok(())
        })
        .await?;
        for s in series.values_mut() {
            // Files come oldest first and blocks do not overlap, so a series' samples are in
            // time order; should two files ever cover the same time (a manifest listing a block
            // twice), they are put in order, the later file's sample kept at equal times.
            if !s.samples.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms) {
                s.samples.sort_by_key(|x| x.timestamp_ms);
                s.samples.reverse();
                s.samples.dedup_by_key(|x| x.timestamp_ms);
                s.samples.reverse();
            }
        }
        Ok(series.into_values().collect())
    }

    /// The selected series' label sets, at file granularity (no samples read), sorted.
    async fn read_series(
        &self,
        files: &[ColdFile],
        matchers: &[Matcher],
        range: TimeRange,
    ) -> Result<Vec<Labels>, Error> {
        let mut out = Vec::new();
        self.scan(files, matchers, range, false, |_, labels, _| {
            out.push(labels.clone());
            Ok(())
        })
        .await?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Calls `row` for every row of the selected series in `range` with its sample, or (without
    /// `samples`: only the label columns are fetched) once per series and file with none.
    async fn scan(
        &self,
        files: &[ColdFile],
        matchers: &[Matcher],
        range: TimeRange,
        samples: bool,
        mut row: impl FnMut(SeriesId, &Labels, Option<Sample>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        for file in Self::candidates(files, matchers, range) {
            let reader = self.open(&file);
            let mut builder =
                ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| cold_error(&file, e))?;
            let groups: Vec<usize> = (0..builder.metadata().num_row_groups())
                .filter(|&i| row_group_may_match(builder.metadata().row_group(i), matchers, range))
                .collect();
            if groups.is_empty() {
                continue;
            }
            if !samples {
                let mask = ProjectionMask::roots(builder.parquet_schema(), [0, 1, 2]);
                builder = builder.with_projection(mask);
            }
            let mut batches = builder.with_row_groups(groups).build().map_err(|e| cold_error(&file, e))?;
            // Whether each series of this file matches, decided at its first row.
            let mut selected: HashMap<u64, Option<Labels>> = HashMap::new();
            while let Some(batch) = batches.try_next().await.map_err(|e| cold_error(&file, e))? {
                let metric = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)
                    .map_err(|e| cold_error(&file, e))?;
                let metric = metric.as_string::<i32>();
                let labels = batch.column(1).as_map();
                let ids = batch.column(2).as_primitive::<UInt64Type>();
                let columns = samples.then(|| {
                    (
                        batch.column(3).as_primitive::<TimestampMillisecondType>(),
                        batch.column(4).as_primitive::<Float64Type>(),
                    )
                });
                for i in 0..batch.num_rows() {
                    let sample = match columns {
                        Some((times, values)) if range.contains(times.value(i)) => {
                            Some(Sample::new(times.value(i), values.value(i)))
                        }
                        Some(_) => continue,
                        None => None,
                    };
                    let id = ids.value(i);
                    let (wanted, first) = match selected.entry(id) {
                        Entry::Occupied(e) => (e.into_mut(), false),
                        Entry::Vacant(e) => {
                            let entry = labels.value(i);
                            let (k, v) =
                                (entry.column(0).as_string::<i32>(), entry.column(1).as_string::<i32>());
                            let mut all = vec![Label::new(METRIC_NAME, metric.value(i))];
                            all.extend((0..entry.len()).map(|j| Label::new(k.value(j), v.value(j))));
                            let labels = Labels::new(all)
                                .map_err(|e| cold_error(&file, format!("series {id}: {e}")))?;
                            let matched =
                                matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")));
                            (e.insert(matched.then_some(labels)), true)
                        }
                    };
                    if let Some(labels) = wanted
                        && (samples || first)
                    {
                        row(SeriesId(id), labels, sample)?;
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn cold_error(file: &ColdFile, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{}: {e}", file.path))
}

/// Whether a row group's statistics leave room for a matching row: its time span overlaps
/// `range`, and an equality matcher on the metric name falls within its metric span.
fn row_group_may_match(rg: &RowGroupMetaData, matchers: &[Matcher], range: TimeRange) -> bool {
    if let Some(Statistics::Int64(s)) = rg.column(TIME_COLUMN).statistics()
        && let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt())
        && !range.overlaps(lo, hi)
    {
        return false;
    }
    if let Some(Statistics::ByteArray(s)) = rg.column(METRIC_COLUMN).statistics()
        && let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt())
    {
        let (lo, hi) = (lo.as_utf8().unwrap_or(""), hi.as_utf8().unwrap_or("\u{10ffff}"));
        for m in matchers.iter().filter(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal) {
            if m.value.as_str() < lo || m.value.as_str() > hi {
                return false;
            }
        }
    }
    true
}

/// `files` sorted as [`ColdRead`] keeps them: oldest first.
pub fn sorted(mut files: Vec<ColdFile>) -> Arc<Vec<ColdFile>> {
    files.sort_by_key(|f| (f.summary.min_time, f.path.clone()));
    Arc::new(files)
}

/// A [`ColdRead`] over one list of files (see [`ColdRead::with_files`]).
#[derive(Debug)]
pub struct ColdFiles<'r> {
    reader: &'r ColdRead,
    files: Arc<Vec<ColdFile>>,
}

impl ColdFiles<'_> {
    /// The samples in `range` of `known` (sorted by id, labels as the store's index has them),
    /// in id order: see [`ColdRead::read_known`].
    pub fn select_known(
        &self,
        known: &[(SeriesId, Labels)],
        range: TimeRange,
    ) -> collabstream_store::Result<Vec<SeriesData>> {
        if range.start > range.end || known.is_empty() {
            return Ok(Vec::new());
        }
        self.reader.runtime.block_on(self.reader.read_known(&self.files, known, range))
    }

    /// The label sets of `known` (sorted by id) with rows in a file whose span overlaps
    /// `range`, sorted: see [`ColdRead::list_known`].
    pub fn list_known(
        &self,
        known: &[(SeriesId, Labels)],
        range: TimeRange,
    ) -> collabstream_store::Result<Vec<Labels>> {
        if range.start > range.end || known.is_empty() {
            return Ok(Vec::new());
        }
        self.reader.runtime.block_on(self.reader.list_known(&self.files, known, range))
    }
}

impl SeriesRead for ColdFiles<'_> {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Box<dyn SeriesCursor + 'a>> {
        if range.start > range.end {
            return Ok(Box::new(VecCursor::new(Vec::new())));
        }
        let parts = self.reader.runtime.block_on(self.reader.read(&self.files, matchers, range))?;
        Ok(Box::new(VecCursor::new(parts)))
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> collabstream_store::Result<Vec<Labels>> {
        if range.start > range.end {
            return Ok(Vec::new());
        }
        self.reader.runtime.block_on(self.reader.read_series(&self.files, matchers, range))
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> collabstream_store::Result<Vec<String>> {
        let mut names: Vec<String> =
            self.series(matchers, range)?.iter().flat_map(|l| l.iter().map(|l| l.name.clone())).collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Vec<String>> {
        let mut values: Vec<String> =
            self.series(matchers, range)?.iter().filter_map(|l| l.get(name).map(str::to_string)).collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

/// Reads the files set last ([`ColdRead::set_files`]).
impl SeriesRead for ColdRead {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Box<dyn SeriesCursor + 'a>> {
        let files = self.files.read().clone();
        let parts = if range.start > range.end {
            Vec::new()
        } else {
            self.runtime.block_on(self.read(&files, matchers, range))?
        };
        Ok(Box::new(VecCursor::new(parts)))
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> collabstream_store::Result<Vec<Labels>> {
        self.with_files(self.files.read().clone()).series(matchers, range)
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> collabstream_store::Result<Vec<String>> {
        self.with_files(self.files.read().clone()).label_names(matchers, range)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Vec<String>> {
        self.with_files(self.files.read().clone()).label_values(name, matchers, range)
    }
}
