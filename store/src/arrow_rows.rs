//! The store's rows as Arrow record batches, in the schemas of the cold tier's Parquet files
//! (`docs/cold-tier.md`): what the tier writes and what SQL reads of the hot store, so that a
//! table's hot and cold rows are one schema and no conversion is written twice.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Float64Builder, MapBuilder, StringArray, StringBuilder,
    TimestampMillisecondArray, UInt32Array, UInt32Builder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use collabstream_common::{Labels, METRIC_NAME, Sample, SeriesId};
use collabstream_proto::events_json::{chat_kind_name, meeting_kind_name, user_action_name};
use collabstream_proto::v1::event::Event as Kind;

use crate::event_blocks::StoredEvent;

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The `samples` columns, in order: `metric`, `labels`, `series_id`, `timestamp`, `value`.
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
        Field::new("timestamp", timestamp_type(), false),
        Field::new("value", DataType::Float64, false),
    ]))
}

/// Gathers samples series by series into [`samples_schema`] batches. A metric name and a
/// series' labels are stored once per run of rows (dictionary keys and a `take` of one map per
/// series), not once per row.
#[derive(Debug, Default)]
pub struct SamplesBatch {
    /// Metric names and series (labels without the name) the pending rows refer to.
    metrics: Vec<String>,
    series: Vec<Labels>,
    last_series: Option<SeriesId>,
    metric_of_row: Vec<i32>,
    series_of_row: Vec<u32>,
    ids: Vec<u64>,
    times: Vec<i64>,
    values: Vec<f64>,
}

impl SamplesBatch {
    /// Rows pending.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Appends samples of series `id` (its labels with the metric name).
    pub fn append(&mut self, id: SeriesId, labels: &Labels, samples: &[Sample]) {
        if samples.is_empty() {
            return;
        }
        let metric = labels.get(METRIC_NAME).unwrap_or("");
        if self.metrics.last().map(String::as_str) != Some(metric) {
            self.metrics.push(metric.to_string());
        }
        if self.last_series != Some(id) || self.series.is_empty() {
            let rest: Vec<_> = labels.iter().filter(|l| l.name != METRIC_NAME).cloned().collect();
            self.series.push(Labels::from_sorted_unchecked(rest));
            self.last_series = Some(id);
        }
        let (m, s) = ((self.metrics.len() - 1) as i32, (self.series.len() - 1) as u32);
        for sample in samples {
            self.metric_of_row.push(m);
            self.series_of_row.push(s);
            self.ids.push(id.0);
            self.times.push(sample.timestamp_ms);
            self.values.push(sample.value);
        }
    }

    /// The pending rows as a batch of `schema` ([`samples_schema`]'s columns); the builder
    /// keeps the current metric and series for the rows that follow.
    pub fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, String> {
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
        let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
        let keep_metric = self.metrics.pop();
        self.metrics = keep_metric.into_iter().collect();
        let keep_series = self.series.pop();
        self.series = keep_series.into_iter().collect();
        if self.series.is_empty() {
            self.last_series = None;
        }
        Ok(batch)
    }
}

/// The `events` columns, in order: one row per event, its fields as in the JSON format of
/// `POST /api/v1/events`, null where the event's type has no such field.
pub fn events_schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let f64 = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("timestamp", timestamp_type(), false),
        utf8("type", false),
        utf8("tenant", false),
        utf8("meeting_id", false),
        utf8("user_id", false),
        utf8("action", true),
        utf8("message_id", true),
        Field::new("length", DataType::UInt32, true),
        utf8("kind", true),
        f64("latency_ms"),
        f64("jitter_ms"),
        f64("packet_loss_pct"),
        Field::new("log_index", DataType::UInt64, false),
        Field::new("position", DataType::UInt32, false),
    ]))
}

/// `rows` as a batch of [`events_schema`]'s columns (or a schema with the same columns).
pub fn events_batch(schema: &SchemaRef, rows: &[StoredEvent]) -> Result<RecordBatch, String> {
    let n = rows.len();
    let strings = || StringBuilder::with_capacity(n, n * 8);
    let (mut kind_of, mut tenant, mut meeting_id, mut user_id) = (strings(), strings(), strings(), strings());
    let (mut action, mut message_id, mut kind) = (strings(), strings(), strings());
    let mut length = UInt32Builder::with_capacity(n);
    let (mut latency, mut jitter, mut loss) = (
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
        Float64Builder::with_capacity(n),
    );
    for row in rows {
        let Some(e) = &row.event.event else {
            return Err(format!("event at {:?} has no type", row.key()));
        };
        match e {
            Kind::User(u) => {
                kind_of.append_value("user");
                tenant.append_value(&u.tenant);
                meeting_id.append_value(&u.meeting_id);
                user_id.append_value(&u.user_id);
                action.append_value(user_action_name(u.action()));
                message_id.append_null();
                length.append_null();
                kind.append_null();
                latency.append_null();
                jitter.append_null();
                loss.append_null();
            }
            Kind::Chat(c) => {
                kind_of.append_value("chat");
                tenant.append_value(&c.tenant);
                meeting_id.append_value(&c.meeting_id);
                user_id.append_value(&c.user_id);
                action.append_null();
                message_id.append_value(&c.message_id);
                length.append_value(c.length);
                kind.append_value(chat_kind_name(c.kind()));
                latency.append_null();
                jitter.append_null();
                loss.append_null();
            }
            Kind::Meeting(m) => {
                kind_of.append_value("meeting");
                tenant.append_value(&m.tenant);
                meeting_id.append_value(&m.meeting_id);
                user_id.append_value(&m.user_id);
                action.append_null();
                message_id.append_null();
                length.append_null();
                kind.append_value(meeting_kind_name(m.kind()));
                latency.append_value(m.latency_ms);
                jitter.append_value(m.jitter_ms);
                loss.append_value(m.packet_loss_pct);
            }
        }
    }
    let times = TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.timestamp_ms));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(times.with_timezone("UTC")),
        Arc::new(kind_of.finish()),
        Arc::new(tenant.finish()),
        Arc::new(meeting_id.finish()),
        Arc::new(user_id.finish()),
        Arc::new(action.finish()),
        Arc::new(message_id.finish()),
        Arc::new(length.finish()),
        Arc::new(kind.finish()),
        Arc::new(latency.finish()),
        Arc::new(jitter.finish()),
        Arc::new(loss.finish()),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.log_index))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.position))),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}
