//! The PromQL engine: Prometheus 3.x semantics (5 m lookback, left-open windows, staleness
//! markers, `offset` and `@`, subqueries, delayed `__name__` removal) over any
//! [`SeriesRead`](collabstream_store::SeriesRead) source. promql-parser provides the syntax
//! tree; everything from planning the reads to formatting the result is here.

mod aggregate;
mod annotations;
mod binary;
mod engine;
mod error;
mod eval;
mod functions;
mod histogram;
mod range_functions;
mod stats;
mod value;

pub use annotations::Annotations;
pub use engine::{Engine, EngineOptions, QueryResult, QueryValue, parse};
pub use error::EvalError;
pub use eval::selector_matchers;
pub use stats::almost_equal;
pub use value::format_float;
