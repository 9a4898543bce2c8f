use collabstream_common::STALE_NAN_BITS;
use proptest::prelude::*;

use super::*;

fn assert_round_trip(samples: &[(i64, f64)]) {
    for base in [samples.first().map_or(0, |s| s.0), 0, i64::MIN, i64::MAX] {
        for bytes in [encode(base, samples), encode_plain(base, samples)] {
            let decoded = decode(base, &bytes).expect("decodes");
            assert_eq!(decoded.len(), samples.len());
            for (a, b) in samples.iter().zip(&decoded) {
                assert_eq!(a.0, b.0);
                assert_eq!(a.1.to_bits(), b.1.to_bits(), "value {} came back as {}", a.1, b.1);
            }
        }
    }
}

fn steady(n: i64, value: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (1_700_000_000_000 + i * 15_000, value(i))).collect()
}

#[test]
fn empty_and_single() {
    assert_round_trip(&[]);
    assert_round_trip(&[(42, 1.5)]);
    assert_round_trip(&[(42, f64::NAN)]);
}

#[test]
fn special_values_are_bit_exact() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    assert_round_trip(&[
        (1, 1.0),
        (2, stale),
        (3, f64::NAN),
        (4, f64::INFINITY),
        (5, f64::NEG_INFINITY),
        (6, -0.0),
        (7, f64::MIN_POSITIVE),
        (8, f64::MAX),
    ]);
    assert_round_trip(&steady(100, |_| stale));
    assert_round_trip(&steady(100, |_| -0.0));
}

#[test]
fn decimal_values_use_the_compact_mode() {
    let samples = steady(480, |i| 12.25 + i as f64 * 0.5);
    let bytes = encode(samples[0].0, &samples);
    assert_round_trip(&samples);
    // Regular timestamps and an arithmetic progression of decimals: far under a byte a sample.
    assert!(bytes.len() < 60, "chunk took {} bytes", bytes.len());
}

#[test]
fn a_constant_series_with_a_steady_scrape_is_a_dozen_bytes() {
    for v in [0.0, 1.0, 1500.0, 4.2e9, f64::from_bits(STALE_NAN_BITS)] {
        let samples = steady(480, |_| v);
        let bytes = encode(samples[0].0, &samples);
        assert!(bytes.len() <= 16, "{v}: {} bytes", bytes.len());
        assert_round_trip(&samples);
    }
}

#[test]
fn deltas_are_divided_by_their_common_divisor() {
    // A page-aligned memory gauge: deltas are multiples of 4096.
    let pages = [3i64, -17, 64, 0, -64, 5, 9, -2];
    let samples =
        steady(480, |i| ((1 << 30) + 4096 * pages.iter().cycle().take(i as usize).sum::<i64>()) as f64);
    let bytes = encode(samples[0].0, &samples);
    assert_round_trip(&samples);
    // About a byte a sample before zstd, instead of three.
    assert!(bytes.len() < 480, "chunk took {} bytes", bytes.len());
}

#[test]
fn the_first_timestamp_is_relative_to_the_base() {
    let samples = steady(10, |i| i as f64);
    let at_key = encode(samples[0].0, &samples);
    let at_zero = encode(0, &samples);
    assert_eq!(at_zero.len() - at_key.len(), 5, "a unix timestamp in ms takes six bytes, a zero one");
    assert_eq!(decode(samples[0].0 - 1, &at_key).unwrap()[0].0, samples[0].0 - 1, "the base is the reader's");
}

#[test]
fn irregular_timestamps_and_xor_values_round_trip() {
    let samples: Vec<_> = (0..300i64).map(|i| (i * i * 7 + i % 3, (i as f64).sqrt().sin())).collect();
    assert_round_trip(&samples);
    let bytes = encode(0, &samples);
    assert_ne!(bytes[1] & TS_DOD, 0);
    assert_eq!((bytes[1] >> VALUES_SHIFT) & 3, VALUES_XOR);
}

#[test]
fn decimal_detection_is_exact() {
    for v in [0.1, 0.2, 0.3, 1e-15, 123456.789, -5.5, 9007199254740991.0, 1e300, 0.1 + 0.2] {
        assert_round_trip(&[(0, v), (1, 1.0)]);
    }
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let samples = steady(200, |i| (i * i) as f64 / 7.0);
    for bytes in [encode(0, &[(1, 1.0), (2, 2.0), (3, 3.5)]), encode(0, &samples)] {
        for cut in 0..bytes.len() {
            let _ = decode(0, &bytes[..cut]);
        }
        let mut flipped = bytes.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x5a;
            let _ = decode(0, &flipped);
            flipped[i] ^= 0x5a;
        }
    }
    assert!(decode(0, &[]).is_err());
    assert!(decode(0, &[9, 0]).is_err());
    assert!(decode(0, &[VERSION, 0, 0xff, 0xff, 0xff, 0x0f]).is_err(), "implausible count");
}

#[test]
fn format_1_chunks_are_still_read() {
    // Written by format 1: 3 samples at 10, 20, 30 as decimals 1.5, 2.0, 1.5 (exponent -1,
    // mantissa deltas 15, 5, -5), plain; then the same body zstd-compressed; then XOR values.
    let body = [3, 20, 20, 0, 1, 1, 30, 10, 9];
    let expected = [(10, 1.5), (20, 2.0), (30, 1.5)];
    let mut plain = vec![1, 0];
    plain.extend_from_slice(&body);
    assert_eq!(decode(0, &plain).unwrap(), expected);
    let mut zipped = vec![1, 1, body.len() as u8];
    zipped.extend(zstd::bulk::compress(&body, 3).unwrap());
    assert_eq!(decode(12345, &zipped).unwrap(), expected, "format 1 has no base");
    let mut xor = vec![1, 0, 2, 2, 2, 0];
    xor.extend_from_slice(&2.5f64.to_bits().to_be_bytes());
    xor.extend_from_slice(&(2.5f64.to_bits() ^ (-1.0f64).to_bits()).to_be_bytes());
    assert_eq!(decode(0, &xor).unwrap(), [(1, 2.5), (2, -1.0)]);
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|m| m as f64 / 100.0),
        (0u64..u64::MAX).prop_map(f64::from_bits),
        Just(f64::from_bits(STALE_NAN_BITS)),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trips_random_samples(
        start in any::<i64>().prop_map(|t| t / 4),
        steps in prop::collection::vec(0i64..1_000_000, 0..300),
        values in prop::collection::vec(any_value(), 300),
    ) {
        let mut t = start;
        let samples: Vec<_> = steps.iter().zip(&values).map(|(s, v)| { t = t.saturating_add(*s + 1); (t, *v) }).collect();
        assert_round_trip(&samples);
    }

    #[test]
    fn round_trips_decimal_series(
        start in 0i64..2_000_000_000_000,
        scale in 0u32..6,
        step in 1i64..5_000,
        walk in prop::collection::vec(-10_000i64..10_000, 1..500),
    ) {
        let mut m = 0i64;
        let samples: Vec<_> = walk.iter().enumerate().map(|(i, d)| {
            m += d * step;
            (start + i as i64 * 15_000, m as f64 / 10f64.powi(scale as i32))
        }).collect();
        assert_round_trip(&samples);
    }
}
