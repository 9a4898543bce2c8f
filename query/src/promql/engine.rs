//! The entry points: instant and range queries over a [`SeriesRead`] source, with the limits
//! a query runs under.

use std::sync::Arc;
use std::time::{Duration, Instant};

use collabstream_common::Labels;
use collabstream_store::SeriesRead;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr};
use rustc_hash::FxHashMap;

use super::annotations::Annotations;
use super::error::{EvalError, Result, duplicate_labelset, exec};
use super::eval::{EvalLimits, Evaluator};
use super::value::{StepSeries, Value, signature, without_name};

/// Engine settings; the defaults are Prometheus's.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (`--query.lookback-delta`).
    pub lookback: Duration,
    /// Samples a query may hold at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock time a query may run (`--query.timeout`).
    pub timeout: Duration,
    /// The step of a subquery written without one (`expr[1h:]`), Prometheus's evaluation
    /// interval.
    pub default_subquery_step: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            lookback: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step: Duration::from_secs(60),
        }
    }
}

/// A query's result in the shapes of the Prometheus API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector { t: i64, samples: Vec<(Labels, f64)> },
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

#[derive(Debug, Clone)]
pub struct QueryResult {
    pub value: QueryValue,
    pub annotations: Annotations,
    /// Samples the evaluation held (what `max_samples` limits).
    pub samples: usize,
}

/// Evaluates PromQL over one source.
#[derive(Clone)]
pub struct Engine {
    source: Arc<dyn SeriesRead>,
    options: EngineOptions,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("options", &self.options).finish()
    }
}

pub fn parse(query: &str) -> Result<Expr> {
    check_string_literals(query)?;
    parser::parse(query).map_err(EvalError::BadData)
}

/// Rejects string literals whose escapes spell invalid UTF-8 (`"a\xc5z"`). In Go, and so in
/// Prometheus, `\xNN` is a byte; promql-parser reads it as the code point U+00NN, which would
/// quietly turn an invalid label name into a valid one. Every string in PromQL names or builds
/// labels, which must be UTF-8, so the query is refused with the message Prometheus gives.
fn check_string_literals(query: &str) -> Result<()> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let quote = b[i];
        if quote != b'"' && quote != b'\'' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut bytes = Vec::new();
        let mut has_byte_escape = false;
        i += 1;
        while i < b.len() && b[i] != quote {
            if b[i] == b'\\' && i + 1 < b.len() {
                let hex = |s: &[u8]| std::str::from_utf8(s).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                if b[i + 1] == b'x'
                    && i + 3 < b.len()
                    && let Some(v) = hex(&b[i + 2..i + 4])
                {
                    bytes.push(v);
                    has_byte_escape |= v >= 0x80;
                    i += 4;
                    continue;
                }
                // Any other escape stands for valid UTF-8; its exact value does not matter here.
                bytes.push(b'_');
                i += 2;
                continue;
            }
            bytes.push(b[i]);
            i += 1;
        }
        if has_byte_escape && std::str::from_utf8(&bytes).is_err() {
            let raw = String::from_utf8_lossy(&b[start..i.min(b.len())]);
            return Err(EvalError::Execution(format!("invalid label name \"{raw}\"")));
        }
        i += 1;
    }
    Ok(())
}

impl Engine {
    pub fn new(source: Arc<dyn SeriesRead>, options: EngineOptions) -> Self {
        Self { source, options }
    }

    /// The same engine with a different timeout (a request's own, or what its queueing left).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut e = self.clone();
        e.options.timeout = timeout;
        e
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    fn evaluator(&self, start: i64, end: i64) -> Evaluator<'_> {
        let limits = EvalLimits {
            max_samples: self.options.max_samples,
            deadline: Instant::now() + self.options.timeout,
        };
        Evaluator::new(
            self.source.as_ref(),
            start,
            end,
            self.options.lookback.as_millis() as i64,
            self.options.default_subquery_step.as_millis() as i64,
            limits,
        )
    }

    /// Evaluates `query` at `t` (ms).
    pub fn instant(&self, query: &str, t: i64) -> Result<QueryResult> {
        let expr = parse(query)?;
        let mut ev = self.evaluator(t, t);
        ev.load(&expr)?;
        ev.check_deadline()?;
        let value = match ev.eval(&expr, t)? {
            Value::Scalar(v) => QueryValue::Scalar { t, v },
            Value::String(v) => QueryValue::String { t, v },
            Value::Vector(v) => {
                let mut seen: FxHashMap<u64, ()> = FxHashMap::default();
                let mut samples = Vec::with_capacity(v.len());
                for s in v {
                    let labels = if s.drop_name { without_name(&s.metric) } else { (*s.metric).clone() };
                    if seen.insert(signature(&labels, |_| true), ()).is_some() {
                        return Err(duplicate_labelset());
                    }
                    samples.push((labels, s.value));
                }
                QueryValue::Vector { t, samples }
            }
            Value::Matrix(m) => {
                let mut out: Vec<(Labels, Vec<(i64, f64)>)> = Vec::with_capacity(m.len());
                let mut seen: FxHashMap<u64, ()> = FxHashMap::default();
                for s in m {
                    let labels = if s.drop_name { without_name(&s.metric) } else { (*s.metric).clone() };
                    if seen.insert(signature(&labels, |_| true), ()).is_some() {
                        return Err(duplicate_labelset());
                    }
                    out.push((labels, s.points.to_vec()));
                }
                out.sort_by(|a, b| a.0.cmp(&b.0));
                QueryValue::Matrix(out)
            }
        };
        Ok(QueryResult { value, samples: ev.samples(), annotations: ev.annotations })
    }

    /// Evaluates `query` at every step from `start` to `end` (ms), a matrix sorted by labels.
    pub fn range(&self, query: &str, start: i64, end: i64, step: i64) -> Result<QueryResult> {
        if step <= 0 {
            return Err(EvalError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end < start {
            return Err(EvalError::BadData("end timestamp must not be before start time".into()));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                let name =
                    if other == ValueType::Matrix { "range vector".to_string() } else { other.to_string() };
                return Err(EvalError::BadData(format!(
                    "invalid expression type {name:?} for range query, must be Scalar or instant Vector"
                )));
            }
        }
        let mut ev = self.evaluator(start, end);
        ev.step = step;
        ev.load(&expr)?;
        // Series by (labels, whether the name goes) while stepping.
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        // Most steps produce the same label-set allocations again (selector outputs, cached
        // aggregation groups): find their series by address before hashing labels. The map
        // holds each Arc, so an address cannot be reused by another label set meanwhile.
        let mut by_addr: FxHashMap<(usize, bool), (Arc<Labels>, usize)> = FxHashMap::default();
        let mut series: Vec<StepSeries> = Vec::new();
        let mut t = start;
        while t <= end {
            ev.check_deadline()?;
            match ev.eval(&expr, t)? {
                Value::Scalar(v) => {
                    if series.is_empty() {
                        series.push((Arc::new(Labels::default()), false, Vec::new()));
                    }
                    series[0].2.push((t, v));
                    ev.account(1)?;
                }
                Value::Vector(v) => {
                    ev.account(v.len())?;
                    for s in v {
                        let addr = (Arc::as_ptr(&s.metric) as usize, s.drop_name);
                        let i = match by_addr.get(&addr) {
                            Some((_, i)) => *i,
                            None => {
                                let key = signature(&s.metric, |_| true) ^ u64::from(s.drop_name);
                                let i = *index.entry(key).or_insert_with(|| {
                                    series.push((s.metric.clone(), s.drop_name, Vec::new()));
                                    series.len() - 1
                                });
                                by_addr.insert(addr, (s.metric.clone(), i));
                                i
                            }
                        };
                        let points = &mut series[i].2;
                        // A second sample for the same series at this step: Prometheus refuses it
                        // (series alike at different steps merge, below).
                        if points.last().is_some_and(|p| p.0 == t) {
                            return Err(duplicate_labelset());
                        }
                        points.push((t, s.value));
                    }
                }
                other => return Err(exec(format!("range query step returned a {}", other.type_name()))),
            }
            t += step;
        }
        // Drop names now, merging series that end up with the same labels at distinct steps.
        let mut merged: FxHashMap<u64, usize> = FxHashMap::default();
        let mut out: Vec<(Labels, Vec<(i64, f64)>)> = Vec::new();
        for (metric, drop, points) in series {
            let labels = if drop { without_name(&metric) } else { (*metric).clone() };
            match merged.get(&signature(&labels, |_| true)) {
                Some(&i) => {
                    let existing = &mut out[i].1;
                    for p in points {
                        if existing.iter().any(|e| e.0 == p.0) {
                            return Err(duplicate_labelset());
                        }
                        existing.push(p);
                    }
                    existing.sort_by_key(|p| p.0);
                }
                None => {
                    merged.insert(signature(&labels, |_| true), out.len());
                    out.push((labels, points));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(QueryResult { value: QueryValue::Matrix(out), samples: ev.samples(), annotations: ev.annotations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Mem, Slow};

    #[test]
    fn a_query_past_its_timeout_stops_with_the_timeout_error() {
        let engine = Engine::new(
            Arc::new(Slow(Duration::ZERO)),
            EngineOptions { timeout: Duration::ZERO, ..Default::default() },
        );
        std::thread::sleep(Duration::from_millis(1));
        let err = engine.range("vector(1)", 0, 10_000_000, 1_000).unwrap_err();
        assert!(matches!(err, EvalError::Timeout(_)), "{err}");
        assert_eq!(err.code(), collabstream_common::ErrorCode::Timeout);
    }

    #[test]
    fn a_query_over_max_samples_fails_instead_of_growing() {
        let engine = Engine::new(
            Arc::new(Slow(Duration::ZERO)),
            EngineOptions { max_samples: 100, ..Default::default() },
        );
        let err = engine.range("vector(1)", 0, 1_000_000, 1_000).unwrap_err();
        assert!(matches!(err, EvalError::TooManySamples(_)), "{err}");
        assert!(engine.range("vector(1)", 0, 50_000, 1_000).is_ok());
        let err = engine.instant("count_over_time(vector(1)[1h:1s])", 3_600_000).unwrap_err();
        assert!(matches!(err, EvalError::TooManySamples(_)), "{err}");
    }

    const SAME_LABELSET: &str = "vector cannot contain metrics with the same labelset";

    /// Samples every 15 s from 0 to 60 s: three series that differ only in `instance`, two
    /// that differ only in their name, and one to match them against; and two series that
    /// differ only in `instance` and are never present at the same step.
    fn engine() -> Engine {
        let every_15s: &[(i64, f64)] =
            &[(0, 1.0), (15_000, 2.0), (30_000, 3.0), (45_000, 4.0), (60_000, 5.0)];
        let source = Mem::new(&[
            (&[("__name__", "demo_num_cpus"), ("instance", "a"), ("job", "demo")], every_15s),
            (&[("__name__", "demo_num_cpus"), ("instance", "b"), ("job", "demo")], every_15s),
            (&[("__name__", "demo_num_cpus"), ("instance", "c"), ("job", "demo")], every_15s),
            (&[("__name__", "a"), ("x", "1")], every_15s),
            (&[("__name__", "b"), ("x", "1")], every_15s),
            (&[("__name__", "c"), ("x", "1")], every_15s),
            (&[("__name__", "late"), ("instance", "a")], &[(0, 1.0)]),
            (&[("__name__", "late"), ("instance", "b")], &[(1_200_000, 2.0)]),
        ]);
        Engine::new(Arc::new(source), EngineOptions::default())
    }

    /// `query` fails with `msg` as an execution error (422), as an instant query and as a range
    /// query over the data.
    fn assert_fails(engine: &Engine, query: &str, msg: &str) {
        let results =
            [("instant", engine.instant(query, 60_000)), ("range", engine.range(query, 0, 60_000, 15_000))];
        for (kind, result) in results {
            match result {
                Ok(r) => panic!("{kind} {query}: expected {msg:?}, got {:?}", r.value),
                Err(err) => {
                    assert!(err.to_string().starts_with(msg), "{kind} {query}: {err}");
                    assert!(matches!(err, EvalError::Execution(_)), "{kind} {query}: {err:?}");
                    assert_eq!(err.code(), collabstream_common::ErrorCode::Execution);
                }
            }
        }
    }

    #[test]
    fn label_replace_that_makes_series_alike_fails_instead_of_merging_them() {
        let engine = engine();
        let replace = r#"label_replace(demo_num_cpus, "instance", "", "", "")"#;
        assert_fails(&engine, replace, SAME_LABELSET);
        // Inside other expressions too, where no later step would notice.
        assert_fails(&engine, &format!("sum({replace})"), SAME_LABELSET);
        assert_fails(&engine, &format!("max_over_time({replace}[1m:15s])"), SAME_LABELSET);
        // Series that stay distinct are fine.
        let r =
            engine.range(r#"label_replace(demo_num_cpus, "i", "$1", "instance", "(.*)")"#, 0, 60_000, 15_000);
        let Ok(QueryResult { value: QueryValue::Matrix(m), .. }) = r else { panic!("{r:?}") };
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|(_, points)| points.len() == 5), "{m:?}");
    }

    #[test]
    fn label_join_that_makes_series_alike_fails_instead_of_merging_them() {
        let engine = engine();
        let join = r#"label_join(demo_num_cpus, "instance", "", "job")"#;
        assert_fails(&engine, join, SAME_LABELSET);
        assert_fails(&engine, &format!("count({join})"), SAME_LABELSET);
    }

    /// As in Prometheus, a range query merges series that are alike but never at the same step.
    #[test]
    fn series_made_alike_at_different_steps_merge_in_a_range_query() {
        let engine = engine();
        for query in
            [r#"label_replace(late, "instance", "", "", "")"#, r#"label_join(late, "instance", "", "job")"#]
        {
            let r = engine.range(query, 0, 1_200_000, 600_000);
            let Ok(QueryResult { value: QueryValue::Matrix(m), .. }) = r else { panic!("{query}: {r:?}") };
            let labels = Labels::from_pairs(&[("__name__", "late")]).expect("valid");
            assert_eq!(m, vec![(labels, vec![(0, 1.0), (1_200_000, 2.0)])], "{query}");
        }
    }

    /// Series that differ only in their name collide when an operation drops it. Names go as
    /// with Prometheus's delayed name removal (how its test files run), so the collision is
    /// found at the end of the evaluation; `sum(abs(...))` sums, as those files expect.
    #[test]
    fn dropping_the_name_of_series_that_differ_only_in_it_fails() {
        let engine = engine();
        for query in [
            r#"abs({__name__=~"a|b"})"#,
            r#"-{__name__=~"a|b"}"#,
            r#"{__name__=~"a|b"} * 2"#,
            r#"2 ^ {__name__=~"a|b"}"#,
            r#"{__name__=~"a|b"} > bool 0"#,
            r#"timestamp({__name__=~"a|b"})"#,
            r#"rate({__name__=~"a|b"}[1m])"#,
            r#"max_over_time({__name__=~"a|b"}[1m])"#,
            r#"{__name__=~"a|b"} > bool on(x) group_left c"#,
        ] {
            assert_fails(&engine, query, SAME_LABELSET);
        }
        // These keep the name.
        for query in [r#"last_over_time({__name__=~"a|b"}[1m])"#, r#"{__name__=~"a|b"} > 0"#] {
            assert!(engine.instant(query, 60_000).is_ok(), "{query}");
            assert!(engine.range(query, 0, 60_000, 15_000).is_ok(), "{query}");
        }
    }

    /// Arithmetic between vectors drops the name before matching (even with delayed name
    /// removal), so Prometheus reports these as matching errors.
    #[test]
    fn arithmetic_between_vectors_fails_on_series_that_differ_only_in_their_name() {
        let engine = engine();
        let many_to_one = "multiple matches for labels: grouping labels must ensure unique matches";
        let group_left = r#"{__name__=~"a|b"} + on(x) group_left c"#;
        assert_fails(&engine, group_left, many_to_one);
        assert_fails(&engine, &format!("sum({group_left})"), many_to_one);
        assert_fails(&engine, r#"c - on(x) group_right {__name__=~"a|b"}"#, many_to_one);
        assert_fails(
            &engine,
            r#"{__name__=~"a|b"} + c"#,
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
        );
        assert_fails(
            &engine,
            r#"c + {__name__=~"a|b"}"#,
            r#"found duplicate series for the match group {x="1"} on the right hand-side of the operation"#,
        );
    }
}
