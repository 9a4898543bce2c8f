//! [`WindowRule`], what the window engines need of a rule, and the [`Emission`]s they make.

use crate::agg::formula::Formula;
use crate::agg::window::WindowKind;

/// A rule's window settings and outputs, as the engines need them.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRule {
    pub window: WindowKind,
    /// One value per formula per window, in this order.
    pub outputs: Vec<Formula>,
    pub max_out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: i64,
    pub distinct_threshold: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmissionKind {
    /// The window's first output, as the watermark reaches its end.
    First,
    /// A window emitted before, with a late event: its output at the same timestamp replaces
    /// the earlier one. (Also a window whose first event came after its end had passed.)
    Correction,
    /// A session emitted before that a late event merged into a longer one: its output at
    /// `end` is withdrawn (written as a stale marker), and the merged session is emitted.
    Retraction,
}

/// A window's outputs for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub group: Vec<u8>,
    pub start: i64,
    /// The output's timestamp.
    pub end: i64,
    /// One per output of the rule, in its order; `None` where the window has no value for it
    /// (and for every output of a retraction).
    pub values: Vec<Option<f64>>,
    pub kind: EmissionKind,
}

/// A rule of either source, as apply runs it.
#[derive(Debug, Clone)]
pub enum Rule {
    Events(crate::agg::EventRule),
    Samples(crate::agg::sample_rule::SampleRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Events(r) => &r.name,
            Rule::Samples(r) => &r.name,
        }
    }

    pub fn window(&self) -> &WindowRule {
        match self {
            Rule::Events(r) => &r.window,
            Rule::Samples(r) => &r.window,
        }
    }

    /// One per output, in order.
    pub fn series(&self) -> &[crate::agg::OutputSeries] {
        match self {
            Rule::Events(r) => &r.series,
            Rule::Samples(r) => &r.series,
        }
    }

    /// A name per output, for tables and the read API: its series' metric name, then the
    /// values of its own labels (`meeting_health_good`, `latency_quantile_0_95`), with what
    /// is not a letter, digit or underscore as `_`.
    pub fn columns(&self) -> Vec<String> {
        self.series()
            .iter()
            .map(|s| {
                let mut name = s.metric.clone();
                for (_, v) in &s.labels {
                    name.push('_');
                    name.extend(v.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
                }
                name
            })
            .collect()
    }

    /// The names of a group's labels, in order, when every group has the same ones (`None`
    /// for a rule over samples grouped `without` labels: each group has its own).
    pub fn group_columns(&self) -> Option<Vec<String>> {
        match self {
            Rule::Events(r) => Some(r.group_by.iter().map(|f| f.name().to_string()).collect()),
            Rule::Samples(r) => match &r.grouping {
                crate::agg::sample_rule::Grouping::By(names) => Some(names.clone()),
                crate::agg::sample_rule::Grouping::Without(_) => None,
            },
        }
    }

    /// A group's labels, from its key.
    pub fn group_labels(&self, group: &[u8]) -> Option<Vec<(String, String)>> {
        match self {
            Rule::Events(r) => {
                Some(r.group_labels(group)?.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
            }
            Rule::Samples(_) => crate::agg::sample_rule::SampleRule::group_labels(group),
        }
    }
}
