//! [`HotExec`]: a scan of the hot store (RocksDB) as a DataFusion plan node. Reading RocksDB
//! blocks, so the rows are made on a blocking thread and handed over a bounded channel: the
//! async threads never wait on the disk, and a query that stops reading (a `LIMIT` met, a
//! client gone, a timeout) stops the producer: at its next batch, or sooner where it asks
//! [`Emit::wanted`] while it reads rows it does not keep.

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

/// Makes a scan's rows, in batches of the table's full schema, handing each to
/// [`Emit::send`] until it answers false (the query no longer wants rows).
pub(crate) type Produce = Arc<dyn Fn(&mut Emit) -> std::result::Result<(), String> + Send + Sync>;

/// Where a producer's batches go.
pub(crate) struct Emit {
    tx: tokio::sync::mpsc::Sender<Result<RecordBatch>>,
    projection: Option<Vec<usize>>,
    failed: Option<DataFusionError>,
}

impl Emit {
    /// Hands `batch` to the plan above (waiting while it is busy): false when the query no
    /// longer wants rows, or the batch could not be projected.
    pub(crate) fn send(&mut self, batch: RecordBatch) -> bool {
        let batch = match &self.projection {
            Some(p) => match batch.project(p) {
                Ok(b) => b,
                Err(e) => {
                    self.failed = Some(DataFusionError::ArrowError(Box::new(e), None));
                    return false;
                }
            },
            None => batch,
        };
        // An error: the stream was dropped (the query is done or cancelled).
        self.tx.blocking_send(Ok(batch)).is_ok()
    }

    /// Whether the query still wants rows. A producer that reads many rows for each one it
    /// keeps (a selective filter) asks between rows: otherwise a cancelled query's scan would
    /// read on, holding its cold boundary, until it had a batch to send.
    pub(crate) fn wanted(&self) -> bool {
        !self.tx.is_closed()
    }
}

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
        let mut emit = Emit { tx: builder.tx(), projection: self.projection.clone(), failed: None };
        let produce = self.produce.clone();
        builder.spawn_blocking(move || {
            let produced = produce(&mut emit);
            if let Some(e) = emit.failed {
                return Err(e);
            }
            produced.map_err(DataFusionError::Execution)
        });
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Schema;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_producer_asking_wanted_stops_when_the_query_is_dropped() {
        const BOUND: usize = 1 << 34;
        let (read, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (r, d) = (read.clone(), done.clone());
        // Reads rows it never keeps, as a filter matching nothing would.
        let produce: Produce = Arc::new(move |emit| {
            while emit.wanted() && r.fetch_add(1, Ordering::Relaxed) < BOUND {}
            d.store(true, Ordering::Release);
            Ok(())
        });
        let plan = Arc::new(HotExec::new("test".into(), Arc::new(Schema::empty()), None, produce).unwrap());
        let stream = plan.execute(0, Arc::new(TaskContext::default())).unwrap();
        while read.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        drop(stream);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done.load(Ordering::Acquire) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(done.load(Ordering::Acquire), "the producer still runs 30 s after the query was dropped");
        assert!(read.load(Ordering::Relaxed) < BOUND, "it stopped because the query was gone");
    }
}
