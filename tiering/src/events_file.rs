//! [`EventsFile`]: one block of raw events as a Parquet file that engines other than ours read
//! (the schema is documented in `docs/cold-tier.md`): one row per event, its fields as typed
//! columns named as in the JSON format `POST /api/v1/events` reads, the fields another kind of
//! event does not have left null.
//!
//! Events come in time order and go out in row groups of [`ROW_GROUP_ROWS`], so a row group
//! spans a stretch of time that the next one follows (statistics prune by time); inside a row
//! group they are sorted by meeting, then time, so that the page index prunes by meeting too.
//! Only a row group's events are held while writing.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, SchemaRef, TimestampMillisecondType, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;
use collabstream_proto::events_json::{chat_kind, meeting_kind, user_action};
use collabstream_proto::v1::{self, event::Event as Kind};
use collabstream_store::StoredEvent;
use collabstream_store::arrow_rows::{events_batch, events_schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::samples_file::FileSummary;

/// Events per row group: the unit held while writing and skipped by time statistics.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writes events handed over in (time, log index, position) order into a Parquet file in
/// memory.
pub struct EventsFile {
    writer: ArrowWriter<Vec<u8>>,
    schema: SchemaRef,
    pending: Vec<StoredEvent>,
    row_group_rows: usize,
    last: Option<(i64, u64, u32)>,
    summary: FileSummary,
}

impl std::fmt::Debug for EventsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsFile").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl EventsFile {
    pub fn new() -> Result<Self, String> {
        Self::with_row_group_rows(ROW_GROUP_ROWS)
    }

    /// A file whose row groups hold `rows` events (the last one fewer).
    pub fn with_row_group_rows(rows: usize) -> Result<Self, String> {
        let row_group_rows = rows.max(1);
        let schema = events_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(9).map_err(|e| e.to_string())?))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(row_group_rows))
            .set_column_dictionary_enabled(ColumnPath::from("timestamp"), false)
            .set_column_encoding(ColumnPath::from("timestamp"), Encoding::DELTA_BINARY_PACKED)
            .set_column_dictionary_enabled(ColumnPath::from("log_index"), false)
            .set_column_encoding(ColumnPath::from("log_index"), Encoding::DELTA_BINARY_PACKED)
            .set_created_by("collabstream".into())
            .build();
        let writer =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(|e| e.to_string())?;
        let summary =
            FileSummary { rows: 0, series: 0, min_time: i64::MAX, max_time: i64::MIN, metrics: Vec::new() };
        Ok(Self { writer, schema, pending: Vec::new(), row_group_rows, last: None, summary })
    }

    /// Appends an event, which must come after the one before in (time, log index, position).
    pub fn append(&mut self, e: StoredEvent) -> Result<(), String> {
        let key = e.key();
        if self.last.is_some_and(|last| last >= key) {
            return Err(format!("events out of order at {key:?}"));
        }
        self.last = Some(key);
        self.summary.rows += 1;
        self.summary.min_time = self.summary.min_time.min(e.timestamp_ms);
        self.summary.max_time = self.summary.max_time.max(e.timestamp_ms);
        self.pending.push(e);
        if self.pending.len() >= self.row_group_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the pending events as one row group, sorted by meeting, then as they came.
    fn flush(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut rows = std::mem::take(&mut self.pending);
        rows.sort_by(|a, b| meeting(a).cmp(meeting(b)).then(a.key().cmp(&b.key())));
        let batch = events_batch(&self.schema, &rows)?;
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        self.writer.flush().map_err(|e| e.to_string())
    }

    /// The file's bytes and what it holds (`series` counts nothing for events); `None` if
    /// nothing was appended.
    pub fn finish(mut self) -> Result<Option<(Vec<u8>, FileSummary)>, String> {
        if self.summary.rows == 0 {
            return Ok(None);
        }
        self.flush()?;
        let bytes = self.writer.into_inner().map_err(|e| e.to_string())?;
        Ok(Some((bytes, self.summary)))
    }
}

fn meeting(e: &StoredEvent) -> &str {
    collabstream_proto::events::meeting_id(&e.event).unwrap_or("")
}

/// The events of a record batch read with [`events_schema`]'s columns, in row order.
pub(crate) fn from_batch(batch: &RecordBatch) -> Result<Vec<StoredEvent>, String> {
    let col = |name: &str| batch.column_by_name(name).ok_or_else(|| format!("no column {name}"));
    let text = |name: &str| -> Result<_, String> {
        col(name)?.as_string_opt::<i32>().cloned().ok_or_else(|| format!("column {name} is not text"))
    };
    let times = col("timestamp")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or("column timestamp is not a timestamp")?
        .clone();
    let (kind_of, tenant, meeting_id, user_id) =
        (text("type")?, text("tenant")?, text("meeting_id")?, text("user_id")?);
    let (action, message_id, kind) = (text("action")?, text("message_id")?, text("kind")?);
    let length = col("length")?.as_primitive_opt::<UInt32Type>().ok_or("column length")?.clone();
    let float = |name: &str| -> Result<_, String> {
        col(name)?.as_primitive_opt::<Float64Type>().cloned().ok_or_else(|| format!("column {name}"))
    };
    let (latency, jitter, loss) = (float("latency_ms")?, float("jitter_ms")?, float("packet_loss_pct")?);
    let index = col("log_index")?.as_primitive_opt::<UInt64Type>().ok_or("column log_index")?.clone();
    let position = col("position")?.as_primitive_opt::<UInt32Type>().ok_or("column position")?.clone();
    fn opt(a: &arrow::array::StringArray, i: usize) -> &str {
        if a.is_null(i) { "" } else { a.value(i) }
    }
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let ts = times.value(i);
        let (tenant, meeting_id, user_id) =
            (tenant.value(i).to_string(), meeting_id.value(i).to_string(), user_id.value(i).to_string());
        let event = match kind_of.value(i) {
            "user" => {
                let action = match opt(&action, i) {
                    "unspecified" => v1::UserAction::Unspecified,
                    a => user_action(a)?,
                };
                Kind::User(v1::UserEvent {
                    tenant,
                    meeting_id,
                    user_id,
                    action: action as i32,
                    timestamp_ms: ts,
                })
            }
            "chat" => Kind::Chat(v1::ChatEvent {
                tenant,
                meeting_id,
                user_id,
                message_id: opt(&message_id, i).to_string(),
                length: if length.is_null(i) { 0 } else { length.value(i) },
                kind: chat_kind(opt(&kind, i))? as i32,
                timestamp_ms: ts,
            }),
            "meeting" => {
                let k = match opt(&kind, i) {
                    "unspecified" => v1::MeetingKind::Unspecified,
                    k => meeting_kind(k)?,
                };
                let v = |a: &arrow::array::Float64Array| if a.is_null(i) { 0.0 } else { a.value(i) };
                Kind::Meeting(v1::MeetingEvent {
                    tenant,
                    meeting_id,
                    user_id,
                    kind: k as i32,
                    latency_ms: v(&latency),
                    jitter_ms: v(&jitter),
                    packet_loss_pct: v(&loss),
                    timestamp_ms: ts,
                })
            }
            other => return Err(format!("unknown event type {other:?}")),
        };
        out.push(StoredEvent {
            timestamp_ms: ts,
            log_index: index.value(i),
            position: position.value(i),
            event: v1::Event { event: Some(event) },
        });
    }
    Ok(out)
}
