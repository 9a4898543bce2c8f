//! Prometheus's PromQL test-file format (`promql/promqltest` in the Prometheus repository),
//! parsed into commands a runner can execute against our engine.
//!
//! ```text
//! load 5m
//!     http_requests{job="api"}  0+10x10 _ stale {{schema:0 sum:1 count:1}}
//! eval instant at 50m sum(http_requests)
//!     expect no_warn
//!     {} 100
//! eval range from 0 to 20m step 5m rate(http_requests[5m])
//!     {job="api"} 0 0.03 _ 0.03
//! clear
//! ```

pub mod parse;
pub mod run;
pub mod values;
