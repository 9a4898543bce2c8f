//! Conversions between wire series (ours and Prometheus's) and `collabstream_common::Labels`.

use collabstream_common::{Label, LabelError, Labels, Sample};

use crate::{prompb, v1};

/// Why a wire series was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error("label {which} {index} is not valid UTF-8")]
    InvalidUtf8 { which: &'static str, index: usize },
    #[error("series has no samples")]
    NoSamples,
    #[error("native histograms are not supported yet; send float samples")]
    NativeHistogram,
}

/// Validates our own wire series' labels.
pub fn labels_from_v1(labels: &[v1::Label]) -> Result<Labels, SeriesError> {
    let pairs = labels.iter().map(|l| Label::new(l.name.clone(), l.value.clone())).collect();
    Ok(Labels::new(pairs)?)
}

/// Validates a remote-write series' labels, including their UTF-8.
pub fn labels_from_prompb(labels: &[prompb::Label]) -> Result<Labels, SeriesError> {
    let mut pairs = Vec::with_capacity(labels.len());
    for (index, l) in labels.iter().enumerate() {
        let name =
            std::str::from_utf8(&l.name).map_err(|_| SeriesError::InvalidUtf8 { which: "name", index })?;
        let value =
            std::str::from_utf8(&l.value).map_err(|_| SeriesError::InvalidUtf8 { which: "value", index })?;
        pairs.push(Label::new(name, value));
    }
    Ok(Labels::new(pairs)?)
}

/// Our wire labels for a validated label set.
pub fn labels_to_v1(labels: &Labels) -> Vec<v1::Label> {
    labels.iter().map(|l| v1::Label { name: l.name.clone(), value: l.value.clone() }).collect()
}

/// Converts a remote-write series into ours, refusing what we cannot store.
pub fn series_from_prompb(ts: &prompb::TimeSeries) -> Result<v1::TimeSeries, SeriesError> {
    let labels = labels_from_prompb(&ts.labels)?;
    if !ts.histograms.is_empty() {
        return Err(SeriesError::NativeHistogram);
    }
    if ts.samples.is_empty() {
        return Err(SeriesError::NoSamples);
    }
    Ok(v1::TimeSeries {
        labels: labels_to_v1(&labels),
        samples: ts
            .samples
            .iter()
            .map(|s| v1::Sample { timestamp_ms: s.timestamp, value: s.value })
            .collect(),
    })
}

impl From<&v1::Sample> for Sample {
    fn from(s: &v1::Sample) -> Self {
        Sample::new(s.timestamp_ms, s.value)
    }
}

impl From<Sample> for v1::Sample {
    fn from(s: Sample) -> Self {
        v1::Sample { timestamp_ms: s.timestamp_ms, value: s.value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl(n: &[u8], v: &[u8]) -> prompb::Label {
        prompb::Label { name: n.to_vec(), value: v.to_vec() }
    }

    #[test]
    fn prompb_labels_are_validated() {
        let ok = labels_from_prompb(&[pl(b"job", b"a"), pl(b"__name__", b"up")]).unwrap();
        assert_eq!(ok.metric_name(), "up");
        let bad = labels_from_prompb(&[pl(b"__name__", b"up"), pl(b"job", &[0xff, 0xfe])]);
        assert_eq!(bad, Err(SeriesError::InvalidUtf8 { which: "value", index: 1 }));
        let dup = labels_from_prompb(&[pl(b"__name__", b"up"), pl(b"a", b"1"), pl(b"a", b"2")]);
        assert!(matches!(dup, Err(SeriesError::Label(LabelError::DuplicateName { .. }))));
    }

    #[test]
    fn histograms_are_refused_with_a_reason() {
        let ts = prompb::TimeSeries {
            labels: vec![pl(b"__name__", b"h")],
            samples: vec![],
            exemplars: vec![],
            histograms: vec![vec![1, 2, 3]],
        };
        assert_eq!(series_from_prompb(&ts), Err(SeriesError::NativeHistogram));
    }
}
