//! Wire series (ours and Prometheus's): label validation and conversion to ours.

use collabstream_common::{LabelError, Sample, normalize_labels};

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

/// Validates and normalises our own wire series' labels in place (see
/// [`normalize_labels`]).
pub fn normalize_v1(labels: &mut Vec<v1::Label>) -> Result<(), SeriesError> {
    Ok(normalize_labels(labels, |l| &l.name, |l| &l.value)?)
}

/// Converts a remote-write series into ours, refusing what we cannot store. The label bytes
/// move into the strings (checked as UTF-8, not copied).
pub fn series_from_prompb(ts: prompb::TimeSeries) -> Result<v1::TimeSeries, SeriesError> {
    let mut labels = Vec::with_capacity(ts.labels.len());
    for (index, l) in ts.labels.into_iter().enumerate() {
        let name =
            String::from_utf8(l.name).map_err(|_| SeriesError::InvalidUtf8 { which: "name", index })?;
        let value =
            String::from_utf8(l.value).map_err(|_| SeriesError::InvalidUtf8 { which: "value", index })?;
        labels.push(v1::Label { name, value });
    }
    normalize_v1(&mut labels)?;
    if !ts.histograms.is_empty() {
        return Err(SeriesError::NativeHistogram);
    }
    if ts.samples.is_empty() {
        return Err(SeriesError::NoSamples);
    }
    Ok(v1::TimeSeries {
        labels,
        samples: ts
            .samples
            .iter()
            .map(|s| v1::Sample { timestamp_ms: s.timestamp, value: s.value })
            .collect(),
    })
}

/// Our write as a remote-write request (its events have no remote-write form and are left out).
pub fn to_prompb(req: &v1::WriteRequest) -> prompb::WriteRequest {
    prompb::WriteRequest {
        timeseries: req
            .series
            .iter()
            .map(|s| prompb::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| prompb::Label {
                        name: l.name.clone().into_bytes(),
                        value: l.value.clone().into_bytes(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| prompb::Sample { value: x.value, timestamp: x.timestamp_ms })
                    .collect(),
                exemplars: vec![],
                histograms: vec![],
            })
            .collect(),
        ..Default::default()
    }
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

    fn series(labels: Vec<prompb::Label>) -> prompb::TimeSeries {
        prompb::TimeSeries {
            labels,
            samples: vec![prompb::Sample { value: 1.0, timestamp: 5 }],
            exemplars: vec![],
            histograms: vec![],
        }
    }

    #[test]
    fn prompb_labels_are_validated_and_normalised() {
        let ok = series_from_prompb(series(vec![pl(b"job", b"a"), pl(b"__name__", b"up"), pl(b"e", b"")]))
            .unwrap();
        let names: Vec<&str> = ok.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job"], "sorted, empty value dropped");
        assert_eq!(ok.samples, [v1::Sample { timestamp_ms: 5, value: 1.0 }]);
        let bad = series_from_prompb(series(vec![pl(b"__name__", b"up"), pl(b"job", &[0xff, 0xfe])]));
        assert_eq!(bad, Err(SeriesError::InvalidUtf8 { which: "value", index: 1 }));
        let dup = series_from_prompb(series(vec![pl(b"__name__", b"up"), pl(b"a", b"1"), pl(b"a", b"2")]));
        assert!(matches!(dup, Err(SeriesError::Label(LabelError::DuplicateName { .. }))));
        let unnamed = series_from_prompb(series(vec![pl(b"job", b"a")]));
        assert_eq!(unnamed, Err(SeriesError::Label(LabelError::MissingMetricName)));
    }

    #[test]
    fn histograms_are_refused_with_a_reason() {
        let ts = prompb::TimeSeries {
            labels: vec![pl(b"__name__", b"h")],
            samples: vec![],
            exemplars: vec![],
            histograms: vec![vec![1, 2, 3]],
        };
        assert_eq!(series_from_prompb(ts), Err(SeriesError::NativeHistogram));
    }
}
