//! [`WindowKind`]: how event time is cut into windows (DESIGN §3).
//!
//! Tumbling windows are aligned to multiples of their size since the Unix epoch, sliding
//! windows to multiples of their hop; a window `[start, end)` holds events with
//! `start ≤ ts < end`. Both are kept as panes (the window itself, or one hop of it), merged in
//! ascending order when a sliding window is emitted, so that a float sum adds the same numbers
//! in the same order on every replica. Session windows close after `gap` without events.

use std::time::Duration;

/// At most this many hops in a sliding window: each event updates one pane, but each pane is
/// in `size / hop` windows, and each of those is emitted (and corrected) on its own.
pub const MAX_HOPS_PER_WINDOW: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling { size_ms: i64 },
    Sliding { size_ms: i64, hop_ms: i64 },
    Session { gap_ms: i64 },
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WindowKind {
    pub fn tumbling(size: Duration) -> Self {
        WindowKind::Tumbling { size_ms: ms(size) }
    }

    pub fn sliding(size: Duration, hop: Duration) -> Self {
        WindowKind::Sliding { size_ms: ms(size), hop_ms: ms(hop) }
    }

    pub fn session(gap: Duration) -> Self {
        WindowKind::Session { gap_ms: ms(gap) }
    }

    /// Refuses windows that cannot be aligned or would cost without bound, saying why.
    pub fn validate(&self) -> Result<(), String> {
        let day = 86_400_000 * 366;
        match *self {
            WindowKind::Tumbling { size_ms } if !(1..=day).contains(&size_ms) => {
                Err(format!("window size must be between 1ms and 366d, got {size_ms}ms"))
            }
            WindowKind::Sliding { size_ms, hop_ms } => {
                if !(1..=day).contains(&size_ms) || !(1..=size_ms).contains(&hop_ms) {
                    Err(format!(
                        "a sliding window needs 0 < hop ≤ size ≤ 366d, got size {size_ms}ms and hop {hop_ms}ms"
                    ))
                } else if size_ms % hop_ms != 0 {
                    Err(format!(
                        "a sliding window's size must be a multiple of its hop, got {size_ms}ms and {hop_ms}ms"
                    ))
                } else if size_ms / hop_ms > MAX_HOPS_PER_WINDOW {
                    Err(format!(
                        "a sliding window may hold at most {MAX_HOPS_PER_WINDOW} hops, got {}",
                        size_ms / hop_ms
                    ))
                } else {
                    Ok(())
                }
            }
            WindowKind::Session { gap_ms } if !(1..=day).contains(&gap_ms) => {
                Err(format!("a session gap must be between 1ms and 366d, got {gap_ms}ms"))
            }
            _ => Ok(()),
        }
    }

    /// The window's length (for sessions, the gap: a session is at least that long).
    pub fn size_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms } | WindowKind::Sliding { size_ms, .. } => size_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// The pane length of a tumbling (its size) or sliding (its hop) window.
    pub(crate) fn pane_ms(&self) -> i64 {
        match *self {
            WindowKind::Tumbling { size_ms } => size_ms,
            WindowKind::Sliding { hop_ms, .. } => hop_ms,
            WindowKind::Session { gap_ms } => gap_ms,
        }
    }

    /// The start of the pane holding `ts`.
    pub(crate) fn pane_start(&self, ts: i64) -> i64 {
        let p = self.pane_ms();
        ts.div_euclid(p).saturating_mul(p)
    }

    /// The ends of the windows that hold the pane starting at `pane`, ascending.
    pub(crate) fn window_ends(&self, pane: i64) -> impl Iterator<Item = i64> + use<> {
        let (p, size) = (self.pane_ms(), self.size_ms());
        (1..=size / p).map(move |k| pane.saturating_add(k * p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_and_windows_are_aligned_to_the_epoch() {
        let t = WindowKind::tumbling(Duration::from_secs(30));
        assert_eq!(t.pane_start(59_999), 30_000);
        assert_eq!(t.pane_start(-1), -30_000);
        assert_eq!(t.window_ends(30_000).collect::<Vec<_>>(), [60_000]);
        let s = WindowKind::sliding(Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(s.pane_start(25_000), 20_000);
        // The pane [20 s, 30 s) is in the windows ending at 30, 40 and 50 s.
        assert_eq!(s.window_ends(20_000).collect::<Vec<_>>(), [30_000, 40_000, 50_000]);
    }

    #[test]
    fn bad_windows_are_refused_with_the_reason() {
        let bad = [
            (WindowKind::Tumbling { size_ms: 0 }, "between 1ms"),
            (WindowKind::Sliding { size_ms: 30, hop_ms: 40 }, "hop ≤ size"),
            (WindowKind::Sliding { size_ms: 30, hop_ms: 7 }, "multiple of its hop"),
            (WindowKind::Sliding { size_ms: 1_000_000, hop_ms: 1 }, "at most 1000 hops"),
            (WindowKind::Session { gap_ms: -5 }, "session gap"),
        ];
        for (w, why) in bad {
            let err = w.validate().unwrap_err();
            assert!(err.contains(why), "{w:?}: {err}");
        }
        assert!(WindowKind::sliding(Duration::from_secs(30), Duration::from_secs(10)).validate().is_ok());
    }
}
