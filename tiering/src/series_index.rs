//! [`SeriesIndex`]: a samples file's own index, stored beside it (`index/samples/…/<block>.idx`,
//! named in the manifest): which series the file holds and where each one's rows are.
//!
//! A reader asks it before the file: a file without any wanted series is not opened at all
//! (neither its footer nor its pages are fetched), and in one that has some, exactly their
//! rows are read, by position, without decoding the series-id column.
//!
//! Layout: `CSIX` and a version byte, the number of series, then per series in id order its id
//! (delta from the one before) and its first row, then the file's row count, all LEB128
//! varints. A series' rows run from its first row to the next first row in row order (rows
//! are sorted by metric, then id: id order and row order differ across metrics).

use std::ops::Range;

const MAGIC: &[u8; 5] = b"CSIX\x01";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesIndex {
    /// (series id, first row), sorted by id.
    series: Vec<(u64, u64)>,
    /// Where each series' rows end, by position in `series`.
    ends: Vec<u64>,
    rows: u64,
}

impl SeriesIndex {
    /// The index of a file whose series start at the given rows (in row order) and which
    /// holds `rows` rows.
    pub fn new(mut starts: Vec<(u64, u64)>, rows: u64) -> Self {
        starts.sort_unstable_by_key(|(_, row)| *row);
        let mut ends_by_id: Vec<(u64, u64, u64)> = starts
            .iter()
            .enumerate()
            .map(|(i, (id, row))| (*id, *row, starts.get(i + 1).map_or(rows, |n| n.1)))
            .collect();
        ends_by_id.sort_unstable_by_key(|(id, _, _)| *id);
        Self {
            series: ends_by_id.iter().map(|(id, row, _)| (*id, *row)).collect(),
            ends: ends_by_id.iter().map(|(_, _, end)| *end).collect(),
            rows,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        put(&mut out, self.series.len() as u64);
        let mut last = 0u64;
        for (id, row) in &self.series {
            put(&mut out, id - last);
            put(&mut out, *row);
            last = *id;
        }
        put(&mut out, self.rows);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let bad = || "not a series index (or a damaged one)".to_string();
        let mut r = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(bad)?;
        let n = get(&mut r).ok_or_else(bad)?;
        let mut starts = Vec::with_capacity(usize::try_from(n).map_err(|_| bad())?.min(1 << 24));
        let mut id = 0u64;
        for _ in 0..n {
            id = id.checked_add(get(&mut r).ok_or_else(bad)?).ok_or_else(bad)?;
            starts.push((id, get(&mut r).ok_or_else(bad)?));
        }
        let rows = get(&mut r).ok_or_else(bad)?;
        if !r.is_empty() || starts.iter().any(|(_, row)| *row >= rows) {
            return Err(bad());
        }
        Ok(Self::new(starts, rows))
    }

    /// Rows of the file.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The rows of each of `ids` (sorted) the file holds, as (id, rows), in row order.
    pub fn rows_of(&self, ids: &[u64]) -> Vec<(u64, Range<u64>)> {
        let mut out: Vec<(u64, Range<u64>)> = Vec::new();
        // Both sorted: a merge, or a search per wanted id when they are few.
        if ids.len() * 16 < self.series.len() {
            for id in ids {
                if let Ok(i) = self.series.binary_search_by_key(id, |(s, _)| *s) {
                    out.push((*id, self.series[i].1..self.ends[i]));
                }
            }
        } else {
            let mut i = 0;
            for id in ids {
                while i < self.series.len() && self.series[i].0 < *id {
                    i += 1;
                }
                if i < self.series.len() && self.series[i].0 == *id {
                    out.push((*id, self.series[i].1..self.ends[i]));
                }
            }
        }
        out.sort_unstable_by_key(|(_, rows)| rows.start);
        out
    }

    /// Bytes it takes in memory, for a cache's budget.
    pub fn memory_size(&self) -> usize {
        self.series.len() * 24 + std::mem::size_of::<Self>()
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get(r: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (b, rest) = r.split_first()?;
        *r = rest;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_found_by_id_across_metrics_and_survive_encoding() {
        // Metric "a": series 5 (rows 0..3) and 9 (3..4); metric "b": series 3 (4..10).
        let index = SeriesIndex::new(vec![(5, 0), (9, 3), (3, 4)], 10);
        assert_eq!(index.rows_of(&[3, 9]), [(9, 3..4), (3, 4..10)]);
        assert_eq!(index.rows_of(&[1, 4, 5, 100]), [(5, 0..3)]);
        assert!(index.rows_of(&[]).is_empty());
        let big: Vec<u64> = (0..100).collect();
        assert_eq!(index.rows_of(&big), [(5, 0..3), (9, 3..4), (3, 4..10)]);
        let bytes = index.encode();
        assert_eq!(SeriesIndex::decode(&bytes).unwrap(), index);
        assert!(SeriesIndex::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(SeriesIndex::decode(b"PAR1").is_err());
        let mut past_the_end = SeriesIndex::new(vec![(1, 0)], 1).encode();
        *past_the_end.last_mut().unwrap() = 0;
        assert!(SeriesIndex::decode(&past_the_end).is_err(), "a first row past the file's rows");
    }
}
