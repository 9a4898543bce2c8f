//! A user's rule ([`v1::AggregationRule`], as the log carries it) checked and turned into an
//! [`EventRule`].
//!
//! Apply calls this for every rule change, so it must decide the same on every replica: it
//! reads only the message and the settings it is given. The API checks a rule with the same
//! function before proposing it, so a refusal at apply is rare (a race with another change)
//! and says the same thing.

use collabstream_proto::events_json::{chat_kind, meeting_kind, user_action};
use collabstream_proto::v1;

use crate::agg::acc::Output;
use crate::agg::event_rule::{EventField, EventFilter, EventRule, MeasureSpec, OutputSeries};
use crate::agg::formula::Formula;
use crate::agg::meetings;
use crate::agg::rule::WindowRule;
use crate::agg::window::WindowKind;

/// Longest rule name: it prefixes every output series and every state row.
pub const MAX_NAME_LEN: usize = 128;
/// At most this many outputs, group-by fields and filters a rule.
pub const MAX_PARTS: usize = 32;
/// The largest exact distinct set before a HyperLogLog: it is kept per group and window.
pub const MAX_DISTINCT_THRESHOLD: u64 = 100_000;
const DAY_MS: i64 = 86_400_000;

/// Where a rule comes from.
pub const ORIGINS: [&str; 2] = ["api", "config"];

/// Checks `def` and builds its rule. `max_lateness_ms` is the store's out-of-order window: a
/// correction is a sample up to the allowed lateness older than its series' newest, and a
/// longer lateness would have its corrections refused. Errors name the field at fault.
pub fn event_rule(def: &v1::AggregationRule, max_lateness_ms: i64) -> Result<EventRule, String> {
    check_name(&def.name)?;
    if !ORIGINS.contains(&def.origin.as_str()) {
        return Err(format!("origin: must be api or config, got {:?}", def.origin));
    }
    let events = event_filter(&def.events, &def.actions)?;
    let value = match def.value.as_str() {
        "" => None,
        name => {
            let (field, kind) = EventField::number_named(name).ok_or_else(|| {
                format!("value: unknown numeric field {name:?}: use latency_ms, jitter_ms, packet_loss_pct or length")
            })?;
            if def.events != kind {
                return Err(format!(
                    "value: {name} is a field of {kind} events, and the rule takes {} events",
                    def.events
                ));
            }
            Some(field)
        }
    };
    let distinct = match def.distinct.as_str() {
        "" => None,
        name => Some(text_field(name).map_err(|e| format!("distinct: {e}"))?),
    };
    let mut filter = Vec::with_capacity(def.r#where.len());
    for w in &def.r#where {
        filter.push((text_field(&w.field).map_err(|e| format!("where: {e}"))?, w.value.clone()));
    }
    let mut group_by = Vec::with_capacity(def.group_by.len());
    for g in &def.group_by {
        let f = text_field(g).map_err(|e| format!("group_by: {e}"))?;
        if group_by.contains(&f) {
            return Err(format!("group_by: {g} is listed twice"));
        }
        group_by.push(f);
    }
    if filter.len() > MAX_PARTS || group_by.len() > MAX_PARTS {
        return Err(format!("where and group_by: at most {MAX_PARTS} fields each"));
    }
    let outputs = outputs(&def.outputs, value.is_some(), distinct.is_some())?;
    let window = window(def)?;
    let window_rule = WindowRule {
        window,
        outputs: outputs.iter().map(|o| Formula::Of { measure: 0, output: *o }).collect(),
        max_out_of_orderness_ms: in_range("max_out_of_orderness", def.max_out_of_orderness_ms, 0, DAY_MS)?,
        allowed_lateness_ms: in_range("allowed_lateness", def.allowed_lateness_ms, 0, DAY_MS)?,
        idle_timeout_ms: in_range("idle_timeout", def.idle_timeout_ms, 1, DAY_MS)?,
        distinct_threshold: usize::try_from(def.distinct_threshold)
            .ok()
            .filter(|t| (1..=MAX_DISTINCT_THRESHOLD as usize).contains(t))
            .ok_or_else(|| {
                format!(
                    "distinct_threshold: must be between 1 and {MAX_DISTINCT_THRESHOLD}, got {}",
                    def.distinct_threshold
                )
            })?,
    };
    if window_rule.allowed_lateness_ms > max_lateness_ms {
        return Err(format!(
            "allowed_lateness: {} ms is longer than store.out_of_order_window ({max_lateness_ms} ms), which would \
             refuse the corrections it allows; shorten it or lengthen the window",
            window_rule.allowed_lateness_ms
        ));
    }
    let series = outputs.iter().map(|o| output_series(&def.name, *o)).collect();
    Ok(EventRule {
        name: def.name.clone(),
        filter,
        group_by,
        measures: vec![MeasureSpec { events, value, distinct }],
        window: window_rule,
        series,
    })
}

/// The series an output is written to: `<rule>_<output>`, quantiles with their `quantile`
/// label as Prometheus' summaries have it.
fn output_series(rule: &str, o: Output) -> OutputSeries {
    let labels = match o {
        Output::Quantile(q) => vec![("quantile".to_string(), q.to_string())],
        _ => Vec::new(),
    };
    OutputSeries { metric: format!("{rule}_{}", o.name()), labels }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name: {name:?} must be 1 to {MAX_NAME_LEN} letters, digits and underscores, starting with a letter"
        ));
    }
    if meetings::rules().iter().any(|r| r.name == name) {
        return Err(format!("name: {name} is a rule of the meetings pack; choose another name"));
    }
    Ok(())
}

fn text_field(name: &str) -> Result<EventField, String> {
    EventField::text_named(name)
        .ok_or_else(|| format!("unknown text field {name:?}: use tenant, meeting_id or user_id"))
}

fn event_filter(events: &str, actions: &[String]) -> Result<EventFilter, String> {
    fn each<T>(actions: &[String], f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
        actions.iter().map(|a| f(a).map_err(|e| format!("actions: {e}"))).collect()
    }
    Ok(match events {
        "user" => EventFilter::User(each(actions, user_action)?),
        "chat" => EventFilter::Chat(each(actions, chat_kind)?),
        "meeting" => EventFilter::Meeting(each(actions, meeting_kind)?),
        "any" if actions.is_empty() => EventFilter::Any,
        "any" => return Err("actions: a rule over any events takes no actions; name the event kind".into()),
        other => return Err(format!("events: unknown event kind {other:?}: use user, chat, meeting or any")),
    })
}

fn outputs(defs: &[v1::RuleOutput], has_value: bool, has_distinct: bool) -> Result<Vec<Output>, String> {
    if defs.is_empty() || defs.len() > MAX_PARTS {
        return Err(format!("outputs: a rule needs 1 to {MAX_PARTS} outputs, got {}", defs.len()));
    }
    let mut out: Vec<Output> = Vec::with_capacity(defs.len());
    for d in defs {
        let o = match d.kind.as_str() {
            "count" => Output::Count,
            "sum" => Output::Sum,
            "avg" => Output::Avg,
            "min" => Output::Min,
            "max" => Output::Max,
            "last" => Output::Last,
            "rate" => Output::Rate,
            "distinct" => Output::Distinct,
            "quantile" if (0.0..=1.0).contains(&d.quantile) => Output::Quantile(d.quantile),
            "quantile" => {
                return Err(format!("outputs: a quantile must be between 0 and 1, got {}", d.quantile));
            }
            other => {
                return Err(format!(
                    "outputs: unknown output {other:?}: use count, sum, avg, min, max, last, rate, distinct or quantile"
                ));
            }
        };
        let needs_value = matches!(o, Output::Sum | Output::Avg | Output::Min | Output::Max | Output::Last)
            || matches!(o, Output::Quantile(_));
        if needs_value && !has_value {
            return Err(format!("outputs: {} needs a value field (value = \"latency_ms\", …)", d.kind));
        }
        if o == Output::Distinct && !has_distinct {
            return Err("outputs: distinct needs a distinct field (distinct = \"user_id\", …)".into());
        }
        if out.contains(&o) {
            return Err(format!("outputs: {} is listed twice", describe(o)));
        }
        out.push(o);
    }
    Ok(out)
}

fn describe(o: Output) -> String {
    match o {
        Output::Quantile(q) => format!("quantile {q}"),
        o => o.name().to_string(),
    }
}

fn window(def: &v1::AggregationRule) -> Result<WindowKind, String> {
    let w = match (def.size_ms, def.hop_ms, def.session_gap_ms) {
        (size_ms, 0, 0) if size_ms != 0 => WindowKind::Tumbling { size_ms },
        (size_ms, hop_ms, 0) if size_ms != 0 => WindowKind::Sliding { size_ms, hop_ms },
        (0, 0, gap_ms) if gap_ms != 0 => WindowKind::Session { gap_ms },
        _ => {
            return Err(
                "window: give a size (tumbling), a size and a hop (sliding), or a session gap alone".into()
            );
        }
    };
    w.validate().map_err(|e| format!("window: {e}"))?;
    Ok(w)
}

fn in_range(what: &str, v: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{what}: must be between {min} ms and {max} ms (a day), got {v} ms"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> v1::AggregationRule {
        v1::AggregationRule {
            name: "chat_length".into(),
            events: "chat".into(),
            actions: vec!["message".into()],
            r#where: vec![v1::FieldEquals { field: "tenant".into(), value: "acme".into() }],
            value: "length".into(),
            distinct: "user_id".into(),
            group_by: vec!["meeting_id".into()],
            size_ms: 60_000,
            outputs: ["count", "avg", "distinct"]
                .iter()
                .map(|k| v1::RuleOutput { kind: (*k).into(), quantile: 0.0 })
                .chain([v1::RuleOutput { kind: "quantile".into(), quantile: 0.95 }])
                .collect(),
            max_out_of_orderness_ms: 5_000,
            allowed_lateness_ms: 60_000,
            idle_timeout_ms: 30_000,
            distinct_threshold: 1_000,
            origin: "api".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_rule_becomes_its_windows_and_series() {
        let r = event_rule(&def(), 3_600_000).unwrap();
        assert_eq!(r.window.window, WindowKind::Tumbling { size_ms: 60_000 });
        assert_eq!(r.filter, [(EventField::Tenant, "acme".to_string())]);
        assert_eq!(r.group_by, [EventField::MeetingId]);
        let names: Vec<_> = r.series.iter().map(|s| s.metric.as_str()).collect();
        assert_eq!(
            names,
            ["chat_length_count", "chat_length_avg", "chat_length_distinct", "chat_length_quantile"]
        );
        assert_eq!(r.series[3].labels, [("quantile".to_string(), "0.95".to_string())]);
        let sliding = v1::AggregationRule { hop_ms: 10_000, ..def() };
        assert!(matches!(event_rule(&sliding, 3_600_000).unwrap().window.window, WindowKind::Sliding { .. }));
    }

    #[test]
    fn bad_rules_are_refused_naming_the_field() {
        let out = |k: &str| vec![v1::RuleOutput { kind: k.into(), quantile: 0.0 }];
        let cases: Vec<(v1::AggregationRule, &str)> = vec![
            (v1::AggregationRule { name: "9lives".into(), ..def() }, "name:"),
            (v1::AggregationRule { name: "meeting_health".into(), ..def() }, "meetings pack"),
            (v1::AggregationRule { events: "reactions".into(), ..def() }, "events: unknown event kind"),
            (v1::AggregationRule { actions: vec!["dance".into()], ..def() }, "actions: unknown chat kind"),
            (
                v1::AggregationRule { value: "latency_ms".into(), ..def() },
                "value: latency_ms is a field of meeting",
            ),
            (v1::AggregationRule { group_by: vec!["room".into()], ..def() }, "group_by: unknown text field"),
            (
                v1::AggregationRule { group_by: vec!["user_id".into(), "user_id".into()], ..def() },
                "listed twice",
            ),
            (v1::AggregationRule { outputs: out("median"), ..def() }, "outputs: unknown output"),
            (v1::AggregationRule { outputs: vec![], ..def() }, "outputs: a rule needs"),
            (
                v1::AggregationRule { value: String::new(), outputs: out("avg"), ..def() },
                "needs a value field",
            ),
            (
                v1::AggregationRule { distinct: String::new(), outputs: out("distinct"), ..def() },
                "needs a distinct",
            ),
            (v1::AggregationRule { size_ms: 0, ..def() }, "window: give a size"),
            (v1::AggregationRule { session_gap_ms: 5, ..def() }, "window: give a size"),
            (
                v1::AggregationRule { hop_ms: 7_000, ..def() },
                "window: a sliding window's size must be a multiple",
            ),
            (v1::AggregationRule { allowed_lateness_ms: 100_000_000, ..def() }, "allowed_lateness: must be"),
            (v1::AggregationRule { allowed_lateness_ms: 7_200_000, ..def() }, "store.out_of_order_window"),
            (v1::AggregationRule { idle_timeout_ms: 0, ..def() }, "idle_timeout:"),
            (v1::AggregationRule { distinct_threshold: 0, ..def() }, "distinct_threshold:"),
            (v1::AggregationRule { origin: String::new(), ..def() }, "origin:"),
        ];
        for (d, why) in cases {
            let err = event_rule(&d, 3_600_000).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
