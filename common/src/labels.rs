//! The Prometheus label set: a metric name plus name/value pairs, kept sorted by name.

use std::fmt;

use crate::LabelLimits;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into() }
    }
}

/// Why a label set was refused. Messages name the offending label so the sender can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("empty label name (value {value:?})")]
    EmptyName { value: String },
    #[error("duplicate label name {name:?}")]
    DuplicateName { name: String },
    #[error("missing metric name: every series needs a non-empty __name__ label")]
    MissingMetricName,
    #[error("{count} labels, over the limit of {limit} (ingest.max_labels_per_series)")]
    TooMany { count: usize, limit: usize },
    #[error("label name {prefix:?} is {len} bytes, over the limit of {limit} (ingest.max_label_name_bytes)")]
    NameTooLong { prefix: String, len: usize, limit: usize },
    #[error(
        "the value of label {name:?} is {len} bytes, over the limit of {limit} (ingest.max_label_value_bytes)"
    )]
    ValueTooLong { name: String, len: usize, limit: usize },
}

/// Validates and normalises a list of labels of any representation in place, with the rules
/// of a [`Labels`] set: no empty names, empty values dropped, sorted by name, no duplicate
/// names, a metric name present, within `limits`. Ingest checks wire labels with it without
/// copying them.
pub fn normalize_labels<L>(
    labels: &mut Vec<L>,
    name: impl Fn(&L) -> &str,
    value: impl Fn(&L) -> &str,
    limits: &LabelLimits,
) -> Result<(), LabelError> {
    if let Some(l) = labels.iter().find(|l| name(l).is_empty()) {
        return Err(LabelError::EmptyName { value: value(l).to_string() });
    }
    labels.retain(|l| !value(l).is_empty());
    // Senders mostly send sorted labels already (Prometheus always does).
    if !labels.is_sorted_by(|a, b| name(a) <= name(b)) {
        labels.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    }
    if let Some(w) = labels.windows(2).find(|w| name(&w[0]) == name(&w[1])) {
        return Err(LabelError::DuplicateName { name: name(&w[0]).to_string() });
    }
    if !labels.iter().any(|l| name(l) == METRIC_NAME) {
        return Err(LabelError::MissingMetricName);
    }
    limits.check(labels.len(), labels.iter().map(|l| (name(l), value(l))))
}

/// A validated label set, sorted by name, with no empty names, no duplicates, no empty values
/// (Prometheus treats an empty value as an absent label) and a metric name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Validates and normalises `labels`. Label names and values may be any UTF-8
    /// (Prometheus 3.x); the caller has already checked the bytes are UTF-8.
    pub fn new(mut labels: Vec<Label>) -> Result<Self, LabelError> {
        normalize_labels(&mut labels, |l| &l.name, |l| &l.value, &LabelLimits::NONE)?;
        Ok(Self(labels))
    }

    /// Builds a label set from pairs that are known to be valid. Sorts them; used by tests,
    /// benchmarks and decoders of data that was validated when it was written.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Self(labels)
    }

    /// Convenience for tests and generators: `Labels::from_pairs(&[("__name__","up")])`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, LabelError> {
        Self::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME).unwrap_or("")
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.binary_search_by(|l| l.name.as_str().cmp(name)).ok().map(|i| self.0[i].value.as_str())
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A fast, process-local hash of sorted label pairs (FxHash over names and values with
    /// separators), without building a `Labels`: query evaluation groups and matches series by
    /// the hash of some of their labels. Not stable across versions: never persist it.
    pub fn hash_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (N, V)>) -> u64 {
        let mut h = FxHasher64::default();
        for (name, value) in pairs {
            h.write(name.as_ref());
            h.write_u8(0xff);
            h.write(value.as_ref());
            h.write_u8(0xfe);
        }
        h.0
    }
}

impl fmt::Display for Labels {
    /// Prometheus notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.metric_name())?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The Fx hash from rustc: a multiply-rotate over 8-byte words. Fast for short strings, which is
/// what label sets are made of.
#[derive(Default)]
struct FxHasher64(u64);

impl FxHasher64 {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("chunks_exact yields 8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.add(b as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_drops_empty_values() {
        let l = Labels::from_pairs(&[("job", "x"), ("__name__", "up"), ("empty", "")]).unwrap();
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(l.metric_name(), "up");
        assert_eq!(l.to_string(), "up{job=\"x\"}");
    }

    #[test]
    fn refuses_bad_sets() {
        assert_eq!(
            Labels::from_pairs(&[("__name__", "up"), ("", "v")]),
            Err(LabelError::EmptyName { value: "v".into() })
        );
        assert_eq!(
            Labels::from_pairs(&[("__name__", "up"), ("a", "1"), ("a", "2")]),
            Err(LabelError::DuplicateName { name: "a".into() })
        );
        assert_eq!(Labels::from_pairs(&[("a", "1")]), Err(LabelError::MissingMetricName));
        assert_eq!(Labels::from_pairs(&[("__name__", ""), ("a", "1")]), Err(LabelError::MissingMetricName));
    }

    #[test]
    fn any_utf8_name_is_allowed() {
        let l = Labels::from_pairs(&[("__name__", "http.requests ✓"), ("zone-name", "eu")]);
        assert!(l.is_ok());
    }

    #[test]
    fn hash_separates_name_and_value_boundaries() {
        let a = Labels::from_pairs(&[("__name__", "m"), ("ab", "c")]).unwrap();
        let b = Labels::from_pairs(&[("__name__", "m"), ("a", "bc")]).unwrap();
        let hash = |l: &Labels| Labels::hash_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a), hash(&a.clone()));
    }
}
