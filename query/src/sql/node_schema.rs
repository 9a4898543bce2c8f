//! [`NodeSchema`]: the tables a statement can name, as of the moment its session was made:
//! the store's own tables, one per aggregation rule, then the catalog's external tables. A
//! name is one table: a rule named like a store table, or an external table named like either
//! (a meetings pack turned on after the table was made can do that), is left out with a
//! warning, so that one clash never stops every statement. External tables are built only
//! when a statement names one (see `external`); one that cannot be built fails the statements
//! naming it. `information_schema.columns` reads every table's columns once the statement is
//! planned ([`Planned`]); it leaves such a table out rather than fail, so that one broken table
//! does not break every client that lists columns (Grafana's PostgreSQL query builder does).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use collabstream_proto::v1;
use datafusion::catalog::SchemaProvider;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::{TableProvider, TableType};

use crate::sql::SqlError;
use crate::sql::external::ExternalTables;

/// Set by the engine once a statement is planned. Planning looks up the tables the statement
/// names, which must fail when they cannot be read; after it, the one reader of tables by name
/// is `information_schema`, which goes through all of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Planned(Arc<AtomicBool>);

impl Planned {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub(crate) struct NodeSchema {
    /// The store's tables and the rules', by name.
    own: BTreeMap<String, Arc<dyn TableProvider>>,
    /// The external tables whose names are free, by name.
    external: BTreeMap<String, v1::SqlTable>,
    built: Arc<ExternalTables>,
    planned: Planned,
}

impl std::fmt::Debug for NodeSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSchema")
            .field("own", &self.own.keys().collect::<Vec<_>>())
            .field("external", &self.external.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NodeSchema {
    /// `own` in order of precedence (the store's tables first).
    pub(crate) fn new(
        own: Vec<(String, Arc<dyn TableProvider>)>,
        external: Vec<v1::SqlTable>,
        built: Arc<ExternalTables>,
        planned: Planned,
    ) -> Self {
        let mut tables = BTreeMap::new();
        for (name, table) in own {
            if tables.contains_key(&name) {
                tracing::warn!(table = %name, "an aggregation rule is named like a table of the store; its table is left out of SQL");
                continue;
            }
            tables.insert(name, table);
        }
        built.retain(&external);
        let mut named = BTreeMap::new();
        for t in external {
            if tables.contains_key(&t.name) {
                tracing::warn!(table = %t.name, "an external SQL table is named like a table of the store or a rule; left out (DROP TABLE it and create it under another name)");
                continue;
            }
            named.insert(t.name.clone(), t);
        }
        Self { own: tables, external: named, built, planned }
    }
}

#[async_trait]
impl SchemaProvider for NodeSchema {
    fn table_names(&self) -> Vec<String> {
        self.own.keys().chain(self.external.keys()).cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = self.own.get(name) {
            return Ok(Some(table.clone()));
        }
        let Some(t) = self.external.get(name) else { return Ok(None) };
        match self.built.table(t).await {
            Ok(table) => Ok(Some(table)),
            Err(e) if self.planned.is_set() => {
                tracing::debug!(table = %name, error = %e, "left out of information_schema: it cannot be read");
                Ok(None)
            }
            Err(e) => Err(match e {
                SqlError::Invalid(m) => DataFusionError::Plan(m),
                other => DataFusionError::Execution(other.to_string()),
            }),
        }
    }

    /// Without building an external table: `SHOW TABLES` and `information_schema.tables` list
    /// every table, readable or not.
    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        if let Some(table) = self.own.get(name) {
            return Ok(Some(table.table_type()));
        }
        Ok(self.external.contains_key(name).then_some(TableType::Base))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.own.contains_key(name) || self.external.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::execution::runtime_env::RuntimeEnv;

    fn table(column: &str) -> Arc<dyn TableProvider> {
        Arc::new(EmptyTable::new(Arc::new(Schema::new(vec![Field::new(column, DataType::Int64, true)]))))
    }

    fn external(name: &str) -> v1::SqlTable {
        v1::SqlTable { name: name.into(), statement: format!("not even SQL for {name}") }
    }

    #[tokio::test]
    async fn a_clashing_name_is_left_out_and_the_rest_stay() {
        let built = Arc::new(ExternalTables::new(Arc::new(RuntimeEnv::default()), Vec::new()));
        let own = vec![("samples".to_string(), table("store")), ("samples".to_string(), table("rule"))];
        let planned = Planned::default();
        let schema = NodeSchema::new(own, vec![external("samples"), external("h")], built, planned.clone());
        assert_eq!(schema.table_names(), ["samples", "h"]);
        let samples = schema.table("samples").await.unwrap().expect("the store's table");
        assert_eq!(samples.schema().field(0).name(), "store", "the first of a name wins");
        // Listed without being built; built (and failing, alone) when named.
        assert_eq!(schema.table_type("h").await.unwrap(), Some(TableType::Base));
        assert!(schema.table("h").await.is_err());
        assert!(schema.table("nothing").await.unwrap().is_none());
        // Once planned, only information_schema asks: the unreadable table is left out.
        planned.set();
        assert!(schema.table("h").await.unwrap().is_none());
        assert!(schema.table("samples").await.unwrap().is_some());
    }
}
