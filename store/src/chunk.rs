//! The chunk codec: how a run of one series' samples is stored on disk.
//!
//! A chunk is columnar, and a small header carries whatever makes a column unnecessary.
//! Timestamps that advance by one interval (a steady scrape) are the first timestamp and the
//! interval; otherwise delta-of-delta varints. Values are, when every value of the chunk allows
//! it, decimal integers `m · 10^e` with one exponent (as VictoriaMetrics does); their deltas are
//! divided by their greatest common divisor (memory gauges move in pages, byte counters in
//! blocks) and stored as deltas or deltas of deltas, whichever is smaller, or not at all when
//! the series did not change. Otherwise values are the XOR of consecutive IEEE bit patterns,
//! which keeps NaN payloads (the stale marker), ±Inf and -0.0 bit-exact. The columns are then
//! zstd-compressed when that makes them smaller.
//!
//! Most chunks are a few hundred bytes, so fixed costs matter: the first timestamp is stored
//! relative to a `base` the reader knows anyway (the chunk key's start time), the zstd frame
//! goes without its magic number, and a chunk of a constant series with a steady scrape is a
//! dozen bytes.
//!
//! Format 2 (what [`encode`] writes):
//!
//! ```text
//! 2, flags, varint n, [n > 0: varint zz(first - base), value header], [n > 1: varint zz(delta)],
//! columns (zstd frame without magic when flags has ZSTD)
//! flags: ZSTD 0x01 | TS_DOD 0x02 | values (bits 2..3): XOR 0, DECIMAL_DELTA 1, DECIMAL_DOD 2, RAW_CONSTANT 3
//! value header: XOR: first bits (8 bytes LE); RAW_CONSTANT: bits (8 bytes LE);
//!               DECIMAL_*: varint zz(exponent), varint zz(first mantissa), varint divisor
//!               (divisor 0: every value is the first, no column)
//! columns: TS_DOD: n-2 varints zz(delta of deltas); then values: XOR: n-1 × 8 bytes LE;
//!          DECIMAL_DELTA: n-1 varints zz(delta / divisor); DECIMAL_DOD: the first of those,
//!          then n-2 varints zz(its differences)
//! ```
//!
//! Decimal mode is only chosen after checking that every value decodes back to the very same
//! bits, so the codec is lossless for every f64. Format 1 chunks are still read
//! ([`crate::chunk_v1`]).

use crate::decimal::{POW10, from_decimal, to_decimals};
use crate::varint::{Reader, put_i64, put_u64};

const VERSION: u8 = 2;
const ZSTD: u8 = 0x01;
const TS_DOD: u8 = 0x02;
const VALUES_SHIFT: u8 = 2;
const VALUES_XOR: u8 = 0;
const VALUES_DECIMAL_DELTA: u8 = 1;
const VALUES_DECIMAL_DOD: u8 = 2;
const VALUES_RAW_CONSTANT: u8 = 3;
const ZSTD_LEVEL: i32 = 3;
/// The zstd frame magic number, left out of stored frames (4 of the ~30 bytes of overhead a
/// small chunk used to pay).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Columns shorter than this are never worth a zstd frame.
const ZSTD_MIN: usize = 24;

/// Why stored bytes could not be decoded: the data is corrupt or from a newer version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt chunk: {0}")]
pub struct ChunkError(pub(crate) &'static str);

/// Encodes samples (sorted by timestamp, unique timestamps) into a chunk. `base` is any
/// timestamp the reader will pass to [`decode`] again, ideally the first sample's (the chunk
/// key's start time), which makes the first timestamp cost one byte.
pub fn encode(base: i64, samples: &[(i64, f64)]) -> Vec<u8> {
    encode_with(base, samples, true)
}

/// Encodes like [`encode`] but without zstd: cheaper, for in-memory segments.
pub(crate) fn encode_plain(base: i64, samples: &[(i64, f64)]) -> Vec<u8> {
    encode_with(base, samples, false)
}

fn encode_with(base: i64, samples: &[(i64, f64)], compress_columns: bool) -> Vec<u8> {
    let mut header = Vec::with_capacity(32);
    let mut columns = Vec::with_capacity(samples.len() * 3);
    let mut flags = 0u8;
    put_u64(&mut header, samples.len() as u64);
    if let Some(&(first, _)) = samples.first() {
        put_i64(&mut header, first.wrapping_sub(base));
        flags |= encode_values(samples, &mut header, &mut columns) << VALUES_SHIFT;
    }
    if samples.len() > 1 {
        let delta = samples[1].0.wrapping_sub(samples[0].0);
        put_i64(&mut header, delta);
        if samples.windows(2).any(|w| w[1].0.wrapping_sub(w[0].0) != delta) {
            flags |= TS_DOD;
            // The timestamp column goes first: it is read first.
            let mut ts = Vec::with_capacity(samples.len());
            encode_timestamps(samples, &mut ts);
            ts.append(&mut columns);
            columns = ts;
        }
    }
    let mut out = Vec::with_capacity(2 + header.len() + columns.len());
    if compress_columns
        && columns.len() >= ZSTD_MIN
        && let Ok(z) = compress(&columns)
        && z.len() < columns.len()
    {
        flags |= ZSTD;
        columns = z;
    }
    out.push(VERSION);
    out.push(flags);
    out.extend_from_slice(&header);
    out.extend_from_slice(&columns);
    out
}

/// Decodes a chunk produced by [`encode`] or [`encode_plain`] with the same `base` (or one of
/// format 1, which ignores it).
pub fn decode(base: i64, bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    match bytes.first() {
        Some(&VERSION) => {}
        Some(&crate::chunk_v1::VERSION) => return crate::chunk_v1::decode(bytes),
        _ => return Err(ChunkError("unknown version")),
    }
    let mut r = Reader::new(&bytes[1..]);
    let flags = r.u8().ok_or(ChunkError("truncated flags"))?;
    let n = r.u64().ok_or(ChunkError("truncated count"))? as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    // Every sample but a constant series' takes at least a byte of column or a bit of zstd
    // output; a steady constant series is the one case with no column at all.
    if n > 1 << 20 {
        return Err(ChunkError("implausible count"));
    }
    let first = base.wrapping_add(r.i64().ok_or(ChunkError("truncated first timestamp"))?);
    let values = ValueHeader::read(flags >> VALUES_SHIFT, &mut r)?;
    let delta = if n > 1 { r.i64().ok_or(ChunkError("truncated delta"))? } else { 0 };
    let unzipped;
    let columns = if flags & ZSTD != 0 {
        unzipped = decompress_frame(r.rest(), n)?;
        &unzipped[..]
    } else {
        r.rest()
    };
    let mut c = Reader::new(columns);
    let mut out = Vec::with_capacity(n);
    let (mut t, mut d) = (first, delta);
    out.push((t, 0.0));
    for i in 1..n {
        if flags & TS_DOD != 0 && i > 1 {
            d = d.wrapping_add(c.i64().ok_or(ChunkError("truncated timestamps"))?);
        }
        t = t.wrapping_add(d);
        out.push((t, 0.0));
    }
    values.decode(&mut c, &mut out)?;
    Ok(out)
}

/// Delta-of-delta column: for the third sample on, the change of the interval.
fn encode_timestamps(samples: &[(i64, f64)], out: &mut Vec<u8>) {
    for w in samples.windows(3) {
        let d1 = w[1].0.wrapping_sub(w[0].0);
        let d2 = w[2].0.wrapping_sub(w[1].0);
        put_i64(out, d2.wrapping_sub(d1));
    }
}

/// Writes the value header and column; returns the value mode.
fn encode_values(samples: &[(i64, f64)], header: &mut Vec<u8>, columns: &mut Vec<u8>) -> u8 {
    if let Some((exp, ints)) = to_decimals(samples) {
        let deltas: Vec<i64> = ints.windows(2).map(|w| w[1] - w[0]).collect();
        let divisor = deltas.iter().fold(0u64, |g, d| gcd(g, d.unsigned_abs()));
        put_i64(header, exp as i64);
        put_i64(header, ints[0]);
        put_u64(header, divisor);
        if divisor == 0 {
            return VALUES_DECIMAL_DELTA;
        }
        // |delta| ≤ 2^54, so a divisor always fits in an i64 and the quotients are exact.
        let scaled: Vec<i64> = deltas.iter().map(|d| d / divisor as i64).collect();
        let delta_cost: u64 = scaled.iter().map(|&d| zigzag_len(d)).sum();
        let dod_cost: u64 = dods(&scaled).map(zigzag_len).sum();
        if dod_cost < delta_cost {
            dods(&scaled).for_each(|d| put_i64(columns, d));
            return VALUES_DECIMAL_DOD;
        }
        scaled.iter().for_each(|&d| put_i64(columns, d));
        return VALUES_DECIMAL_DELTA;
    }
    let first = samples[0].1.to_bits();
    header.extend_from_slice(&first.to_le_bytes());
    if samples.iter().all(|s| s.1.to_bits() == first) {
        return VALUES_RAW_CONSTANT;
    }
    for w in samples.windows(2) {
        columns.extend_from_slice(&(w[1].1.to_bits() ^ w[0].1.to_bits()).to_le_bytes());
    }
    VALUES_XOR
}

/// The first delta, then the differences between consecutive deltas.
fn dods(deltas: &[i64]) -> impl Iterator<Item = i64> + '_ {
    deltas.first().copied().into_iter().chain(deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])))
}

/// What a chunk's header says about its values.
enum ValueHeader {
    Xor { first: u64 },
    RawConstant { bits: u64 },
    Decimal { exp: i32, first: i64, divisor: i64, dod: bool },
}

impl ValueHeader {
    fn read(mode: u8, r: &mut Reader<'_>) -> Result<Self, ChunkError> {
        let bits = |r: &mut Reader<'_>| {
            let b = r.bytes(8).ok_or(ChunkError("truncated value header"))?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        Ok(match mode {
            VALUES_XOR => ValueHeader::Xor { first: bits(r)? },
            VALUES_RAW_CONSTANT => ValueHeader::RawConstant { bits: bits(r)? },
            VALUES_DECIMAL_DELTA | VALUES_DECIMAL_DOD => {
                let exp = r.i64().ok_or(ChunkError("truncated exponent"))?;
                let exp = i32::try_from(exp)
                    .ok()
                    .filter(|e| e.unsigned_abs() < POW10.len() as u32)
                    .ok_or(ChunkError("bad exponent"))?;
                let first = r.i64().ok_or(ChunkError("truncated first value"))?;
                let divisor = r.u64().ok_or(ChunkError("truncated divisor"))?;
                let divisor = i64::try_from(divisor).map_err(|_| ChunkError("bad divisor"))?;
                ValueHeader::Decimal { exp, first, divisor, dod: mode == VALUES_DECIMAL_DOD }
            }
            _ => return Err(ChunkError("unknown value mode")),
        })
    }

    /// Fills in the values of `out`, whose timestamps are set.
    fn decode(&self, c: &mut Reader<'_>, out: &mut [(i64, f64)]) -> Result<(), ChunkError> {
        match *self {
            ValueHeader::RawConstant { bits } => out.iter_mut().for_each(|s| s.1 = f64::from_bits(bits)),
            ValueHeader::Xor { first } => {
                let mut bits = first;
                out[0].1 = f64::from_bits(bits);
                for s in &mut out[1..] {
                    let b = c.bytes(8).ok_or(ChunkError("truncated values"))?;
                    bits ^= u64::from_le_bytes(b.try_into().expect("8 bytes"));
                    s.1 = f64::from_bits(bits);
                }
            }
            ValueHeader::Decimal { exp, first, divisor, dod } => {
                let (mut m, mut d) = (first, 0i64);
                out[0].1 = from_decimal(m, exp);
                for (i, s) in out[1..].iter_mut().enumerate() {
                    if divisor != 0 {
                        let v = c.i64().ok_or(ChunkError("truncated values"))?;
                        d = if dod && i > 0 { d.wrapping_add(v) } else { v };
                        m = m.wrapping_add(d.wrapping_mul(divisor));
                    }
                    s.1 = from_decimal(m, exp);
                }
            }
        }
        Ok(())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn zigzag_len(v: i64) -> u64 {
    let u = ((v << 1) ^ (v >> 63)) as u64;
    (64 - u.leading_zeros() as u64).div_ceil(7).max(1)
}

thread_local! {
    // A zstd context is costly to set up next to a chunk of a few hundred bytes; one per thread
    // is reused for every chunk (apply cuts chunks on one thread, queries decode on several).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// A zstd frame of `body` without its magic number.
fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let frame = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        c.as_mut().expect("set above").compress(body)
    })?;
    match frame.strip_prefix(&ZSTD_MAGIC) {
        Some(rest) => Ok(rest.to_vec()),
        None => Err(std::io::Error::other("zstd wrote a frame without its magic number")),
    }
}

/// Decompresses a frame stored by [`compress`]; its content size is in its header, and at
/// most 20 bytes a sample (two varints or a varint and 8 bytes) are expected.
fn decompress_frame(stored: &[u8], samples: usize) -> Result<Vec<u8>, ChunkError> {
    let mut frame = Vec::with_capacity(stored.len() + 4);
    frame.extend_from_slice(&ZSTD_MAGIC);
    frame.extend_from_slice(stored);
    let size = zstd::zstd_safe::get_frame_content_size(&frame)
        .ok()
        .flatten()
        .ok_or(ChunkError("zstd frame without a content size"))?;
    if size > (samples as u64).saturating_mul(20) + 16 {
        return Err(ChunkError("implausible column size"));
    }
    decompress(&frame, size as usize)
}

/// Decompresses a whole zstd frame of at most `len` bytes.
pub(crate) fn decompress(data: &[u8], len: usize) -> Result<Vec<u8>, ChunkError> {
    DECOMPRESSOR
        .with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            d.as_mut().expect("set above").decompress(data, len)
        })
        .map_err(|_| ChunkError("zstd"))
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
