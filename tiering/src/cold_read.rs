//! [`ColdRead`]: samples files on the object store, read for the series a node's index
//! resolved (see `cold_known`), so that PromQL, export, the listings and SQL see cold blocks
//! as hot ones. It holds what every read shares (the object store, the footer and page
//! caches, the sample bound); which files to read is the caller's ([`ColdRead::with_files`]:
//! the manifest it looked at).

use std::sync::Arc;

use collabstream_common::{Labels, SeriesId, TimeRange};
use collabstream_store::{Error, SeriesData};

use crate::cold_indexed::DecodedSeries;
use crate::object_file::{Footers, ObjectFile, Parsed};
use crate::objects::Objects;
use crate::range_cache::RangeCache;
use crate::samples_file::FileSummary;
use crate::series_index::SeriesIndex;

/// A samples file the manifest knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdFile {
    pub path: String,
    pub size: u64,
    pub summary: FileSummary,
    /// Its series index, when it has one.
    pub index: Option<IndexObject>,
}

/// A samples file's series index object, as the manifest names it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexObject {
    pub path: String,
    pub size: u64,
    /// xxh3-64 of its bytes.
    pub checksum: u64,
}

/// Leaf column indexes of the samples schema (see `samples_schema`): metric, the labels map's
/// keys and values, series id, time, value.
pub(crate) const SERIES_COLUMN: usize = 3;
pub(crate) const TIME_COLUMN: usize = 4;

#[derive(Debug)]
pub struct ColdRead {
    pub(crate) objects: Objects,
    pub(crate) runtime: tokio::runtime::Handle,
    pub(crate) max_samples: usize,
    pub(crate) footers: Arc<Footers>,
    pub(crate) ranges: Arc<RangeCache>,
    pub(crate) indexes: Parsed<SeriesIndex>,
    /// Series of files decoded by reads of a few series, by `<path>#<series id>`.
    pub(crate) decoded: Parsed<DecodedSeries>,
}

/// Bytes of parsed Parquet footers kept (a footer of a block of 20,000 series is tens of KiB).
const FOOTER_CACHE_BYTES: usize = 64 << 20;
/// Bytes of files' series indexes kept (one of a block of 20,000 series: about 0.5 MiB).
const INDEX_CACHE_BYTES: usize = 64 << 20;
/// Bytes of series decoded from cold files kept for reads that ask for them again.
const DECODED_CACHE_BYTES: usize = 64 << 20;
/// Bytes of cold files' pages kept, as read (compressed).
const RANGE_CACHE_BYTES: usize = 256 << 20;

impl ColdRead {
    /// Reads with `runtime` (reads are called from blocking threads; object-store calls are
    /// async). `max_samples` bounds what one selection holds.
    pub fn new(objects: Objects, runtime: tokio::runtime::Handle, max_samples: usize) -> Self {
        let footers = Arc::new(Footers::new(FOOTER_CACHE_BYTES));
        let ranges = Arc::new(RangeCache::new(RANGE_CACHE_BYTES));
        let indexes = Parsed::new(INDEX_CACHE_BYTES);
        let decoded = Parsed::new(DECODED_CACHE_BYTES);
        Self { objects, runtime, max_samples, footers, ranges, indexes, decoded }
    }

    /// A reader of `files` (from [`sorted`]).
    pub fn with_files(&self, files: Arc<Vec<ColdFile>>) -> ColdFiles<'_> {
        ColdFiles { reader: self, files }
    }

    /// Footer cache (hits, misses) since start.
    pub fn footer_cache(&self) -> (u64, u64) {
        self.footers.counts()
    }

    /// Page cache (hits, misses) since start: byte ranges of cold files.
    pub fn range_cache(&self) -> (u64, u64) {
        self.ranges.counts()
    }

    /// The object store it reads.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// Series index cache (hits, misses) since start.
    pub fn index_cache(&self) -> (u64, u64) {
        self.indexes.counts()
    }

    /// Bytes of cold files fetched since start (through the page cache).
    pub fn fetched_bytes(&self) -> u64 {
        self.ranges.fetched()
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
}

pub(crate) fn cold_error(file: &ColdFile, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{}: {e}", file.path))
}

/// `files` in the order reads take them: oldest first.
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
    ) -> Result<Vec<SeriesData>, Error> {
        if range.start > range.end || known.is_empty() {
            return Ok(Vec::new());
        }
        self.reader.runtime.block_on(self.reader.read_known(&self.files, known, range))
    }

    /// The label sets of `known` (sorted by id) with rows in a file whose span overlaps
    /// `range` (file granularity, where the hot store's is the block's), sorted: see
    /// [`ColdRead::list_known`].
    pub fn list_known(&self, known: &[(SeriesId, Labels)], range: TimeRange) -> Result<Vec<Labels>, Error> {
        if range.start > range.end || known.is_empty() {
            return Ok(Vec::new());
        }
        self.reader.runtime.block_on(self.reader.list_known(&self.files, known, range))
    }
}
