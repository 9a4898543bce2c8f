//! [`ColdRead::read_known`]: cold samples of series the caller already knows.
//!
//! Every series in a cold file was created in the hot store, whose index keeps every series
//! for good (ids are never reused), so a node resolves a query's matchers with its index and
//! asks the cold tier for those ids alone. The files are then read without their metric and
//! labels columns (most of the decoding work), only in the row groups whose series-id
//! statistics can hold a wanted id, and only in the pages whose page-index span can: a query
//! for one series reads one page of three columns per block, not the block.

use arrow::array::{AsArray, BooleanArray, BooleanBufferBuilder};
use arrow::datatypes::{Float64Type, TimestampMillisecondType, UInt64Type};
use arrow::record_batch::RecordBatch;
use collabstream_common::{Labels, Sample, SeriesId, TimeRange};
use collabstream_store::{Error, SeriesData};
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, RowFilter, RowSelection, RowSelector,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use crate::cold_read::{ColdFile, ColdRead, SERIES_COLUMN, TIME_COLUMN, cold_error};

/// Root columns read: series id, time, value.
const ID_TIME_VALUE: [usize; 3] = [2, 3, 4];

impl ColdRead {
    /// The samples in `range` of the series `known` lists (sorted by id, with their labels),
    /// from `files`, in id order; bounded by `max_samples` like every selection.
    pub(crate) async fn read_known(
        &self,
        files: &[ColdFile],
        known: &[(SeriesId, Labels)],
        range: TimeRange,
    ) -> Result<Vec<SeriesData>, Error> {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); known.len()];
        let mut held = 0usize;
        self.scan_known(files, known, range, true, |batch| {
            let ids = batch.column(0).as_primitive::<UInt64Type>().values();
            let times = batch.column(1).as_primitive::<TimestampMillisecondType>().values();
            let values = batch.column(2).as_primitive::<Float64Type>().values();
            // Rows come sorted by series within a metric: each run of one id is looked up once.
            let mut i = 0;
            while i < ids.len() {
                let id = ids[i];
                let end = i + ids[i..].iter().position(|x| *x != id).unwrap_or(ids.len() - i);
                if let Ok(at) = known.binary_search_by_key(&id, |(k, _)| k.0) {
                    for (t, v) in times[i..end].iter().zip(&values[i..end]) {
                        if !range.contains(*t) {
                            continue;
                        }
                        held += 1;
                        if held > self.max_samples {
                            return Err(Error::TooManySamples { limit: self.max_samples });
                        }
                        samples[at].push(Sample::new(*t, *v));
                    }
                }
                i = end;
            }
            Ok(())
        })
        .await?;
        Ok(known
            .iter()
            .zip(samples)
            .filter(|(_, s)| !s.is_empty())
            .map(|((id, labels), mut s)| {
                // Blocks do not overlap, and files come oldest first; a block listed twice is
                // put in order, the later file's sample kept at equal times.
                if !s.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms) {
                    s.sort_by_key(|x| x.timestamp_ms);
                    s.reverse();
                    s.dedup_by_key(|x| x.timestamp_ms);
                    s.reverse();
                }
                SeriesData { id: *id, labels: labels.clone(), samples: s }
            })
            .collect())
    }

    /// The label sets of those of `known` (sorted by id) that have rows in a file whose span
    /// overlaps `range` (file granularity, as cold listings are), reading the series-id column
    /// alone.
    pub(crate) async fn list_known(
        &self,
        files: &[ColdFile],
        known: &[(SeriesId, Labels)],
        range: TimeRange,
    ) -> Result<Vec<Labels>, Error> {
        let mut present = std::collections::HashSet::new();
        self.scan_known(files, known, range, false, |batch| {
            present.extend(batch.column(0).as_primitive::<UInt64Type>().values().iter().copied());
            Ok(())
        })
        .await?;
        let mut out: Vec<Labels> =
            known.iter().filter(|(id, _)| present.contains(&id.0)).map(|(_, l)| l.clone()).collect();
        out.sort();
        Ok(out)
    }

    /// Hands `each` the batches of the files, row groups and pages of `files` that can hold
    /// rows of `known` in `range`: series id, time and value (`samples`), or the id alone.
    async fn scan_known(
        &self,
        files: &[ColdFile],
        known: &[(SeriesId, Labels)],
        range: TimeRange,
        samples: bool,
        mut each: impl FnMut(&arrow::record_batch::RecordBatch) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let ids: Vec<u64> = known.iter().map(|(id, _)| id.0).collect();
        let wanted_ids = std::sync::Arc::new(ids.clone());
        let mut metrics: Vec<&str> = known.iter().map(|(_, l)| l.metric_name()).collect();
        metrics.sort_unstable();
        metrics.dedup();
        let wanted = files.iter().filter(|f| {
            range.overlaps(f.summary.min_time, f.summary.max_time)
                && f.summary.metrics.iter().any(|m| metrics.binary_search(&m.as_str()).is_ok())
        });
        for file in wanted {
            // A file with an index of its own is opened only if it holds a wanted series, and
            // then read at exactly their rows; a listing needs no more than the index.
            if let Some(index) = self.series_index(file).await {
                let rows = index.rows_of(&ids);
                if rows.is_empty() {
                    continue;
                }
                if samples {
                    self.read_rows(file, &index, &rows, &mut each).await?;
                } else {
                    each(&Self::id_batch(rows.iter().map(|(id, _)| *id)))?;
                }
                continue;
            }
            let reader = self.open(file);
            let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
                .await
                .map_err(|e| cold_error(file, e))?;
            let meta = builder.metadata().clone();
            let mut groups = Vec::new();
            let mut selection = Vec::new();
            for rg in 0..meta.num_row_groups() {
                if group_may_hold(&meta, rg, &ids, range) {
                    groups.push(rg);
                    selection.extend(pages_holding(&meta, rg, &ids));
                }
            }
            if groups.is_empty() {
                continue;
            }
            let columns: &[usize] = if samples { &ID_TIME_VALUE } else { &ID_TIME_VALUE[..1] };
            let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
            let mut builder = builder
                .with_projection(mask)
                .with_row_groups(groups)
                .with_row_selection(RowSelection::from(selection));
            if samples {
                // The series ids are decoded first, and the time and value columns then only
                // for the rows of wanted series: a page of other series' values is skipped,
                // not decoded.
                let ids = wanted_ids.clone();
                let by_id = ProjectionMask::roots(builder.parquet_schema(), [ID_TIME_VALUE[0]]);
                let keep = ArrowPredicateFn::new(by_id, move |batch: RecordBatch| {
                    Ok(wanted_rows(batch.column(0).as_primitive::<UInt64Type>().values(), &ids))
                });
                builder = builder.with_row_filter(RowFilter::new(vec![Box::new(keep)]));
            }
            let mut batches = builder.build().map_err(|e| cold_error(file, e))?;
            while let Some(batch) = batches.try_next().await.map_err(|e| cold_error(file, e))? {
                each(&batch)?;
            }
        }
        Ok(())
    }
}

/// Which of `rows` (series ids, sorted within a metric) are among `ids` (sorted): each run of
/// one id looked up once.
fn wanted_rows(rows: &[u64], ids: &[u64]) -> BooleanArray {
    let mut keep = BooleanBufferBuilder::new(rows.len());
    let mut i = 0;
    while i < rows.len() {
        let id = rows[i];
        let run = rows[i..].iter().position(|x| *x != id).unwrap_or(rows.len() - i);
        keep.append_n(run, ids.binary_search(&id).is_ok());
        i += run;
    }
    BooleanArray::new(keep.finish(), None)
}

/// Whether any of `ids` (sorted) lies in `lo..=hi`.
fn any_within(ids: &[u64], lo: u64, hi: u64) -> bool {
    let i = ids.partition_point(|id| *id < lo);
    i < ids.len() && ids[i] <= hi
}

/// Whether row group `rg`'s statistics leave room for a wanted series in `range`.
fn group_may_hold(meta: &ParquetMetaData, rg: usize, ids: &[u64], range: TimeRange) -> bool {
    let g = meta.row_group(rg);
    if let Some(Statistics::Int64(s)) = g.column(TIME_COLUMN).statistics()
        && let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt())
        && !range.overlaps(lo, hi)
    {
        return false;
    }
    if let Some(Statistics::Int64(s)) = g.column(SERIES_COLUMN).statistics()
        && let (Some(&lo), Some(&hi)) = (s.min_opt(), s.max_opt())
    {
        return any_within(ids, lo as u64, hi as u64);
    }
    true
}

/// The rows of row group `rg` to read: the pages of the series-id column whose span holds a
/// wanted id (every row when the file has no page index).
fn pages_holding(meta: &ParquetMetaData, rg: usize, ids: &[u64]) -> Vec<RowSelector> {
    let rows = meta.row_group(rg).num_rows() as usize;
    let (Some(columns), Some(offsets)) = (meta.column_index(), meta.offset_index()) else {
        return vec![RowSelector::select(rows)];
    };
    let (ColumnIndexMetaData::INT64(index), Some(pages)) =
        (&columns[rg][SERIES_COLUMN], offsets[rg].get(SERIES_COLUMN).map(|o| o.page_locations()))
    else {
        return vec![RowSelector::select(rows)];
    };
    let mut out: Vec<RowSelector> = Vec::with_capacity(pages.len());
    for (p, page) in pages.iter().enumerate() {
        let start = page.first_row_index as usize;
        let end = pages.get(p + 1).map_or(rows, |n| n.first_row_index as usize);
        let keep = match (index.min_value(p), index.max_value(p)) {
            (Some(lo), Some(hi)) => any_within(ids, *lo as u64, *hi as u64),
            _ => true,
        };
        let n = end - start;
        match out.last_mut() {
            Some(last) if last.skip != keep => last.row_count += n,
            _ => out.push(if keep { RowSelector::select(n) } else { RowSelector::skip(n) }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::any_within;

    #[test]
    fn a_sorted_id_list_is_searched_by_span() {
        let ids = [3, 8, 20];
        assert!(any_within(&ids, 0, 3) && any_within(&ids, 4, 8) && any_within(&ids, 20, 20));
        assert!(!any_within(&ids, 4, 7) && !any_within(&ids, 21, u64::MAX) && !any_within(&[], 0, 9));
    }
}
