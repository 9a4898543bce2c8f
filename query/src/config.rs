//! Query limits and defaults, the `[query]` section of the server configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Durations are human-readable in TOML (`"2m"`, `"5m"`). Defaults are Prometheus's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample.
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
    /// How long one query may run; a request's `timeout` can only shorten it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Samples one query may hold in memory.
    pub max_samples: usize,
    /// Queries and exports answered at once; more wait for a slot (within their timeout).
    pub max_concurrency: usize,
    /// The step of a subquery written without one, like Prometheus's evaluation interval.
    #[serde(with = "humantime_serde")]
    pub default_subquery_step: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 20,
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

impl QueryConfig {
    pub fn engine_options(&self) -> crate::promql::EngineOptions {
        crate::promql::EngineOptions {
            lookback: self.lookback_delta,
            max_samples: self.max_samples,
            timeout: self.timeout,
            default_subquery_step: self.default_subquery_step,
        }
    }
}
