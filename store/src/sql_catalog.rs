//! The SQL catalog's external tables (`CREATE EXTERNAL TABLE`), changed by log entries like
//! the aggregation rules, so every replica plans SQL with the same tables. Held by the writer
//! state and written whole at checkpoints (one meta key: a catalog is a few statements), so
//! checkpoints and snapshots carry it and a replay after a crash rebuilds it.

use collabstream_proto::v1;
use prost::Message;

use crate::aggregations::RuleOutcome;
use crate::error::{Error, Result};

/// Longest table name and statement taken (the log is no place for a megabyte of SQL).
const MAX_NAME: usize = 128;
const MAX_STATEMENT: usize = 64 << 10;

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct SqlCatalog {
    /// By name.
    tables: Vec<v1::SqlTable>,
    /// Changed since the last checkpoint.
    pub(crate) dirty: bool,
}

impl SqlCatalog {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let stored = v1::SqlTables::decode(bytes).map_err(|_| Error::Corrupt { what: "SQL catalog" })?;
        Ok(Self { tables: stored.tables, dirty: false })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        v1::SqlTables { tables: self.tables.clone() }.encode_to_vec()
    }

    pub(crate) fn tables(&self) -> &[v1::SqlTable] {
        &self.tables
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.tables.binary_search_by(|x| x.name.as_str().cmp(name)).is_ok()
    }

    /// Applies a change: a definition replaces one of the same name; dropping a name no table
    /// has changes nothing. Refused (the same way on every replica) when malformed.
    pub(crate) fn change(&mut self, change: &v1::SqlTableChange) -> RuleOutcome {
        match &change.change {
            Some(v1::sql_table_change::Change::Create(t)) => {
                if t.name.is_empty() || t.name.len() > MAX_NAME {
                    return RuleOutcome::Refused(format!("a table name has 1 to {MAX_NAME} bytes"));
                }
                if t.statement.is_empty() || t.statement.len() > MAX_STATEMENT {
                    return RuleOutcome::Refused(format!(
                        "a table's statement has 1 to {MAX_STATEMENT} bytes"
                    ));
                }
                match self.tables.binary_search_by(|x| x.name.cmp(&t.name)) {
                    Ok(i) if self.tables[i] == *t => return RuleOutcome::Unchanged,
                    Ok(i) => self.tables[i] = t.clone(),
                    Err(i) => self.tables.insert(i, t.clone()),
                }
            }
            Some(v1::sql_table_change::Change::Drop(name)) => {
                match self.tables.binary_search_by(|x| x.name.cmp(name)) {
                    Ok(i) => {
                        self.tables.remove(i);
                    }
                    Err(_) => return RuleOutcome::Unchanged,
                }
            }
            None => return RuleOutcome::Refused("an SQL table change with no change".into()),
        }
        self.dirty = true;
        RuleOutcome::Changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, statement: &str) -> v1::SqlTableChange {
        v1::SqlTableChange {
            change: Some(v1::sql_table_change::Change::Create(v1::SqlTable {
                name: name.into(),
                statement: statement.into(),
            })),
        }
    }

    #[test]
    fn tables_are_defined_replaced_and_dropped_by_name() {
        let mut c = SqlCatalog::default();
        assert_eq!(c.change(&create("b", "CREATE b")), RuleOutcome::Changed);
        assert_eq!(c.change(&create("a", "CREATE a")), RuleOutcome::Changed);
        assert_eq!(c.change(&create("a", "CREATE a")), RuleOutcome::Unchanged);
        assert_eq!(c.change(&create("a", "CREATE a2")), RuleOutcome::Changed);
        let names: Vec<_> = c.tables().iter().map(|t| (t.name.as_str(), t.statement.as_str())).collect();
        assert_eq!(names, [("a", "CREATE a2"), ("b", "CREATE b")]);
        let back = SqlCatalog::decode(&c.encode()).unwrap();
        assert_eq!(back.tables(), c.tables());
        let drop =
            |n: &str| v1::SqlTableChange { change: Some(v1::sql_table_change::Change::Drop(n.into())) };
        assert_eq!(c.change(&drop("a")), RuleOutcome::Changed);
        assert_eq!(c.change(&drop("a")), RuleOutcome::Unchanged);
        assert!(matches!(c.change(&create("", "x")), RuleOutcome::Refused(_)));
        assert!(matches!(c.change(&v1::SqlTableChange { change: None }), RuleOutcome::Refused(_)));
        assert_eq!(c.tables().len(), 1);
    }
}
