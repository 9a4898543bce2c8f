//! Warnings and infos collected while a query runs, returned beside the result as Prometheus
//! does (`warnings` and `infos` in the API response).

use std::collections::BTreeSet;

#[derive(Debug, Default, Clone)]
pub struct Annotations {
    pub warnings: BTreeSet<String>,
    pub infos: BTreeSet<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: impl std::fmt::Display) {
        self.warnings.insert(format!("PromQL warning: {msg}"));
    }

    pub fn info(&mut self, msg: impl std::fmt::Display) {
        self.infos.insert(format!("PromQL info: {msg}"));
    }
}
