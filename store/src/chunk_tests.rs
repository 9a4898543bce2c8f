use collabstream_common::STALE_NAN_BITS;
use proptest::prelude::*;

use super::*;

fn assert_round_trip(samples: &[(i64, f64)]) {
    let decoded = decode(&encode(samples)).expect("decodes");
    assert_eq!(decoded.len(), samples.len());
    for (a, b) in samples.iter().zip(&decoded) {
        assert_eq!(a.0, b.0);
        assert_eq!(a.1.to_bits(), b.1.to_bits(), "value {} came back as {}", a.1, b.1);
    }
}

#[test]
fn empty_and_single() {
    assert_round_trip(&[]);
    assert_round_trip(&[(42, 1.5)]);
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
}

#[test]
fn decimal_values_use_the_compact_mode() {
    let samples: Vec<_> =
        (0..480).map(|i| (1_700_000_000_000 + i * 15_000, 12.25 + i as f64 * 0.5)).collect();
    let bytes = encode(&samples);
    assert_round_trip(&samples);
    // Regular timestamps and an arithmetic progression of decimals: far under a byte a sample.
    assert!(bytes.len() < 100, "chunk took {} bytes", bytes.len());
}

#[test]
fn decimal_detection_is_exact() {
    for v in [0.1, 0.2, 0.3, 1e-15, 123456.789, -5.5, 9007199254740991.0, 1e300, 0.1 + 0.2] {
        assert_round_trip(&[(0, v), (1, 1.0)]);
    }
}

#[test]
fn corrupt_input_is_an_error_not_a_panic() {
    let bytes = encode(&[(1, 1.0), (2, 2.0), (3, 3.5)]);
    for cut in 0..bytes.len() {
        let _ = decode(&bytes[..cut]);
    }
    assert!(decode(&[]).is_err());
    assert!(decode(&[9, 0]).is_err());
    assert!(decode(&[VERSION, BODY_PLAIN, 0xff, 0xff, 0xff, 0x0f]).is_err());
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
        walk in prop::collection::vec(-10_000i64..10_000, 1..500),
    ) {
        let mut m = 0i64;
        let samples: Vec<_> = walk.iter().enumerate().map(|(i, d)| {
            m += d;
            (start + i as i64 * 15_000, m as f64 / 10f64.powi(scale as i32))
        }).collect();
        assert_round_trip(&samples);
    }
}
