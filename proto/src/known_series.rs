//! The packed `known` field of a `v1::LogWrite`: series the proposer knew, by id, with their
//! samples (see `log.proto` for the layout). [`KnownWriter`] builds it; [`KnownReader`] reads
//! it in place, as apply does on every replica.

use crate::wire::{ViewError, put_varint};

/// Builds the `known` bytes of one write.
#[derive(Debug, Default)]
pub struct KnownWriter {
    bytes: Vec<u8>,
    prev_id: u64,
    prev_ts: i64,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl KnownWriter {
    /// A writer expecting about `samples` samples.
    pub fn with_capacity(samples: usize) -> Self {
        Self { bytes: Vec::with_capacity(samples * 12), ..Default::default() }
    }

    /// Appends series `id` with its samples as (timestamp ms, IEEE bits of the value).
    pub fn push(&mut self, id: u64, samples: &[(i64, u64)]) {
        put_varint(&mut self.bytes, zigzag(id.wrapping_sub(self.prev_id) as i64));
        put_varint(&mut self.bytes, samples.len() as u64);
        for &(ts, bits) in samples {
            put_varint(&mut self.bytes, zigzag(ts.wrapping_sub(self.prev_ts)));
            self.bytes.extend_from_slice(&bits.to_le_bytes());
            self.prev_ts = ts;
        }
        self.prev_id = id;
    }

    /// Appends the `known = 4` field to an encoded `v1::LogWrite` (nothing when empty).
    pub fn finish_into(self, write: &mut Vec<u8>) {
        if !self.bytes.is_empty() {
            crate::wire::put_bytes(write, 4, &self.bytes);
        }
    }
}

/// Reads `known` bytes: series by series, then each series' samples.
#[derive(Debug, Clone)]
pub struct KnownReader<'a> {
    buf: &'a [u8],
    prev_id: u64,
    prev_ts: i64,
}

/// One series of a [`KnownReader`]: its id and a reader of its samples.
#[derive(Debug)]
pub struct KnownSeries<'r, 'a> {
    pub id: u64,
    pub samples: usize,
    reader: &'r mut KnownReader<'a>,
    left: usize,
}

impl<'a> KnownReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, prev_id: 0, prev_ts: 0 }
    }

    fn varint(&mut self) -> Result<u64, ViewError> {
        let mut r = crate::wire::Reader(self.buf);
        let v = r.varint()?;
        self.buf = r.0;
        Ok(v)
    }

    /// The next series, or `None` at the end. Its samples must be read (or skipped by dropping
    /// the [`KnownSeries`], which reads them) before the next series.
    pub fn next_series(&mut self) -> Result<Option<KnownSeries<'_, 'a>>, ViewError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let id = self.prev_id.wrapping_add(unzigzag(self.varint()?) as u64);
        self.prev_id = id;
        let n = usize::try_from(self.varint()?).map_err(|_| ViewError("a sample count is out of range"))?;
        // Each sample takes at least nine bytes: refuse counts the rest cannot hold.
        if n > self.buf.len() / 9 {
            return Err(ViewError("a known series claims more samples than its write holds"));
        }
        Ok(Some(KnownSeries { id, samples: n, reader: self, left: n }))
    }

    /// Checks that the bytes read whole.
    pub fn validate(buf: &'a [u8]) -> Result<(), ViewError> {
        let mut r = KnownReader::new(buf);
        while let Some(mut s) = r.next_series()? {
            while s.next_sample()?.is_some() {}
        }
        Ok(())
    }
}

impl KnownSeries<'_, '_> {
    /// The next sample as (timestamp ms, value), or `None` after the last.
    pub fn next_sample(&mut self) -> Result<Option<(i64, f64)>, ViewError> {
        if self.left == 0 {
            return Ok(None);
        }
        let r = &mut *self.reader;
        let ts = r.prev_ts.wrapping_add(unzigzag(r.varint()?));
        if r.buf.len() < 8 {
            return Err(ViewError("a known series' value is truncated"));
        }
        let (value, rest) = r.buf.split_at(8);
        r.buf = rest;
        r.prev_ts = ts;
        self.left -= 1;
        Ok(Some((ts, f64::from_bits(u64::from_le_bytes(value.try_into().expect("8 bytes"))))))
    }
}

impl Drop for KnownSeries<'_, '_> {
    fn drop(&mut self) {
        // Leaves the reader at the next series even when the samples were not all read. An
        // error here is seen again by the next read: the bytes end inside this series.
        while let Ok(Some(_)) = self.next_sample() {}
    }
}

/// A known series as tests compare it: its id and its samples as (timestamp, value bits).
#[cfg(test)]
pub(crate) type Known = (u64, Vec<(i64, u64)>);

/// Every series of `known` bytes (tests).
#[cfg(test)]
pub(crate) fn read_all(buf: &[u8]) -> Result<Vec<Known>, ViewError> {
    let mut r = KnownReader::new(buf);
    let mut out = Vec::new();
    while let Some(mut s) = r.next_series()? {
        let id = s.id;
        let mut samples = Vec::new();
        while let Some((t, v)) = s.next_sample()? {
            samples.push((t, v.to_bits()));
        }
        out.push((id, samples));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ids_timestamps_and_value_bits() {
        let series: Vec<Known> = vec![
            (7, vec![(1_732_780_800_000, 1.5f64.to_bits()), (1_732_780_815_000, f64::NAN.to_bits())]),
            (3, vec![(1_732_780_800_000, (-0.0f64).to_bits())]),
            (u64::MAX, vec![(i64::MIN, 0x7ff0_0000_0000_0002), (i64::MAX, 0)]),
            (1, vec![]),
        ];
        let mut w = KnownWriter::with_capacity(8);
        for (id, samples) in &series {
            w.push(*id, samples);
        }
        let mut write = Vec::new();
        w.finish_into(&mut write);
        // Field 4, length-delimited: what prost sees as `known`.
        use prost::Message;
        let decoded = crate::v1::LogWrite::decode(write.as_slice()).unwrap();
        assert_eq!(read_all(&decoded.known).unwrap(), series);
        KnownReader::validate(&decoded.known).unwrap();
    }

    #[test]
    fn a_steady_scrape_costs_a_dozen_bytes_a_sample() {
        let mut w = KnownWriter::default();
        for id in 1..=1000u64 {
            w.push(id, &[(1_732_780_800_000, 1234.5f64.to_bits())]);
        }
        let mut write = Vec::new();
        w.finish_into(&mut write);
        assert!(write.len() < 1000 * 12, "{} bytes", write.len());
    }

    #[test]
    fn truncated_or_lying_bytes_are_refused() {
        let mut w = KnownWriter::default();
        w.push(5, &[(10, 1.0f64.to_bits()), (20, 2.0f64.to_bits())]);
        let mut write = Vec::new();
        w.finish_into(&mut write);
        let bytes = &write[2..];
        for cut in 1..bytes.len() {
            assert!(KnownReader::validate(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // A count larger than the bytes could hold.
        assert!(KnownReader::validate(&[0x0a, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Dropping a series unread moves on to the next one.
        let mut two = KnownWriter::default();
        two.push(1, &[(1, 1.0f64.to_bits())]);
        two.push(2, &[(2, 2.0f64.to_bits())]);
        let mut write = Vec::new();
        two.finish_into(&mut write);
        let mut r = KnownReader::new(&write[2..]);
        drop(r.next_series().unwrap());
        assert_eq!(r.next_series().unwrap().map(|s| s.id), Some(2));
    }
}
