//! [`ObjectFile`]: a Parquet file on the object store as parquet's async reader wants it: byte
//! ranges fetched on demand (the footer, then only the column chunks of the row groups a
//! query keeps), and footers kept in a [`Footers`] cache so that a file's metadata is fetched
//! once, not at every query; the byte ranges read (pages of column data) are kept in a
//! [`RangeCache`].

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;

use crate::range_cache::RangeCache;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// What a [`Parsed`] cache weighs its entries by.
pub(crate) trait Weighed {
    /// Bytes it holds in memory.
    fn weight(&self) -> usize;
}

impl Weighed for ParquetMetaData {
    fn weight(&self) -> usize {
        self.memory_size()
    }
}

impl Weighed for crate::series_index::SeriesIndex {
    fn weight(&self) -> usize {
        self.memory_size()
    }
}

/// Parsed Parquet footers by path.
pub(crate) type Footers = Parsed<ParquetMetaData>;

/// Things parsed from objects (footers, series indexes), by path, up to a byte budget (the
/// oldest entry goes first when over it). Objects never change once named in the manifest.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    budget: usize,
    inner: Mutex<ParsedMap<T>>,
}

#[derive(Debug)]
struct ParsedMap<T> {
    by_path: HashMap<String, (u64, Arc<T>)>,
    /// Insertions, oldest first: (counter, path); an entry replaced since is skipped.
    order: VecDeque<(u64, String)>,
    /// Insertion counter.
    next: u64,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl<T: Weighed> Parsed<T> {
    pub(crate) fn new(budget: usize) -> Self {
        let map = ParsedMap {
            by_path: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            bytes: 0,
            hits: 0,
            misses: 0,
        };
        Self { budget, inner: Mutex::new(map) }
    }

    pub(crate) fn get(&self, path: &str) -> Option<Arc<T>> {
        let mut m = self.inner.lock();
        let found = m.by_path.get(path).map(|(_, f)| f.clone());
        if found.is_some() {
            m.hits += 1
        } else {
            m.misses += 1
        }
        found
    }

    pub(crate) fn insert(&self, path: &str, parsed: Arc<T>) {
        let mut m = self.inner.lock();
        let n = m.next;
        m.next += 1;
        m.bytes += parsed.weight();
        if let Some((_, old)) = m.by_path.insert(path.to_string(), (n, parsed)) {
            m.bytes -= old.weight();
        }
        m.order.push_back((n, path.to_string()));
        if m.order.len() > 2 * m.by_path.len() + 64 {
            // Replaced entries (two readers missing the same path at once) leave stale turns.
            let ParsedMap { order, by_path, .. } = &mut *m;
            order.retain(|(n, p)| by_path.get(p).is_some_and(|(at, _)| at == n));
        }
        while m.bytes > self.budget && m.by_path.len() > 1 {
            let Some((n, oldest)) = m.order.pop_front() else { break };
            if m.by_path.get(&oldest).is_some_and(|(at, _)| *at == n)
                && let Some((_, f)) = m.by_path.remove(&oldest)
            {
                m.bytes -= f.weight();
            }
        }
    }

    /// (hits, misses) since start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let m = self.inner.lock();
        (m.hits, m.misses)
    }
}

pub(crate) struct ObjectFile {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) path: String,
    pub(crate) size: u64,
    pub(crate) footers: Arc<Footers>,
    pub(crate) ranges: Arc<RangeCache>,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            if let Some(b) = self.ranges.get(&self.path, &range) {
                return Ok(b);
            }
            let b = self
                .store
                .get_range(&ObjectPath::from(self.path.as_str()), range.clone())
                .await
                .map_err(external)?;
            self.ranges.insert(&self.path, &range, b.clone());
            Ok(b)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let mut out: Vec<Option<Bytes>> = ranges.iter().map(|r| self.ranges.get(&self.path, r)).collect();
            let missing: Vec<Range<u64>> =
                ranges.iter().zip(&out).filter(|(_, b)| b.is_none()).map(|(r, _)| r.clone()).collect();
            if !missing.is_empty() {
                // The store coalesces nearby ranges into fewer requests.
                let fetched = self
                    .store
                    .get_ranges(&ObjectPath::from(self.path.as_str()), &missing)
                    .await
                    .map_err(external)?;
                let mut fetched = missing.iter().zip(fetched);
                for slot in out.iter_mut().filter(|b| b.is_none()) {
                    let (r, b) = fetched.next().expect("one fetched range per missing one");
                    self.ranges.insert(&self.path, r, b.clone());
                    *slot = Some(b);
                }
            }
            Ok(out.into_iter().map(|b| b.expect("every range filled")).collect())
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            if let Some(footer) = self.footers.get(&self.path) {
                return Ok(footer);
            }
            let size = self.size;
            // With the page index: readers of a few series skip the pages that cannot hold them.
            let footer = Arc::new(
                ParquetMetaDataReader::new()
                    .with_page_index_policy(PageIndexPolicy::Optional)
                    .load_and_finish(&mut *self, size)
                    .await?,
            );
            self.footers.insert(&self.path, footer.clone());
            Ok(footer)
        }
        .boxed()
    }
}
