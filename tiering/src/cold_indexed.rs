//! Cold reads through a file's own [`SeriesIndex`]: the index says whether the file holds any
//! wanted series (if not, the file is not opened) and at which rows, which are then read by
//! position: the time and value columns of those rows alone, the series-id column not at all.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt64Array};
use arrow::record_batch::RecordBatch;
use collabstream_store::Error;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;

use crate::cold_read::{ColdFile, ColdRead, cold_error};
use crate::series_index::SeriesIndex;

/// Root columns read by position: time, value.
const TIME_VALUE: [usize; 2] = [3, 4];

impl ColdRead {
    /// `file`'s series index, from the cache or the object store; `None` for a file that has
    /// none (written before indexes were).
    pub(crate) async fn series_index(&self, file: &ColdFile) -> Result<Option<Arc<SeriesIndex>>, Error> {
        let Some((path, _)) = &file.index else { return Ok(None) };
        if let Some(index) = self.indexes.get(path) {
            return Ok(Some(index));
        }
        let bytes = self.objects.get(path).await.map_err(|e| cold_error(file, e))?;
        let index =
            Arc::new(SeriesIndex::decode(&bytes).map_err(|e| cold_error(file, format!("{path}: {e}")))?);
        self.indexes.insert(path, index.clone());
        Ok(Some(index))
    }

    /// Hands `each` batches of (series id, time, value) holding the rows `rows` (as the index
    /// gave them: (id, rows), in row order) of `file`, in that order.
    pub(crate) async fn read_rows(
        &self,
        file: &ColdFile,
        rows: &[(u64, Range<u64>)],
        each: &mut impl FnMut(&RecordBatch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(self.open(file), options)
            .await
            .map_err(|e| cold_error(file, e))?;
        // The row groups holding wanted rows, and a selection over those groups' rows.
        let meta = builder.metadata().clone();
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
            let of_rows: UInt64Array = ids.by_ref().take(batch.num_rows()).collect();
            if of_rows.len() != batch.num_rows() {
                return Err(cold_error(file, "the file holds more rows than its series index says"));
            }
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

    /// A batch of the one column `series_id` holding `ids`, for listings answered by an index.
    pub(crate) fn id_batch(ids: impl IntoIterator<Item = u64>) -> RecordBatch {
        let ids: ArrayRef = Arc::new(ids.into_iter().collect::<UInt64Array>());
        RecordBatch::try_from_iter([("series_id", ids)]).expect("one column")
    }
}
