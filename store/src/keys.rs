//! Key layouts of the column families. Big-endian with the sign bit flipped, so that RocksDB's
//! byte order is numeric order.

use collabstream_common::SeriesId;

/// An i64 as 8 bytes whose byte order is the numeric order.
#[inline]
pub(crate) fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

#[inline]
pub(crate) fn from_ordered_i64(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

/// `chunks` CF: (series, first timestamp of the chunk).
pub(crate) fn chunk_key(series: SeriesId, start: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&series.0.to_be_bytes());
    k[8..].copy_from_slice(&ordered_i64(start));
    k
}

pub(crate) fn parse_chunk_key(k: &[u8]) -> Option<(SeriesId, i64)> {
    if k.len() != 16 {
        return None;
    }
    let id = u64::from_be_bytes(k[..8].try_into().ok()?);
    Some((SeriesId(id), from_ordered_i64(&k[8..])?))
}

/// `series` and `heads` CFs: the series id.
pub(crate) fn series_key(series: SeriesId) -> [u8; 8] {
    series.0.to_be_bytes()
}

pub(crate) fn parse_series_key(k: &[u8]) -> Option<SeriesId> {
    Some(SeriesId(u64::from_be_bytes(k.try_into().ok()?)))
}

/// `heads` CF: segment `n` of a series' open chunk. It sorts right after the series' head
/// record (its key is a prefix of this one) and before the next series'.
pub(crate) fn head_segment_key(series: SeriesId, n: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&series.0.to_be_bytes());
    k[8..].copy_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn parse_head_segment_key(k: &[u8]) -> Option<(SeriesId, u32)> {
    if k.len() != 12 {
        return None;
    }
    Some((SeriesId(u64::from_be_bytes(k[..8].try_into().ok()?)), u32::from_be_bytes(k[8..].try_into().ok()?)))
}

/// `log` CF and `dedup` CF: a u64 sequence.
pub(crate) fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_is_numeric_order() {
        let values = [i64::MIN, -1_000, -1, 0, 1, 1_000, i64::MAX];
        for w in values.windows(2) {
            assert!(ordered_i64(w[0]) < ordered_i64(w[1]));
            assert!(chunk_key(SeriesId(3), w[0]) < chunk_key(SeriesId(3), w[1]));
        }
        assert!(chunk_key(SeriesId(3), i64::MAX) < chunk_key(SeriesId(4), i64::MIN));
        assert_eq!(parse_chunk_key(&chunk_key(SeriesId(7), -5)), Some((SeriesId(7), -5)));
        assert_eq!(parse_series_key(&series_key(SeriesId(9))), Some(SeriesId(9)));
        assert_eq!(parse_head_segment_key(&head_segment_key(SeriesId(9), 3)), Some((SeriesId(9), 3)));
        // A series' record, then its segments in order, then the next series.
        let k9 = series_key(SeriesId(9));
        assert!(k9.as_slice() < head_segment_key(SeriesId(9), 0).as_slice());
        assert!(head_segment_key(SeriesId(9), 1) < head_segment_key(SeriesId(9), 256));
        assert!(head_segment_key(SeriesId(9), u32::MAX).as_slice() < series_key(SeriesId(10)).as_slice());
    }
}
