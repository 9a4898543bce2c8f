//! The packed known series of a `v1::LogWrite`: series the proposer knew, by id, with their
//! samples (see `log.proto` for the layout). [`KnownWriter`] builds them; [`KnownReader`] reads
//! them in place, as apply does on every replica.
//!
//! Two forms share the layout and differ in how a value is written ([`KnownFormat`]): `known`
//! (field 4) as its eight IEEE bytes, and `known_compact` (field 6) as the value's own integer
//! or decimal when it has one, which most metrics do (counters of bytes, packets or seconds in
//! hundredths). A steady scrape of the bench's node-exporter workload is mostly values the
//! compact form writes in one to six bytes instead of eight. Writers use the compact form;
//! entries logged before it existed carry `known`, and replay reads both.

use crate::wire::{ViewError, put_varint};

/// How a write's known series carry their values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownFormat {
    /// `known` (field 4): each value as its eight IEEE bytes, little-endian.
    Raw,
    /// `known_compact` (field 6): each value as its integer or decimal when it has one (see
    /// `put_compact_value`).
    #[default]
    Compact,
}

impl KnownFormat {
    /// The `LogWrite` field that carries this form.
    pub fn field(self) -> u32 {
        match self {
            KnownFormat::Raw => 4,
            KnownFormat::Compact => 6,
        }
    }

    /// The fewest bytes a sample takes in this form (its time and its value).
    fn min_sample_bytes(self) -> usize {
        match self {
            KnownFormat::Raw => 9,
            KnownFormat::Compact => 2,
        }
    }
}

/// Builds the known series of one write.
#[derive(Debug, Default)]
pub struct KnownWriter {
    bytes: Vec<u8>,
    prev_id: u64,
    prev_ts: i64,
    format: KnownFormat,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The divisors of the decimal forms: a value with one, two or three decimals.
const DECIMALS: [f64; 3] = [10.0, 100.0, 1000.0];
/// Integers up to this magnitude are exact in an `f64`.
const EXACT: f64 = (1u64 << 53) as f64;
/// The tag of a value written as its eight IEEE bytes after it.
const TAG_RAW: u64 = 0b111;

/// Appends `bits` as the compact form writes a value: one varint `u` whose low bits say how to
/// read it, and nothing else unless the value has no integer or decimal form.
/// - `u & 1 == 0`: the integer `unzigzag(u >> 1)`;
/// - `u & 0b111` of `0b001`, `0b011`, `0b101`: the decimal `unzigzag(u >> 3)` divided by 10,
///   100 or 1000 (an IEEE division, the same on every replica);
/// - `u == 0b111`: the eight IEEE bytes follow, little-endian (NaNs, -0.0, infinities and
///   values with more decimals).
///
/// A form is chosen only when reading it gives back exactly `bits`.
fn put_compact_value(out: &mut Vec<u8>, bits: u64) {
    let v = f64::from_bits(bits);
    if v.abs() <= EXACT {
        let k = v as i64;
        if (k as f64).to_bits() == bits {
            put_varint(out, zigzag(k) << 1);
            return;
        }
        for (e, d) in DECIMALS.iter().enumerate() {
            let m = (v * d).round();
            if m.abs() <= EXACT && ((m as i64) as f64 / d).to_bits() == bits {
                put_varint(out, (zigzag(m as i64) << 3) | ((e as u64) << 1) | 1);
                return;
            }
        }
    }
    put_varint(out, TAG_RAW);
    out.extend_from_slice(&bits.to_le_bytes());
}

impl KnownWriter {
    /// A writer of the compact form expecting about `samples` samples.
    pub fn with_capacity(samples: usize) -> Self {
        Self { bytes: Vec::with_capacity(samples * 8), ..Default::default() }
    }

    /// A writer of `format` (the raw form only to test that entries logged with it still read).
    pub fn of(format: KnownFormat) -> Self {
        Self { format, ..Default::default() }
    }

    /// Appends series `id` with its samples as (timestamp ms, IEEE bits of the value).
    pub fn push(&mut self, id: u64, samples: &[(i64, u64)]) {
        put_varint(&mut self.bytes, zigzag(id.wrapping_sub(self.prev_id) as i64));
        put_varint(&mut self.bytes, samples.len() as u64);
        for &(ts, bits) in samples {
            put_varint(&mut self.bytes, zigzag(ts.wrapping_sub(self.prev_ts)));
            match self.format {
                KnownFormat::Raw => self.bytes.extend_from_slice(&bits.to_le_bytes()),
                KnownFormat::Compact => put_compact_value(&mut self.bytes, bits),
            }
            self.prev_ts = ts;
        }
        self.prev_id = id;
    }

    /// Appends the field of its form (`known_compact` or `known`) to an encoded `v1::LogWrite`
    /// (nothing when empty).
    pub fn finish_into(self, write: &mut Vec<u8>) {
        if !self.bytes.is_empty() {
            crate::wire::put_bytes(write, self.format.field(), &self.bytes);
        }
    }
}

/// Reads known series' bytes of either form: series by series, then each series' samples.
#[derive(Debug, Clone)]
pub struct KnownReader<'a> {
    buf: &'a [u8],
    prev_id: u64,
    prev_ts: i64,
    format: KnownFormat,
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
    pub fn new(buf: &'a [u8], format: KnownFormat) -> Self {
        Self { buf, prev_id: 0, prev_ts: 0, format }
    }

    /// Eight IEEE bytes, little-endian.
    fn ieee(&mut self) -> Result<f64, ViewError> {
        if self.buf.len() < 8 {
            return Err(ViewError("a known series' value is truncated"));
        }
        let (value, rest) = self.buf.split_at(8);
        self.buf = rest;
        Ok(f64::from_bits(u64::from_le_bytes(value.try_into().expect("8 bytes"))))
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
        // Refuse counts the rest cannot hold (each sample takes a few bytes at least).
        if n > self.buf.len() / self.format.min_sample_bytes() {
            return Err(ViewError("a known series claims more samples than its write holds"));
        }
        Ok(Some(KnownSeries { id, samples: n, reader: self, left: n }))
    }

    /// Checks that the bytes read whole.
    pub fn validate(buf: &'a [u8], format: KnownFormat) -> Result<(), ViewError> {
        let mut r = KnownReader::new(buf, format);
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
        let value = match r.format {
            KnownFormat::Raw => r.ieee()?,
            KnownFormat::Compact => match r.varint()? {
                u if u & 1 == 0 => unzigzag(u >> 1) as f64,
                TAG_RAW => r.ieee()?,
                u if u & 0b111 == TAG_RAW => return Err(ViewError("a compact value has an unknown form")),
                u => unzigzag(u >> 3) as f64 / DECIMALS[((u >> 1) & 0b11) as usize],
            },
        };
        r.prev_ts = ts;
        self.left -= 1;
        Ok(Some((ts, value)))
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

/// Every series of known series' bytes (tests).
#[cfg(test)]
pub(crate) fn read_all(buf: &[u8], format: KnownFormat) -> Result<Vec<Known>, ViewError> {
    let mut r = KnownReader::new(buf, format);
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
    use prost::Message;

    use super::*;

    const FORMATS: [KnownFormat; 2] = [KnownFormat::Raw, KnownFormat::Compact];

    /// `series` written in `format` as the field of a `LogWrite`, and that field's bytes as
    /// prost decodes them.
    fn written(format: KnownFormat, series: &[Known]) -> (Vec<u8>, Vec<u8>) {
        let mut w = KnownWriter::of(format);
        for (id, samples) in series {
            w.push(*id, samples);
        }
        let mut write = Vec::new();
        w.finish_into(&mut write);
        let decoded = crate::v1::LogWrite::decode(write.as_slice()).unwrap();
        let field = match format {
            KnownFormat::Raw => decoded.known,
            KnownFormat::Compact => decoded.known_compact,
        };
        (write, field)
    }

    /// Values of every compact form and of none.
    fn values() -> Vec<f64> {
        let exact = (1u64 << 53) as f64;
        vec![
            0.0,
            1.0,
            -3.0,
            1500.0,
            4.2e11,
            exact,
            -exact,
            exact + 2.0,
            1234.5,
            0.01,
            -2.25,
            123.456,
            0.5 + 0.01,
            0.1 + 0.2,
            1.0 / 3.0,
            -0.0,
            f64::NAN,
            f64::from_bits(0x7ff0_0000_0000_0002),
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            5e-324,
        ]
    }

    #[test]
    fn round_trips_ids_timestamps_and_value_bits_in_both_forms() {
        let series: Vec<Known> = vec![
            (7, vec![(1_732_780_800_000, 1.5f64.to_bits()), (1_732_780_815_000, f64::NAN.to_bits())]),
            (
                3,
                values()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (1_732_780_800_000 + i as i64, v.to_bits()))
                    .collect(),
            ),
            (u64::MAX, vec![(i64::MIN, 0x7ff0_0000_0000_0002), (i64::MAX, 0)]),
            (1, vec![]),
        ];
        for format in FORMATS {
            let (_, field) = written(format, &series);
            assert_eq!(read_all(&field, format).unwrap(), series, "{format:?}");
            KnownReader::validate(&field, format).unwrap();
        }
    }

    #[test]
    fn any_value_comes_back_bit_for_bit_from_the_compact_form() {
        // Random bit patterns, and random decimals of up to four places at every magnitude
        // (a fixed generator, so a failure repeats).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            x
        };
        let mut samples = Vec::new();
        for i in 0..20_000 {
            let r = next();
            let bits = match i % 3 {
                0 => r,
                1 => ((r >> 11) as i64 as f64 / 10f64.powi((r % 5) as i32)).to_bits(),
                _ => (((r >> 40) as i64 - (1 << 23)) as f64 / 10f64.powi((r % 4) as i32)).to_bits(),
            };
            samples.push((i, bits));
        }
        let series = vec![(1, samples)];
        let (_, field) = written(KnownFormat::Compact, &series);
        assert_eq!(read_all(&field, KnownFormat::Compact).unwrap(), series);
    }

    #[test]
    fn the_compact_form_writes_integers_and_decimals_in_fewer_bytes() {
        // Bytes a sample in a steady scrape (one sample a series, one timestamp): the series'
        // id step, its count and the time step take a byte each, the rest is the value.
        let per_sample = |format: KnownFormat, v: f64| {
            let series: Vec<Known> =
                (1..=1000).map(|id| (id, vec![(1_732_780_800_000, v.to_bits())])).collect();
            written(format, &series).1.len() as f64 / 1000.0
        };
        for v in values() {
            assert!((per_sample(KnownFormat::Raw, v) - 11.0).abs() < 0.01, "{v}");
        }
        for (v, bytes) in
            [(0.0, 4), (6.0, 4), (1500.0, 5), (9_999_999.0, 7), (4.2e11, 9), (1234.5, 6), (0.75, 5)]
        {
            assert!((per_sample(KnownFormat::Compact, v) - f64::from(bytes)).abs() < 0.01, "{v}");
        }
        // Without an integer or decimal form: one byte more than the raw form.
        for v in [0.1 + 0.2, f64::NAN, -0.0, 1.0 / 3.0] {
            assert!((per_sample(KnownFormat::Compact, v) - 12.0).abs() < 0.01, "{v}");
        }
    }

    #[test]
    fn truncated_or_lying_bytes_are_refused() {
        for format in FORMATS {
            let (write, _) = written(format, &[(5, vec![(10, 1.0f64.to_bits()), (20, 2.5f64.to_bits())])]);
            let bytes = &write[2..];
            KnownReader::validate(bytes, format).unwrap();
            for cut in 1..bytes.len() {
                assert!(KnownReader::validate(&bytes[..cut], format).is_err(), "{format:?}: cut at {cut}");
            }
            // A count larger than the bytes could hold.
            assert!(KnownReader::validate(&[0x0a, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0], format).is_err());
            // Dropping a series unread moves on to the next one.
            let two = [(1, vec![(1, 1.0f64.to_bits())]), (2, vec![(2, 2.0f64.to_bits())])];
            let (write, _) = written(format, &two);
            let mut r = KnownReader::new(&write[2..], format);
            drop(r.next_series().unwrap());
            assert_eq!(r.next_series().unwrap().map(|s| s.id), Some(2));
        }
        // A compact value whose low bits are those of the raw form but which is not it.
        assert!(KnownReader::validate(&[0x02, 0x01, 0x02, 0x0f], KnownFormat::Compact).is_err());
        assert!(
            KnownReader::validate(&[0x02, 0x01, 0x02, 0x07], KnownFormat::Compact).is_err(),
            "no bytes after"
        );
        KnownReader::validate(&[0x02, 0x01, 0x02, 0x05], KnownFormat::Compact).unwrap();
    }
}
