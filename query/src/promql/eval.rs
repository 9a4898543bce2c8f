//! The evaluator: one expression, evaluated at one time per call.
//!
//! A query is first planned: every selector's time needs (steps, `offset`, `@`, ranges,
//! lookback, subquery windows) are computed, and each selector's series are read from the
//! [`SeriesRead`] source once. Evaluation then walks the syntax tree at each step, slicing the
//! loaded samples by binary search. Subquery inner results are memoised per (expression, time),
//! so overlapping subquery windows of consecutive steps evaluate each inner step once.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use collabstream_common::{TimeRange, is_stale_nan};
use collabstream_store::{MatchOp, Matcher, SeriesRead};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector};
use rustc_hash::FxHashMap;

use super::annotations::Annotations;
use super::error::{EvalError, Result, duplicate_labelset, exec};
use super::value::{Metric, Points, RangeSeries, Sample, StepSeries, Value, signature};
use super::{aggregate, binary, functions};

/// Limits one query runs under.
#[derive(Debug, Clone, Copy)]
pub struct EvalLimits {
    pub max_samples: usize,
    pub deadline: Instant,
}

/// One loaded series of a selector.
#[derive(Debug)]
struct Loaded {
    metric: Metric,
    points: Arc<[(i64, f64)]>,
}

pub(crate) struct Evaluator<'a> {
    source: &'a dyn SeriesRead,
    /// The query's start and end, which `@ start()` and `@ end()` refer to.
    pub start: i64,
    pub end: i64,
    /// The range query's step (0 for an instant query), for `step()`.
    pub step: i64,
    lookback: i64,
    default_subquery_step: i64,
    limits: EvalLimits,
    /// Loaded series by selector node address.
    data: FxHashMap<usize, Vec<Loaded>>,
    memo: FxHashMap<(usize, i64), Arc<Vec<Sample>>>,
    /// Samples held: loaded, memoised and produced.
    samples: usize,
    pub annotations: Annotations,
    /// Whether this is a range query (some annotations only apply to those).
    pub is_range: bool,
    /// Nodes that did their once-per-query work already (see [`Self::first_visit`]).
    visited: rustc_hash::FxHashSet<usize>,
    /// Per (aggregation node, input label-set address): the input (kept alive so the address
    /// stays unique), its group signature and the group's labels, so steps after the first
    /// neither hash nor copy labels.
    pub group_cache: FxHashMap<(usize, usize), (Metric, u64, Metric)>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").field("start", &self.start).field("end", &self.end).finish()
    }
}

fn node_addr<T>(node: &T) -> usize {
    node as *const T as usize
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The store's matchers for a selector (the metric name becomes a `__name__` matcher); also
/// what `match[]` parameters resolve to.
pub fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(EvalError::BadData(
            "selectors with `or` between matchers are not PromQL; use `or` between selectors".into(),
        ));
    }
    let mut out = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(name) = &vs.name {
        out.push(Matcher::equal("__name__", name.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| EvalError::BadData(e.to_string()))?,
        );
    }
    Ok(out)
}

/// What the plan found a selector needs: its loading window and whether it feeds a range.
struct Need<'e> {
    vs: &'e VectorSelector,
    lo: i64,
    hi: i64,
    matrix: bool,
}

impl<'a> Evaluator<'a> {
    pub fn new(
        source: &'a dyn SeriesRead,
        start: i64,
        end: i64,
        lookback: i64,
        default_subquery_step: i64,
        limits: EvalLimits,
    ) -> Self {
        Self {
            source,
            start,
            end,
            step: 0,
            lookback,
            default_subquery_step,
            limits,
            data: FxHashMap::default(),
            memo: FxHashMap::default(),
            samples: 0,
            annotations: Annotations::default(),
            is_range: start != end,
            visited: Default::default(),
            group_cache: FxHashMap::default(),
        }
    }

    /// Reads every selector's series for evaluation times `start..=end`.
    pub fn load(&mut self, expr: &Expr) -> Result<()> {
        let mut needs: FxHashMap<usize, Need<'_>> = FxHashMap::default();
        self.plan(expr, self.start, self.end, &mut needs);
        for (addr, need) in needs {
            let matchers = selector_matchers(need.vs)?;
            let range = TimeRange::new(need.lo.saturating_add(1), need.hi);
            // Parts are counted as they come, so a wide selector fails at the budget instead of
            // after everything was read. Series come in creation (id) order, the order
            // Prometheus's index yields them in; evaluating in that order resolves ties (topk,
            // bottomk, limitk) the way an instant query in Prometheus usually does. (Its range
            // queries visit series in hash-map order, so ties there are arbitrary.)
            let mut cursor = self.source.select(&matchers, range)?;
            let mut series: Vec<(Metric, Vec<(i64, f64)>)> = Vec::new();
            let mut last_id = None;
            while let Some(part) = cursor.next_part()? {
                self.check_deadline()?;
                let points: Vec<(i64, f64)> = part
                    .samples
                    .iter()
                    .filter(|p| !(need.matrix && is_stale_nan(p.value)))
                    .map(|p| (p.timestamp_ms, p.value))
                    .collect();
                self.account(points.len())?;
                match series.last_mut() {
                    Some((_, held)) if last_id == Some(part.id) => held.extend(points),
                    _ => series.push((Arc::new(part.labels), points)),
                }
                last_id = Some(part.id);
            }
            let loaded: Vec<Loaded> =
                series.into_iter().map(|(metric, points)| Loaded { metric, points: points.into() }).collect();
            self.data.insert(addr, loaded);
        }
        Ok(())
    }

    fn plan<'e>(&self, e: &'e Expr, lo: i64, hi: i64, needs: &mut FxHashMap<usize, Need<'e>>) {
        let need =
            |vs: &'e VectorSelector, range: i64, matrix: bool, needs: &mut FxHashMap<usize, Need<'e>>| {
                let (s, e) = self.eval_window(&vs.at, lo, hi);
                let off = offset_ms(&vs.offset);
                let entry =
                    needs.entry(node_addr(vs)).or_insert(Need { vs, lo: i64::MAX, hi: i64::MIN, matrix });
                entry.lo = entry.lo.min(s - off - range);
                entry.hi = entry.hi.max(e - off);
            };
        match e {
            Expr::VectorSelector(vs) => need(vs, self.lookback, false, needs),
            Expr::MatrixSelector(ms) => need(&ms.vs, duration_ms(&ms.range), true, needs),
            Expr::Subquery(sq) => {
                let (s, e) = self.eval_window(&sq.at, lo, hi);
                let off = offset_ms(&sq.offset);
                self.plan(&sq.expr, s - off - duration_ms(&sq.range), e - off, needs);
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &a.param {
                    self.plan(p, lo, hi, needs);
                }
                self.plan(&a.expr, lo, hi, needs);
            }
            Expr::Unary(u) => self.plan(&u.expr, lo, hi, needs),
            Expr::Binary(b) => {
                self.plan(&b.lhs, lo, hi, needs);
                self.plan(&b.rhs, lo, hi, needs);
            }
            Expr::Paren(p) => self.plan(&p.expr, lo, hi, needs),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, lo, hi, needs);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    /// The evaluation times a node with `at` sees when its parent is evaluated over `lo..=hi`.
    fn eval_window(&self, at: &Option<AtModifier>, lo: i64, hi: i64) -> (i64, i64) {
        match at {
            None => (lo, hi),
            Some(_) => {
                let t = self.at_time(at, lo);
                (t, t)
            }
        }
    }

    pub fn at_time(&self, at: &Option<AtModifier>, t: i64) -> i64 {
        match at {
            None => t,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(st)) => system_time_ms(st),
        }
    }

    /// True the first time it is called with `key` in this query: for checks that need not
    /// run at every step (annotations about the input).
    pub fn first_visit(&mut self, key: usize) -> bool {
        self.visited.insert(key)
    }

    /// Samples held so far (loaded and made), as counted against `max_samples`.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Counts `n` more samples held, failing past the limit.
    pub fn account(&mut self, n: usize) -> Result<()> {
        self.samples += n;
        if self.samples > self.limits.max_samples {
            return Err(EvalError::TooManySamples("query execution"));
        }
        Ok(())
    }

    pub fn check_deadline(&self) -> Result<()> {
        if Instant::now() > self.limits.deadline {
            return Err(EvalError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    pub fn eval(&mut self, e: &Expr, t: i64) -> Result<Value> {
        Ok(match e {
            Expr::NumberLiteral(n) => Value::Scalar(n.val),
            Expr::StringLiteral(s) => Value::String(s.val.clone()),
            Expr::Paren(p) => self.eval(&p.expr, t)?,
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Value::Scalar(f) => Value::Scalar(-f),
                Value::Vector(mut v) => {
                    for s in &mut v {
                        s.value = -s.value;
                        s.drop_name = true;
                    }
                    Value::Vector(v)
                }
                other => return Err(exec(format!("unary minus on a {}", other.type_name()))),
            },
            Expr::VectorSelector(vs) => {
                Value::Vector(self.select_vector(vs, t).into_iter().map(|(s, _)| s).collect())
            }
            Expr::MatrixSelector(ms) => Value::Matrix(self.select_matrix(ms, t)),
            Expr::Subquery(sq) => Value::Matrix(self.subquery(sq, t)?),
            Expr::Binary(b) => binary::eval(self, b, t)?,
            Expr::Aggregate(a) => aggregate::eval(self, a, t)?,
            Expr::Call(c) => functions::call(self, c, t)?,
            Expr::Extension(_) => {
                return Err(EvalError::BadData("extension expressions are not supported".into()));
            }
        })
    }

    /// Evaluates `e`, which the parser typed as an instant vector.
    pub fn eval_vector(&mut self, e: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(exec(format!("expected an instant vector, got a {}", other.type_name()))),
        }
    }

    pub fn eval_matrix(&mut self, e: &Expr, t: i64) -> Result<Vec<RangeSeries>> {
        match self.eval(e, t)? {
            Value::Matrix(m) => Ok(m),
            other => Err(exec(format!("expected a range vector, got a {}", other.type_name()))),
        }
    }

    pub fn eval_scalar(&mut self, e: &Expr, t: i64) -> Result<f64> {
        match self.eval(e, t)? {
            Value::Scalar(f) => Ok(f),
            other => Err(exec(format!("expected a scalar, got a {}", other.type_name()))),
        }
    }

    pub fn eval_string(&mut self, e: &Expr, t: i64) -> Result<String> {
        match self.eval(e, t)? {
            Value::String(s) => Ok(s),
            other => Err(exec(format!("expected a string, got a {}", other.type_name()))),
        }
    }

    /// The newest sample of each series within the lookback before `t` (after `@` and
    /// `offset`), with its own timestamp. A stale marker ends a series.
    pub fn select_vector(&self, vs: &VectorSelector, t: i64) -> Vec<(Sample, i64)> {
        let te = self.at_time(&vs.at, t) - offset_ms(&vs.offset);
        let Some(loaded) = self.data.get(&node_addr(vs)) else { return Vec::new() };
        let mut out = Vec::new();
        for s in loaded {
            let i = s.points.partition_point(|p| p.0 <= te);
            if i == 0 {
                continue;
            }
            let (ts, v) = s.points[i - 1];
            if ts <= te - self.lookback || is_stale_nan(v) {
                continue;
            }
            out.push((Sample { metric: s.metric.clone(), value: v, drop_name: false }, ts));
        }
        out
    }

    /// Each series' samples in the left-open window `(t - range, t]` (after `@` and `offset`).
    fn select_matrix(&self, ms: &MatrixSelector, t: i64) -> Vec<RangeSeries> {
        let vs = &ms.vs;
        let te = self.at_time(&vs.at, t) - offset_ms(&vs.offset);
        let from = te - duration_ms(&ms.range);
        let Some(loaded) = self.data.get(&node_addr(vs)) else { return Vec::new() };
        let mut out = Vec::new();
        for s in loaded {
            let a = s.points.partition_point(|p| p.0 <= from);
            let b = s.points.partition_point(|p| p.0 <= te);
            if a < b {
                out.push(RangeSeries {
                    metric: s.metric.clone(),
                    drop_name: false,
                    points: Points::Shared { data: s.points.clone(), range: a..b },
                });
            }
        }
        out
    }

    fn subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<Vec<RangeSeries>> {
        let te = self.at_time(&sq.at, t) - offset_ms(&sq.offset);
        let range = duration_ms(&sq.range);
        let step = sq.step.as_ref().map(duration_ms).unwrap_or(self.default_subquery_step).max(1);
        // The first multiple of the step after the window's open start.
        let mut ts = (te - range).div_euclid(step) * step + step;
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let mut out: Vec<StepSeries> = Vec::new();
        while ts <= te {
            self.check_deadline()?;
            let key = (node_addr(sq.expr.as_ref()), ts);
            let v = match self.memo.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let v = match self.eval(&sq.expr, ts)? {
                        Value::Vector(v) => v,
                        Value::Scalar(f) => {
                            vec![Sample { metric: Arc::new(Default::default()), value: f, drop_name: false }]
                        }
                        other => return Err(exec(format!("subquery over a {}", other.type_name()))),
                    };
                    self.account(v.len())?;
                    let v = Arc::new(v);
                    self.memo.insert(key, v.clone());
                    v
                }
            };
            for s in v.iter() {
                let sig = signature(&s.metric, |_| true) ^ u64::from(s.drop_name);
                let i = *index.entry(sig).or_insert_with(|| {
                    out.push((s.metric.clone(), s.drop_name, Vec::new()));
                    out.len() - 1
                });
                let points = &mut out[i].2;
                // As in a range query: alike at one step is an error, not two points at one time.
                if points.last().is_some_and(|p| p.0 == ts) {
                    return Err(duplicate_labelset());
                }
                points.push((ts, s.value));
            }
            ts += step;
        }
        Ok(out
            .into_iter()
            .map(|(metric, drop_name, points)| RangeSeries {
                metric,
                drop_name,
                points: Points::Owned(points),
            })
            .collect())
    }
}
