//! Stream aggregation's pure logic: windows over event time, watermarks, accumulators and
//! sketches. Called from apply, so everything here must give the same result and the same
//! bytes on every replica for the same calls in the same order: no clocks, no randomness, no
//! platform maths where a result is kept (see `ddsketch`), no iteration over hash maps.
//!
//! It must not depend on RocksDB, Raft or any I/O: the store keeps its state and feeds it
//! events. Rules are data ([`EventRule`]). Users' rules travel in the log as
//! `v1::AggregationRule` and are checked and built here (`rule_proto`), so that apply decides
//! alike everywhere; ingest owns their front ends. The meetings pack is still declared here
//! (`meetings`): its combined formulas (engagement, health) are not outputs a user rule can
//! name, so moving it to ingest means putting formulas in the log message first.

pub mod acc;
pub mod ddsketch;
pub mod distinct;
pub mod event_rule;
pub mod formula;
pub mod measures;
pub mod meetings;
pub(crate) mod panes;
pub mod rule;
pub mod rule_proto;
pub mod sample_rule;
pub mod sessions;
pub mod state;
pub(crate) mod totals;
pub mod watermark;
pub mod window;
pub mod windows;

#[cfg(test)]
mod meetings_tests;
#[cfg(test)]
mod sessions_tests;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod totals_tests;
#[cfg(test)]
mod windows_tests;

pub use acc::{Acc, Needs, Output};
pub use event_rule::{EventField, EventFilter, EventRule, MeasureSpec, OutputSeries, group_key};
pub use formula::{Formula, Health, MeasureId};
pub use measures::{Input, Measures, Observation};
pub use rule::{Emission, EmissionKind, Rule, WindowRule};
pub use sessions::Sessions;
pub use state::{ColdRows, NoColdRows};
pub use window::WindowKind;
pub use windows::Windows;
