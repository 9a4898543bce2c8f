//! Runs parsed test files against our engine over an in-memory series source.

use std::sync::Arc;

use collabstream_common::{Label, Labels, STALE_NAN_BITS, SeriesId, TimeRange};
use collabstream_query::promql::{Engine, EngineOptions, QueryValue, format_float};
use collabstream_store::{Matcher, SeriesCursor, SeriesData, SeriesRead, VecCursor};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};

use super::parse::{Annotation, Command, Eval, EvalKind, SeriesLine};
use super::values::Value;

/// Series held in memory, as a `load` block defines them.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
}

impl SeriesRead for MemSource {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Box<dyn SeriesCursor + 'a>> {
        let mut out = Vec::new();
        for (i, (labels, points)) in self.series.iter().enumerate() {
            if !matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))) {
                continue;
            }
            let samples: Vec<_> = points
                .iter()
                .filter(|p| range.contains(p.0))
                .map(|&(t, v)| collabstream_common::Sample::new(t, v))
                .collect();
            if !samples.is_empty() {
                out.push(SeriesData { id: SeriesId(i as u64), labels: labels.clone(), samples });
            }
        }
        Ok(Box::new(VecCursor::new(out)))
    }

    fn series(&self, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<Labels>> {
        Ok(Vec::new())
    }

    fn label_names(&self, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn label_values(&self, _: &str, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The labels a test file writes as `name{a="b"}` or `{}`.
pub fn parse_metric(text: &str) -> Result<Labels, String> {
    if text.trim() == "{}" {
        return Ok(Labels::default());
    }
    let expr = parser::parse(text).map_err(|e| format!("metric {text:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else { return Err(format!("{text:?} is not a metric")) };
    let mut labels: Vec<Label> = Vec::new();
    if let Some(n) = vs.name {
        labels.push(Label::new("__name__", n));
    }
    for m in vs.matchers.matchers {
        if m.op != MatchOp::Equal {
            return Err(format!("{text:?}: only = in metrics"));
        }
        labels.push(Label::new(m.name, m.value));
    }
    labels.sort();
    Ok(Labels::from_sorted_unchecked(labels))
}

#[derive(Debug, Default)]
pub struct FileReport {
    pub passed: usize,
    pub failed: usize,
    pub skipped_histogram: usize,
    pub failures: Vec<String>,
}

/// Runs every command of a parsed file.
pub fn run_file(name: &str, commands: &[Command]) -> FileReport {
    let mut report = FileReport::default();
    // Shared with the engine of each case; nothing else holds it while loading, so
    // `make_mut` does not copy.
    let mut source = Arc::new(MemSource::default());
    // Series with native-histogram samples; a case whose selectors match one is not a float
    // case.
    let mut histogram_series: Vec<Labels> = Vec::new();
    for c in commands {
        match c {
            Command::Clear => {
                source = Arc::new(MemSource::default());
                histogram_series.clear();
            }
            Command::Load(load) => {
                for s in &load.series {
                    let labels = match parse_metric(&s.metric) {
                        Ok(l) => l,
                        Err(e) => {
                            report.failed += 1;
                            report.failures.push(format!("{name}:{}: {e}", load.line));
                            continue;
                        }
                    };
                    // `load_with_nhcb` also turns classic buckets into a native histogram
                    // named without `_bucket`; a case reading that one is a histogram case.
                    if load.with_nhcb
                        && let Some(base) = labels.metric_name().strip_suffix("_bucket")
                        && labels.get("le").is_some()
                    {
                        let mut l: Vec<Label> = labels
                            .iter()
                            .filter(|l| l.name != "le" && l.name != "__name__")
                            .cloned()
                            .collect();
                        l.push(Label::new("__name__", base));
                        l.sort();
                        let nhcb = Labels::from_sorted_unchecked(l);
                        if !histogram_series.contains(&nhcb) {
                            histogram_series.push(nhcb);
                        }
                    }
                    let mut points = Vec::new();
                    for (i, v) in s.values.iter().enumerate() {
                        let t = i as i64 * load.step_ms;
                        match v {
                            Value::Float(f) => points.push((t, *f)),
                            Value::Stale => points.push((t, f64::from_bits(STALE_NAN_BITS))),
                            Value::Missing => {}
                            Value::Histogram(_) => {
                                if !histogram_series.contains(&labels) {
                                    histogram_series.push(labels.clone());
                                }
                            }
                        }
                    }
                    match Arc::make_mut(&mut source).series.iter_mut().find(|(l, _)| *l == labels) {
                        Some((_, existing)) => {
                            existing.extend(points);
                            existing.sort_by_key(|p| p.0);
                        }
                        None => Arc::make_mut(&mut source).series.push((labels, points)),
                    }
                }
            }
            Command::Eval(e) => {
                let expects_histogram =
                    e.results.iter().any(|r| r.values.iter().any(|v| matches!(v, Value::Histogram(_))));
                if expects_histogram || touches(&e.expr, &histogram_series) {
                    report.skipped_histogram += 1;
                    continue;
                }
                let engine = Engine::new(source.clone(), EngineOptions::default());
                let outcome = check(&engine, e);
                match outcome {
                    Ok(()) => report.passed += 1,
                    Err(why) => {
                        report.failed += 1;
                        report.failures.push(format!("{name}:{}: {}: {why}", e.line, e.expr));
                    }
                }
            }
        }
    }
    report
}

/// Whether any selector of `expr` matches one of `series`.
fn touches(expr: &str, series: &[Labels]) -> bool {
    fn walk(e: &Expr, series: &[Labels]) -> bool {
        let selector = |vs: &parser::VectorSelector| {
            series.iter().any(|l| {
                vs.name.as_ref().is_none_or(|n| l.metric_name() == n)
                    && vs.matchers.matchers.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")))
            })
        };
        match e {
            Expr::VectorSelector(vs) => selector(vs),
            Expr::MatrixSelector(ms) => selector(&ms.vs),
            Expr::Aggregate(a) => walk(&a.expr, series) || a.param.as_ref().is_some_and(|p| walk(p, series)),
            Expr::Unary(u) => walk(&u.expr, series),
            Expr::Binary(b) => walk(&b.lhs, series) || walk(&b.rhs, series),
            Expr::Paren(p) => walk(&p.expr, series),
            Expr::Subquery(s) => walk(&s.expr, series),
            Expr::Call(c) => c.args.args.iter().any(|a| walk(a, series)),
            _ => false,
        }
    }
    !series.is_empty() && parser::parse(expr).is_ok_and(|e| walk(&e, series))
}

/// As Prometheus's test runner compares values.
fn almost_equal(a: f64, b: f64) -> bool {
    collabstream_query::promql::almost_equal(a, b, 1e-6)
}

fn message_matches(expected: &str, actual: &str) -> bool {
    expected == actual || regex::Regex::new(expected).is_ok_and(|r| r.is_match(actual))
}

fn check_annotations(
    kind: &str,
    want: &Option<Annotation>,
    got: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    match want {
        None => Ok(()),
        Some(Annotation::Absent) if got.is_empty() => Ok(()),
        Some(Annotation::Absent) => Err(format!("expected no {kind}, got {got:?}")),
        Some(Annotation::Present(None)) if !got.is_empty() => Ok(()),
        Some(Annotation::Present(Some(m))) if got.iter().any(|g| message_matches(m, g)) => Ok(()),
        Some(Annotation::Present(m)) => Err(format!("expected {kind} {m:?}, got {got:?}")),
    }
}

fn expected_value(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Stale => Some(f64::from_bits(STALE_NAN_BITS)),
        _ => None,
    }
}

fn check(engine: &Engine, e: &Eval) -> Result<(), String> {
    let result = match e.kind {
        EvalKind::Instant { at_ms } => engine.instant(&e.expr, at_ms),
        EvalKind::Range { start_ms, end_ms, step_ms } => engine.range(&e.expr, start_ms, end_ms, step_ms),
    };
    let result = match (&e.fail, result) {
        (Some(msg), Err(err)) => {
            return match msg {
                Some(m) if !message_matches(m, &err.to_string()) => {
                    Err(format!("failed with {err:?}, expected message {m:?}"))
                }
                _ => Ok(()),
            };
        }
        (Some(_), Ok(r)) => return Err(format!("expected an error, got {:?}", r.value)),
        (None, Err(err)) => return Err(format!("error: {err}")),
        (None, Ok(r)) => r,
    };
    check_annotations("warnings", &e.warn, &result.annotations.warnings)?;
    check_annotations("infos", &e.info, &result.annotations.infos)?;
    if let Some(want) = &e.string {
        return match &result.value {
            QueryValue::String { v, .. } if v == want => Ok(()),
            other => Err(format!("expected string {want:?}, got {other:?}")),
        };
    }
    match &result.value {
        QueryValue::Scalar { v, .. } => {
            let [SeriesLine { metric, values }] = e.results.as_slice() else {
                return Err(format!("got scalar {v}, expected {} results", e.results.len()));
            };
            if !metric.is_empty() || values.len() != 1 {
                return Err(format!("got scalar {v}, expected a vector"));
            }
            let want = expected_value(&values[0]).ok_or("bad expected value")?;
            if !almost_equal(want, *v) {
                return Err(format!("expected {want}, got {v}"));
            }
            Ok(())
        }
        QueryValue::String { v, .. } => Err(format!("got string {v:?}, expected no string")),
        QueryValue::Vector { samples, .. } => {
            if samples.len() != e.results.len() {
                return Err(format!(
                    "expected {} samples, got {}: {}",
                    e.results.len(),
                    samples.len(),
                    show(samples)
                ));
            }
            for (i, want) in e.results.iter().enumerate() {
                let labels = parse_metric(&want.metric)?;
                let Some(pos) = samples.iter().position(|(l, _)| *l == labels) else {
                    return Err(format!("missing {labels}; got {}", show(samples)));
                };
                if e.ordered && pos != i {
                    return Err(format!("{labels} at position {pos}, expected {i}; got {}", show(samples)));
                }
                let [v] = want.values.as_slice() else { return Err("instant results have one value".into()) };
                let w = expected_value(v).ok_or("bad expected value")?;
                if !almost_equal(w, samples[pos].1) {
                    return Err(format!("{labels}: expected {w}, got {}", samples[pos].1));
                }
            }
            Ok(())
        }
        QueryValue::Matrix(series) => {
            let times: Vec<i64> = match (e.kind, e.range_vector) {
                (EvalKind::Range { start_ms, end_ms, step_ms }, _)
                | (_, Some((start_ms, end_ms, step_ms))) => {
                    (0..).map(|i| start_ms + i * step_ms).take_while(|t| *t <= end_ms).collect()
                }
                _ => return Err("a range vector result needs `expect range vector`".into()),
            };
            if series.len() != e.results.len() {
                let got: Vec<String> = series.iter().map(|s| s.0.to_string()).collect();
                return Err(format!("expected {} series, got {}: {got:?}", e.results.len(), series.len()));
            }
            for want in &e.results {
                let labels = parse_metric(&want.metric)?;
                let Some((_, points)) = series.iter().find(|(l, _)| *l == labels) else {
                    return Err(format!("missing series {labels}"));
                };
                let expected: Vec<(i64, f64)> = want
                    .values
                    .iter()
                    .zip(&times)
                    .filter_map(|(v, t)| expected_value(v).map(|f| (*t, f)))
                    .collect();
                let same = expected.len() == points.len()
                    && expected.iter().zip(points).all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
                if !same {
                    return Err(format!("{labels}: expected {expected:?}, got {points:?}"));
                }
            }
            Ok(())
        }
    }
}

fn show(samples: &[(Labels, f64)]) -> String {
    samples.iter().map(|(l, v)| format!("{l} {}", format_float(*v))).collect::<Vec<_>>().join(", ")
}
