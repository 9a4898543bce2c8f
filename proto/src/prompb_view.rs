//! [`reencode`]: a decompressed remote-write body (`prometheus.WriteRequest`) turned straight
//! into the bytes of our `v1::WriteRequest`, the form a log entry carries, without decoding
//! either into owned messages.
//!
//! Remote write is the bulk of what a node ingests. Decoding it with prost allocates every
//! label name and value; re-encoding it copies them again. Here labels are borrowed from the
//! body, checked with the same rules as every other write ([`normalize_labels`]) and written
//! once into the output. Each series is checked on its own: a bad one is reported with its
//! index and the others are written.

use collabstream_common::normalize_labels;

use crate::series::SeriesError;
use crate::wire::{
    Reader, ViewError, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, bytes_field_len, put_bytes, put_key, put_varint,
    read_label, varint_len,
};

/// The result of [`reencode`].
#[derive(Debug, Default, PartialEq)]
pub struct Reencoded {
    /// An encoded `v1::WriteRequest` with the accepted series (no batch id, no events).
    pub write: Vec<u8>,
    /// For each accepted series, its index in the remote-write request.
    pub accepted: Vec<u32>,
    pub samples: u64,
    /// Refused series: index in the request, its samples, and why.
    pub rejected: Vec<(u32, u64, SeriesError)>,
}

/// One series as read from the body.
#[derive(Default)]
struct Series<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    /// (timestamp ms, value bits) pairs.
    samples: Vec<(i64, u64)>,
    histograms: usize,
}

/// Reads a decompressed remote-write body and writes its valid series as a `v1::WriteRequest`.
/// Fails only when the body is not a well-formed protobuf message.
pub fn reencode(body: &[u8]) -> Result<Reencoded, ViewError> {
    let mut out = Reencoded::default();
    let mut r = Reader(body);
    let mut index = 0u32;
    let mut series = Series::default();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut content = Vec::new();
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => {
                read_series(r.bytes()?, &mut series)?;
                let i = index;
                index += 1;
                if series.samples.is_empty() && series.histograms == 0 {
                    // Exemplar-only series (send_exemplars: true): nothing we store, nothing wrong.
                    continue;
                }
                let n = series.samples.len().max(series.histograms) as u64;
                match check(&series, &mut pairs) {
                    Ok(()) => {
                        write_series(&pairs, &series.samples, &mut content, &mut out.write);
                        out.accepted.push(i);
                        out.samples += n;
                    }
                    Err(e) => out.rejected.push((i, n, e)),
                }
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn read_series<'a>(buf: &'a [u8], s: &mut Series<'a>) -> Result<(), ViewError> {
    s.labels.clear();
    s.samples.clear();
    s.histograms = 0;
    let mut r = Reader(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => {
                s.labels.push(read_label(r.bytes()?)?);
            }
            (2, WIRE_LEN) => {
                // prometheus.Sample: double value = 1; int64 timestamp = 2.
                let (mut value, mut ts) = (0u64, 0i64);
                let mut x = Reader(r.bytes()?);
                while let Some((f, w)) = x.key()? {
                    match (f, w) {
                        (1, WIRE_FIXED64) => value = x.fixed64()?,
                        (2, WIRE_VARINT) => ts = x.varint()? as i64,
                        _ => x.skip(w)?,
                    }
                }
                s.samples.push((ts, value));
            }
            (4, WIRE_LEN) => {
                r.bytes()?;
                s.histograms += 1;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Checks a series and leaves its normalised labels in `pairs`.
fn check<'a>(s: &Series<'a>, pairs: &mut Vec<(&'a str, &'a str)>) -> Result<(), SeriesError> {
    pairs.clear();
    for (index, (n, v)) in s.labels.iter().enumerate() {
        let name = std::str::from_utf8(n).map_err(|_| SeriesError::InvalidUtf8 { which: "name", index })?;
        let value = std::str::from_utf8(v).map_err(|_| SeriesError::InvalidUtf8 { which: "value", index })?;
        pairs.push((name, value));
    }
    normalize_labels(pairs, |p| p.0, |p| p.1)?;
    if s.histograms > 0 {
        return Err(SeriesError::NativeHistogram);
    }
    Ok(())
}

/// Appends `v1.TimeSeries` (labels = 1, samples = 2) as field 2 of a `v1.WriteRequest`.
fn write_series(pairs: &[(&str, &str)], samples: &[(i64, u64)], content: &mut Vec<u8>, out: &mut Vec<u8>) {
    content.clear();
    for (name, value) in pairs {
        put_key(content, 1, WIRE_LEN);
        put_varint(content, (bytes_field_len(name.len()) + bytes_field_len(value.len())) as u64);
        put_bytes(content, 1, name.as_bytes());
        put_bytes(content, 2, value.as_bytes());
    }
    for &(ts, bits) in samples {
        // v1.Sample: int64 timestamp_ms = 1; double value = 2.
        put_key(content, 2, WIRE_LEN);
        put_varint(content, (1 + varint_len(ts as u64) + 1 + 8) as u64);
        put_key(content, 1, WIRE_VARINT);
        put_varint(content, ts as u64);
        put_key(content, 2, WIRE_FIXED64);
        content.extend_from_slice(&bits.to_le_bytes());
    }
    put_bytes(out, 2, content);
}

#[cfg(test)]
mod tests {
    use collabstream_common::LabelError;
    use prost::Message;

    use super::*;
    use crate::{prompb, v1};

    fn pl(n: &[u8], v: &[u8]) -> prompb::Label {
        prompb::Label { name: n.to_vec(), value: v.to_vec() }
    }

    fn series(labels: Vec<prompb::Label>, samples: &[(i64, f64)]) -> prompb::TimeSeries {
        prompb::TimeSeries {
            labels,
            samples: samples.iter().map(|&(t, v)| prompb::Sample { value: v, timestamp: t }).collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn run(ts: Vec<prompb::TimeSeries>) -> (v1::WriteRequest, Reencoded) {
        let body = prompb::WriteRequest { timeseries: ts, ..Default::default() }.encode_to_vec();
        let out = reencode(&body).unwrap();
        (v1::WriteRequest::decode(out.write.as_slice()).unwrap(), out)
    }

    #[test]
    fn valid_series_become_normalised_v1_series() {
        let (w, out) = run(vec![
            series(
                vec![pl(b"job", b"a"), pl(b"__name__", b"up"), pl(b"empty", b"")],
                &[(5, 1.5), (-7, f64::NAN)],
            ),
            series(vec![pl(b"__name__", b"\xc3\xbc")], &[(0, 0.0)]),
        ]);
        assert_eq!((out.accepted.clone(), out.samples, out.rejected.len()), (vec![0, 1], 3, 0));
        let names: Vec<&str> = w.series[0].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job"], "sorted, the empty value dropped");
        assert_eq!(w.series[0].samples[0], v1::Sample { timestamp_ms: 5, value: 1.5 });
        assert_eq!(w.series[0].samples[1].timestamp_ms, -7);
        assert!(w.series[0].samples[1].value.is_nan());
        assert_eq!(w.series[1].labels[0].value, "ü");
        assert_eq!(w.series[1].samples, [v1::Sample { timestamp_ms: 0, value: 0.0 }]);
        assert!(w.batch_id.is_empty() && w.events.is_empty());
    }

    #[test]
    fn bad_series_are_refused_one_by_one() {
        let mut histogram = series(vec![pl(b"__name__", b"h")], &[]);
        histogram.histograms = vec![vec![1, 2]];
        let exemplars_only = series(vec![pl(b"__name__", b"e")], &[]);
        let (w, out) = run(vec![
            series(vec![pl(b"__name__", b"up"), pl(b"job", &[0xff])], &[(1, 1.0)]),
            series(vec![pl(b"__name__", b"up"), pl(b"a", b"1"), pl(b"a", b"2")], &[(1, 1.0), (2, 2.0)]),
            series(vec![pl(b"job", b"x")], &[(1, 1.0)]),
            histogram,
            exemplars_only,
            series(vec![pl(b"__name__", b"ok")], &[(1, 1.0)]),
        ]);
        assert_eq!(out.accepted, [5]);
        assert_eq!(w.series.len(), 1);
        let rejected: Vec<(u32, u64)> = out.rejected.iter().map(|(i, n, _)| (*i, *n)).collect();
        assert_eq!(rejected, [(0, 1), (1, 2), (2, 1), (3, 1)]);
        assert_eq!(out.rejected[0].2, SeriesError::InvalidUtf8 { which: "value", index: 1 });
        assert!(matches!(out.rejected[1].2, SeriesError::Label(LabelError::DuplicateName { .. })));
        assert_eq!(out.rejected[2].2, SeriesError::Label(LabelError::MissingMetricName));
        assert_eq!(out.rejected[3].2, SeriesError::NativeHistogram);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(reencode(&[0x0a, 0x05, 0x01]).is_err());
        assert_eq!(reencode(&[]).unwrap(), Reencoded::default());
    }
}
