//! Float samples, the stale marker, and time ranges.

/// The exact bit pattern Prometheus writes to mark a series stale. It is a NaN, so it must be
/// compared by bits, never by value; every codec keeps it bit-exact.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is Prometheus's stale marker (and not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample: unix milliseconds and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(timestamp_ms: i64, value: f64) -> Self {
        Self { timestamp_ms, value }
    }

    /// Equality by bits, so NaN payloads (the stale marker) compare as stored.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.timestamp_ms == other.timestamp_ms && self.value.to_bits() == other.value.to_bits()
    }
}

/// A closed interval of unix milliseconds, `start <= t <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange { start: i64::MIN, end: i64::MAX };

    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t <= self.end
    }

    pub fn overlaps(&self, start: i64, end: i64) -> bool {
        start <= self.end && self.start <= end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_specific_nan() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        assert!(stale.is_nan());
        assert!(is_stale_nan(stale));
        assert!(!is_stale_nan(f64::NAN));
        assert!(Sample::new(1, stale).bit_eq(&Sample::new(1, stale)));
        assert!(!Sample::new(1, stale).bit_eq(&Sample::new(1, f64::NAN)));
    }

    #[test]
    fn range_is_closed() {
        let r = TimeRange::new(10, 20);
        assert!(r.contains(10) && r.contains(20) && !r.contains(21));
        assert!(r.overlaps(20, 30) && !r.overlaps(21, 30));
    }
}
