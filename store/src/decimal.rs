//! Floats as decimals: `v = m · 10^exp` with an integer mantissa, when that is exact. Most
//! metrics are (counters, gauges with a few fraction digits), and their mantissas' deltas are
//! small integers where the IEEE bit patterns' XORs are not.

pub(crate) const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];
/// Integers up to 2^53 convert to f64 exactly.
const MAX_EXACT: i64 = 1 << 53;
const MAX_FRACTION_DIGITS: usize = 15;

pub(crate) fn from_decimal(m: i64, exp: i32) -> f64 {
    if exp >= 0 { m as f64 * POW10[exp as usize] } else { m as f64 / POW10[(-exp) as usize] }
}

/// `v` as `m · 10^-k` with the fewest fraction digits `k` that decode back to the same bits.
fn decimal_of(v: f64) -> Option<(i64, usize)> {
    if !v.is_finite() {
        return None;
    }
    for (k, scale) in POW10.iter().enumerate().take(MAX_FRACTION_DIGITS + 1) {
        let scaled = (v * scale).round();
        if scaled.abs() >= MAX_EXACT as f64 {
            return None;
        }
        let m = scaled as i64;
        if from_decimal(m, -(k as i32)).to_bits() == v.to_bits() {
            return Some((m, k));
        }
    }
    None
}

/// The chunk's values as integers with one shared exponent, if every value allows it.
pub(crate) fn to_decimals(samples: &[(i64, f64)]) -> Option<(i32, Vec<i64>)> {
    let mut parts = Vec::with_capacity(samples.len());
    let mut max_k = 0usize;
    for &(_, v) in samples {
        let (m, k) = decimal_of(v)?;
        max_k = max_k.max(k);
        parts.push((m, k));
    }
    let exp = -(max_k as i32);
    let mut ints = Vec::with_capacity(parts.len());
    for (&(m, k), &(_, v)) in parts.iter().zip(samples) {
        let scaled = m.checked_mul(10i64.checked_pow((max_k - k) as u32)?)?;
        if scaled.abs() >= MAX_EXACT || from_decimal(scaled, exp).to_bits() != v.to_bits() {
            return None;
        }
        ints.push(scaled);
    }
    Some((exp, ints))
}
