//! Wire series (ours and Prometheus's): label validation and conversion to ours.

use collabstream_common::{LabelError, LabelLimits, Sample, normalize_labels};

use crate::{prompb, v1};

/// Why a wire series was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeriesError {
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error("label {which} {index} is not valid UTF-8")]
    InvalidUtf8 { which: &'static str, index: usize },
    #[error("native histograms are not supported yet; send float samples")]
    NativeHistogram,
}

/// Validates and normalises our own wire series' labels in place (see
/// [`normalize_labels`]).
pub fn normalize_v1(labels: &mut Vec<v1::Label>, limits: &LabelLimits) -> Result<(), SeriesError> {
    Ok(normalize_labels(labels, |l| &l.name, |l| &l.value, limits)?)
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
