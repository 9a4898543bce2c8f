//! Cold reads through a file's own [`SeriesIndex`]: the index says whether the file holds any
//! wanted series (if not, the file is not opened) and at which rows, which are then read by
//! position: the time and value columns of those rows alone, the series-id column not at all.
//! Reads of a few series keep what they decoded in a cache (see [`ColdRead::read_rows`]).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, TimestampMillisecondArray, UInt64Array};
use arrow::datatypes::{Float64Type, TimestampMillisecondType, UInt64Type};
use arrow::record_batch::RecordBatch;
use collabstream_store::Error;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;

use crate::cold_read::{ColdFile, ColdRead, cold_error};
use crate::object_file::Weighed;
use crate::series_index::SeriesIndex;

/// Root columns read by position: time, value.
const TIME_VALUE: [usize; 2] = [3, 4];

impl ColdRead {
    /// `file`'s series index, from the cache or the object store, checked against the size
    /// and checksum the manifest names; `None` for a file that has none (written before
    /// indexes were), or whose index cannot be had: the file is then read by its statistics,
    /// more slowly but whole (an index is a shortcut, never the only way to the data).
    pub(crate) async fn series_index(&self, file: &ColdFile) -> Option<Arc<SeriesIndex>> {
        let object = file.index.as_ref()?;
        if let Some(index) = self.indexes.get(&object.path) {
            return Some(index);
        }
        let fetched = self.objects.get(&object.path).await.and_then(|bytes| {
            if bytes.len() as u64 != object.size || xxhash_rust::xxh3::xxh3_64(&bytes) != object.checksum {
                return Err(format!("{} differs from its manifest entry (size or checksum)", object.path));
            }
            SeriesIndex::decode(&bytes).map_err(|e| format!("{}: {e}", object.path))
        });
        match fetched {
            Ok(index) => {
                let index = Arc::new(index);
                self.indexes.insert(&object.path, index.clone());
                Some(index)
            }
            Err(why) => {
                tracing::warn!(
                    file = %file.path,
                    %why,
                    "a cold block's series index cannot be read; reading the block by its statistics"
                );
                None
            }
        }
    }

    /// Hands `each` batches of (series id, time, value) holding the rows `rows` (as the index
    /// gave them: (id, rows), in row order) of `file`.
    ///
    /// A read of a few series (a dashboard's panel, asked again at every refresh) goes through
    /// the cache of decoded series: those found there are not read again, and those read are
    /// kept. A larger read streams past it, so that one scan does not empty it.
    pub(crate) async fn read_rows(
        &self,
        file: &ColdFile,
        index: &SeriesIndex,
        rows: &[(u64, Range<u64>)],
        each: &mut impl FnMut(&RecordBatch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let total: u64 = rows.iter().map(|(_, r)| r.end - r.start).sum();
        if total > CACHED_READ_ROWS {
            return self.fetch_rows(file, index, rows, each).await;
        }
        let key = |id: u64| format!("{}#{id}", file.path);
        let mut missing = Vec::new();
        let mut found = DecodedRows::default();
        for (id, r) in rows {
            match self.decoded.get(&key(*id)) {
                Some(d) => found.extend(*id, &d.times, &d.values),
                None => missing.push((*id, r.clone())),
            }
        }
        if !found.ids.is_empty() {
            each(&found.into_batch())?;
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut read = DecodedRows::default();
        self.fetch_rows(file, index, &missing, &mut |batch: &RecordBatch| {
            let ids = batch.column(0).as_primitive::<UInt64Type>().values();
            let times = batch.column(1).as_primitive::<TimestampMillisecondType>().values();
            let values = batch.column(2).as_primitive::<Float64Type>().values();
            read.ids.extend_from_slice(ids);
            read.times.extend_from_slice(times);
            read.values.extend_from_slice(values);
            Ok(())
        })
        .await?;
        // Rows come in `missing`'s order, each series' together.
        let mut at = 0;
        for (id, r) in &missing {
            let n = (r.end - r.start) as usize;
            let series = DecodedSeries {
                times: read.times[at..at + n].to_vec(),
                values: read.values[at..at + n].to_vec(),
            };
            self.decoded.insert(&key(*id), Arc::new(series));
            at += n;
        }
        each(&read.into_batch())
    }

    /// [`ColdRead::read_rows`] from the object store.
    async fn fetch_rows(
        &self,
        file: &ColdFile,
        index: &SeriesIndex,
        rows: &[(u64, Range<u64>)],
        each: &mut impl FnMut(&RecordBatch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(self.open(file), options)
            .await
            .map_err(|e| cold_error(file, e))?;
        // The row groups holding wanted rows, and a selection over those groups' rows.
        let meta = builder.metadata().clone();
        if meta.file_metadata().num_rows() as u64 != index.rows() {
            // Rows are found by position: an index of another file would misplace them.
            return Err(cold_error(file, "the file's series index does not match it (row count)"));
        }
        let mut groups = Vec::new();
        let mut selectors = Vec::new();
        let mut wanted = rows.iter().map(|(_, r)| r.clone()).peekable();
        let mut group_start = 0u64;
        for rg in 0..meta.num_row_groups() {
            let group_end = group_start + meta.row_group(rg).num_rows() as u64;
            let mut at = group_start;
            let mut picked = Vec::new();
            while let Some(r) = wanted.peek().cloned() {
                if r.start >= group_end {
                    break;
                }
                let (start, end) = (r.start.max(at), r.end.min(group_end));
                if start > at {
                    picked.push(RowSelector::skip((start - at) as usize));
                }
                picked.push(RowSelector::select((end - start) as usize));
                at = end;
                if r.end > group_end {
                    break;
                }
                wanted.next();
            }
            if !picked.is_empty() {
                if group_end > at {
                    picked.push(RowSelector::skip((group_end - at) as usize));
                }
                groups.push(rg);
                selectors.extend(picked);
            }
            group_start = group_end;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), TIME_VALUE);
        let mut batches = builder
            .with_projection(mask)
            .with_row_groups(groups)
            .with_row_selection(RowSelection::from(selectors))
            .build()
            .map_err(|e| cold_error(file, e))?;
        // The id of every row handed out, in order.
        let mut ids = rows.iter().flat_map(|(id, r)| std::iter::repeat_n(*id, (r.end - r.start) as usize));
        while let Some(batch) = batches.try_next().await.map_err(|e| cold_error(file, e))? {
            // The selection is made of these ranges: as many rows come as there are ids.
            let of_rows: UInt64Array = ids.by_ref().take(batch.num_rows()).collect();
            let columns: Vec<ArrayRef> =
                vec![Arc::new(of_rows), batch.column(0).clone(), batch.column(1).clone()];
            let batch =
                RecordBatch::try_from_iter(["series_id", "timestamp", "value"].into_iter().zip(columns))
                    .map_err(|e| cold_error(file, e))?;
            each(&batch)?;
        }
        if ids.next().is_some() {
            return Err(cold_error(file, "the file holds fewer rows than its series index says"));
        }
        Ok(())
    }

    /// Decoded series cache (hits, misses) since start.
    pub fn decoded_cache(&self) -> (u64, u64) {
        self.decoded.counts()
    }

    /// A batch of the one column `series_id` holding `ids`, for listings answered by an index.
    pub(crate) fn id_batch(ids: impl IntoIterator<Item = u64>) -> RecordBatch {
        let ids: ArrayRef = Arc::new(ids.into_iter().collect::<UInt64Array>());
        RecordBatch::try_from_iter([("series_id", ids)]).expect("one column")
    }
}

/// Rows a read of a file's index may hold at most to go through the decoded series cache
/// (1 MiB of samples): a dashboard's few series, not a scan.
const CACHED_READ_ROWS: u64 = 64 * 1024;

/// One series of one file, decoded: every row the file holds of it.
#[derive(Debug)]
pub(crate) struct DecodedSeries {
    times: Vec<i64>,
    values: Vec<f64>,
}

impl Weighed for DecodedSeries {
    fn weight(&self) -> usize {
        self.times.len() * 16 + 64
    }
}

/// Rows gathered into one (series id, time, value) batch.
#[derive(Debug, Default)]
struct DecodedRows {
    ids: Vec<u64>,
    times: Vec<i64>,
    values: Vec<f64>,
}

impl DecodedRows {
    fn extend(&mut self, id: u64, times: &[i64], values: &[f64]) {
        self.ids.extend(std::iter::repeat_n(id, times.len()));
        self.times.extend_from_slice(times);
        self.values.extend_from_slice(values);
    }

    fn into_batch(self) -> RecordBatch {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("series_id", Arc::new(UInt64Array::from(self.ids))),
            ("timestamp", Arc::new(TimestampMillisecondArray::from(self.times).with_timezone("UTC"))),
            ("value", Arc::new(Float64Array::from(self.values))),
        ];
        RecordBatch::try_from_iter(columns).expect("three columns of one length")
    }
}
