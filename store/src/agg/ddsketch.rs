//! [`DdSketch`]: quantiles within a relative error, mergeable, the same bytes on every replica.
//!
//! DDSketch (Masson, Rim and Lee, VLDB 2019): a value `v > 0` goes to bucket
//! `ceil(log_γ v)` with `γ = (1 + α) / (1 − α)`, and any quantile is answered within a relative
//! error `α` of a value of the input. Our own rather than `sketches-ddsketch`: that crate takes
//! the bucket's logarithm from the platform's `ln`, which may differ in the last bit between
//! builds and so put one value in different buckets on two replicas (see
//! docs/notes/stream-aggregation-research.md). Here every logarithm and power is `libm`'s, and
//! the buckets are a sorted map, so state and encoding depend only on the values added, in
//! any order.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::varint::{Reader, put_i64, put_u64};

/// The relative accuracy of every quantile: 1%.
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// At most this many buckets per sign; beyond it the lowest ones are merged (their quantiles
/// lose accuracy first, as in the paper's collapsing variant). With α = 1% this covers values
/// over 35 orders of magnitude before any collapse.
const MAX_BUCKETS: usize = 4096;

/// Magnitudes below this count as zero (no bucket can hold them within α).
const MIN_MAGNITUDE: f64 = 1e-9;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

fn bucket(magnitude: f64) -> i32 {
    libm::ceil(libm::log(magnitude) / libm::log(gamma())) as i32
}

/// The value a bucket stands for: the middle of its range in relative terms.
fn bucket_value(index: i32) -> f64 {
    let g = gamma();
    2.0 * libm::pow(g, f64::from(index)) / (g + 1.0)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DdSketch {
    positive: BTreeMap<i32, u64>,
    negative: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl DdSketch {
    /// Adds a finite value; NaN and infinities are ignored (the caller counts them apart).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if v.abs() < MIN_MAGNITUDE {
            self.zero += 1;
        } else {
            let map = if v > 0.0 { &mut self.positive } else { &mut self.negative };
            *map.entry(bucket(v.abs())).or_default() += 1;
            collapse(map);
        }
        if self.count == 0 {
            (self.min, self.max) = (v, v);
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
    }

    pub fn merge(&mut self, other: &DdSketch) {
        if other.count == 0 {
            return;
        }
        for (mine, theirs) in [(&mut self.positive, &other.positive), (&mut self.negative, &other.negative)] {
            for (i, n) in theirs {
                *mine.entry(*i).or_default() += n;
            }
            collapse(mine);
        }
        self.zero += other.zero;
        if self.count == 0 {
            (self.min, self.max) = (other.min, other.max);
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) within [`RELATIVE_ACCURACY`] of a value of rank
    /// `q·(count − 1)`, clamped to the exact minimum and maximum; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64) as u64;
        // The extremes are kept exactly.
        if rank == 0 {
            return Some(self.min);
        }
        if rank == self.count - 1 {
            return Some(self.max);
        }
        let mut seen = 0u64;
        // Ascending values: the most negative first (largest magnitude), then zero, then positive.
        for (i, n) in self.negative.iter().rev() {
            seen += n;
            if seen > rank {
                return Some((-bucket_value(*i)).clamp(self.min, self.max));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0_f64.clamp(self.min, self.max));
        }
        for (i, n) in &self.positive {
            seen += n;
            if seen > rank {
                return Some(bucket_value(*i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.count);
        if self.count == 0 {
            return;
        }
        put_u64(out, self.zero);
        out.extend_from_slice(&self.min.to_bits().to_be_bytes());
        out.extend_from_slice(&self.max.to_bits().to_be_bytes());
        for map in [&self.positive, &self.negative] {
            put_u64(out, map.len() as u64);
            for (i, n) in map {
                put_i64(out, i64::from(*i));
                put_u64(out, *n);
            }
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "quantile sketch" };
        let count = r.u64().ok_or_else(corrupt)?;
        if count == 0 {
            return Ok(Self::default());
        }
        let zero = r.u64().ok_or_else(corrupt)?;
        let min = f64::from_bits(r.fixed_u64().ok_or_else(corrupt)?);
        let max = f64::from_bits(r.fixed_u64().ok_or_else(corrupt)?);
        let mut maps = [BTreeMap::new(), BTreeMap::new()];
        for map in &mut maps {
            let len = r.u64().ok_or_else(corrupt)?;
            for _ in 0..len.min(MAX_BUCKETS as u64 + 1) {
                let i = i32::try_from(r.i64().ok_or_else(corrupt)?).map_err(|_| corrupt())?;
                map.insert(i, r.u64().ok_or_else(corrupt)?);
            }
        }
        let [positive, negative] = maps;
        let total = zero + positive.values().sum::<u64>() + negative.values().sum::<u64>();
        if total != count {
            return Err(corrupt());
        }
        Ok(Self { positive, negative, zero, count, min, max })
    }
}

/// Merges the lowest-magnitude buckets into one while there are too many.
fn collapse(map: &mut BTreeMap<i32, u64>) {
    while map.len() > MAX_BUCKETS {
        let Some((_, n)) = map.pop_first() else { return };
        if let Some(mut next) = map.first_entry() {
            *next.get_mut() += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        values[(q * (values.len() - 1) as f64) as usize]
    }

    #[test]
    fn quantiles_are_within_the_relative_accuracy() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for scale in [1e-3, 1.0, 250.0, 1e9] {
            let mut values: Vec<f64> =
                (0..5_000).map(|_| (next() % 1_000_000) as f64 / 1e6 * scale - scale / 10.0).collect();
            let mut s = DdSketch::default();
            values.iter().for_each(|v| s.add(*v));
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let (want, got) = (exact(&mut values, q), s.quantile(q).unwrap());
                let tolerance = RELATIVE_ACCURACY * want.abs() + MIN_MAGNITUDE;
                assert!((got - want).abs() <= tolerance * 1.000_001, "scale {scale} q {q}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn merging_in_any_order_gives_the_same_bytes() {
        let values: Vec<f64> = (0..3_000).map(|i| ((i * 7919) % 1000) as f64 - 100.5).collect();
        let (mut a, mut b, mut whole) = (DdSketch::default(), DdSketch::default(), DdSketch::default());
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.add(*v);
            whole.add(*v);
        }
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(&b);
        ba.merge(&a);
        let bytes = |s: &DdSketch| {
            let mut out = Vec::new();
            s.encode(&mut out);
            out
        };
        assert_eq!(bytes(&ab), bytes(&whole));
        assert_eq!(bytes(&ba), bytes(&whole));
        let back = DdSketch::decode_from(&mut Reader::new(&bytes(&whole))).unwrap();
        assert_eq!(back, whole);
        assert_eq!(DdSketch::decode_from(&mut Reader::new(&bytes(&DdSketch::default()))).unwrap().count(), 0);
        assert!(DdSketch::decode_from(&mut Reader::new(&bytes(&whole)[..10])).is_err());
    }

    #[test]
    fn non_finite_values_are_ignored_and_too_many_buckets_collapse() {
        let mut s = DdSketch::default();
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            s.add(v);
        }
        assert_eq!(s.quantile(0.5), None);
        // Values over 100 orders of magnitude need more buckets than are kept; the lowest
        // collapse, and the high quantiles keep their accuracy.
        let mut values = Vec::new();
        for e in -50..50 {
            for k in 1..100 {
                values.push(f64::from(k) * libm::pow(10.0, f64::from(e)));
            }
        }
        values.iter().for_each(|v| s.add(*v));
        assert!(s.positive.len() <= MAX_BUCKETS);
        let (want, got) = (exact(&mut values, 0.99), s.quantile(0.99).unwrap());
        assert!((got / want - 1.0).abs() <= RELATIVE_ACCURACY, "{got} vs {want}");
    }
}
