//! What a table over both tiers does alike: the files of the cold part of a scan (the
//! manifest's, before the boundary a scan holds), and the cold and hot scans joined into one
//! plan.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_store::ColdView;
use datafusion::common::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

use crate::sql::cold_scan::ColdFile;

/// The files of `table` in `view` that hold rows before `boundary` within `range`, and that
/// `keep` keeps. `boundary` is the one the scan holds, taken before `view`: a pass names a
/// block in the manifest before it moves the boundary past it, so a view taken after the
/// boundary names every file below it.
pub(crate) fn cold_files(
    view: &ColdView,
    table: &str,
    boundary: i64,
    range: TimeRange,
    keep: impl Fn(&v1::ColdBlock) -> bool,
) -> Vec<ColdFile> {
    if range.start >= boundary {
        return Vec::new();
    }
    view.blocks_of(table)
        .filter(|b| b.min_time_ms < boundary && range.overlaps(b.min_time_ms, b.max_time_ms))
        .filter(|b| keep(b))
        .map(|b| ColdFile { path: b.path.clone(), size: b.size, max_time: b.max_time_ms })
        .collect()
}

/// The cold scan's rows, then the hot scan's (either may be absent: a range that is all hot,
/// or all cold); nothing to read is an empty plan of the projected schema.
pub(crate) fn union(
    cold: Option<Arc<dyn ExecutionPlan>>,
    hot: Option<Arc<dyn ExecutionPlan>>,
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let inputs: Vec<Arc<dyn ExecutionPlan>> = cold.into_iter().chain(hot).collect();
    if inputs.is_empty() {
        let schema = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => schema.clone(),
        };
        return Ok(Arc::new(EmptyExec::new(schema)));
    }
    UnionExec::try_new(inputs)
}
