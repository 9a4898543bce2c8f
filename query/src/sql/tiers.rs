//! Joining a table's cold and hot scans into one plan.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;

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
