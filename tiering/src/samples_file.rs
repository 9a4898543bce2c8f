//! [`SamplesFile`]: one block of samples as a Parquet file that engines other than ours read
//! (the schema is documented in `docs/cold-tier.md`).
//!
//! Rows are sorted by metric, series id and time, which the file declares (sorting columns),
//! so that row-group and page statistics prune by all three. Labels are a map column whose
//! keys and values Parquet dictionary-encodes; timestamps are delta-encoded and values split
//! by byte stream, everything then zstd-compressed (level 15).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, MapBuilder, StringArray, StringBuilder,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use collabstream_common::{Labels, METRIC_NAME, Sample, SeriesId};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::series_index::SeriesIndex;

/// Rows gathered before they go to the writer as one record batch.
const BATCH_ROWS: usize = 64 * 1024;
/// Rows per row group: the unit a reader skips by statistics.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Rows per data page: the unit a reader decompresses.
const PAGE_ROWS: usize = 16 * 1024;

/// The columns, in order: `metric`, `labels`, `series_id`, `timestamp`, `value`.
pub fn samples_schema() -> SchemaRef {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    Arc::new(Schema::new(vec![
        Field::new(
            "metric",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new(
            "labels",
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false),
            false,
        ),
        Field::new("series_id", DataType::UInt64, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// What a written file holds, for the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSummary {
    pub rows: u64,
    pub series: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// Metric names, sorted.
    pub metrics: Vec<String>,
}

/// Writes rows handed over series by series (metrics ascending, then series ids ascending,
/// each series' samples oldest first) into a Parquet file in memory.
pub struct SamplesFile {
    writer: ArrowWriter<Vec<u8>>,
    schema: SchemaRef,
    /// The pending batch: metric names and series (labels without the name) it refers to.
    metrics: Vec<String>,
    series: Vec<Labels>,
    metric_of_row: Vec<i32>,
    series_of_row: Vec<u32>,
    ids: Vec<u64>,
    times: Vec<i64>,
    values: Vec<f64>,
    last: Option<(String, SeriesId, i64)>,
    summary: FileSummary,
    /// (series id, first row) of every series, in row order: the file's [`SeriesIndex`].
    starts: Vec<(u64, u64)>,
}

impl std::fmt::Debug for SamplesFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplesFile").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl SamplesFile {
    pub fn new() -> Result<Self, String> {
        Self::with_row_group_rows(ROW_GROUP_ROWS)
    }

    /// A file whose row groups hold `rows` rows (the last one fewer).
    pub fn with_row_group_rows(rows: usize) -> Result<Self, String> {
        let schema = samples_schema();
        let col = |name: &str| ColumnPath::from(name);
        let props = WriterProperties::builder()
            // Level 15: values are most of a file, and their byte-split streams shrink 11 % from
            // level 3 (1.009 to 0.902 bytes a sample on the node-exporter bench) while a block
            // still exports at 2.6M samples/s; level 19 saves 0.2 % more at 1.1M samples/s.
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(15).map_err(|e| e.to_string())?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(rows.max(1)))
            // Pages of 16,384 rows rather than the default 1 MiB (131,072 values): a query of a
            // few series decompresses a page per column per block, so its cost follows the page
            // size. 1.8 % more bytes a sample than unbounded pages on the node-exporter bench
            // (0.982 against 0.965); 8,192 rows cost 13 %.
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_sorting_columns(Some(vec![
                SortingColumn { column_idx: 0, descending: false, nulls_first: false },
                SortingColumn { column_idx: 3, descending: false, nulls_first: false },
                SortingColumn { column_idx: 4, descending: false, nulls_first: false },
            ]))
            .set_column_dictionary_enabled(col("timestamp"), false)
            .set_column_encoding(col("timestamp"), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(col("value"), false)
            .set_column_encoding(col("value"), Encoding::BYTE_STREAM_SPLIT)
            .set_created_by("collabstream".into())
            .build();
        let writer =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(|e| e.to_string())?;
        Ok(Self {
            writer,
            schema,
            metrics: Vec::new(),
            series: Vec::new(),
            metric_of_row: Vec::new(),
            series_of_row: Vec::new(),
            ids: Vec::new(),
            times: Vec::new(),
            values: Vec::new(),
            last: None,
            summary: FileSummary {
                rows: 0,
                series: 0,
                min_time: i64::MAX,
                max_time: i64::MIN,
                metrics: Vec::new(),
            },
            starts: Vec::new(),
        })
    }

    /// Appends samples of series `id`, which must come in the file's order.
    pub fn append(&mut self, id: SeriesId, labels: &Labels, samples: &[Sample]) -> Result<(), String> {
        let Some(first) = samples.first().map(|s| s.timestamp_ms) else { return Ok(()) };
        let metric = labels.get(METRIC_NAME).unwrap_or("");
        let key = (metric, id, first);
        match &self.last {
            Some((m, i, t)) if (m.as_str(), *i, *t) >= key => {
                return Err(format!("samples out of order at {metric} series {} time {first}", id.0));
            }
            _ => {}
        }
        if self.summary.metrics.last().map(String::as_str) != Some(metric) {
            self.summary.metrics.push(metric.to_string());
        }
        if self.metrics.last().map(String::as_str) != Some(metric) {
            self.metrics.push(metric.to_string());
        }
        let new_series = !matches!(&self.last, Some((_, i, _)) if *i == id);
        if new_series {
            self.starts.push((id.0, self.summary.rows));
            let rest: Vec<_> = labels.iter().filter(|l| l.name != METRIC_NAME).cloned().collect();
            self.series.push(Labels::from_sorted_unchecked(rest));
            self.summary.series += 1;
        }
        let (m, s) = ((self.metrics.len() - 1) as i32, (self.series.len() - 1) as u32);
        for sample in samples {
            self.metric_of_row.push(m);
            self.series_of_row.push(s);
            self.ids.push(id.0);
            self.times.push(sample.timestamp_ms);
            self.values.push(sample.value);
        }
        let last = samples.last().map_or(first, |s| s.timestamp_ms);
        self.summary.rows += samples.len() as u64;
        self.summary.min_time = self.summary.min_time.min(first);
        self.summary.max_time = self.summary.max_time.max(last);
        self.last = Some((metric.to_string(), id, last));
        if self.times.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.times.is_empty() {
            return Ok(());
        }
        let names = StringArray::from_iter_values(self.metrics.iter());
        let metric = DictionaryArray::<Int32Type>::try_new(
            std::mem::take(&mut self.metric_of_row).into(),
            Arc::new(names),
        )
        .map_err(|e| e.to_string())?;
        let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for labels in &self.series {
            for l in labels.iter() {
                map.keys().append_value(&l.name);
                map.values().append_value(&l.value);
            }
            map.append(true).map_err(|e| e.to_string())?;
        }
        let per_series = map.finish();
        let rows = UInt32Array::from(std::mem::take(&mut self.series_of_row));
        let labels = arrow::compute::take(&per_series, &rows, None).map_err(|e| e.to_string())?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(metric),
            labels,
            Arc::new(UInt64Array::from(std::mem::take(&mut self.ids))),
            Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut self.times)).with_timezone("UTC")),
            Arc::new(Float64Array::from(std::mem::take(&mut self.values))),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        // The next batch starts with the current metric and series only.
        let keep_metric = self.metrics.pop();
        self.metrics = keep_metric.into_iter().collect();
        let keep_series = self.series.pop();
        self.series = keep_series.into_iter().collect();
        Ok(())
    }

    /// The file's bytes, what it holds and its series index; `None` if nothing was appended.
    pub fn finish(mut self) -> Result<Option<(Vec<u8>, FileSummary, SeriesIndex)>, String> {
        if self.summary.rows == 0 {
            return Ok(None);
        }
        self.flush()?;
        let bytes = self.writer.into_inner().map_err(|e| e.to_string())?;
        let index = SeriesIndex::new(self.starts, self.summary.rows);
        Ok(Some((bytes, self.summary, index)))
    }
}
