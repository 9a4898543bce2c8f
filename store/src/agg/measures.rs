//! [`Measures`]: a window's accumulators, one per measure of its rule, and the
//! [`Observation`]s that feed them.

use crate::agg::acc::{Acc, Needs, Output};
use crate::agg::formula::MeasureId;
use crate::error::{Error, Result};
use crate::varint::{Reader, put_u64};

/// What one event gives one measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Input {
    pub measure: MeasureId,
    /// `None` for an event that is only counted; NaN is counted but not aggregated.
    pub value: Option<f64>,
    /// The hash of the distinct key ([`crate::agg::distinct::hash`]), if the measure counts one.
    pub distinct: Option<u64>,
}

/// One event as a rule's windows see it: its time and what it gives each measure it feeds
/// (the caller applies the measures' filters). An event that feeds no measure still moves
/// the watermark and makes the rule not idle.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub ts: i64,
    pub inputs: Vec<Input>,
}

impl Observation {
    /// An event feeding measure 0 only.
    pub fn single(ts: i64, value: Option<f64>, distinct: Option<u64>) -> Self {
        Self { ts, inputs: vec![Input { measure: 0, value, distinct }] }
    }
}

/// Exactly one accumulator per measure, in a boxed slice: a pane is held per open window key,
/// up to the pane bound, and a `Vec` grown from empty reserves four (384 bytes where a
/// one-measure rule needs 96); the slice also keeps the pane's map slot smaller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measures(Box<[Acc]>);

impl Measures {
    /// Room for `n` measures (a rule's measures only grow while its pane lives: a rule
    /// replaced starts its windows over).
    fn grow_to(&mut self, n: usize) {
        if self.0.len() < n {
            let mut accs = std::mem::take(&mut self.0).into_vec();
            accs.reserve_exact(n - accs.len());
            accs.resize_with(n, Acc::default);
            self.0 = accs.into_boxed_slice();
        }
    }

    pub fn add(&mut self, o: &Observation, needs: &[Needs]) {
        self.grow_to(needs.len());
        for i in &o.inputs {
            if let (Some(acc), Some(n)) =
                (self.0.get_mut(usize::from(i.measure)), needs.get(usize::from(i.measure)))
            {
                acc.add(o.ts, i.value, i.distinct, *n);
            }
        }
    }

    /// Adds `other`, holding events later in the log (see [`Acc::merge`]).
    pub fn merge(&mut self, other: &Measures, needs: &[Needs]) {
        self.grow_to(other.0.len());
        for (i, (mine, theirs)) in self.0.iter_mut().zip(&other.0).enumerate() {
            mine.merge(theirs, needs.get(i).copied().unwrap_or_default());
        }
    }

    /// A measure's output; a measure that saw no event counts 0 and has no value.
    pub fn output(&self, measure: MeasureId, o: Output, length_ms: i64) -> Option<f64> {
        match self.0.get(usize::from(measure)) {
            Some(acc) => acc.output(o, length_ms),
            None => Acc::default().output(o, length_ms),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.0.len() as u64);
        for a in &self.0 {
            a.encode(out);
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "aggregate state" };
        let mut r = Reader::new(bytes);
        let n = r.u64().ok_or_else(corrupt)?;
        let mut accs = Vec::with_capacity(n.min(64) as usize);
        for _ in 0..n {
            accs.push(Acc::decode_from(&mut r)?);
        }
        if !r.is_empty() {
            return Err(corrupt());
        }
        Ok(Self(accs.into_boxed_slice()))
    }
}
