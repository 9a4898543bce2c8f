//! [`ExternalTables`]: the external tables of the catalog as DataFusion tables, built from
//! their statements when a query first names one and kept while the statement stays the same.
//!
//! Every build checks the statement as this node sees it: only a `CREATE EXTERNAL TABLE` of
//! the name it is committed under, reading locations this node's `[sql] external_paths` allow.
//! The node that took the `CREATE` checked it too, but the catalog is replicated (and can be
//! changed through the Admin service directly), and each node has its own configuration and
//! file system. A table that cannot be built (files gone, a bucket unreachable) answers its
//! error to the statements that name it, from memory for [`RETRY_AFTER`] rather than waiting
//! on the same failure again; statements that do not name it never build it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_proto::v1;
use datafusion::common::TableReference;
use datafusion::datasource::TableProvider;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use parking_lot::Mutex;

use crate::sql::SqlError;
use crate::sql::catalog::bare_name;
use crate::sql::engine::bare_session;
use crate::sql::location::check_location;

/// How long a table that failed to build answers its error before it is tried again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);

enum Kept {
    Built(Arc<dyn TableProvider>),
    Failed(SqlError, Instant),
}

pub(crate) struct ExternalTables {
    runtime: Arc<RuntimeEnv>,
    allowed: Vec<PathBuf>,
    /// By statement.
    kept: Mutex<HashMap<String, Kept>>,
}

impl ExternalTables {
    pub(crate) fn new(runtime: Arc<RuntimeEnv>, allowed: Vec<PathBuf>) -> Self {
        Self { runtime, allowed, kept: Mutex::new(HashMap::new()) }
    }

    /// The table `t` defines, built now if its statement was not built before (or failed more
    /// than [`RETRY_AFTER`] ago).
    pub(crate) async fn table(&self, t: &v1::SqlTable) -> Result<Arc<dyn TableProvider>, SqlError> {
        match self.kept.lock().get(&t.statement) {
            Some(Kept::Built(table)) => return Ok(table.clone()),
            Some(Kept::Failed(e, at)) if at.elapsed() < RETRY_AFTER => return Err(e.clone()),
            _ => {}
        }
        let built = self.build_statement(t).await;
        let kept = match &built {
            Ok(table) => Kept::Built(table.clone()),
            Err(e) => {
                tracing::warn!(table = %t.name, error = %e, "an external SQL table cannot be read");
                Kept::Failed(e.clone(), Instant::now())
            }
        };
        self.kept.lock().insert(t.statement.clone(), kept);
        built
    }

    /// Forgets tables whose statements are no longer in the catalog.
    pub(crate) fn retain(&self, current: &[v1::SqlTable]) {
        self.kept.lock().retain(|s, _| current.iter().any(|t| t.statement == *s));
    }

    async fn build_statement(&self, t: &v1::SqlTable) -> Result<Arc<dyn TableProvider>, SqlError> {
        let plan = bare_session(&self.runtime).state().create_logical_plan(&t.statement).await?;
        self.build(&plan, Some(&t.name)).await.map_err(|e| match e {
            SqlError::Invalid(m) | SqlError::Execution(m) => {
                SqlError::Execution(format!("external table {} cannot be read: {m}", t.name))
            }
            other => other,
        })
    }

    /// Builds the table a `CREATE EXTERNAL TABLE` defines (its name `expect`ed, if given),
    /// after checking its locations, on a session of its own (so that the statement defines
    /// nothing else); anything but such a statement is refused.
    pub(crate) async fn build(
        &self,
        plan: &LogicalPlan,
        expect: Option<&str>,
    ) -> Result<Arc<dyn TableProvider>, SqlError> {
        let LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd)) = plan else {
            return Err(SqlError::Refused(
                "an external table is defined by CREATE EXTERNAL TABLE only".into(),
            ));
        };
        let name = bare_name(cmd)?;
        if let Some(expect) = expect.filter(|e| *e != name) {
            return Err(SqlError::Refused(format!(
                "the catalog's table {expect} is defined by a statement creating {name}"
            )));
        }
        for location in &cmd.locations {
            check_location(location, &self.allowed)?;
        }
        let scratch = bare_session(&self.runtime);
        scratch.execute_logical_plan(plan.clone()).await?;
        Ok(scratch.table_provider(TableReference::bare(name)).await?)
    }
}
