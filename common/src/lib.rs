//! `collabstream-common`: the vocabulary every other crate shares (layer L0).
//!
//! Identifiers ([`SeriesId`], [`NodeId`]), the Prometheus data model ([`Labels`], [`Sample`],
//! the stale-marker bit pattern), [`TimeRange`], the injectable [`Clock`], [`ErrorCode`], the
//! one classification of failures that maps to gRPC and HTTP statuses, and the
//! [`histogram::Histogram`] of the node's own metrics.
//!
//! Must not depend on: tonic, rocksdb, datafusion, or any other crate of this workspace. It is
//! plain data so that every layer can use it without pulling in I/O.

mod clock;
mod error_code;
pub mod histogram;
mod label_limits;
mod labels;
mod sample;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error_code::ErrorCode;
pub use label_limits::LabelLimits;
pub use labels::{Label, LabelError, Labels, METRIC_NAME, normalize_labels};
pub use sample::{STALE_NAN_BITS, Sample, TimeRange, is_stale_nan};

/// Identifies one series inside one store. Assigned densely, in apply order, so that every
/// replica that applies the same log assigns the same ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesId(pub u64);

/// A Raft node identifier as given by `--node-id`.
pub type NodeId = u64;
