//! Writing query results in the Prometheus API's JSON: written straight into a buffer, because
//! a range query answer can hold millions of points.

use collabstream_common::Labels;

use crate::promql::{Annotations, QueryValue, format_float};

fn string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A timestamp in seconds as Prometheus writes it: `4`, `1.5`, `1435781451.781`.
fn timestamp(out: &mut Vec<u8>, ms: i64) {
    if ms < 0 {
        out.push(b'-');
    }
    let secs = ms.unsigned_abs() / 1000;
    let frac = ms.unsigned_abs() % 1000;
    out.extend_from_slice(secs.to_string().as_bytes());
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push(b'.');
        out.extend_from_slice(f.trim_end_matches('0').as_bytes());
    }
}

fn point(out: &mut Vec<u8>, t: i64, v: &str) {
    out.push(b'[');
    timestamp(out, t);
    out.push(b',');
    string(out, v);
    out.push(b']');
}

fn metric(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, &l.name);
        out.push(b':');
        string(out, &l.value);
    }
    out.push(b'}');
}

fn strings(out: &mut Vec<u8>, key: &str, items: &std::collections::BTreeSet<String>) {
    if items.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// `{"status":"success","data":{"resultType":…,"result":…},"warnings":[…],"infos":[…]}`.
pub fn query_result(value: &QueryValue, annotations: &Annotations, extra_warnings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":{\"resultType\":\"");
    match value {
        QueryValue::Scalar { t, v } => {
            out.extend_from_slice(b"scalar\",\"result\":");
            point(&mut out, *t, &format_float(*v));
        }
        QueryValue::String { t, v } => {
            out.extend_from_slice(b"string\",\"result\":");
            point(&mut out, *t, v);
        }
        QueryValue::Vector { t, samples } => {
            out.extend_from_slice(b"vector\",\"result\":[");
            for (i, (labels, v)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, labels);
                out.extend_from_slice(b",\"value\":");
                point(&mut out, *t, &format_float(*v));
                out.push(b'}');
            }
            out.push(b']');
        }
        QueryValue::Matrix(series) => {
            out.extend_from_slice(b"matrix\",\"result\":[");
            for (i, (labels, points)) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                metric(&mut out, labels);
                out.extend_from_slice(b",\"values\":[");
                for (j, (t, v)) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    point(&mut out, *t, &format_float(*v));
                }
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.push(b'}');
    let mut warnings = annotations.warnings.clone();
    warnings.extend(extra_warnings.iter().cloned());
    strings(&mut out, "warnings", &warnings);
    strings(&mut out, "infos", &annotations.infos);
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_seconds_without_trailing_zeros() {
        let mut out = Vec::new();
        for t in [4_000, 1_500, 1_435_781_451_781, -1_500, 10] {
            timestamp(&mut out, t);
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), "4 1.5 1435781451.781 -1.5 0.01 ");
    }

    #[test]
    fn scalar_answer() {
        let body = query_result(&QueryValue::Scalar { t: 4_000, v: 2.0 }, &Annotations::default(), &[]);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}})
        );
    }
}
