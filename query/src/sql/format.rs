//! An answer as JSON (`{"columns":[…],"rows":[[…],…]}`, DESIGN §7), CSV or an Arrow IPC
//! stream. JSON gives numbers as numbers (NaN and infinities as Prometheus's strings), text
//! as strings, timestamps as RFC 3339 text, maps as objects and lists as arrays.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Map, Value, json};

use crate::sql::SqlAnswer;

/// The answer as DESIGN §7's JSON.
pub fn json_rows(answer: &SqlAnswer) -> Result<Value, String> {
    let columns: Vec<Value> = answer.schema.fields().iter().map(|f| json!(f.name())).collect();
    let mut rows = Vec::with_capacity(answer.rows());
    for batch in &answer.batches {
        let cells: Vec<Vec<Value>> = batch.columns().iter().map(json_column).collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            rows.push(Value::Array(cells.iter().map(|c| c[r].clone()).collect()));
        }
    }
    Ok(json!({ "columns": columns, "rows": rows }))
}

fn number(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x.is_infinite() {
        json!(if x > 0.0 { "+Inf" } else { "-Inf" })
    } else {
        json!(x)
    }
}

/// Every value of a column, as JSON.
pub(crate) fn json_column(a: &ArrayRef) -> Result<Vec<Value>, String> {
    use arrow::datatypes::*;
    let n = a.len();
    let each = |f: &dyn Fn(usize) -> Value| -> Vec<Value> {
        (0..n).map(|i| if a.is_null(i) { Value::Null } else { f(i) }).collect()
    };
    Ok(match a.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => each(&|i| json!(a.as_boolean().value(i))),
        DataType::Int8 => each(&|i| json!(a.as_primitive::<Int8Type>().value(i))),
        DataType::Int16 => each(&|i| json!(a.as_primitive::<Int16Type>().value(i))),
        DataType::Int32 => each(&|i| json!(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int64 => each(&|i| json!(a.as_primitive::<Int64Type>().value(i))),
        DataType::UInt8 => each(&|i| json!(a.as_primitive::<UInt8Type>().value(i))),
        DataType::UInt16 => each(&|i| json!(a.as_primitive::<UInt16Type>().value(i))),
        DataType::UInt32 => each(&|i| json!(a.as_primitive::<UInt32Type>().value(i))),
        DataType::UInt64 => each(&|i| json!(a.as_primitive::<UInt64Type>().value(i))),
        DataType::Float32 => each(&|i| number(f64::from(a.as_primitive::<Float32Type>().value(i)))),
        DataType::Float64 => each(&|i| number(a.as_primitive::<Float64Type>().value(i))),
        DataType::Utf8 => each(&|i| json!(a.as_string::<i32>().value(i))),
        DataType::LargeUtf8 => each(&|i| json!(a.as_string::<i64>().value(i))),
        DataType::Utf8View => each(&|i| json!(a.as_string_view().value(i))),
        DataType::Dictionary(_, value) => {
            let plain = arrow::compute::cast(a, value).map_err(|e| e.to_string())?;
            json_column(&plain)?
        }
        DataType::Map(..) => {
            let map = a.as_map();
            let keys = text_cells(map.keys())?;
            let values = json_column(map.values())?;
            let offsets = map.value_offsets();
            each(&|i| {
                let mut o = Map::new();
                for e in offsets[i] as usize..offsets[i + 1] as usize {
                    o.insert(keys[e].clone(), values[e].clone());
                }
                Value::Object(o)
            })
        }
        DataType::List(_) => {
            let list = a.as_list::<i32>();
            let values = json_column(list.values())?;
            let offsets = list.value_offsets();
            each(&|i| Value::Array(values[offsets[i] as usize..offsets[i + 1] as usize].to_vec()))
        }
        _ => {
            let texts = text_cells(a)?;
            each(&|i| json!(texts[i]))
        }
    })
}

/// Every value of a column as display text (RFC 3339 for timestamps), empty for null.
fn text_cells(a: &dyn Array) -> Result<Vec<String>, String> {
    let options = FormatOptions::default().with_null("");
    let f = ArrayFormatter::try_new(a, &options).map_err(|e| e.to_string())?;
    Ok((0..a.len()).map(|i| f.value(i).to_string()).collect())
}

/// The answer as CSV with a header line (RFC 4180 quoting; null as an empty field).
pub fn csv(answer: &SqlAnswer) -> Result<String, String> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let header: Vec<String> = answer.schema.fields().iter().map(|f| quote(f.name())).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for batch in &answer.batches {
        let cells: Vec<Vec<String>> =
            batch.columns().iter().map(|c| text_cells(c.as_ref())).collect::<Result<_, _>>()?;
        for r in 0..batch.num_rows() {
            let line: Vec<String> = cells.iter().map(|c| quote(&c[r])).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
    }
    Ok(out)
}

/// The answer as an Arrow IPC stream.
pub fn arrow_ipc(answer: &SqlAnswer) -> Result<Vec<u8>, String> {
    let mut w =
        arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &answer.schema).map_err(|e| e.to_string())?;
    for b in &answer.batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}
