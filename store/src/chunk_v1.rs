//! Reading chunks of the first format (version 1), which data directories written before
//! format 2 still hold. Nothing writes them any more.
//!
//! Layout: `1`, body encoding (0 plain, 1 zstd with a varint length first), then the body:
//! varint count, timestamps as delta-of-delta varints (first, first delta, then differences),
//! a value mode (0 XOR of IEEE bits, big-endian; 1 decimal deltas; 2 decimal
//! delta-of-deltas, after a varint exponent).

use crate::chunk::{ChunkError, decompress};
use crate::decimal::{POW10, from_decimal};
use crate::varint::Reader;

pub(crate) const VERSION: u8 = 1;
const BODY_PLAIN: u8 = 0;
const BODY_ZSTD: u8 = 1;
const VALUES_XOR: u8 = 0;
const VALUES_DECIMAL_DELTA: u8 = 1;
const VALUES_DECIMAL_DOD: u8 = 2;

/// Decodes a version 1 chunk (its version byte included).
pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
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
            body = decompress(r.rest(), len)?;
            &body[..]
        }
        _ => return Err(ChunkError("unknown body encoding")),
    };
    let mut r = Reader::new(plain);
    let n = r.u64().ok_or(ChunkError("truncated count"))? as usize;
    if n > plain.len() {
        return Err(ChunkError("count exceeds body"));
    }
    let mut ts = Vec::with_capacity(n);
    let (mut prev, mut delta) = (0i64, 0i64);
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
        ts.push(t);
        prev = t;
    }
    let mode = r.u8().ok_or(ChunkError("truncated value mode"))?;
    let mut out = Vec::with_capacity(n);
    if mode == VALUES_XOR {
        let mut bits = 0u64;
        for t in ts {
            bits ^= r.fixed_u64().ok_or(ChunkError("truncated values"))?;
            out.push((t, f64::from_bits(bits)));
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
    for (i, t) in ts.into_iter().enumerate() {
        let v = r.i64().ok_or(ChunkError("truncated values"))?;
        let m = if i == 0 {
            v
        } else if mode == VALUES_DECIMAL_DELTA {
            prev.wrapping_add(v)
        } else {
            delta = delta.wrapping_add(v);
            prev.wrapping_add(delta)
        };
        out.push((t, from_decimal(m, exp)));
        prev = m;
    }
    Ok(out)
}
