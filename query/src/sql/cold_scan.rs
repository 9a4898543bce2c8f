//! A scan of the cold tier's Parquet files as DataFusion reads any Parquet: row groups and
//! pages pruned by the query's filters (statistics and the page index; the optimizer pushes
//! them into the scan), rows filtered while decoding when a filter names more than the time
//! column, files read in parallel. Only the files the manifest names are read (never a
//! listing of the bucket, which may hold orphans of an interrupted pass), and only rows before
//! the boundary the hot store answers from.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::prelude::col;

/// The URL the cold tier's object store is registered under in every SQL session.
pub(crate) const COLD_URL: &str = "collabstream-cold://objects";

/// One file of the manifest, as the scan needs it.
#[derive(Debug, Clone)]
pub(crate) struct ColdFile {
    pub path: String,
    pub size: u64,
    /// The last row's time: a file reaching the boundary needs its rows filtered by it.
    pub max_time: i64,
}

/// Where the hot store takes over: rows whose `column` is at or after `at` are its.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Boundary<'a> {
    pub column: &'a str,
    pub at: i64,
}

/// Whether the query's `filters` are worth testing row by row while the files decode: only if
/// one names a column other than `time_column`. A time range alone is served by pruning row
/// groups and pages on their statistics; what is left of it is a filter above the scan, on
/// decoded batches, which costs less than deciding each row before its other columns decode
/// (measured in docs/benchmarks.md, "SQL aggregates against DuckDB").
pub(crate) fn selective(filters: &[Expr], time_column: &str) -> bool {
    filters.iter().any(|f| f.column_refs().iter().any(|c| c.name != time_column))
}

/// A scan of `files` (all of one table, `schema`), wanting `projection` of its columns and the
/// rows before `boundary`, deciding rows while decoding if `row_filter` (see [`selective`]);
/// `None` without files.
pub(crate) fn scan(
    state: &dyn Session,
    schema: &SchemaRef,
    files: Vec<ColdFile>,
    projection: Option<&Vec<usize>>,
    boundary: Boundary<'_>,
    limit: Option<usize>,
    row_filter: bool,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let (time_column, before) = (boundary.column, boundary.at);
    let boundary = col(time_column)
        .lt(Expr::Literal(ScalarValue::TimestampMillisecond(Some(before), Some("UTC".into())), None));
    let straddles = files.iter().any(|f| f.max_time >= before);
    let df_schema = DFSchema::try_from(schema.clone())?;
    // The query's own filters stay above the table (they are inexact) and DataFusion's
    // optimizer pushes them into this source itself; given here too, each would be tested
    // twice per row. The boundary only where a file reaches it: below it every row is cold.
    let mut source =
        ParquetSource::new(schema.clone()).with_enable_page_index(true).with_pushdown_filters(row_filter);
    if straddles {
        source = source.with_predicate(state.create_physical_expr(boundary.clone(), &df_schema)?);
    }
    // A group per file, up to the session's partitions: files are read in parallel.
    let groups = state.config().target_partitions().max(1);
    let mut files_of: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups.min(files.len()).max(1)];
    let n = files_of.len();
    for (i, f) in files.into_iter().enumerate() {
        files_of[i % n].push(PartitionedFile::new(f.path, f.size));
    }
    // A filter, not only a pruning predicate, decides a row at the boundary: with it the
    // limit cannot be pushed into the files.
    let limit = if straddles { None } else { limit };
    let config = FileScanConfigBuilder::new(ObjectStoreUrl::parse(COLD_URL)?, Arc::new(source))
        .with_file_groups(files_of.into_iter().map(FileGroup::new).collect())
        .with_limit(limit);
    if !straddles {
        let config = config.with_projection_indices(projection.cloned())?.build();
        return Ok(Some(DataSourceExec::from_data_source(config)));
    }
    // Blocks end on the boundary, so a file reaching past it is not expected; should one
    // come (a block written by a version that cut elsewhere), its later rows are the hot
    // store's.
    let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config.build());
    let filter = state.create_physical_expr(boundary, &df_schema)?;
    let filtered = FilterExecBuilder::new(filter, scan).apply_projection(projection.cloned())?.build()?;
    Ok(Some(Arc::new(filtered)))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::selective;

    #[test]
    fn only_a_filter_naming_more_than_time_is_decided_while_decoding() {
        let time = col("timestamp").gt_eq(lit(5i64)).and(col("timestamp").lt(lit(9i64)));
        assert!(!selective(&[], "timestamp"));
        assert!(!selective(std::slice::from_ref(&time), "timestamp"));
        assert!(selective(&[time.clone(), col("metric").eq(lit("up"))], "timestamp"));
        assert!(selective(&[time.or(col("value").gt(lit(1.0)))], "timestamp"));
    }
}
