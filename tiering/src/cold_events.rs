//! [`ColdRead::read_events`]: events files read back in (time, log index, position) order.
//!
//! A file's row groups follow each other in time (see `events_file`), so they are read in
//! order, those whose time statistics miss the range skipped, each sorted on its own, and the
//! read stops at the limit: at most a row group's events beyond it are decoded.

use collabstream_common::TimeRange;
use collabstream_store::{Error, StoredEvent};
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::file::statistics::Statistics;

use crate::cold_read::{ColdFile, ColdRead, cold_error};
use crate::events_file::from_batch;

/// The timestamp column's leaf index in the events schema.
const TIME_COLUMN: usize = 0;

impl ColdRead {
    /// Appends the events of `files` (one table's, oldest first) with event time in `range`
    /// to `out`, in order, until it holds `limit`.
    pub(crate) async fn read_events(
        &self,
        files: &[ColdFile],
        range: TimeRange,
        limit: usize,
        out: &mut Vec<StoredEvent>,
    ) -> Result<(), Error> {
        for file in files.iter().filter(|f| range.overlaps(f.summary.min_time, f.summary.max_time)) {
            if out.len() >= limit {
                return Ok(());
            }
            let builder = ParquetRecordBatchStreamBuilder::new(self.open(file))
                .await
                .map_err(|e| cold_error(file, e))?;
            let meta = builder.metadata().clone();
            let groups: Vec<usize> = (0..meta.num_row_groups())
                .filter(|rg| match meta.row_group(*rg).column(TIME_COLUMN).statistics() {
                    Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                        (Some(lo), Some(hi)) => range.overlaps(*lo, *hi),
                        _ => true,
                    },
                    _ => true,
                })
                .collect();
            for rg in groups {
                let mut batches = ParquetRecordBatchStreamBuilder::new(self.open(file))
                    .await
                    .map_err(|e| cold_error(file, e))?
                    .with_row_groups(vec![rg])
                    .build()
                    .map_err(|e| cold_error(file, e))?;
                let mut group = Vec::new();
                while let Some(batch) = batches.try_next().await.map_err(|e| cold_error(file, e))? {
                    let events = from_batch(&batch).map_err(|e| cold_error(file, e))?;
                    group.extend(events.into_iter().filter(|e| range.contains(e.timestamp_ms)));
                }
                group.sort_by_key(StoredEvent::key);
                group.truncate(limit - out.len());
                out.extend(group);
                if out.len() >= limit {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
