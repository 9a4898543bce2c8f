//! [`Watermark`]: how far a rule's event time is taken to be complete (DESIGN §3).

/// The newest event time seen minus `max_out_of_orderness`; once no event has come for
/// `idle_timeout` of the leader's clock, the clock minus `max_out_of_orderness`. It never moves
/// back, and starts at `i64::MIN` (nothing complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    value: i64,
    last_event_clock: Option<i64>,
    max_out_of_orderness_ms: i64,
    idle_timeout_ms: i64,
}

impl Watermark {
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Self { value: i64::MIN, last_event_clock: None, max_out_of_orderness_ms, idle_timeout_ms }
    }

    pub fn get(&self) -> i64 {
        self.value
    }

    /// What a checkpoint keeps of it (the settings come from the rule).
    pub(crate) fn saved(&self) -> (i64, Option<i64>) {
        (self.value, self.last_event_clock)
    }

    /// The watermark as [`saved`](Self::saved).
    pub(crate) fn restored(self, (value, last_event_clock): (i64, Option<i64>)) -> Self {
        Self { value, last_event_clock, ..self }
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
