//! [`SqlEngine`]: SQL statements over the node's tables, with DataFusion. Every statement gets
//! a session of its own with the tables as they are now (the aggregation rules running decide
//! which per-rule tables exist, the catalog which external ones); all share one runtime, so the memory limit holds for all of
//! them together, and one pool of slots bounds how many run at once.

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use collabstream_proto::v1;
use collabstream_store::Store;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{CreateExternalTable, DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;
use object_store::ObjectStore;
use tokio::sync::Semaphore;

use crate::sql::catalog::{Registry, S3Opener, TableCatalog, bare_name};
use crate::sql::config::SqlConfig;
use crate::sql::events_table::EventsTable;
use crate::sql::external::ExternalTables;
use crate::sql::meeting_metrics::MeetingMetrics;
use crate::sql::node_schema::{NodeSchema, Planned};
use crate::sql::rule_table::RuleTable;
use crate::sql::samples_table::SamplesTable;
use crate::sql::series_table::SeriesTable;
use crate::sql::store_table::StoreTable;
use crate::sql::{SqlError, cold_scan, label_udf};

/// The tables every node has; a rule of the same name gets no table of its own.
pub const BUILTIN_TABLES: [&str; 4] = ["samples", "series", "events", "meeting_metrics"];

/// A statement's answer: its columns and rows, in batches; for a statement that changes the
/// catalog, no rows and what it did (`CREATE EXTERNAL TABLE`, `DROP TABLE`).
#[derive(Debug, Clone)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub command: Option<&'static str>,
}

/// What an engine reads and where it commits catalog changes.
#[derive(Clone)]
pub struct SqlSources {
    pub store: Arc<Store>,
    /// The object store the cold tier writes to, whose paths the manifest names (`None`: no
    /// cold tier).
    pub cold: Option<Arc<dyn ObjectStore>>,
    /// Commits external table changes (`None`: `CREATE EXTERNAL TABLE` is refused).
    pub catalog: Option<Arc<dyn TableCatalog>>,
    /// Opens S3 buckets external tables name.
    pub s3: Option<S3Opener>,
}

impl std::fmt::Debug for SqlSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSources").field("cold", &self.cold.is_some()).finish_non_exhaustive()
    }
}

impl SqlAnswer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

#[derive(Clone)]
pub struct SqlEngine {
    store: Arc<Store>,
    catalog: Option<Arc<dyn TableCatalog>>,
    runtime: Arc<RuntimeEnv>,
    config: SqlConfig,
    slots: Arc<Semaphore>,
    /// The catalog's external tables, as built from their statements.
    external: Arc<ExternalTables>,
}

impl std::fmt::Debug for SqlEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlEngine").field("config", &self.config).finish_non_exhaustive()
    }
}

impl SqlEngine {
    pub fn new(sources: SqlSources, config: &SqlConfig) -> Result<Self, String> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.memory_limit_bytes.max(1 << 20), 1.0)
            .with_object_store_registry(Arc::new(Registry::new(sources.s3)))
            .build_arc()
            .map_err(|e| format!("SQL runtime: {e}"))?;
        if let Some(cold) = sources.cold {
            let url = ObjectStoreUrl::parse(cold_scan::COLD_URL).map_err(|e| e.to_string())?;
            runtime.register_object_store(url.as_ref(), cold);
        }
        Ok(Self {
            store: sources.store,
            catalog: sources.catalog,
            external: Arc::new(ExternalTables::new(runtime.clone(), config.external_paths.clone())),
            runtime,
            config: config.clone(),
            slots: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
        })
    }

    pub fn config(&self) -> &SqlConfig {
        &self.config
    }

    /// A session with every table as of now (an external table is built when a statement
    /// names it), and the mark to set once its statement is planned.
    async fn session(&self) -> Result<(SessionContext, Planned), SqlError> {
        let ctx = bare_session(&self.runtime);
        let store = &self.store;
        let mut own: Vec<(String, Arc<dyn TableProvider>)> = vec![
            ("samples".into(), Arc::new(StoreTable(SamplesTable::new(store.clone())))),
            ("series".into(), Arc::new(StoreTable(SeriesTable::new(store.clone())))),
            ("events".into(), Arc::new(StoreTable(EventsTable::new(store.clone())))),
            ("meeting_metrics".into(), Arc::new(StoreTable(MeetingMetrics::new(store.clone())))),
        ];
        // One view: rules and external tables as of the same entry.
        let view = store.sql_view();
        for t in &view.rules {
            own.push((t.name.clone(), Arc::new(StoreTable(RuleTable::new(store.clone(), t.clone())))));
        }
        let planned = Planned::default();
        let schema = NodeSchema::new(own, view.external.clone(), self.external.clone(), planned.clone());
        // Where an unqualified name resolves: DataFusion's default catalog and schema.
        let names = ctx.state().config_options().catalog.clone();
        let catalog = ctx.catalog(&names.default_catalog).ok_or_else(|| {
            SqlError::Execution(format!("the SQL session has no catalog {}", names.default_catalog))
        })?;
        catalog.register_schema(&names.default_schema, Arc::new(schema))?;
        ctx.register_udf(label_udf::label());
        Ok((ctx, planned))
    }

    /// The session `sql` is planned in: a table-less one for the external tables' DDL, which
    /// names no table to read (DataFusion would otherwise look the created name up, and a
    /// table that cannot be read could never be replaced).
    async fn session_for(&self, sql: &str) -> Result<(SessionContext, Planned), SqlError> {
        use datafusion::sql::parser::{DFParser, Statement as DFStatement};
        use datafusion::sql::sqlparser::ast::Statement;
        let ddl = DFParser::parse_sql(sql).is_ok_and(|parsed| match parsed.front() {
            Some(DFStatement::CreateExternalTable(_)) => parsed.len() == 1,
            Some(DFStatement::Statement(s)) => parsed.len() == 1 && matches!(**s, Statement::Drop { .. }),
            _ => false,
        });
        if ddl { Ok((bare_session(&self.runtime), Planned::default())) } else { self.session().await }
    }

    /// Runs one statement: a query (`SELECT`, `WITH`, `VALUES`, `EXPLAIN`, `SHOW`), within
    /// `[sql] timeout` and `max_rows`. Statements that change anything are refused: the data
    /// comes in through ingestion.
    pub async fn run(&self, sql: &str) -> Result<SqlAnswer, SqlError> {
        self.run_with(sql, &[]).await
    }

    /// [`SqlEngine::run`] with values for the statement's parameters (`$1`, `$2`, … in order,
    /// as text; each is converted to the type the statement gives its parameter).
    pub async fn run_with(&self, sql: &str, params: &[Option<String>]) -> Result<SqlAnswer, SqlError> {
        let started = Instant::now();
        let timeout = self.config.timeout;
        let _slot = tokio::time::timeout(timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| SqlError::Timeout(timeout))?
            .map_err(|_| SqlError::Execution("the SQL engine is shutting down".into()))?;
        let left = timeout.saturating_sub(started.elapsed());
        tokio::time::timeout(left, self.answer(sql, params)).await.map_err(|_| SqlError::Timeout(timeout))?
    }

    /// What a statement would answer with, without running it: its columns, and the types of
    /// its parameters (`$1`, `$2`, … in order; `None` where the statement does not say).
    pub async fn describe(&self, sql: &str) -> Result<(SchemaRef, Vec<Option<DataType>>), SqlError> {
        let (ctx, planned) = self.session_for(sql).await?;
        let plan = ctx.state().create_logical_plan(sql).await?;
        planned.set();
        if matches!(plan, LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_) | DdlStatement::DropTable(_)))
        {
            return Ok((Arc::new(arrow::datatypes::Schema::empty()), Vec::new()));
        }
        refuse_changes(&plan)?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        Ok((schema, parameter_types(&plan)?))
    }

    async fn answer(&self, sql: &str, params: &[Option<String>]) -> Result<SqlAnswer, SqlError> {
        let (ctx, planned) = self.session_for(sql).await?;
        let mut plan = ctx.state().create_logical_plan(sql).await?;
        planned.set();
        match &plan {
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) => {
                let cmd = cmd.clone();
                return self.create_external(sql, &cmd, &plan).await;
            }
            LogicalPlan::Ddl(DdlStatement::DropTable(cmd)) => {
                let (name, if_exists) = (cmd.name.table().to_string(), cmd.if_exists);
                return self.drop_external(&name, if_exists).await;
            }
            _ => refuse_changes(&plan)?,
        }
        if !params.is_empty() || !plan.get_parameter_types()?.is_empty() {
            let types = parameter_types(&plan)?;
            if types.len() != params.len() {
                return Err(SqlError::Invalid(format!(
                    "the statement has {} parameters, {} values were given",
                    types.len(),
                    params.len()
                )));
            }
            let mut values = Vec::with_capacity(params.len());
            for (i, (p, t)) in params.iter().zip(&types).enumerate() {
                let text = ScalarValue::Utf8(p.clone());
                let value = match t {
                    Some(t) => text.cast_to(t).map_err(|e| {
                        SqlError::Invalid(format!("parameter ${}: {:?} is not a {t}: {e}", i + 1, p))
                    })?,
                    None => text,
                };
                values.push(value);
            }
            plan = plan.with_param_values(values)?;
        }
        let frame = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await?;
        let (mut batches, mut rows) = (Vec::new(), 0usize);
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if rows > self.config.max_rows {
                return Err(SqlError::TooManyRows(self.config.max_rows));
            }
            batches.push(batch);
        }
        Ok(SqlAnswer { schema, batches, command: None })
    }

    fn done(command: &'static str) -> SqlAnswer {
        SqlAnswer {
            schema: Arc::new(arrow::datatypes::Schema::empty()),
            batches: Vec::new(),
            command: Some(command),
        }
    }

    /// `CREATE EXTERNAL TABLE`: checked (its location allowed, its files read), then committed.
    async fn create_external(
        &self,
        sql: &str,
        cmd: &CreateExternalTable,
        plan: &LogicalPlan,
    ) -> Result<SqlAnswer, SqlError> {
        let catalog = self.catalog.clone().ok_or_else(|| {
            SqlError::Refused(
                "this node keeps no SQL catalog: external tables need the replication layer".into(),
            )
        })?;
        let name = bare_name(cmd)?;
        if BUILTIN_TABLES.contains(&name.as_str())
            || self.store.aggregation_tables().iter().any(|t| t.name == name)
        {
            return Err(SqlError::Invalid(format!("{name} is a table of the store; choose another name")));
        }
        if self.store.sql_tables().iter().any(|t| t.name == name) {
            if cmd.if_not_exists {
                return Ok(Self::done("CREATE EXTERNAL TABLE"));
            }
            if !cmd.or_replace {
                return Err(SqlError::Invalid(format!(
                    "table {name} exists: DROP TABLE {name} first, or CREATE OR REPLACE EXTERNAL TABLE"
                )));
            }
        }
        // Reads the files' schema now: a table that cannot be read is refused, not committed.
        self.external.build(plan, None).await?;
        let statement = sql.trim().trim_end_matches(';').trim().to_string();
        let change = v1::SqlTableChange {
            change: Some(v1::sql_table_change::Change::Create(v1::SqlTable { name, statement })),
        };
        catalog.change(change).await.map_err(SqlError::Execution)?;
        Ok(Self::done("CREATE EXTERNAL TABLE"))
    }

    /// `DROP TABLE` of an external table.
    async fn drop_external(&self, name: &str, if_exists: bool) -> Result<SqlAnswer, SqlError> {
        if !self.store.sql_tables().iter().any(|t| t.name == name) {
            if if_exists {
                return Ok(Self::done("DROP TABLE"));
            }
            return Err(SqlError::Invalid(format!(
                "no external table {name}: DROP TABLE drops tables made with CREATE EXTERNAL TABLE"
            )));
        }
        let catalog =
            self.catalog.clone().ok_or_else(|| SqlError::Refused("this node keeps no SQL catalog".into()))?;
        let change =
            v1::SqlTableChange { change: Some(v1::sql_table_change::Change::Drop(name.to_string())) };
        catalog.change(change).await.map_err(SqlError::Execution)?;
        Ok(Self::done("DROP TABLE"))
    }
}

/// A session with no table, on `runtime` (shared: the memory limit holds for all sessions).
pub(crate) fn bare_session(runtime: &Arc<RuntimeEnv>) -> SessionContext {
    let config = SessionConfig::new().with_information_schema(true);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.clone())
        .with_default_features()
        .build();
    SessionContext::new_with_state(state)
}

/// The types of `$1`, `$2`, … (numbered from one, without gaps).
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, SqlError> {
    let types = plan.get_parameter_types()?;
    (1..=types.len())
        .map(|i| {
            types.get(&format!("${i}")).cloned().ok_or_else(|| {
                SqlError::Invalid(format!("parameters must be numbered $1 to ${} without gaps", types.len()))
            })
        })
        .collect()
}

/// Only reads run (and the external tables' DDL, handled before): other DDL, DML, `COPY` and
/// session statements are refused with what to do.
fn refuse_changes(plan: &LogicalPlan) -> Result<(), SqlError> {
    let what = match plan {
        LogicalPlan::Ddl(_) => "CREATE and DROP (but of external tables)",
        LogicalPlan::Dml(_) => "INSERT, UPDATE and DELETE",
        LogicalPlan::Copy(_) => "COPY",
        LogicalPlan::Statement(_) => "transaction and SET statements",
        _ => return Ok(()),
    };
    Err(SqlError::Refused(format!(
        "{what} are not supported: SQL here reads the store (samples, series, events, meeting_metrics \
         and a table per aggregation rule); data comes in through remote write, /api/v1/events, gRPC or Kafka"
    )))
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        let message = e.to_string();
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(..) => SqlError::Invalid(message),
            DataFusionError::ResourcesExhausted(..) => SqlError::Resources(message),
            _ => SqlError::Execution(message),
        }
    }
}
