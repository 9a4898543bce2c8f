//! A user's rule ([`v1::AggregationRule`], as the log carries it) checked and turned into an
//! [`EventRule`] or, with a series selector, a [`SampleRule`].
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
use crate::agg::rule::{Rule, WindowRule};
use crate::agg::sample_rule::{Grouping, INCREASES, SAMPLES, SampleRule};
use crate::agg::window::WindowKind;
use crate::matcher::{MatchOp, Matcher};

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
pub fn rule(def: &v1::AggregationRule, max_lateness_ms: i64) -> Result<Rule, String> {
    if def.r#match.is_empty() {
        event_rule(def, max_lateness_ms).map(Rule::Events)
    } else {
        sample_rule(def, max_lateness_ms).map(Rule::Samples)
    }
}

/// [`rule`] for a rule over events.
fn event_rule(def: &v1::AggregationRule, max_lateness_ms: i64) -> Result<EventRule, String> {
    check_common(def)?;
    if !def.without.is_empty() || def.keep_input {
        return Err("without and keep_input: these are for rules over samples (give match)".into());
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
    let formulas = outputs.iter().map(|o| Formula::Of { measure: 0, output: *o }).collect();
    let series = outputs.iter().map(|o| output_series(&def.name, o.name(), *o)).collect();
    Ok(EventRule {
        name: def.name.clone(),
        filter,
        group_by,
        measures: vec![MeasureSpec { events, value, distinct }],
        window: window_rule(def, formulas, max_lateness_ms)?,
        series,
    })
}

/// [`rule`] for a rule over samples.
fn sample_rule(def: &v1::AggregationRule, max_lateness_ms: i64) -> Result<SampleRule, String> {
    check_common(def)?;
    if !def.events.is_empty() || !def.actions.is_empty() || !def.r#where.is_empty() {
        return Err("events, actions and where: a rule over samples (match) takes none of these".into());
    }
    if !def.value.is_empty() || !def.distinct.is_empty() {
        return Err(
            "value and distinct: a rule over samples aggregates the samples' values and counts series".into(),
        );
    }
    let mut matchers = Vec::with_capacity(def.r#match.len());
    for m in &def.r#match {
        let op = match m.op.as_str() {
            "=" => MatchOp::Equal,
            "!=" => MatchOp::NotEqual,
            "=~" => MatchOp::Regex,
            "!~" => MatchOp::NotRegex,
            other => return Err(format!("match: unknown matcher operator {other:?}: use =, !=, =~ or !~")),
        };
        check_label_name(&m.name).map_err(|e| format!("match: {e}"))?;
        matchers.push(Matcher::new(op, &m.name, &m.value).map_err(|e| format!("match: {e}"))?);
    }
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(
            "match: the selector needs a matcher that does not match the empty string, as in Prometheus"
                .into(),
        );
    }
    if matchers.len() > MAX_PARTS || def.group_by.len() > MAX_PARTS || def.without.len() > MAX_PARTS {
        return Err(format!("match, group_by and without: at most {MAX_PARTS} each"));
    }
    let names = |what: &str, list: &[String]| -> Result<Vec<String>, String> {
        for (i, n) in list.iter().enumerate() {
            check_label_name(n).map_err(|e| format!("{what}: {e}"))?;
            if n == collabstream_common::METRIC_NAME {
                return Err(format!("{what}: the outputs are named by the rule, not by the inputs' {n}"));
            }
            if list[..i].contains(n) {
                return Err(format!("{what}: {n} is listed twice"));
            }
        }
        Ok(list.to_vec())
    };
    let grouping = match (def.group_by.is_empty(), def.without.is_empty()) {
        (_, true) => Grouping::By(names("group_by", &def.group_by)?),
        (true, false) => {
            let mut without = names("without", &def.without)?;
            without.sort();
            Grouping::Without(without)
        }
        (false, false) => return Err("group_by and without: give one of them".into()),
    };
    let mut formulas = Vec::with_capacity(def.outputs.len());
    let mut series = Vec::with_capacity(def.outputs.len());
    check_outputs_len(&def.outputs)?;
    for d in &def.outputs {
        let (formula, output) = sample_output(d)?;
        if formulas.contains(&formula) {
            return Err(format!("outputs: {} is listed twice", describe(output, &d.kind)));
        }
        formulas.push(formula);
        series.push(output_series(&def.name, &d.kind, output));
    }
    let window = window_rule(def, formulas, max_lateness_ms)?;
    if matches!(window.window, WindowKind::Session { .. })
        && window.outputs.iter().any(|f| matches!(f, Formula::Total { .. }))
    {
        return Err("outputs: total carries a sum from window to window, which sessions do not have; use \
                    increase, or a size (tumbling) or a size and a hop (sliding)"
            .into());
    }
    Ok(SampleRule { name: def.name.clone(), matchers, grouping, keep_input: def.keep_input, window, series })
}

/// A sample rule's output: its formula over the rule's two measures, and the accumulator it
/// names (for its series' labels).
fn sample_output(d: &v1::RuleOutput) -> Result<(Formula, Output), String> {
    let of = |measure, output| (Formula::Of { measure, output }, output);
    Ok(match d.kind.as_str() {
        "count_samples" => of(SAMPLES, Output::Count),
        "sum_samples" => of(SAMPLES, Output::Sum),
        "avg" => of(SAMPLES, Output::Avg),
        "min" => of(SAMPLES, Output::Min),
        "max" => of(SAMPLES, Output::Max),
        "last" => of(SAMPLES, Output::Last),
        "count_series" => of(SAMPLES, Output::Distinct),
        "increase" => of(INCREASES, Output::Sum),
        "rate_sum" => (Formula::SumPerSecond { measure: INCREASES }, Output::Sum),
        "rate_avg" => (Formula::SumPerSecondPer { sum: INCREASES, per: SAMPLES }, Output::Sum),
        "total" => (Formula::Total { measure: INCREASES }, Output::Sum),
        "quantile" if (0.0..=1.0).contains(&d.quantile) => of(SAMPLES, Output::Quantile(d.quantile)),
        "quantile" => return Err(format!("outputs: a quantile must be between 0 and 1, got {}", d.quantile)),
        other => {
            return Err(format!(
                "outputs: unknown output {other:?} for samples: use count_samples, sum_samples, avg, min, max, last, \
                 count_series, increase, total, rate_sum, rate_avg or quantile"
            ));
        }
    })
}

fn check_common(def: &v1::AggregationRule) -> Result<(), String> {
    check_name(&def.name)?;
    if !ORIGINS.contains(&def.origin.as_str()) {
        return Err(format!("origin: must be api or config, got {:?}", def.origin));
    }
    Ok(())
}

fn check_label_name(n: &str) -> Result<(), String> {
    let mut chars = n.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok { Ok(()) } else { Err(format!("{n:?} is not a label name")) }
}

/// The window and the settings every rule has.
fn window_rule(
    def: &v1::AggregationRule,
    outputs: Vec<Formula>,
    max_lateness_ms: i64,
) -> Result<WindowRule, String> {
    let window_rule = WindowRule {
        window: window(def)?,
        outputs,
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
    Ok(window_rule)
}

/// The series an output is written to: `<rule>_<output>`, quantiles with their `quantile`
/// label as Prometheus' summaries have it.
fn output_series(rule: &str, name: &str, o: Output) -> OutputSeries {
    let labels = match o {
        Output::Quantile(q) => vec![("quantile".to_string(), q.to_string())],
        _ => Vec::new(),
    };
    OutputSeries { metric: format!("{rule}_{name}"), labels }
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

fn check_outputs_len(defs: &[v1::RuleOutput]) -> Result<(), String> {
    if defs.is_empty() || defs.len() > MAX_PARTS {
        return Err(format!("outputs: a rule needs 1 to {MAX_PARTS} outputs, got {}", defs.len()));
    }
    Ok(())
}

fn outputs(defs: &[v1::RuleOutput], has_value: bool, has_distinct: bool) -> Result<Vec<Output>, String> {
    check_outputs_len(defs)?;
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
            return Err(format!("outputs: {} is listed twice", describe(o, &d.kind)));
        }
        out.push(o);
    }
    Ok(out)
}

fn describe(o: Output, kind: &str) -> String {
    match o {
        Output::Quantile(q) => format!("quantile {q}"),
        _ => kind.to_string(),
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

    fn samples() -> v1::AggregationRule {
        let m = |name: &str, op: &str, value: &str| v1::LabelMatcher {
            name: name.into(),
            op: op.into(),
            value: value.into(),
        };
        v1::AggregationRule {
            name: "http".into(),
            r#match: vec![m("__name__", "=", "http_requests_total"), m("job", "=~", "api|web")],
            group_by: vec!["job".into()],
            size_ms: 60_000,
            outputs: ["increase", "rate_avg", "count_series"]
                .iter()
                .map(|k| v1::RuleOutput { kind: (*k).into(), quantile: 0.0 })
                .collect(),
            idle_timeout_ms: 30_000,
            distinct_threshold: 1_000,
            origin: "config".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rule_over_samples_is_checked_too() {
        let Rule::Samples(r) = rule(&samples(), 3_600_000).unwrap() else { panic!("a sample rule") };
        assert_eq!(r.series[0].metric, "http_increase");
        assert!(r.matches(&[("__name__", "http_requests_total"), ("job", "web")]));
        assert!(!r.matches(&[("__name__", "http_requests_total"), ("job", "batch")]));
        let m = |name: &str, op: &str, value: &str| v1::LabelMatcher {
            name: name.into(),
            op: op.into(),
            value: value.into(),
        };
        let out = |k: &str| vec![v1::RuleOutput { kind: k.into(), quantile: 0.0 }];
        let cases: Vec<(v1::AggregationRule, &str)> = vec![
            (
                v1::AggregationRule { r#match: vec![m("job", "==", "x")], ..samples() },
                "match: unknown matcher operator",
            ),
            (v1::AggregationRule { r#match: vec![m("job", "=~", "(")], ..samples() }, "match:"),
            (
                v1::AggregationRule { r#match: vec![m("job", "=~", ".*")], ..samples() },
                "does not match the empty string",
            ),
            (v1::AggregationRule { r#match: vec![m("1job", "=", "x")], ..samples() }, "not a label name"),
            (
                v1::AggregationRule { without: vec!["instance".into()], ..samples() },
                "group_by and without: give one",
            ),
            (
                v1::AggregationRule { group_by: vec!["__name__".into()], ..samples() },
                "group_by: the outputs are named",
            ),
            (v1::AggregationRule { events: "chat".into(), ..samples() }, "takes none of these"),
            (v1::AggregationRule { value: "length".into(), ..samples() }, "value and distinct"),
            (
                v1::AggregationRule { outputs: out("count"), ..samples() },
                "unknown output \"count\" for samples",
            ),
            (
                v1::AggregationRule { outputs: [out("increase"), out("increase")].concat(), ..samples() },
                "listed twice",
            ),
            (v1::AggregationRule { keep_input: true, ..def() }, "for rules over samples"),
            (
                v1::AggregationRule { outputs: out("total"), size_ms: 0, session_gap_ms: 5_000, ..samples() },
                "total carries a sum from window to window, which sessions do not have",
            ),
        ];
        for (d, why) in cases {
            let err = rule(&d, 3_600_000).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
