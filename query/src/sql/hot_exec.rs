//! [`HotExec`]: a scan of the hot store (RocksDB) as a DataFusion plan node. Reading RocksDB
//! blocks, so the rows are made on a blocking thread and handed over a bounded channel: the
//! async threads never wait on the disk, and a query that stops reading (a `LIMIT` met, a
//! client gone) stops the producer at its next batch.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};

/// Makes a scan's rows, in batches of the table's full schema, handing each to `emit` until it
/// answers false (the query no longer wants rows).
pub(crate) type Produce =
    Arc<dyn Fn(&mut dyn FnMut(RecordBatch) -> bool) -> std::result::Result<(), String> + Send + Sync>;

/// Batches waiting between the producer and the plan above.
const CHANNEL_BATCHES: usize = 2;

pub(crate) struct HotExec {
    /// The scan as `EXPLAIN` shows it: the table and what was pushed down.
    what: String,
    /// The table's full schema, and the columns the plan wants of it.
    table_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
    produce: Produce,
}

impl fmt::Debug for HotExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotExec").field("what", &self.what).finish_non_exhaustive()
    }
}

impl HotExec {
    pub(crate) fn new(
        what: String,
        table_schema: SchemaRef,
        projection: Option<&Vec<usize>>,
        produce: Produce,
    ) -> Result<Self> {
        let schema = match projection {
            Some(p) => Arc::new(table_schema.project(p)?),
            None => table_schema.clone(),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            what,
            table_schema,
            projection: projection.cloned(),
            properties: Arc::new(properties),
            produce,
        })
    }
}

impl DisplayAs for HotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "HotExec: {}", self.what)?;
        if let Some(p) = &self.projection {
            let names: Vec<&str> = p.iter().map(|i| self.table_schema.field(*i).name().as_str()).collect();
            write!(f, ", projection=[{}]", names.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for HotExec {
    fn name(&self) -> &str {
        "HotExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_plan::PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("HotExec has no children".into()))
        }
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!("HotExec has one partition, not {partition}")));
        }
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema(), CHANNEL_BATCHES);
        let tx = builder.tx();
        let produce = self.produce.clone();
        let projection = self.projection.clone();
        builder.spawn_blocking(move || {
            let mut failed = None;
            let mut emit = |batch: RecordBatch| -> bool {
                let batch = match &projection {
                    Some(p) => match batch.project(p) {
                        Ok(b) => b,
                        Err(e) => {
                            failed = Some(DataFusionError::ArrowError(Box::new(e), None));
                            return false;
                        }
                    },
                    None => batch,
                };
                // An error: the stream was dropped (the query is done or cancelled).
                tx.blocking_send(Ok(batch)).is_ok()
            };
            let produced = produce(&mut emit);
            if let Some(e) = failed {
                return Err(e);
            }
            produced.map_err(DataFusionError::Execution)
        });
        Ok(builder.build())
    }
}
