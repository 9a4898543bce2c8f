//! Answers in the PostgreSQL wire protocol's terms: a column's type, and each row encoded in
//! the format the client asked for (text, or binary where it says so). Numbers, booleans and
//! timestamps keep their types (so that Grafana's PostgreSQL data source sees a time column);
//! text is text; maps and lists are JSON text.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDateTime, Utc};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use crate::sql::SqlAnswer;
use crate::sql::format::json_column;

/// The PostgreSQL type a column of `t` is sent as.
pub(crate) fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => Type::INT8,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Dictionary(_, v) => pg_type(v),
        _ => Type::TEXT,
    }
}

/// The row description of `schema`, each column in the format `format` gives it.
pub(crate) fn fields(schema: &SchemaRef, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format.format_for(i))
        })
        .collect()
}

/// A column ready to encode: arrays of a type sent natively, or text made once per batch.
enum Column {
    Native(ArrayRef),
    Text(Vec<Option<String>>),
}

fn column(a: &ArrayRef) -> Result<Column, String> {
    let a = match a.data_type() {
        DataType::Dictionary(_, v) => arrow::compute::cast(a, v).map_err(|e| e.to_string())?,
        DataType::Float16 => arrow::compute::cast(a, &DataType::Float32).map_err(|e| e.to_string())?,
        _ => a.clone(),
    };
    if !matches!(pg_type(a.data_type()), Type::TEXT) {
        return Ok(Column::Native(a));
    }
    let text: Vec<Option<String>> = match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(|v| v.map(str::to_string)).collect(),
        DataType::Utf8View => a.as_string_view().iter().map(|v| v.map(str::to_string)).collect(),
        _ => {
            let json = json_column(&a)?;
            json.into_iter()
                .enumerate()
                .map(|(i, v)| {
                    (!a.is_null(i)).then(|| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                })
                .collect()
        }
    };
    Ok(Column::Text(text))
}

fn naive(unit: &TimeUnit, v: i64) -> Option<NaiveDateTime> {
    let dt = match unit {
        TimeUnit::Second => DateTime::from_timestamp(v, 0),
        TimeUnit::Millisecond => DateTime::from_timestamp_millis(v),
        TimeUnit::Microsecond => DateTime::from_timestamp_micros(v),
        TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(v)),
    };
    dt.map(|d| d.naive_utc())
}

fn encode(e: &mut DataRowEncoder, c: &Column, row: usize) -> PgWireResult<()> {
    use arrow::datatypes::*;
    let a = match c {
        Column::Text(t) => return e.encode_field(&t[row].as_deref()),
        Column::Native(a) => a,
    };
    if a.is_null(row) {
        return e.encode_field(&None::<i64>);
    }
    match a.data_type() {
        DataType::Boolean => e.encode_field(&a.as_boolean().value(row)),
        DataType::Int8 => e.encode_field(&i16::from(a.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => e.encode_field(&a.as_primitive::<Int16Type>().value(row)),
        DataType::UInt8 => e.encode_field(&i16::from(a.as_primitive::<UInt8Type>().value(row))),
        DataType::Int32 => e.encode_field(&a.as_primitive::<Int32Type>().value(row)),
        DataType::UInt16 => e.encode_field(&i32::from(a.as_primitive::<UInt16Type>().value(row))),
        DataType::Int64 => e.encode_field(&a.as_primitive::<Int64Type>().value(row)),
        DataType::UInt32 => e.encode_field(&i64::from(a.as_primitive::<UInt32Type>().value(row))),
        // Series ids and counts, sent as INT8 (what clients expect of an id): a value past
        // i64::MAX fails the statement, never goes out as another number or as NULL.
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(row);
            match i64::try_from(v) {
                Ok(v) => e.encode_field(&v),
                Err(_) => Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".into(),
                    "22003".into(),
                    format!("{v} is past PostgreSQL's BIGINT: CAST the column to DECIMAL(20, 0) or VARCHAR"),
                )))),
            }
        }
        DataType::Float32 => e.encode_field(&a.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => e.encode_field(&a.as_primitive::<Float64Type>().value(row)),
        DataType::Timestamp(unit, tz) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
            };
            match (naive(unit, v), tz) {
                (Some(t), Some(_)) => e.encode_field(&DateTime::<Utc>::from_naive_utc_and_offset(t, Utc)),
                (Some(t), None) => e.encode_field(&t),
                (None, _) => e.encode_field(&None::<i64>),
            }
        }
        other => e.encode_field(&Some(format!("unsupported type {other}"))),
    }
}

/// Every row of `answer`, encoded for `fields`.
pub(crate) fn rows(
    answer: &SqlAnswer,
    fields: Arc<Vec<FieldInfo>>,
) -> Result<Vec<PgWireResult<DataRow>>, String> {
    let mut out = Vec::with_capacity(answer.rows());
    let mut encoder = DataRowEncoder::new(fields);
    for batch in &answer.batches {
        let columns: Vec<Column> = batch.columns().iter().map(column).collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let encoded = columns.iter().try_for_each(|c| encode(&mut encoder, c, row));
            out.push(encoded.map(|()| encoder.take_row()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use arrow::datatypes::{Field, Schema};
    use arrow::record_batch::RecordBatch;

    #[test]
    fn an_unsigned_value_past_bigint_fails_its_row_instead_of_going_out_null() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::UInt64, true)]));
        let column = Arc::new(UInt64Array::from(vec![Some(5), None, Some(u64::MAX)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![column]).unwrap();
        let answer = SqlAnswer { schema: schema.clone(), batches: vec![batch], command: None };
        let out = rows(&answer, Arc::new(fields(&schema, &Format::UnifiedText))).unwrap();
        assert!(out[0].is_ok() && out[1].is_ok());
        match &out[2] {
            Err(PgWireError::UserError(info)) => {
                assert_eq!(info.code, "22003");
                assert!(info.message.contains("18446744073709551615"), "{}", info.message);
            }
            other => panic!("expected an out-of-range error, got {other:?}"),
        }
    }
}
