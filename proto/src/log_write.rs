//! [`v1::LogWrite`], the write a log entry carries: a client's write converted ([`encode`]
//! names the series the proposer knows by id, packed in `known`), and the canonical label
//! bytes by which a series is known.

use crate::known_series::KnownWriter;
use crate::v1;
use crate::wire::{
    WIRE_FIXED64, WIRE_LEN, WIRE_VARINT, put_bytes, put_key, put_label, put_varint, varint_len,
};

impl From<v1::WriteRequest> for v1::LogWrite {
    /// The same bytes once encoded: the two messages share their field numbers.
    fn from(w: v1::WriteRequest) -> Self {
        v1::LogWrite {
            batch_id: w.batch_id,
            series: w.series,
            events: w.events,
            known: Vec::new(),
            sources: Vec::new(),
            known_compact: Vec::new(),
        }
    }
}

/// Appends the canonical bytes of a label set: its labels (sorted and normalised, as
/// [`normalize_labels`](collabstream_common::normalize_labels) leaves them) as the
/// `repeated Label labels = 1` field of a series, byte for byte as prost encodes it.
///
/// A series is known by these bytes (the store's `KnownSeries::find`). They are also exactly
/// what a remote-write sender that sorts its labels (Prometheus does) sends, so that path can
/// look a series up by a slice of the request.
pub fn canonical_labels<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: impl IntoIterator<Item = (N, V)>,
    out: &mut Vec<u8>,
) {
    for (name, value) in pairs {
        put_label(out, name.as_ref(), value.as_ref());
    }
}

/// The write-side half of [`encode`] and of the remote-write path: how a series known by the
/// proposer or sent with its labels ends up in an encoded `v1::LogWrite`.
#[derive(Debug, Default)]
pub(crate) struct LogWriteBuilder {
    /// The encoded write so far: batch id, series with labels, events.
    pub(crate) out: Vec<u8>,
    known: KnownWriter,
    /// Positions in the client's request of the series with labels and of the known ones, in
    /// the order apply numbers them (see [`LogWriteBuilder::finish`]).
    labelled_at: Vec<u32>,
    known_at: Vec<u32>,
    content: Vec<u8>,
}

impl LogWriteBuilder {
    pub(crate) fn with_capacity(bytes: usize, samples: usize) -> Self {
        Self {
            out: Vec::with_capacity(bytes),
            known: KnownWriter::with_capacity(samples),
            ..Default::default()
        }
    }

    /// Series `id`, which the proposer knows, item `at` of the request.
    pub(crate) fn known(&mut self, at: u32, id: u64, samples: &[(i64, u64)]) {
        self.known.push(id, samples);
        self.known_at.push(at);
    }

    /// A series sent with its canonical label bytes, item `at` of the request.
    pub(crate) fn labelled(&mut self, at: u32, canonical: &[u8], samples: &[(i64, u64)]) {
        self.content.clear();
        self.content.extend_from_slice(canonical);
        put_samples(&mut self.content, samples);
        put_bytes(&mut self.out, 2, &self.content);
        self.labelled_at.push(at);
    }

    /// The encoded write, and for each series in apply's numbering (first those with labels,
    /// then the known ones) its position in the client's request.
    pub(crate) fn finish(mut self) -> (Vec<u8>, Vec<u32>) {
        self.known.finish_into(&mut self.out);
        let mut at = self.labelled_at;
        at.extend(self.known_at);
        (self.out, at)
    }
}

/// Encodes a validated write (label sets normalised) as a `v1::LogWrite`, naming each series
/// that `known` finds by its canonical label bytes ([`canonical_labels`]) by its id; `known`
/// answers a batch of keys, one answer each (see [`crate::prompb_view::reencode`]). Also
/// returns, for each series in apply's numbering, its position in `w.series`.
pub fn encode(
    w: &v1::WriteRequest,
    known: &mut impl FnMut(&[&[u8]], &mut Vec<Option<u64>>),
) -> (Vec<u8>, Vec<u32>) {
    use prost::Message;
    let mut canonical = Vec::new();
    let mut ends = Vec::with_capacity(w.series.len());
    for s in &w.series {
        canonical_labels(s.labels.iter().map(|l| (&l.name, &l.value)), &mut canonical);
        ends.push(canonical.len());
    }
    let keys: Vec<&[u8]> =
        ends.iter().scan(0, |start, &end| Some(&canonical[std::mem::replace(start, end)..end])).collect();
    let mut ids = Vec::with_capacity(keys.len());
    known(&keys, &mut ids);
    let samples_total: usize = w.series.iter().map(|s| s.samples.len()).sum();
    let mut b = LogWriteBuilder::with_capacity(w.encoded_len(), samples_total);
    if !w.batch_id.is_empty() {
        put_bytes(&mut b.out, 1, w.batch_id.as_bytes());
    }
    let mut samples: Vec<(i64, u64)> = Vec::new();
    for (i, ((s, key), id)) in w.series.iter().zip(&keys).zip(ids).enumerate() {
        samples.clear();
        samples.extend(s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())));
        match id {
            Some(id) => b.known(i as u32, id, &samples),
            None => b.labelled(i as u32, key, &samples),
        }
    }
    for e in &w.events {
        prost::encoding::message::encode(3, e, &mut b.out);
    }
    b.finish()
}

/// The encoded size of a `v1.Sample` with these fields.
fn sample_len(ts: i64) -> usize {
    1 + varint_len(ts as u64) + 1 + 8
}

/// Appends the samples of a series (`repeated Sample samples = 2` of a `TimeSeries`), values
/// as IEEE bits.
pub(crate) fn put_samples(out: &mut Vec<u8>, samples: &[(i64, u64)]) {
    for &(ts, bits) in samples {
        // v1.Sample: int64 timestamp_ms = 1; double value = 2.
        put_key(out, 2, WIRE_LEN);
        put_varint(out, sample_len(ts) as u64);
        put_key(out, 1, WIRE_VARINT);
        put_varint(out, ts as u64);
        put_key(out, 2, WIRE_FIXED64);
        out.extend_from_slice(&bits.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::known_series::{KnownFormat, KnownReader};

    fn series(job: &str) -> v1::TimeSeries {
        let label = |n: &str, v: &str| v1::Label { name: n.into(), value: v.into() };
        v1::TimeSeries {
            labels: vec![label("__name__", "up"), label("job", job)],
            samples: vec![
                v1::Sample { timestamp_ms: 5, value: 1.0 },
                v1::Sample { timestamp_ms: 6, value: -0.0 },
            ],
        }
    }

    #[test]
    fn known_series_of_a_write_are_named_by_id() {
        let req = v1::WriteRequest {
            batch_id: "b-1".into(),
            series: vec![series("a"), series("b"), series("c")],
            events: vec![v1::Event::default()],
        };
        let mut b = Vec::new();
        canonical_labels([("__name__", "up"), ("job", "b")], &mut b);
        let mut known = |keys: &[&[u8]], out: &mut Vec<Option<u64>>| {
            out.extend(keys.iter().map(|k| (*k == b).then_some(42)));
        };
        let (bytes, at) = encode(&req, &mut known);
        let w = v1::LogWrite::decode(bytes.as_slice()).unwrap();
        assert_eq!(w.batch_id, "b-1");
        assert_eq!(w.events, req.events);
        assert_eq!(w.series, [series("a"), series("c")]);
        assert_eq!(at, [0, 2, 1], "labelled series first, then the known ones");
        assert!(w.known.is_empty(), "the compact form only");
        let mut r = KnownReader::new(&w.known_compact, KnownFormat::Compact);
        let mut s = r.next_series().unwrap().unwrap();
        assert_eq!((s.id, s.samples), (42, 2));
        assert_eq!(s.next_sample().unwrap(), Some((5, 1.0)));
        assert_eq!(s.next_sample().unwrap().map(|(t, v)| (t, v.to_bits())), Some((6, (-0.0f64).to_bits())));
        drop(s);
        assert!(r.next_series().unwrap().is_none());
        // Nothing known: the request as it is (prost would drop -0.0; we keep its bits).
        let mut unknown = |keys: &[&[u8]], out: &mut Vec<Option<u64>>| out.extend(keys.iter().map(|_| None));
        let (bytes, at) = encode(&req, &mut unknown);
        assert_eq!(at, [0, 1, 2]);
        let w = v1::LogWrite::decode(bytes.as_slice()).unwrap();
        assert_eq!(w, v1::LogWrite::from(req.clone()));
        assert!(w.series[0].samples[1].value.is_sign_negative());
    }

    #[test]
    fn canonical_labels_are_the_labels_prost_encodes() {
        let labels = vec![
            v1::Label { name: "__name__".into(), value: "up".into() },
            v1::Label { name: "ü".into(), value: "x".repeat(200) },
        ];
        let series = v1::TimeSeries { labels: labels.clone(), samples: vec![] };
        let mut out = Vec::new();
        canonical_labels(labels.iter().map(|l| (&l.name, &l.value)), &mut out);
        assert_eq!(out, series.encode_to_vec());
    }

    #[test]
    fn a_write_request_is_a_log_write() {
        let req = v1::WriteRequest {
            batch_id: "b".into(),
            series: vec![series("a")],
            events: vec![v1::Event::default()],
        };
        let as_log = v1::LogWrite::from(req.clone());
        assert_eq!(as_log.encode_to_vec(), req.encode_to_vec());
        assert_eq!(v1::LogWrite::decode(req.encode_to_vec().as_slice()).unwrap(), as_log);
    }
}
