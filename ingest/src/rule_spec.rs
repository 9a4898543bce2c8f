//! [`RuleSpec`]: an aggregation rule as users write it, in the server's TOML (`[[aggregations]]`)
//! and in the JSON of `/api/v1/aggregations`, and its conversion to and from the
//! [`v1::AggregationRule`] the log carries (with every default resolved).
//!
//! ```toml
//! [[aggregations]]
//! name = "chat_length"          # outputs: chat_length_count{meeting_id=…}, chat_length_avg, …
//! events = "chat"               # user, chat, meeting or any
//! actions = ["message"]         # of these actions (user) or kinds (chat, meeting); any if left out
//! where = { tenant = "acme" }   # only events whose text fields equal these
//! value = "length"              # what sum, avg, min, max, last and quantile(φ) aggregate
//! distinct = "user_id"          # what distinct counts
//! group_by = ["meeting_id"]
//! window = "1m"                 # tumbling; with hop = "10s", sliding; or session_gap = "30s" alone
//! outputs = ["count", "avg", "quantile(0.95)", "distinct"]
//!
//! [[aggregations]]              # streaming aggregation of incoming samples
//! name = "http_requests"        # outputs: http_requests_increase{job=…}, …
//! match = 'http_requests_total{env="prod"}'
//! interval = "1m"               # (the same as window)
//! by = ["job"]                  # (the same as group_by), or without = ["instance"]
//! outputs = ["increase", "rate_sum", "count_series", "quantiles(0.5, 0.99)"]
//! keep_input = false            # store only the outputs (default: the samples too)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use collabstream_proto::v1;
use collabstream_store::agg::meetings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// Events: user, chat, meeting or any (the default, without `match`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<String>,
    /// Samples: the series selector whose samples the rule takes.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<String>,
    #[serde(default, alias = "by")]
    pub group_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without: Vec<String>,
    #[serde(default, alias = "interval", with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub hop: Option<Duration>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub session_gap: Option<Duration>,
    pub outputs: Vec<String>,
    #[serde(default = "max_out_of_orderness", with = "humantime_serde")]
    pub max_out_of_orderness: Duration,
    #[serde(default = "allowed_lateness", with = "humantime_serde")]
    pub allowed_lateness: Duration,
    #[serde(default = "idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(default = "distinct_threshold")]
    pub distinct_threshold: u64,
    /// Samples: whether matching samples are stored besides the outputs.
    #[serde(default = "keep_input")]
    pub keep_input: bool,
}

// The defaults are the meetings pack's (DESIGN §3); input samples are kept unless a rule says
// otherwise (nothing is lost by default).
fn keep_input() -> bool {
    true
}
fn max_out_of_orderness() -> Duration {
    Duration::from_millis(meetings::MAX_OUT_OF_ORDERNESS_MS as u64)
}
fn allowed_lateness() -> Duration {
    Duration::from_millis(meetings::ALLOWED_LATENESS_MS as u64)
}
fn idle_timeout() -> Duration {
    Duration::from_millis(meetings::IDLE_TIMEOUT_MS as u64)
}
fn distinct_threshold() -> u64 {
    meetings::DISTINCT_THRESHOLD as u64
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().filter(|m| *m > 0).map(Duration::from_millis)
}

impl RuleSpec {
    /// The rule as the log carries it, from `origin` ("api" or "config"). What only the
    /// store can check (fields, windows, limits) it checks when the rule is proposed.
    pub fn to_proto(&self, origin: &str) -> Result<v1::AggregationRule, String> {
        let mut outputs = Vec::with_capacity(self.outputs.len());
        for o in &self.outputs {
            outputs.extend(parse_output(o)?);
        }
        let (events, matchers) = match (&self.events, &self.selector) {
            (Some(_), Some(_)) => {
                return Err("events and match: a rule takes events or samples, not both".into());
            }
            (None, None) => ("any".to_string(), Vec::new()),
            (Some(e), None) => (e.clone(), Vec::new()),
            (None, Some(sel)) => (String::new(), parse_selector(sel)?),
        };
        if matchers.is_empty() && !self.keep_input {
            return Err("keep_input: only a rule over samples (match) can keep them out".into());
        }
        let size = self.window.map(ms).unwrap_or(0);
        if self.window.is_some() && self.session_gap.is_some() {
            return Err(
                "window and session_gap: give one (a window, with a hop when sliding, or a session gap)"
                    .into(),
            );
        }
        Ok(v1::AggregationRule {
            name: self.name.clone(),
            events,
            actions: self.actions.clone(),
            r#where: self
                .filter
                .iter()
                .map(|(field, value)| v1::FieldEquals { field: field.clone(), value: value.clone() })
                .collect(),
            value: self.value.clone().unwrap_or_default(),
            distinct: self.distinct.clone().unwrap_or_default(),
            group_by: self.group_by.clone(),
            size_ms: size,
            hop_ms: self.hop.map(ms).unwrap_or(0),
            session_gap_ms: self.session_gap.map(ms).unwrap_or(0),
            outputs,
            max_out_of_orderness_ms: ms(self.max_out_of_orderness),
            allowed_lateness_ms: ms(self.allowed_lateness),
            idle_timeout_ms: ms(self.idle_timeout),
            distinct_threshold: self.distinct_threshold,
            origin: origin.to_string(),
            r#match: matchers,
            without: self.without.clone(),
            // The log carries it for sample rules only (an event rule has none to keep).
            keep_input: self.keep_input && self.selector.is_some(),
        })
    }

    /// The rule as a user would have written it.
    pub fn from_proto(r: &v1::AggregationRule) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let sample = !r.r#match.is_empty();
        RuleSpec {
            name: r.name.clone(),
            events: opt(&r.events),
            selector: sample.then(|| selector_text(&r.r#match)),
            without: r.without.clone(),
            keep_input: r.keep_input || !sample,
            actions: r.actions.clone(),
            filter: r.r#where.iter().map(|w| (w.field.clone(), w.value.clone())).collect(),
            value: opt(&r.value),
            distinct: opt(&r.distinct),
            group_by: r.group_by.clone(),
            window: duration(r.size_ms),
            hop: duration(r.hop_ms),
            session_gap: duration(r.session_gap_ms),
            outputs: r
                .outputs
                .iter()
                .map(
                    |o| {
                        if o.kind == "quantile" {
                            format!("quantile({})", o.quantile)
                        } else {
                            o.kind.clone()
                        }
                    },
                )
                .collect(),
            max_out_of_orderness: Duration::from_millis(r.max_out_of_orderness_ms.max(0) as u64),
            allowed_lateness: Duration::from_millis(r.allowed_lateness_ms.max(0) as u64),
            idle_timeout: Duration::from_millis(r.idle_timeout_ms.max(0) as u64),
            distinct_threshold: r.distinct_threshold,
        }
    }
}

/// `count`, …, `quantile(φ)`, or VictoriaMetrics' `quantiles(φ1, φ2, …)`.
fn parse_output(s: &str) -> Result<Vec<v1::RuleOutput>, String> {
    let s = s.trim();
    let args = s
        .strip_prefix("quantile(")
        .or_else(|| s.strip_prefix("quantiles("))
        .and_then(|r| r.strip_suffix(')'));
    let Some(args) = args else {
        return Ok(vec![v1::RuleOutput { kind: s.to_string(), quantile: 0.0 }]);
    };
    args.split(',')
        .map(|q| {
            let q: f64 = q.trim().parse().map_err(|_| {
                format!("outputs: {s:?}: a quantile must be a number between 0 and 1, as in quantile(0.95)")
            })?;
            Ok(v1::RuleOutput { kind: "quantile".into(), quantile: q })
        })
        .collect()
}

/// The matchers of a series selector such as `http_requests_total{job=~"api|web"}`.
fn parse_selector(s: &str) -> Result<Vec<v1::LabelMatcher>, String> {
    use promql_parser::label::MatchOp;
    use promql_parser::parser::{self, Expr};
    let expr = parser::parse(s).map_err(|e| format!("match: {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!(
            "match: {s:?} is not a series selector such as http_requests_total{{job=\"api\"}}"
        ));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(format!(
            "match: {s:?}: `or` between matchers is not supported; use one rule per selector"
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(v1::LabelMatcher { name: "__name__".into(), op: "=".into(), value: name.clone() });
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        out.push(v1::LabelMatcher { name: m.name.clone(), op: op.into(), value: m.value.clone() });
    }
    Ok(out)
}

/// A selector's text from its matchers (`{__name__="x",job="a"}`), as `parse_selector` reads it.
fn selector_text(matchers: &[v1::LabelMatcher]) -> String {
    let parts: Vec<String> = matchers
        .iter()
        .map(|m| format!("{}{}{}", m.name, m.op, serde_json::Value::String(m.value.clone())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
        name = "chat_length"
        events = "chat"
        actions = ["message"]
        where = { tenant = "acme" }
        value = "length"
        distinct = "user_id"
        group_by = ["meeting_id"]
        window = "1m"
        hop = "10s"
        outputs = ["count", "avg", "quantile(0.95)", "distinct"]
        allowed_lateness = "2m"
    "#;

    #[test]
    fn toml_and_json_give_the_same_rule_and_it_round_trips() {
        let spec: RuleSpec = toml::from_str(TOML).unwrap();
        let rule = spec.to_proto("config").unwrap();
        assert_eq!((rule.size_ms, rule.hop_ms, rule.session_gap_ms), (60_000, 10_000, 0));
        assert_eq!(rule.outputs[2], v1::RuleOutput { kind: "quantile".into(), quantile: 0.95 });
        assert_eq!(
            (rule.max_out_of_orderness_ms, rule.allowed_lateness_ms, rule.idle_timeout_ms),
            (5_000, 120_000, 30_000)
        );
        assert!(collabstream_store::agg::rule_proto::rule(&rule, i64::MAX).is_ok());
        let json = serde_json::to_string(&RuleSpec::from_proto(&rule)).unwrap();
        let back: RuleSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec, "{json}");
        assert_eq!(back.to_proto("config").unwrap(), rule);
    }

    #[test]
    fn mistakes_are_named() {
        let err = toml::from_str::<RuleSpec>(&format!("{TOML}\nwindw = \"1m\"")).unwrap_err().to_string();
        assert!(err.contains("unknown field `windw`"), "{err}");
        let err =
            toml::from_str::<RuleSpec>(&TOML.replace("\"1m\"", "\"a minute\"")).unwrap_err().to_string();
        assert!(err.contains("window"), "{err}");
        let spec: RuleSpec = toml::from_str(&TOML.replace("quantile(0.95)", "quantile(high)")).unwrap();
        assert!(spec.to_proto("api").unwrap_err().contains("quantile(0.95)"));
        let spec: RuleSpec = toml::from_str(&format!("{TOML}\nsession_gap = \"30s\"")).unwrap();
        assert!(spec.to_proto("api").unwrap_err().starts_with("window and session_gap"));
    }

    #[test]
    fn a_rule_over_samples_reads_as_victoriametrics_users_write_it() {
        let spec: RuleSpec = toml::from_str(
            r#"
            name = "http_requests"
            match = 'http_requests_total{env=~"prod|staging"}'
            interval = "1m"
            by = ["job"]
            outputs = ["increase", "count_series", "quantiles(0.5, 0.99)"]
            keep_input = false
            "#,
        )
        .unwrap();
        let rule = spec.to_proto("api").unwrap();
        assert_eq!(rule.events, "");
        assert_eq!(rule.r#match.len(), 2);
        assert_eq!((rule.r#match[1].name.as_str(), rule.r#match[1].op.as_str()), ("env", "=~"));
        assert_eq!(rule.outputs.len(), 4, "two quantiles");
        assert!(!rule.keep_input);
        assert!(collabstream_store::agg::rule_proto::rule(&rule, i64::MAX).is_ok());
        let json = serde_json::to_string(&RuleSpec::from_proto(&rule)).unwrap();
        let back: RuleSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_proto("api").unwrap(), rule, "{json}");
        let both = RuleSpec { events: Some("chat".into()), ..spec.clone() };
        assert!(both.to_proto("api").unwrap_err().starts_with("events and match"));
        let bad = RuleSpec { selector: Some("rate(x[5m])".into()), ..spec };
        assert!(bad.to_proto("api").unwrap_err().contains("is not a series selector"));
    }
}
