//! [`StoreTable`]: one of the store's tables as a DataFusion table. Each table says what it
//! holds and how a scan reads it ([`TableScan`]); what they have in common is here: they are
//! base tables, and every filter is pushed down as inexact — a scan reads no less than a
//! filter keeps (a time range or a name list, see `pushdown`) and DataFusion applies the filter
//! again above it, so a scan never has to decide a row exactly.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::Result;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

#[async_trait]
pub(crate) trait TableScan: std::fmt::Debug + Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;

    /// The plan reading the rows `filters` may keep, `projection` of the columns, at least
    /// `limit` rows when there are that many.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

#[derive(Debug)]
pub(crate) struct StoreTable<T>(pub(crate) T);

#[async_trait]
impl<T: TableScan> TableProvider for StoreTable<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }
}
