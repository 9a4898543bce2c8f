//! [`Engine`]: the window engine a rule runs (panes for tumbling and sliding windows, sessions),
//! behind one interface, and the [`RuleStats`] `/metrics` shows of it.

use crate::agg::panes::Group;
use crate::agg::state::RowSink;
use crate::agg::{ColdRows, Emission, Observation, Sessions, WindowKind, WindowRule, Windows};
use crate::error::Result;

#[derive(Debug)]
pub(crate) enum Engine {
    Windows(Windows),
    Sessions(Sessions),
}

impl Engine {
    pub(crate) fn new(rule: &WindowRule) -> Self {
        match rule.window {
            WindowKind::Session { .. } => Engine::Sessions(Sessions::new(rule.clone())),
            _ => Engine::Windows(Windows::new(rule.clone())),
        }
    }

    pub(crate) fn restore<'a>(
        rule: &WindowRule,
        meta: &[u8],
        rows: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<Self> {
        Ok(match rule.window {
            WindowKind::Session { .. } => Engine::Sessions(Sessions::restore(rule.clone(), meta, rows)?),
            _ => Engine::Windows(Windows::restore(rule.clone(), meta, rows)?),
        })
    }

    /// Windows read the panes they let go of from memory through `cold`; sessions are all
    /// in memory.
    pub(crate) fn observe(
        &mut self,
        clock: i64,
        group: &[u8],
        o: &Observation,
        cold: &dyn ColdRows,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        match self {
            Engine::Windows(w) => w.observe(clock, group, o, cold, out),
            Engine::Sessions(s) => {
                s.observe(clock, group, o, out);
                Ok(())
            }
        }
    }

    /// [`Engine::observe`] with the group's key shared by every rule (`None` for an event
    /// that feeds no measure): see [`Windows::observe_group`].
    pub(crate) fn observe_group(
        &mut self,
        clock: i64,
        group: Option<&Group>,
        o: &Observation,
        cold: &dyn ColdRows,
        out: &mut Vec<Emission>,
    ) -> Result<()> {
        match self {
            Engine::Windows(w) => w.observe_group(clock, group.cloned(), o, cold, out),
            Engine::Sessions(s) => {
                s.observe(clock, group.map_or(&[][..], |g| &g[..]), o, out);
                Ok(())
            }
        }
    }

    pub(crate) fn tick(&mut self, clock: i64, cold: &dyn ColdRows, out: &mut Vec<Emission>) -> Result<()> {
        match self {
            Engine::Windows(w) => w.tick(clock, cold, out),
            Engine::Sessions(s) => {
                s.tick(clock, out);
                Ok(())
            }
        }
    }

    /// The corrections an entry's late events made (see [`Windows::flush_corrections`]);
    /// sessions emit theirs at once.
    pub(crate) fn flush(&mut self, cold: &dyn ColdRows, out: &mut Vec<Emission>) -> Result<()> {
        match self {
            Engine::Windows(w) => w.flush_corrections(cold, out),
            Engine::Sessions(_) => Ok(()),
        }
    }

    /// Lets go of window panes from memory beyond `keep` (see [`Windows::evict`]).
    pub(crate) fn evict(&mut self, keep: usize) {
        if let Engine::Windows(w) = self {
            w.evict(keep);
        }
    }

    /// Keys held in memory that [`Engine::evict`] can let go of (sessions stay in memory).
    pub(crate) fn evictable_keys(&self) -> usize {
        match self {
            Engine::Windows(w) => w.hot_panes(),
            Engine::Sessions(_) => 0,
        }
    }

    /// Writes the rows changed since the last call into `sink`; gives the meta row.
    pub(crate) fn write_changes(&mut self, sink: &mut impl RowSink) -> Vec<u8> {
        match self {
            Engine::Windows(w) => w.write_changes(sink),
            Engine::Sessions(s) => s.write_changes(sink),
        }
    }

    pub(crate) fn stats(&self, rule: &str) -> RuleStats {
        let (watermark, late_dropped, open_keys, state_bytes) = match self {
            Engine::Windows(w) => (w.watermark(), w.late_dropped(), w.open_panes(), w.state_bytes()),
            Engine::Sessions(s) => (s.watermark(), s.late_dropped(), s.open_sessions(), s.state_bytes()),
        };
        RuleStats {
            rule: rule.to_string(),
            watermark,
            late_dropped,
            open_keys,
            events: 0,
            emitted: 0,
            corrections: 0,
            samples_ignored: 0,
            input_series: 0,
            state_bytes,
        }
    }
}

/// What `/metrics` shows of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub rule: String,
    /// Event time (ms) up to which the rule takes its windows to be complete.
    pub watermark: i64,
    /// Events past their windows' allowed lateness, dropped.
    pub late_dropped: u64,
    /// Panes or sessions held, over all groups.
    pub open_keys: usize,
    /// Since this process started: events the rule took, windows emitted for the first time,
    /// and windows emitted again (corrections and withdrawn sessions).
    pub events: u64,
    pub emitted: u64,
    pub corrections: u64,
    /// A sample rule's samples at or before their series' last (resent or out of order).
    pub samples_ignored: u64,
    /// A sample rule's input series (each with its last sample held).
    pub input_series: usize,
    /// Bytes of the rule's state rows as its checkpoints wrote them: windows or sessions,
    /// and a sample rule's last sample per input series.
    pub state_bytes: u64,
}
