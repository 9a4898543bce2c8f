//! The chunk codec: how a run of one series' samples is stored on disk.
//!
//! A chunk is columnar. Timestamps are delta-of-delta varints (a steady scrape interval costs
//! one zero byte per sample). Values are stored, when every value of the chunk allows it, as
//! decimal integers `m · 10^e` with one exponent per chunk (as VictoriaMetrics does), then as
//! deltas or deltas of deltas, whichever is smaller; otherwise as the XOR of consecutive IEEE
//! bit patterns, which keeps NaN payloads (the stale marker), ±Inf and -0.0 bit-exact. The
//! whole body is then zstd-compressed, which squeezes the runs of zero bytes both columns
//! produce for regular data.
//!
//! Decimal mode is only chosen after checking that every value decodes back to the very same
//! bits, so the codec is lossless for every f64.

use crate::varint::{Reader, put_i64, put_u64};

const VERSION: u8 = 1;
const BODY_PLAIN: u8 = 0;
const BODY_ZSTD: u8 = 1;
const VALUES_XOR: u8 = 0;
const VALUES_DECIMAL_DELTA: u8 = 1;
const VALUES_DECIMAL_DOD: u8 = 2;
const ZSTD_LEVEL: i32 = 3;

/// Why stored bytes could not be decoded: the data is corrupt or from a newer version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(&'static str);

/// Encodes samples (sorted by timestamp, unique timestamps) into a chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + samples.len() * 4);
    put_u64(&mut body, samples.len() as u64);
    encode_timestamps(&mut body, samples);
    encode_values(&mut body, samples);

    let mut out = Vec::with_capacity(body.len() / 2 + 2);
    out.push(VERSION);
    match compress(&body) {
        Ok(z) if z.len() + 1 < body.len() => {
            out.push(BODY_ZSTD);
            put_u64(&mut out, body.len() as u64);
            out.extend_from_slice(&z);
        }
        _ => {
            out.push(BODY_PLAIN);
            out.extend_from_slice(&body);
        }
    }
    out
}

/// Encodes like [`encode`] but without zstd: cheaper, for in-memory segments.
pub(crate) fn encode_plain(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + samples.len() * 4);
    out.push(VERSION);
    out.push(BODY_PLAIN);
    put_u64(&mut out, samples.len() as u64);
    encode_timestamps(&mut out, samples);
    encode_values(&mut out, samples);
    out
}

/// Decodes a chunk produced by [`encode`] or [`encode_plain`].
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut r = Reader::new(bytes);
    if r.u8() != Some(VERSION) {
        return Err(ChunkError("unknown version"));
    }
    let body;
    let plain = match r.u8() {
        Some(BODY_PLAIN) => r.rest(),
        Some(BODY_ZSTD) => {
            let len = r.u64().ok_or(ChunkError("truncated length"))? as usize;
            if len > 64 << 20 {
                return Err(ChunkError("implausible length"));
            }
            body = decompress(r.rest(), len).map_err(|_| ChunkError("zstd"))?;
            &body[..]
        }
        _ => return Err(ChunkError("unknown body encoding")),
    };
    let mut r = Reader::new(plain);
    let n = r.u64().ok_or(ChunkError("truncated count"))? as usize;
    if n > plain.len() {
        // Every sample takes at least one byte per column.
        return Err(ChunkError("count exceeds body"));
    }
    let ts = decode_timestamps(&mut r, n)?;
    let values = decode_values(&mut r, n)?;
    Ok(ts.into_iter().zip(values).collect())
}

thread_local! {
    // A zstd context is costly to set up next to a chunk of a few hundred bytes; one per thread
    // is reused for every chunk (apply cuts chunks on one thread, queries decode on several).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("set above").compress(body)
    })
}

fn decompress(data: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(data, len)
    })
}

fn encode_timestamps(out: &mut Vec<u8>, samples: &[(i64, f64)]) {
    let mut prev = 0i64;
    let mut prev_delta = 0i64;
    for (i, &(t, _)) in samples.iter().enumerate() {
        match i {
            0 => put_i64(out, t),
            1 => {
                prev_delta = t.wrapping_sub(prev);
                put_i64(out, prev_delta);
            }
            _ => {
                let delta = t.wrapping_sub(prev);
                put_i64(out, delta.wrapping_sub(prev_delta));
                prev_delta = delta;
            }
        }
        prev = t;
    }
}

fn decode_timestamps(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, ChunkError> {
    let mut out = Vec::with_capacity(n);
    let mut prev = 0i64;
    let mut delta = 0i64;
    for i in 0..n {
        let v = r.i64().ok_or(ChunkError("truncated timestamps"))?;
        let t = match i {
            0 => v,
            1 => {
                delta = v;
                prev.wrapping_add(delta)
            }
            _ => {
                delta = delta.wrapping_add(v);
                prev.wrapping_add(delta)
            }
        };
        out.push(t);
        prev = t;
    }
    Ok(out)
}

fn encode_values(out: &mut Vec<u8>, samples: &[(i64, f64)]) {
    if let Some((exp, ints)) = to_decimals(samples) {
        let delta_cost: u64 = deltas(&ints).map(zigzag_len).sum();
        let dod_cost: u64 = deltas_of_deltas(&ints).map(zigzag_len).sum();
        let use_dod = dod_cost < delta_cost;
        out.push(if use_dod { VALUES_DECIMAL_DOD } else { VALUES_DECIMAL_DELTA });
        put_i64(out, exp as i64);
        if use_dod {
            deltas_of_deltas(&ints).for_each(|d| put_i64(out, d));
        } else {
            deltas(&ints).for_each(|d| put_i64(out, d));
        }
        return;
    }
    out.push(VALUES_XOR);
    let mut prev = 0u64;
    for &(_, v) in samples {
        let bits = v.to_bits();
        out.extend_from_slice(&(bits ^ prev).to_be_bytes());
        prev = bits;
    }
}

fn decode_values(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, ChunkError> {
    let mode = r.u8().ok_or(ChunkError("truncated value mode"))?;
    let mut out = Vec::with_capacity(n);
    if mode == VALUES_XOR {
        let mut prev = 0u64;
        for _ in 0..n {
            prev ^= r.fixed_u64().ok_or(ChunkError("truncated values"))?;
            out.push(f64::from_bits(prev));
        }
        return Ok(out);
    }
    if mode != VALUES_DECIMAL_DELTA && mode != VALUES_DECIMAL_DOD {
        return Err(ChunkError("unknown value mode"));
    }
    let exp = r.i64().ok_or(ChunkError("truncated exponent"))?;
    let exp = i32::try_from(exp)
        .ok()
        .filter(|e| e.unsigned_abs() < POW10.len() as u32)
        .ok_or(ChunkError("bad exponent"))?;
    let (mut prev, mut delta) = (0i64, 0i64);
    for i in 0..n {
        let v = r.i64().ok_or(ChunkError("truncated values"))?;
        let m = if i == 0 {
            v
        } else if mode == VALUES_DECIMAL_DELTA {
            prev.wrapping_add(v)
        } else {
            delta = delta.wrapping_add(v);
            prev.wrapping_add(delta)
        };
        out.push(from_decimal(m, exp));
        prev = m;
    }
    Ok(out)
}

/// Delta stream: first value, then differences.
fn deltas(ints: &[i64]) -> impl Iterator<Item = i64> + '_ {
    ints.iter().scan(0i64, |prev, &m| {
        let d = m.wrapping_sub(*prev);
        *prev = m;
        Some(d)
    })
}

/// Delta-of-delta stream: first value, first delta, then differences of deltas.
fn deltas_of_deltas(ints: &[i64]) -> impl Iterator<Item = i64> + '_ {
    ints.iter().enumerate().scan((0i64, 0i64), |(prev, prev_delta), (i, &m)| {
        let out = match i {
            0 => m,
            _ => {
                let d = m.wrapping_sub(*prev);
                let dd = d.wrapping_sub(*prev_delta);
                *prev_delta = d;
                dd
            }
        };
        *prev = m;
        Some(out)
    })
}

fn zigzag_len(v: i64) -> u64 {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    (64 - u.leading_zeros() as u64).div_ceil(7).max(1)
}

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];
/// Integers up to 2^53 convert to f64 exactly.
const MAX_EXACT: i64 = 1 << 53;
const MAX_FRACTION_DIGITS: usize = 15;

fn from_decimal(m: i64, exp: i32) -> f64 {
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
fn to_decimals(samples: &[(i64, f64)]) -> Option<(i32, Vec<i64>)> {
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

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
