//! [`Settings`]: what apply depends on beyond the entries, replicated through the log.
//!
//! Once these came from each node's own TOML, so nodes configured differently (or a value
//! changed before a restart and a replay) kept different data from the same log. Now a node's
//! `[store]` values are only what its leader proposes (a `settings` entry); apply uses the
//! settings of the last such entry, kept with the data at checkpoints and in snapshots.

use collabstream_proto::v1;
use prost::Message;

use crate::config::StoreConfig;
use crate::head::HeadLimits;

/// The settings in force at an applied index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub out_of_order_window_ms: i64,
    pub dedup_capacity: usize,
    pub chunk_max_samples: usize,
    pub block_ms: i64,
    pub max_series: usize,
    /// Whether the meetings rule pack runs (DESIGN §3: on unless turned off).
    pub meetings_pack: bool,
}

impl Default for Settings {
    /// The built-in defaults: in force before the first settings entry.
    fn default() -> Self {
        Self::from_config(&StoreConfig::default())
    }
}

impl Settings {
    /// The settings a node's configuration asks for.
    pub fn from_config(c: &StoreConfig) -> Self {
        Self {
            out_of_order_window_ms: c.window_ms(),
            dedup_capacity: c.dedup_capacity,
            chunk_max_samples: c.chunk_max_samples,
            block_ms: c.block_ms(),
            max_series: c.max_series,
            meetings_pack: c.meetings_pack,
        }
    }

    pub fn to_proto(self) -> v1::ApplySettings {
        v1::ApplySettings {
            out_of_order_window_ms: self.out_of_order_window_ms,
            dedup_capacity: self.dedup_capacity as u64,
            chunk_max_samples: self.chunk_max_samples as u64,
            block_ms: self.block_ms,
            max_series: self.max_series as u64,
            meetings_pack: if self.meetings_pack { 1 } else { 2 },
        }
    }

    /// The settings an entry sets, over `self`: a field at 0 means the default, and a value
    /// outside what [`StoreConfig::validate`] allows keeps the current one (a proposer checks
    /// its configuration first, so this only guards apply against a bad entry, the same way
    /// on every replica). `block_ms` changes only while `empty` (no series yet): chunks
    /// already cut belong to blocks of the old size.
    pub(crate) fn updated(self, p: &v1::ApplySettings, empty: bool) -> Self {
        let d = Settings::default();
        let pick = |v: i64, default: i64, ok: bool, current: i64| match v {
            0 => default,
            _ if ok => v,
            _ => current,
        };
        let window = pick(
            p.out_of_order_window_ms,
            d.out_of_order_window_ms,
            p.out_of_order_window_ms > 0,
            self.out_of_order_window_ms,
        );
        let dedup = pick(
            p.dedup_capacity as i64,
            d.dedup_capacity as i64,
            p.dedup_capacity <= 10_000_000,
            self.dedup_capacity as i64,
        );
        let chunk = pick(
            p.chunk_max_samples as i64,
            d.chunk_max_samples as i64,
            (2..=100_000).contains(&p.chunk_max_samples),
            self.chunk_max_samples as i64,
        );
        let block = pick(p.block_ms, d.block_ms, p.block_ms >= 60_000, self.block_ms);
        let max_series = pick(p.max_series as i64, d.max_series as i64, p.max_series <= i64::MAX as u64, 0);
        Self {
            out_of_order_window_ms: window,
            dedup_capacity: dedup as usize,
            chunk_max_samples: chunk as usize,
            block_ms: if empty { block } else { self.block_ms },
            max_series: max_series as usize,
            meetings_pack: match p.meetings_pack {
                0 => d.meetings_pack,
                1 => true,
                2 => false,
                _ => self.meetings_pack,
            },
        }
    }

    pub(crate) fn limits(&self) -> HeadLimits {
        HeadLimits {
            window_ms: self.out_of_order_window_ms,
            block_ms: self.block_ms.max(1),
            max_samples: self.chunk_max_samples,
        }
    }

    pub(crate) fn encode(self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        v1::ApplySettings::decode(bytes).ok().map(|p| Settings::default().updated(&p, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_sets_valid_values_and_keeps_the_block_once_there_is_data() {
        let s = Settings::default();
        let p = v1::ApplySettings {
            out_of_order_window_ms: 10_000,
            dedup_capacity: 7,
            chunk_max_samples: 1, // below the minimum: the current value stays
            block_ms: 3_600_000,
            max_series: 0,
            meetings_pack: 2,
        };
        let fresh = s.updated(&p, true);
        assert_eq!((fresh.out_of_order_window_ms, fresh.dedup_capacity), (10_000, 7));
        assert_eq!((fresh.chunk_max_samples, fresh.block_ms), (s.chunk_max_samples, 3_600_000));
        assert_eq!(s.updated(&p, false).block_ms, s.block_ms);
        assert!(s.meetings_pack && !fresh.meetings_pack);
        assert_eq!(Settings::decode(&fresh.encode()), Some(fresh));
        // Zero fields mean the defaults, so an empty message goes back to them.
        assert_eq!(fresh.updated(&v1::ApplySettings::default(), true), Settings::default());
    }
}
