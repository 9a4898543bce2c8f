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
    #[serde(default = "any")]
    pub events: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(default, rename = "where", skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
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
}

// The defaults are the meetings pack's (DESIGN §3).
fn any() -> String {
    "any".into()
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
        let outputs = self.outputs.iter().map(|o| parse_output(o)).collect::<Result<Vec<_>, _>>()?;
        let size = self.window.map(ms).unwrap_or(0);
        if self.window.is_some() && self.session_gap.is_some() {
            return Err(
                "window and session_gap: give one (a window, with a hop when sliding, or a session gap)"
                    .into(),
            );
        }
        Ok(v1::AggregationRule {
            name: self.name.clone(),
            events: self.events.clone(),
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
        })
    }

    /// The rule as a user would have written it.
    pub fn from_proto(r: &v1::AggregationRule) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        RuleSpec {
            name: r.name.clone(),
            events: r.events.clone(),
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

/// `count`, …, or `quantile(φ)`.
fn parse_output(s: &str) -> Result<v1::RuleOutput, String> {
    let s = s.trim();
    if let Some(arg) = s.strip_prefix("quantile(").and_then(|r| r.strip_suffix(')')) {
        let q: f64 = arg.trim().parse().map_err(|_| {
            format!("outputs: {s:?}: the quantile must be a number between 0 and 1, as in quantile(0.95)")
        })?;
        return Ok(v1::RuleOutput { kind: "quantile".into(), quantile: q });
    }
    Ok(v1::RuleOutput { kind: s.to_string(), quantile: 0.0 })
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
        assert!(collabstream_store::agg::rule_proto::event_rule(&rule, i64::MAX).is_ok());
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
}
