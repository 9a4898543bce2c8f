//! `collabstream-workload`: synthetic data shaped like what users send, for benchmarks, demos
//! and `collabstream produce`.
//!
//! - [`NodeExporter`]: hosts exposing node-exporter-like series (CPU seconds, memory and
//!   filesystem bytes, network and disk counters, load averages, many constant or slowly
//!   moving series), scraped at a fixed interval.
//! - [`Meetings`]: meetings starting and ending, users joining, leaving and chatting, quality
//!   reports, some meetings on bad networks.
//!
//! Deterministic for a given seed, so benchmark runs are comparable. Must not depend on any
//! crate of this workspace but `proto`.

mod meetings;
mod node_exporter;

pub use meetings::Meetings;
pub use node_exporter::{NodeExporter, SERIES_PER_HOST};
