//! SQL over the store, with DataFusion (DESIGN §6): the tables `samples`, `series`, `events`,
//! `meeting_metrics` and one per aggregation rule (`samples` and `events` read the hot store and
//! the cold tier's Parquet files as one table; `series`, the rules' tables and
//! `meeting_metrics` read the hot store, where the rules' rows stay), with time ranges, metric
//! names and meetings pushed down; and the external tables of the catalog. Answered over HTTP (`POST /api/v1/sql`) and the PostgreSQL wire protocol.

mod catalog;
mod cold_scan;
mod config;
mod engine;
mod events_table;
mod external;
mod format;
mod hot_exec;
mod http;
mod label_udf;
mod location;
mod meeting_metrics;
mod node_schema;
mod pg;
mod pg_rows;
mod pushdown;
mod rule_table;
mod samples_table;
mod series_table;
mod store_table;
mod tiers;

pub use catalog::{S3Opener, TableCatalog};
pub use config::SqlConfig;
pub use engine::{BUILTIN_TABLES, SqlAnswer, SqlEngine, SqlSources};
pub use format::{csv, json_rows};
pub use http::router;
pub use pg::serve as serve_pg;

/// Why a statement got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SqlError {
    /// The statement does not parse or plan: the client's to fix (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// A statement of a kind not run here (HTTP 400).
    #[error("{0}")]
    Refused(String),
    #[error("the statement ran longer than its timeout of {0:?} ([sql] timeout)")]
    Timeout(std::time::Duration),
    #[error("the answer has more than {0} rows ([sql] max_rows): add a LIMIT or aggregate")]
    TooManyRows(usize),
    /// Over the memory limit (`[sql] memory_limit_bytes`).
    #[error("{0} (raise [sql] memory_limit_bytes, or narrow the statement)")]
    Resources(String),
    #[error("{0}")]
    Execution(String),
}
