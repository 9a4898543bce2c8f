//! [`Watermark`]: how far a rule's event time is taken to be complete (DESIGN §3).

use crate::agg::state::Meta;

/// The newest event time seen minus `max_out_of_orderness`; once no event has come for
/// `idle_timeout` of the leader's clock, the clock minus `max_out_of_orderness`. It never moves
/// back, and starts at `i64::MIN` (nothing complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    value: i64,
    last_event_clock: Option<i64>,
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
    /// Events that came after their windows' allowed lateness (counted here: they tell the
    /// time too).
    late_dropped: u64,
}

impl Watermark {
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self {
            value: i64::MIN,
            last_event_clock: None,
            max_out_of_orderness_ms,
            idle_timeout_ms,
            late_dropped: 0,
        }
    }

    pub fn get(&self) -> i64 {
        self.value
    }

    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    /// An event at `ts`, in an entry stamped `clock_ms`, too late for any of its windows: it
    /// is counted, and the rule is not idle.
    pub fn drop_late(&mut self, clock_ms: i64, ts: i64) {
        self.late_dropped += 1;
        let moved = self.on_event(clock_ms, ts);
        debug_assert!(moved.is_none(), "a late event is behind the watermark");
    }

    /// What a checkpoint keeps of it (the settings come from the rule).
    pub(crate) fn saved(&self) -> Meta {
        Meta {
            watermark: self.value,
            last_event_clock: self.last_event_clock,
            late_dropped: self.late_dropped,
        }
    }

    /// The watermark as [`saved`](Self::saved).
    pub(crate) fn restored(self, m: Meta) -> Self {
        Self {
            value: m.watermark,
            last_event_clock: m.last_event_clock,
            late_dropped: m.late_dropped,
            ..self
        }
    }

    /// An event at `ts` in an entry stamped `clock_ms`; the new watermark if it moved.
    pub fn on_event(&mut self, clock_ms: i64, ts: i64) -> Option<i64> {
        self.last_event_clock = Some(clock_ms);
        self.raise(ts.saturating_sub(self.max_out_of_orderness_ms))
    }

    /// A tick of the leader's clock; the new watermark if the rule was idle long enough.
    pub fn on_tick(&mut self, clock_ms: i64) -> Option<i64> {
        let idle = self.last_event_clock.is_some_and(|c| clock_ms.saturating_sub(c) >= self.idle_timeout_ms);
        if idle { self.raise(clock_ms.saturating_sub(self.max_out_of_orderness_ms)) } else { None }
    }

    fn raise(&mut self, to: i64) -> Option<i64> {
        (to > self.value).then(|| {
            self.value = to;
            to
        })
    }
}
