//! [`Distinct`]: a distinct count, exact up to a threshold and a HyperLogLog beyond it.
//!
//! Values are counted by their 64-bit xxh3 hash (`xxhash-rust`, a fixed function: the same on
//! every build and replica). Up to the threshold the sorted hashes themselves are kept and the
//! count is exact (up to hash collisions, about one in 2^40 at 1,000 values); beyond it they
//! become HyperLogLog registers (Flajolet et al. 2007, with the small-range correction of
//! Heule et al. 2013), with a standard error of 1.04/√m = 1.6% for m = 2^12 registers.
//!
//! Our own rather than a crate's: the ones read (see docs/notes/stream-aggregation-research.md)
//! seed their hash at random, serialise a hash set in its random order, or write pointers into
//! their encoding; replicas must hold the same bytes.

use crate::error::{Error, Result};
use crate::varint::{Reader, put_u64};

/// log2 of the number of registers.
const P: u32 = 12;
const REGISTERS: usize = 1 << P;

/// The standard error of an estimate past the exact threshold.
pub const STANDARD_ERROR: f64 = 1.04 / 64.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Distinct {
    /// Sorted, unique hashes.
    Exact(Vec<u64>),
    /// The highest rank seen per register.
    Registers(Box<[u8]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

/// The hash a value is counted by.
pub fn hash(value: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(value)
}

impl Distinct {
    /// Adds a hash; past `threshold` distinct hashes the exact set becomes registers.
    pub fn add(&mut self, h: u64, threshold: usize) {
        match self {
            Distinct::Exact(set) => {
                if let Err(i) = set.binary_search(&h) {
                    set.insert(i, h);
                    if set.len() > threshold {
                        *self = Distinct::Registers(registers(set));
                    }
                }
            }
            Distinct::Registers(r) => observe(r, h),
        }
    }

    pub fn merge(&mut self, other: &Distinct, threshold: usize) {
        match (&mut *self, other) {
            (_, Distinct::Exact(theirs)) => {
                for h in theirs {
                    self.add(*h, threshold);
                }
            }
            (Distinct::Exact(mine), Distinct::Registers(theirs)) => {
                let mut r = theirs.clone();
                for h in mine.iter() {
                    observe(&mut r, *h);
                }
                *self = Distinct::Registers(r);
            }
            (Distinct::Registers(mine), Distinct::Registers(theirs)) => {
                for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                    *m = (*m).max(*t);
                }
            }
        }
    }

    /// The distinct count: exact below the threshold, else an estimate rounded to an integer.
    pub fn count(&self) -> f64 {
        match self {
            Distinct::Exact(set) => set.len() as f64,
            Distinct::Registers(r) => estimate(r),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Distinct::Exact(set) => {
                put_u64(out, 0);
                put_u64(out, set.len() as u64);
                for h in set {
                    out.extend_from_slice(&h.to_be_bytes());
                }
            }
            Distinct::Registers(r) => {
                put_u64(out, 1);
                out.extend_from_slice(r);
            }
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let corrupt = || Error::Corrupt { what: "distinct count" };
        match r.u64().ok_or_else(corrupt)? {
            0 => {
                let len = r.u64().ok_or_else(corrupt)?;
                let mut set = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    set.push(r.fixed_u64().ok_or_else(corrupt)?);
                }
                if !set.windows(2).all(|w| w[0] < w[1]) {
                    return Err(corrupt());
                }
                Ok(Distinct::Exact(set))
            }
            1 => Ok(Distinct::Registers(r.bytes(REGISTERS).ok_or_else(corrupt)?.into())),
            _ => Err(corrupt()),
        }
    }
}

fn registers(set: &[u64]) -> Box<[u8]> {
    let mut r = vec![0u8; REGISTERS].into_boxed_slice();
    for h in set {
        observe(&mut r, *h);
    }
    r
}

/// The register is the hash's top `P` bits; the rank is one more than the number of leading
/// zeros of the rest.
fn observe(r: &mut [u8], h: u64) {
    let index = (h >> (64 - P)) as usize;
    let rest = h << P;
    let rank = (rest.leading_zeros().min(64 - P) + 1) as u8;
    r[index] = r[index].max(rank);
}

fn estimate(r: &[u8]) -> f64 {
    let m = REGISTERS as f64;
    // Each term is a power of two, so the sum is exact and the same everywhere.
    let sum: f64 = r.iter().map(|&x| libm::ldexp(1.0, -i32::from(x))).sum();
    let zeros = r.iter().filter(|&&x| x == 0).count();
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    let e = if raw <= 2.5 * m && zeros > 0 {
        // Linear counting where HyperLogLog is biased (few values per register).
        m * libm::log(m / zeros as f64)
    } else {
        raw
    };
    libm::round(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_up_to_the_threshold_then_within_the_error() {
        let mut d = Distinct::default();
        for i in 0..1_000u64 {
            d.add(hash(&i.to_le_bytes()), 1_000);
            d.add(hash(&i.to_le_bytes()), 1_000);
        }
        assert!(matches!(d, Distinct::Exact(_)));
        assert_eq!(d.count(), 1_000.0);
        for n in [1_001u64, 5_000, 50_000, 500_000] {
            let mut d = Distinct::default();
            for i in 0..n {
                d.add(hash(format!("user-{i}").as_bytes()), 1_000);
            }
            let err = (d.count() - n as f64).abs() / n as f64;
            assert!(err < 4.0 * STANDARD_ERROR, "{n}: {} ({err:.4})", d.count());
        }
    }

    #[test]
    fn merges_agree_with_adding_everything_to_one() {
        let threshold = 100;
        for (na, nb) in [(10u64, 20u64), (10, 500), (500, 10), (400, 700)] {
            let (mut a, mut b, mut whole) = (Distinct::default(), Distinct::default(), Distinct::default());
            for i in 0..na {
                a.add(hash(&i.to_le_bytes()), threshold);
                whole.add(hash(&i.to_le_bytes()), threshold);
            }
            for i in 300..300 + nb {
                b.add(hash(&i.to_le_bytes()), threshold);
                whole.add(hash(&i.to_le_bytes()), threshold);
            }
            a.merge(&b, threshold);
            assert_eq!(a, whole, "{na} + {nb}");
            let mut bytes = Vec::new();
            a.encode(&mut bytes);
            assert_eq!(Distinct::decode_from(&mut Reader::new(&bytes)).unwrap(), a);
            assert!(Distinct::decode_from(&mut Reader::new(&bytes[..bytes.len() - 1])).is_err());
        }
    }
}
