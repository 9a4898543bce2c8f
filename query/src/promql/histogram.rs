//! `histogram_quantile`, `histogram_quantiles` and `histogram_fraction` over classic
//! histograms: series with an `le` label holding cumulative bucket counts.

use std::sync::Arc;

use collabstream_common::Labels;
use promql_parser::parser::Expr;
use rustc_hash::FxHashMap;

use super::error::{Result, exec};
use super::eval::Evaluator;
use super::stats::almost_equal;
use super::value::{Sample, Value, format_float, retain, signature, with_label};

/// One bucket: upper bound and cumulative count.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// Buckets grouped by series identity without `le`.
struct Group {
    labels: Labels,
    name: String,
    buckets: Vec<Bucket>,
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

fn groups(ev: &mut Evaluator<'_>, input: Vec<Sample>) -> Vec<Group> {
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();
    let mut out: Vec<Group> = Vec::new();
    for s in input {
        let le = s.metric.get("le").unwrap_or("");
        let Some(upper) = parse_le(le) else {
            ev.annotations.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {:?}",
                s.metric.metric_name()
            ));
            continue;
        };
        // The name stays in the key and the labels until the end of evaluation (delayed name
        // removal), so two histograms that differ only by name collide then, not here.
        let key = signature(&s.metric, |n| n != "le");
        let i = *index.entry(key).or_insert_with(|| {
            out.push(Group {
                labels: retain(&s.metric, |n| n != "le"),
                name: s.metric.metric_name().to_string(),
                buckets: Vec::new(),
            });
            out.len() - 1
        });
        out[i].buckets.push(Bucket { upper, count: s.value });
    }
    out
}

/// Sorts by bound and merges buckets with equal bounds.
fn prepare(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
    let mut out: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => out.push(b),
        }
    }
    out
}

/// Makes counts non-decreasing; treats differences within 1e-12 relative as noise. Returns
/// whether a real decrease had to be fixed.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let cur = b.count;
        if cur == prev {
            continue;
        }
        if almost_equal(prev, cur, 1e-12) {
            b.count = prev;
            continue;
        }
        if cur < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = cur;
    }
    forced
}

/// The q-quantile of a classic histogram, interpolating linearly inside the bucket; `None`
/// flags a forced monotonicity fix through the second value.
fn bucket_quantile(q: f64, buckets: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let mut b = prepare(buckets);
    if b.last().is_none_or(|l| l.upper != f64::INFINITY) {
        return (f64::NAN, false);
    }
    let forced = ensure_monotonic(&mut b);
    if b.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = b[b.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    let i = b[..b.len() - 1].partition_point(|x| x.count < rank);
    if i == b.len() - 1 {
        return (b[b.len() - 2].upper, forced);
    }
    if i == 0 && b[0].upper <= 0.0 {
        return (b[0].upper, forced);
    }
    let (mut start, end, mut count) = (0.0, b[i].upper, b[i].count);
    if i > 0 {
        start = b[i - 1].upper;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The estimated share of observations in `[lower, upper]`.
fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<Bucket>) -> f64 {
    let b = prepare(buckets);
    if b.last().is_none_or(|l| l.upper != f64::INFINITY) {
        return f64::NAN;
    }
    let total = b[b.len() - 1].count;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    // The cumulative count at `v`, interpolating inside the bucket that holds it. The first
    // bucket starts at 0 when its bound is positive (observations are assumed non-negative);
    // the +Inf bucket cannot be interpolated.
    // A bucket of infinite width is not interpolated. The -Inf one contributes nothing to an
    // interval that starts or ends inside it; the +Inf one counts only when the interval
    // reaches +Inf.
    let rank_at = |v: f64, is_lower: bool| -> f64 {
        let mut prev_upper = f64::NEG_INFINITY;
        let mut prev_count = 0.0;
        for (i, x) in b.iter().enumerate() {
            let lower_bound =
                if i == 0 { if x.upper > 0.0 { 0.0 } else { f64::NEG_INFINITY } } else { prev_upper };
            if v <= x.upper {
                if v <= lower_bound {
                    return prev_count;
                }
                if lower_bound.is_infinite() || x.upper.is_infinite() {
                    return if v >= x.upper || (is_lower && lower_bound.is_infinite()) {
                        x.count
                    } else {
                        prev_count
                    };
                }
                return prev_count + (x.count - prev_count) * (v - lower_bound) / (x.upper - lower_bound);
            }
            prev_upper = x.upper;
            prev_count = x.count;
        }
        total
    };
    (rank_at(upper, false) - rank_at(lower, true)) / total
}

pub(crate) fn call(ev: &mut Evaluator<'_>, name: &str, args: &[Box<Expr>], t: i64) -> Result<Value> {
    let arg =
        |i: usize| args.get(i).map(|b| b.as_ref()).ok_or_else(|| exec(format!("{name}: missing argument")));
    let mut out = Vec::new();
    match name {
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(0)?, t)?;
            let input = ev.eval_vector(arg(1)?, t)?;
            if !(0.0..=1.0).contains(&q) {
                ev.annotations
                    .warn(format!("quantile value should be between 0 and 1, got {}", format_float(q)));
            }
            for g in groups(ev, input) {
                let (v, forced) = bucket_quantile(q, g.buckets);
                monotonicity_info(ev, forced, &g.name);
                out.push(Sample { metric: Arc::new(g.labels), value: v, drop_name: true });
            }
        }
        "histogram_quantiles" => {
            let input = ev.eval_vector(arg(0)?, t)?;
            let label = ev.eval_string(arg(1)?, t)?;
            let mut qs = Vec::new();
            for e in &args[2..] {
                let q = ev.eval_scalar(e, t)?;
                if !(0.0..=1.0).contains(&q) {
                    ev.annotations
                        .warn(format!("quantile value should be between 0 and 1, got {}", format_float(q)));
                }
                qs.push(q);
            }
            let groups = groups(ev, input);
            if groups.iter().any(|g| g.labels.get(&label).is_some()) {
                return Err(exec(format!(
                    "histogram_quantiles: label {label:?} already exists on the input; choose another label name"
                )));
            }
            for g in groups {
                for &q in &qs {
                    let (v, forced) = bucket_quantile(q, g.buckets.clone());
                    monotonicity_info(ev, forced, &g.name);
                    let metric = Arc::new(with_label(&g.labels, &label, &quantile_label(q)));
                    out.push(Sample { metric, value: v, drop_name: true });
                }
            }
        }
        _ => {
            let lower = ev.eval_scalar(arg(0)?, t)?;
            let upper = ev.eval_scalar(arg(1)?, t)?;
            let input = ev.eval_vector(arg(2)?, t)?;
            for g in groups(ev, input) {
                let v = bucket_fraction(lower, upper, g.buckets);
                out.push(Sample { metric: Arc::new(g.labels), value: v, drop_name: true });
            }
        }
    }
    Ok(Value::Vector(out))
}

/// A quantile as `histogram_quantiles` labels it: always with a fraction (`0.0`, `0.25`, `1.0`).
fn quantile_label(q: f64) -> String {
    let s = format_float(q);
    if q.is_finite() && !s.contains('.') { format!("{s}.0") } else { s }
}

fn monotonicity_info(ev: &mut Evaluator<'_>, forced: bool, name: &str) {
    if forced {
        ev.annotations.info(format!(
            "input to histogram_quantile needed to be fixed for monotonicity (see \
             https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric \
             name {name:?}"
        ));
    }
}
