//! [`SampleRule`]: streaming aggregation of incoming samples, as VictoriaMetrics' users know it
//! (a series selector, an interval, `by` or `without` labels, outputs such as `increase`,
//! `count_series` or quantiles), but in event time and exactly once: a rule over samples, as
//! data, and [`SeriesLast`], the one sample per input series it remembers.
//!
//! Each sample becomes an observation of two measures: the sample itself (measure 0: its value,
//! and its series as the distinct key) and the counter increase since the series' previous
//! sample (measure 1; a drop is a counter reset, which counts the new value whole; a series'
//! first sample counts 0). A rule takes a series' samples in time order: one at or before the
//! last it took from that series (a resent or out-of-order sample) is ignored and counted, so
//! a resent remote-write request never counts twice.

use std::collections::{BTreeMap, BTreeSet};

use crate::agg::distinct::hash;
use crate::agg::event_rule::OutputSeries;
use crate::agg::measures::{Input, Observation};
use crate::agg::rule::WindowRule;
use crate::error::{Error, Result};
use crate::matcher::Matcher;
use crate::varint::{Reader, put_u64};

/// The measure of the samples' values (and their series, as distinct keys).
pub const SAMPLES: u16 = 0;
/// The measure of the counter increases.
pub const INCREASES: u16 = 1;

/// How a sample rule groups series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    /// By these labels (none: one group).
    By(Vec<String>),
    /// By every label but these and the metric name, sorted.
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct SampleRule {
    pub name: String,
    /// The series selector: every matcher must hold.
    pub matchers: Vec<Matcher>,
    pub grouping: Grouping,
    /// Whether matching samples are stored besides being aggregated.
    pub keep_input: bool,
    pub window: WindowRule,
    /// One per formula of `window.outputs`, in order.
    pub series: Vec<OutputSeries>,
}

impl SampleRule {
    /// Whether a series with these labels (sorted by name) is an input of this rule.
    pub fn matches(&self, labels: &[(&str, &str)]) -> bool {
        self.matchers.iter().all(|m| {
            let v = labels.iter().find(|(n, _)| *n == m.name).map_or("", |(_, v)| *v);
            m.matches(v)
        })
    }

    /// The key of the group a series with these labels (sorted by name) falls in: name and
    /// value pairs, length-prefixed. A `by` label the series lacks is an empty value.
    pub fn group(&self, labels: &[(&str, &str)]) -> Vec<u8> {
        let mut key = Vec::new();
        let mut put = |n: &str, v: &str| {
            for s in [n, v] {
                put_u64(&mut key, s.len() as u64);
                key.extend_from_slice(s.as_bytes());
            }
        };
        match &self.grouping {
            Grouping::By(by) => {
                for name in by {
                    put(name, labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| *v));
                }
            }
            Grouping::Without(without) => {
                for (n, v) in labels {
                    if *n != collabstream_common::METRIC_NAME
                        && without.binary_search_by(|w| w.as_str().cmp(n)).is_err()
                    {
                        put(n, v);
                    }
                }
            }
        }
        key
    }

    /// The group's labels, from its key; empty values are left out (no label, as in
    /// Prometheus).
    pub fn group_labels(group: &[u8]) -> Option<Vec<(String, String)>> {
        let mut r = Reader::new(group);
        let mut labels = Vec::new();
        while !r.is_empty() {
            let mut next = || -> Option<String> {
                let len = usize::try_from(r.u64()?).ok()?;
                std::str::from_utf8(r.bytes(len)?).ok().map(str::to_string)
            };
            let (n, v) = (next()?, next()?);
            if !v.is_empty() {
                labels.push((n, v));
            }
        }
        Some(labels)
    }
}

/// The series' key in [`SeriesLast`]: a stable hash of its labels (sorted by name).
pub fn series_key(labels: &[(&str, &str)]) -> u64 {
    let mut bytes = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
    for (n, v) in labels {
        bytes.extend_from_slice(n.as_bytes());
        bytes.push(0xff);
        bytes.extend_from_slice(v.as_bytes());
        bytes.push(0xfe);
    }
    hash(&bytes)
}

/// The last sample a rule took from each of its input series, and what changed since the
/// last checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesLast {
    last: BTreeMap<u64, (i64, f64)>,
    dirty: BTreeSet<u64>,
    /// Samples ignored as at or before their series' last (process-local, for `/metrics`).
    pub ignored: u64,
}

impl SeriesLast {
    /// Sample `(ts, value)` of series `key` as an observation of the rule's two measures, or
    /// `None` if it is not after the series' last.
    pub fn observe(&mut self, key: u64, ts: i64, value: f64) -> Option<Observation> {
        let prev = self.last.get(&key).copied();
        if prev.is_some_and(|(t, _)| ts <= t) {
            self.ignored += 1;
            return None;
        }
        let increase = match prev {
            // NaN (a stale marker) carries no counter value: the next sample starts afresh.
            Some((_, p)) if !p.is_nan() && !value.is_nan() => {
                if value >= p {
                    value - p
                } else {
                    value
                }
            }
            _ => 0.0,
        };
        self.last.insert(key, (ts, value));
        self.dirty.insert(key);
        Some(Observation {
            ts,
            inputs: vec![
                Input { measure: SAMPLES, value: Some(value), distinct: Some(key) },
                Input { measure: INCREASES, value: Some(increase), distinct: None },
            ],
        })
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// The rows changed since the last call: series key (8 bytes, big-endian) → timestamp and
    /// value bits (16 bytes, little-endian).
    pub fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let row = self.last.get(&k).map(|(t, v)| {
                    let mut row = Vec::with_capacity(16);
                    row.extend_from_slice(&t.to_le_bytes());
                    row.extend_from_slice(&v.to_bits().to_le_bytes());
                    row
                });
                (k.to_be_bytes().to_vec(), row)
            })
            .collect()
    }

    /// The state as [`take_changes`](Self::take_changes) wrote it.
    pub fn restore<'a>(rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "a sample rule's series row" };
        let mut s = SeriesLast::default();
        for (k, v) in rows {
            let k: [u8; 8] = k.try_into().map_err(|_| corrupt())?;
            let (t, bits) = v.split_at_checked(8).ok_or_else(corrupt)?;
            let t = i64::from_le_bytes(t.try_into().map_err(|_| corrupt())?);
            let bits = u64::from_le_bytes(bits.try_into().map_err(|_| corrupt())?);
            s.last.insert(u64::from_be_bytes(k), (t, f64::from_bits(bits)));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::window::WindowKind;
    use crate::matcher::MatchOp;

    fn rule(grouping: Grouping) -> SampleRule {
        SampleRule {
            name: "r".into(),
            matchers: vec![
                Matcher::equal("__name__", "http_requests_total"),
                Matcher::new(MatchOp::NotEqual, "job", "batch").unwrap(),
            ],
            grouping,
            keep_input: true,
            window: WindowRule {
                window: WindowKind::Tumbling { size_ms: 60_000 },
                outputs: vec![],
                max_out_of_orderness_ms: 0,
                allowed_lateness_ms: 0,
                idle_timeout_ms: 30_000,
                distinct_threshold: 10,
            },
            series: vec![],
        }
    }

    const LABELS: [(&str, &str); 4] =
        [("__name__", "http_requests_total"), ("instance", "a:1"), ("job", "api"), ("status", "200")];

    #[test]
    fn series_are_selected_and_grouped_by_or_without_labels() {
        let r = rule(Grouping::By(vec!["job".into(), "zone".into()]));
        assert!(r.matches(&LABELS));
        assert!(!r.matches(&[("__name__", "http_requests_total"), ("job", "batch")]));
        let by = r.group(&LABELS);
        assert_eq!(SampleRule::group_labels(&by).unwrap(), [("job".to_string(), "api".to_string())]);
        let without = rule(Grouping::Without(vec!["instance".into()])).group(&LABELS);
        assert_eq!(
            SampleRule::group_labels(&without).unwrap(),
            [("job".to_string(), "api".to_string()), ("status".to_string(), "200".to_string())]
        );
        assert!(rule(Grouping::By(vec![])).group(&LABELS).is_empty(), "one group");
    }

    #[test]
    fn increases_handle_resets_and_resent_samples_are_ignored() {
        let mut s = SeriesLast::default();
        let key = series_key(&LABELS);
        let increase = |o: Option<Observation>| o.map(|o| o.inputs[1].value.unwrap());
        assert_eq!(increase(s.observe(key, 1_000, 10.0)), Some(0.0), "the first sample");
        assert_eq!(increase(s.observe(key, 2_000, 15.0)), Some(5.0));
        assert_eq!(increase(s.observe(key, 2_000, 15.0)), None, "resent");
        assert_eq!(increase(s.observe(key, 1_500, 12.0)), None, "out of order");
        assert_eq!(increase(s.observe(key, 3_000, 4.0)), Some(4.0), "a reset counts the new value");
        assert_eq!(s.ignored, 2);
        let rows = s.take_changes();
        assert_eq!(rows.len(), 1);
        let back =
            SeriesLast::restore(rows.iter().map(|(k, v)| (k.as_slice(), v.as_deref().unwrap()))).unwrap();
        assert_eq!(back.last, s.last);
        assert!(s.take_changes().is_empty(), "nothing changed since");
    }
}
