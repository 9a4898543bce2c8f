//! [`reencode`]: a decompressed remote-write body (`prometheus.WriteRequest`) turned straight
//! into the bytes of our `v1::LogWrite`, the form a log entry carries, without decoding
//! either into owned messages.
//!
//! Remote write is the bulk of what a node ingests. Decoding it with prost allocates every
//! label name and value; re-encoding it copies them again. Here labels are borrowed from the
//! body, checked with the same rules as every other write ([`normalize_labels`]) and written
//! once into the output. Each series is checked on its own: a bad one is reported with its
//! index and the others are written.
//!
//! A series the proposer already knows is written as its id and samples only: the bulk of
//! a steady remote-write stream is series seen before, and an entry without their labels is a
//! fraction of the size, on disk, on the wire to followers and in apply.

use std::ops::Range;

use collabstream_common::{LabelLimits, normalize_labels};

use crate::log_write::{LogWriteBuilder, canonical_labels};
use crate::series::SeriesError;
use crate::wire::{Reader, ViewError, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, read_label};

/// The result of [`reencode`].
#[derive(Debug, Default, PartialEq)]
pub struct Reencoded {
    /// An encoded `v1::LogWrite` with the accepted series (no batch id, no events).
    pub write: Vec<u8>,
    /// For each accepted series in apply's numbering (those sent with labels, then the known
    /// ones), its index in the remote-write request.
    pub accepted: Vec<u32>,
    pub samples: u64,
    /// Refused series: index in the request, its samples, and why.
    pub rejected: Vec<(u32, u64, SeriesError)>,
}

/// One series as read from the body.
struct Series<'a> {
    /// Its position in the request.
    index: u32,
    /// The whole `prometheus.TimeSeries` message.
    raw: &'a [u8],
    /// The series' leading label fields as sent: the canonical label bytes when the sender
    /// sorted them (see [`canonical_labels`]).
    labels_prefix: &'a [u8],
    /// Label fields also came after other fields, so `labels_prefix` is not all of them.
    scattered: bool,
    /// Its samples in [`reencode`]'s flat list.
    samples: Range<usize>,
    histograms: usize,
}

impl Series<'_> {
    /// Whether the series may be found by `labels_prefix` alone.
    fn by_prefix(&self) -> bool {
        self.histograms == 0 && !self.scattered
    }
}

/// Reads a decompressed remote-write body and writes its valid series as a `v1::LogWrite`.
///
/// `known` finds the series the proposer already has by their canonical label bytes
/// ([`canonical_labels`]), one answer per key into its second argument (in a batch: the
/// lookups are memory-bound, and independent ones overlap); such a series is written as its id,
/// the others with their labels. Fails only when the body is not a well-formed protobuf
/// message.
pub fn reencode(
    body: &[u8],
    limits: &LabelLimits,
    known: &mut impl FnMut(&[&[u8]], &mut Vec<Option<u64>>),
) -> Result<Reencoded, ViewError> {
    let mut all_samples: Vec<(i64, u64)> = Vec::with_capacity(body.len() / 64);
    let mut series: Vec<Series<'_>> = Vec::with_capacity(body.len() / 128);
    let mut r = Reader(body);
    let mut index = 0u32;
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => {
                let s = read_series(r.bytes()?, index, &mut all_samples)?;
                index += 1;
                // Exemplar-only series (send_exemplars: true): nothing we store, nothing wrong.
                if !s.samples.is_empty() || s.histograms > 0 {
                    series.push(s);
                }
            }
            _ => r.skip(wire)?,
        }
    }
    // The hot path: a sender that sorts its labels (Prometheus does) sends the canonical bytes
    // of a series seen before. Bytes equal to a known series' are a valid, normalised label
    // set: nothing to parse or check.
    let keys: Vec<&[u8]> = series.iter().map(|s| if s.by_prefix() { s.labels_prefix } else { &[] }).collect();
    let mut ids = Vec::with_capacity(keys.len());
    known(&keys, &mut ids);
    let mut out = Reencoded::default();
    let mut write = LogWriteBuilder::with_capacity(body.len() / 16, all_samples.len());
    let mut labels = Vec::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut canonical = Vec::new();
    let mut again = Vec::with_capacity(1);
    for (s, id) in series.iter().zip(ids) {
        let samples = &all_samples[s.samples.clone()];
        let n = samples.len().max(s.histograms) as u64;
        if let Some(id) = id {
            write.known(s.index, id, samples);
            out.samples += n;
            continue;
        }
        read_labels(s.raw, &mut labels)?;
        match check(&labels, s.histograms, limits, &mut pairs) {
            Ok(()) => {
                canonical.clear();
                canonical_labels(pairs.iter().copied(), &mut canonical);
                again.clear();
                if !(s.by_prefix() && canonical == s.labels_prefix) {
                    known(&[&canonical], &mut again);
                }
                match again.first().copied().flatten() {
                    Some(id) => write.known(s.index, id, samples),
                    None => write.labelled(s.index, &canonical, samples),
                }
                out.samples += n;
            }
            Err(e) => out.rejected.push((s.index, n, e)),
        }
    }
    (out.write, out.accepted) = write.finish();
    Ok(out)
}

/// Reads a `prometheus.TimeSeries` but its labels: where the leading label fields are, the
/// samples (appended to `samples`), and how many histograms.
fn read_series<'a>(
    buf: &'a [u8],
    index: u32,
    samples: &mut Vec<(i64, u64)>,
) -> Result<Series<'a>, ViewError> {
    let first = samples.len();
    let (mut histograms, mut scattered) = (0, false);
    let mut prefix_end = None;
    let mut r = Reader(buf);
    loop {
        let at = buf.len() - r.0.len();
        let Some((field, wire)) = r.key()? else { break };
        match (field, wire) {
            (1, WIRE_LEN) => {
                r.bytes()?;
                scattered |= prefix_end.is_some();
            }
            (2, WIRE_LEN) => {
                prefix_end.get_or_insert(at);
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
                samples.push((ts, value));
            }
            (4, WIRE_LEN) => {
                prefix_end.get_or_insert(at);
                r.bytes()?;
                histograms += 1;
            }
            _ => {
                prefix_end.get_or_insert(at);
                r.skip(wire)?;
            }
        }
    }
    Ok(Series {
        index,
        raw: buf,
        labels_prefix: &buf[..prefix_end.unwrap_or(buf.len())],
        scattered,
        samples: first..samples.len(),
        histograms,
    })
}

/// Reads every label of a `prometheus.TimeSeries`, in the order sent.
fn read_labels<'a>(buf: &'a [u8], labels: &mut Vec<(&'a [u8], &'a [u8])>) -> Result<(), ViewError> {
    labels.clear();
    let mut r = Reader(buf);
    while let Some((field, wire)) = r.key()? {
        match (field, wire) {
            (1, WIRE_LEN) => labels.push(read_label(r.bytes()?)?),
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Checks a series' labels and leaves them normalised in `pairs`.
fn check<'a>(
    labels: &[(&'a [u8], &'a [u8])],
    histograms: usize,
    limits: &LabelLimits,
    pairs: &mut Vec<(&'a str, &'a str)>,
) -> Result<(), SeriesError> {
    pairs.clear();
    for (index, (n, v)) in labels.iter().enumerate() {
        let name = std::str::from_utf8(n).map_err(|_| SeriesError::InvalidUtf8 { which: "name", index })?;
        let value = std::str::from_utf8(v).map_err(|_| SeriesError::InvalidUtf8 { which: "value", index })?;
        pairs.push((name, value));
    }
    normalize_labels(pairs, |p| p.0, |p| p.1, limits)?;
    if histograms > 0 {
        return Err(SeriesError::NativeHistogram);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use collabstream_common::LabelError;
    use prost::Message;

    use super::*;
    use crate::known_series::{KnownFormat, read_all};
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

    /// No series is known.
    fn unknown(keys: &[&[u8]], out: &mut Vec<Option<u64>>) {
        out.extend(keys.iter().map(|_| None));
    }

    fn run(ts: Vec<prompb::TimeSeries>) -> (v1::LogWrite, Reencoded) {
        run_with(ts, &mut unknown)
    }

    fn run_with(
        ts: Vec<prompb::TimeSeries>,
        known: &mut impl FnMut(&[&[u8]], &mut Vec<Option<u64>>),
    ) -> (v1::LogWrite, Reencoded) {
        let body = prompb::WriteRequest { timeseries: ts, ..Default::default() }.encode_to_vec();
        let out = reencode(&body, &LabelLimits::NONE, known).unwrap();
        (v1::LogWrite::decode(out.write.as_slice()).unwrap(), out)
    }

    #[test]
    fn known_series_are_named_by_id() {
        // Known: {__name__="up", job="a"} as 7, looked up by its canonical bytes whatever
        // order the sender used.
        let mut up_a = Vec::new();
        canonical_labels([("__name__", "up"), ("job", "a")], &mut up_a);
        let mut asked = Vec::new();
        let mut known = |keys: &[&[u8]], out: &mut Vec<Option<u64>>| {
            asked.push(keys.iter().map(|k| *k == up_a).collect::<Vec<_>>());
            out.extend(keys.iter().map(|k| (*k == up_a).then_some(7)));
        };
        let mut scattered = series(vec![pl(b"__name__", b"up")], &[(8, 4.0)]).encode_to_vec();
        // A label field after the samples: the leading labels are not all of them.
        scattered.extend(
            prompb::TimeSeries { labels: vec![pl(b"job", b"a")], ..Default::default() }.encode_to_vec(),
        );
        let mut body = prompb::WriteRequest {
            timeseries: vec![
                series(vec![pl(b"__name__", b"up"), pl(b"job", b"a")], &[(5, 1.5), (6, f64::NAN)]),
                // The same series sent unsorted and with an empty label: found once normalised.
                series(vec![pl(b"job", b"a"), pl(b"x", b""), pl(b"__name__", b"up")], &[(7, 2.0)]),
                series(vec![pl(b"__name__", b"up"), pl(b"job", b"b")], &[(5, 3.0)]),
            ],
            ..Default::default()
        }
        .encode_to_vec();
        prost::encoding::bytes::encode(1, &scattered, &mut body);
        let out = reencode(&body, &LabelLimits::NONE, &mut known).unwrap();
        let w = v1::LogWrite::decode(out.write.as_slice()).unwrap();
        // The series sent with labels are numbered first, then the known ones.
        assert_eq!((out.accepted.clone(), out.samples), (vec![2, 0, 1, 3], 5));
        // All at once by the wire bytes (the scattered series by nothing): a hit, a miss found
        // again normalised, a miss already canonical (not asked again), then the scattered
        // series by its normalised labels.
        let (yes, no) = (true, false);
        assert_eq!(asked, [vec![yes, no, no, no], vec![yes], vec![yes]]);
        assert_eq!(w.series.len(), 1);
        assert_eq!(w.series[0].labels[1].value, "b");
        let known = read_all(&w.known_compact, KnownFormat::Compact).unwrap();
        let bits = |v: f64| v.to_bits();
        assert_eq!(
            known,
            [
                (7, vec![(5, bits(1.5)), (6, bits(f64::NAN))]),
                (7, vec![(7, bits(2.0))]),
                (7, vec![(8, bits(4.0))])
            ]
        );
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
        assert!(reencode(&[0x0a, 0x05, 0x01], &LabelLimits::NONE, &mut unknown).is_err());
        assert_eq!(reencode(&[], &LabelLimits::NONE, &mut unknown).unwrap(), Reencoded::default());
    }
}
