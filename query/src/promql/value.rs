//! What PromQL expressions evaluate to at one step: scalars, strings, instant vectors and range
//! vectors.
//!
//! Every sample and series carries `drop_name`: Prometheus 3.x removes `__name__` only when the
//! whole evaluation is done ("delayed name removal"), so that `label_replace` and `by (__name__)`
//! can still see a name a function is going to drop.

use std::sync::Arc;

use collabstream_common::{Label, Labels, METRIC_NAME};

/// A label set shared between steps; only changed copies allocate.
pub type Metric = Arc<Labels>;

/// A series being assembled step by step: labels, whether the name goes, points.
pub type StepSeries = (Metric, bool, Vec<(i64, f64)>);

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    pub metric: Metric,
    pub value: f64,
    pub drop_name: bool,
}

/// One element of a range vector: a series and its points in the window, oldest first.
#[derive(Debug, Clone)]
pub struct RangeSeries {
    pub metric: Metric,
    pub drop_name: bool,
    pub points: Points,
}

/// The points of a window: a slice of a loaded series (not copied at each step), or points a
/// subquery computed.
#[derive(Debug, Clone)]
pub enum Points {
    Shared { data: Arc<[(i64, f64)]>, range: std::ops::Range<usize> },
    Owned(Vec<(i64, f64)>),
}

impl std::ops::Deref for Points {
    type Target = [(i64, f64)];

    fn deref(&self) -> &[(i64, f64)] {
        match self {
            Points::Shared { data, range } => &data[range.clone()],
            Points::Owned(v) => v,
        }
    }
}

/// The value of an expression at one evaluation time.
#[derive(Debug, Clone)]
pub enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The type name Prometheus uses in messages and in `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// `labels` without `__name__`.
pub fn without_name(labels: &Labels) -> Labels {
    Labels::from_sorted_unchecked(labels.iter().filter(|l| l.name != METRIC_NAME).cloned().collect())
}

/// `labels` with `name` set to `value`, or removed when `value` is empty.
pub fn with_label(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = labels.iter().filter(|l| l.name != name).cloned().collect();
    if !value.is_empty() {
        let at = v.partition_point(|l| l.name.as_str() < name);
        v.insert(at, Label::new(name, value));
    }
    Labels::from_sorted_unchecked(v)
}

/// Only the labels whose names `keep` accepts.
pub fn retain(labels: &Labels, keep: impl Fn(&str) -> bool) -> Labels {
    Labels::from_sorted_unchecked(labels.iter().filter(|l| keep(&l.name)).cloned().collect())
}

/// A 64-bit identity of the labels `keep` accepts, for grouping and vector matching.
pub fn signature(labels: &Labels, keep: impl Fn(&str) -> bool) -> u64 {
    Labels::hash_pairs(labels.iter().filter(|l| keep(&l.name)).map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Prometheus's way of printing a float in labels and messages (Go's `FormatFloat(f, 'f', -1)`).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else {
        format!("{f}")
    }
}
