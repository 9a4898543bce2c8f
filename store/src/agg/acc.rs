//! [`Acc`]: what a window (or a pane of one) has accumulated, and the [`Output`]s made of it.

use crate::agg::ddsketch::DdSketch;
use crate::agg::distinct::Distinct;
use crate::error::{Error, Result};
use crate::varint::{Reader, put_i64, put_u64};

/// One output of a rule, computed from a window's [`Acc`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Output {
    /// Events in the window.
    Count,
    /// Sum of the events' values.
    Sum,
    /// Mean of the events' values.
    Avg,
    Min,
    Max,
    /// The value of the event with the latest event time (the later in the log on a tie).
    Last,
    /// Events per second of the window's length.
    Rate,
    /// Distinct keys: exact up to the rule's threshold, then a HyperLogLog estimate.
    Distinct,
    /// The `q`-quantile of the values, within the sketch's relative accuracy.
    Quantile(f64),
}

impl Output {
    /// The output's name in series names (`<rule>_<name>`); quantiles share one name and are
    /// told apart by their `quantile` label.
    pub fn name(&self) -> &'static str {
        match self {
            Output::Count => "count",
            Output::Sum => "sum",
            Output::Avg => "avg",
            Output::Min => "min",
            Output::Max => "max",
            Output::Last => "last",
            Output::Rate => "rate",
            Output::Distinct => "distinct",
            Output::Quantile(_) => "quantile",
        }
    }
}

/// What accumulators an [`Acc`] keeps: only what the rule's outputs need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    pub distinct: bool,
    pub quantiles: bool,
    /// Exact distinct keys kept before they become registers.
    pub distinct_threshold: usize,
}

impl Needs {
    pub fn of(outputs: &[Output], distinct_threshold: usize) -> Self {
        Needs {
            distinct: outputs.contains(&Output::Distinct),
            quantiles: outputs.iter().any(|o| matches!(o, Output::Quantile(_))),
            distinct_threshold,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acc {
    count: u64,
    values: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Event time and value of the latest value.
    last: Option<(i64, f64)>,
    distinct: Option<Distinct>,
    /// Boxed: most accumulators have none, and a pane holds one per measure (unboxed, every
    /// accumulator was 176 bytes instead of 96).
    sketch: Option<Box<DdSketch>>,
}

impl Acc {
    /// Adds one event at `ts`: its value (`None` for an event that is only counted; NaN is
    /// counted but not aggregated) and the hash of its distinct key
    /// ([`crate::agg::distinct::hash`]).
    pub fn add(&mut self, ts: i64, value: Option<f64>, distinct: Option<u64>, needs: Needs) {
        self.count += 1;
        if let Some(v) = value.filter(|v| !v.is_nan()) {
            if self.values == 0 {
                (self.min, self.max) = (v, v);
            } else {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
            }
            self.values += 1;
            self.sum += v;
            if self.last.is_none_or(|(t, _)| ts >= t) {
                self.last = Some((ts, v));
            }
            if needs.quantiles {
                self.sketch.get_or_insert_default().add(v);
            }
        }
        if needs.distinct
            && let Some(h) = distinct
        {
            self.distinct.get_or_insert_default().add(h, needs.distinct_threshold);
        }
    }

    /// Adds `other`, which holds events later in the log than this one's (panes are merged in
    /// ascending order, so a tie on `last` goes to the later pane).
    pub fn merge(&mut self, other: &Acc, needs: Needs) {
        if other.values > 0 {
            if self.values == 0 {
                (self.min, self.max) = (other.min, other.max);
            } else {
                self.min = self.min.min(other.min);
                self.max = self.max.max(other.max);
            }
        }
        self.count += other.count;
        self.values += other.values;
        self.sum += other.sum;
        if let Some((t, v)) = other.last
            && self.last.is_none_or(|(mine, _)| t >= mine)
        {
            self.last = Some((t, v));
        }
        if let Some(d) = &other.distinct {
            self.distinct.get_or_insert_default().merge(d, needs.distinct_threshold);
        }
        if let Some(s) = &other.sketch {
            self.sketch.get_or_insert_default().merge(s);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The output's value for a window `length_ms` long; `None` where it has none (the mean
    /// of no values).
    pub fn output(&self, o: Output, length_ms: i64) -> Option<f64> {
        let some_values = self.values > 0;
        match o {
            Output::Count => Some(self.count as f64),
            Output::Sum => Some(self.sum),
            Output::Avg => some_values.then(|| self.sum / self.values as f64),
            Output::Min => some_values.then_some(self.min),
            Output::Max => some_values.then_some(self.max),
            Output::Last => self.last.map(|l| l.1),
            Output::Rate => Some(self.count as f64 * 1000.0 / length_ms.max(1) as f64),
            Output::Distinct => Some(self.distinct.as_ref().map_or(0.0, Distinct::count)),
            Output::Quantile(q) => self.sketch.as_ref().and_then(|s| s.quantile(q)),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.count);
        put_u64(out, self.values);
        if self.values > 0 {
            for v in [self.sum, self.min, self.max] {
                out.extend_from_slice(&v.to_bits().to_be_bytes());
            }
        }
        match self.last {
            Some((t, v)) => {
                put_u64(out, 1);
                put_i64(out, t);
                out.extend_from_slice(&v.to_bits().to_be_bytes());
            }
            None => put_u64(out, 0),
        }
        match &self.distinct {
            Some(d) => {
                put_u64(out, 1);
                d.encode(out);
            }
            None => put_u64(out, 0),
        }
        match &self.sketch {
            Some(s) => {
                put_u64(out, 1);
                s.encode(out);
            }
            None => put_u64(out, 0),
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "aggregate state" };
        let f = |r: &mut Reader<'_>| r.fixed_u64().map(f64::from_bits).ok_or_else(corrupt);
        let mut a = Acc {
            count: r.u64().ok_or_else(corrupt)?,
            values: r.u64().ok_or_else(corrupt)?,
            ..Acc::default()
        };
        if a.values > 0 {
            (a.sum, a.min, a.max) = (f(r)?, f(r)?, f(r)?);
        }
        if r.u64().ok_or_else(corrupt)? == 1 {
            a.last = Some((r.i64().ok_or_else(corrupt)?, f(r)?));
        }
        if r.u64().ok_or_else(corrupt)? == 1 {
            a.distinct = Some(Distinct::decode_from(r)?);
        }
        if r.u64().ok_or_else(corrupt)? == 1 {
            a.sketch = Some(Box::new(DdSketch::decode_from(r)?));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agg::distinct::hash;

    fn add(a: &mut Acc, ts: i64, value: Option<f64>, user: &str, needs: Needs) {
        a.add(ts, value, Some(hash(user.as_bytes())), needs);
    }

    #[test]
    fn outputs_of_a_window() {
        let needs = Needs { distinct: true, quantiles: true, distinct_threshold: 10 };
        let mut a = Acc::default();
        for (ts, v, user) in
            [(5, Some(3.0), "u1"), (9, Some(1.0), "u2"), (7, None, "u1"), (9, Some(f64::NAN), "u3")]
        {
            add(&mut a, ts, v, user, needs);
        }
        let out = |o| a.output(o, 30_000);
        assert_eq!(out(Output::Count), Some(4.0));
        assert_eq!(out(Output::Sum), Some(4.0));
        assert_eq!(out(Output::Avg), Some(2.0));
        assert_eq!((out(Output::Min), out(Output::Max)), (Some(1.0), Some(3.0)));
        assert_eq!(out(Output::Last), Some(1.0));
        assert_eq!(out(Output::Rate), Some(4.0 / 30.0));
        assert_eq!(out(Output::Distinct), Some(3.0));
        assert_eq!(out(Output::Quantile(1.0)), Some(3.0));
        assert_eq!(Acc::default().output(Output::Avg, 1), None);
        let mut bytes = Vec::new();
        a.encode(&mut bytes);
        assert_eq!(Acc::decode_from(&mut Reader::new(&bytes)).unwrap(), a);
        assert!(Acc::decode_from(&mut Reader::new(&bytes[..bytes.len() - 1])).is_err());
    }

    #[test]
    fn a_tie_on_last_goes_to_the_later_event() {
        let needs = Needs::default();
        let (mut a, mut b) = (Acc::default(), Acc::default());
        add(&mut a, 10, Some(1.0), "", needs);
        add(&mut a, 10, Some(2.0), "", needs);
        assert_eq!(a.output(Output::Last, 1), Some(2.0));
        add(&mut b, 10, Some(3.0), "", needs);
        a.merge(&b, needs);
        assert_eq!(a.output(Output::Last, 1), Some(3.0));
    }

    #[test]
    fn an_accumulator_stays_small() {
        // A pane holds one per measure of its rule; a million open panes hold millions.
        // 176 bytes with the sketch unboxed (its two maps and four counters inline).
        assert_eq!(std::mem::size_of::<Option<DdSketch>>(), 88);
        assert!(std::mem::size_of::<Acc>() <= 96, "{}", std::mem::size_of::<Acc>());
    }
}
