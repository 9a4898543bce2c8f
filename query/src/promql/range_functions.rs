//! Functions over range vectors: `rate`, `increase`, `delta`, `irate`, `deriv`,
//! `predict_linear`, `changes`, `resets`, every `*_over_time`, `absent_over_time` and
//! `double_exponential_smoothing`.

use promql_parser::parser::Expr;

use super::error::{Result, exec};
use super::eval::{Evaluator, duration_ms, offset_ms};
use super::stats::{KahanSum, MeanAcc, kahan_inc, linear_regression, quantile};
use super::value::{RangeSeries, Sample, Value, format_float};

/// Whether `name` is a function over a range vector that this module evaluates.
pub(crate) fn handles(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "min_over_time"
            | "max_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "quantile_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
            | "mad_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
            | "ts_of_max_over_time"
            | "ts_of_min_over_time"
            | "double_exponential_smoothing"
    )
}

fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// The left-open window `(start, end]` in ms that a range argument covers at step `t`.
fn window(ev: &Evaluator<'_>, arg: &Expr, t: i64) -> Result<(i64, i64)> {
    match unparen(arg) {
        Expr::MatrixSelector(ms) => {
            let end = ev.at_time(&ms.vs.at, t) - offset_ms(&ms.vs.offset);
            Ok((end - duration_ms(&ms.range), end))
        }
        Expr::Subquery(sq) => {
            let end = ev.at_time(&sq.at, t) - offset_ms(&sq.offset);
            Ok((end - duration_ms(&sq.range), end))
        }
        _ => Err(exec("expected a range vector selector or a subquery")),
    }
}

pub(crate) fn call(ev: &mut Evaluator<'_>, name: &str, args: &[Box<Expr>], t: i64) -> Result<Value> {
    let matrix_arg = if name == "quantile_over_time" { 1 } else { 0 };
    let arg = args.get(matrix_arg).ok_or_else(|| exec(format!("{name} needs a range vector")))?;
    let series = ev.eval_matrix(arg, t)?;
    let (start, end) = window(ev, arg, t)?;
    let range_secs = (end - start) as f64 / 1e3;
    let mut out = Vec::with_capacity(series.len());
    match name {
        "rate" | "increase" | "delta" => {
            let counter = name != "delta";
            // Checked at the first step (the annotation is about the input, not each step).
            if counter && ev.first_visit(args.as_ptr() as usize) {
                for s in &series {
                    let n = s.metric.metric_name();
                    if !n.is_empty()
                        && !["_total", "_sum", "_count", "_bucket"].iter().any(|suffix| n.ends_with(suffix))
                    {
                        ev.annotations.info(format!(
                            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                        ));
                    }
                }
            }
            for s in series {
                if let Some(v) = extrapolated_rate(&s.points, start, end, counter, name == "rate", range_secs)
                {
                    out.push(dropped(&s, v));
                }
            }
        }
        "irate" | "idelta" => {
            for s in series {
                let n = s.points.len();
                if n < 2 {
                    continue;
                }
                let (lt, lv) = s.points[n - 1];
                let (pt, pv) = s.points[n - 2];
                let mut v = if name == "irate" && lv < pv { lv } else { lv - pv };
                let dt = lt - pt;
                if dt == 0 {
                    continue;
                }
                if name == "irate" {
                    v /= dt as f64 / 1e3;
                }
                out.push(dropped(&s, v));
            }
        }
        "deriv" | "predict_linear" => {
            let horizon = if name == "predict_linear" {
                ev.eval_scalar(args.get(1).ok_or_else(|| exec("predict_linear needs a duration"))?, t)?
            } else {
                0.0
            };
            for s in series {
                if s.points.len() < 2 {
                    continue;
                }
                let v = if name == "deriv" {
                    linear_regression(&s.points, s.points[0].0).0
                } else {
                    let (slope, intercept) = linear_regression(&s.points, t);
                    slope * horizon + intercept
                };
                out.push(dropped(&s, v));
            }
        }
        "changes" | "resets" => {
            for s in series {
                let mut n = 0.0;
                for w in s.points.windows(2) {
                    let (prev, cur) = (w[0].1, w[1].1);
                    let hit = if name == "changes" {
                        cur != prev && !(cur.is_nan() && prev.is_nan())
                    } else {
                        cur < prev
                    };
                    if hit {
                        n += 1.0;
                    }
                }
                out.push(dropped(&s, n));
            }
        }
        "quantile_over_time" => {
            let q = ev.eval_scalar(&args[0], t)?;
            if !(0.0..=1.0).contains(&q) {
                ev.annotations
                    .warn(format!("quantile value should be between 0 and 1, got {}", format_float(q)));
            }
            for s in series {
                let v = quantile(q, s.points.iter().map(|p| p.1).collect());
                out.push(dropped(&s, v));
            }
        }
        "double_exponential_smoothing" => {
            let sf = ev.eval_scalar(args.get(1).ok_or_else(|| exec("missing smoothing factor"))?, t)?;
            let tf = ev.eval_scalar(args.get(2).ok_or_else(|| exec("missing trend factor"))?, t)?;
            if !(sf > 0.0 && sf < 1.0) {
                return Err(exec(format!("invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}")));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(exec(format!("invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}")));
            }
            for s in series {
                if let Some(v) = smoothing(&s.points, sf, tf) {
                    out.push(dropped(&s, v));
                }
            }
        }
        _ => {
            for s in series {
                let Some(v) = over_time(name, &s.points) else { continue };
                if matches!(name, "last_over_time" | "first_over_time") {
                    out.push(Sample { metric: s.metric.clone(), value: v, drop_name: s.drop_name });
                } else {
                    out.push(dropped(&s, v));
                }
            }
        }
    }
    Ok(Value::Vector(out))
}

fn dropped(s: &RangeSeries, value: f64) -> Sample {
    Sample { metric: s.metric.clone(), value, drop_name: true }
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated towards the window
/// edges (not beyond the point where a counter would have been zero).
fn extrapolated_rate(
    points: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    counter: bool,
    is_rate: bool,
    range_secs: f64,
) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (first_t, first_v) = points[0];
    let (last_t, last_v) = points[points.len() - 1];
    let mut result = last_v - first_v;
    if counter {
        for w in points.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1e3;
    let mut to_end = (range_end - last_t) as f64 / 1e3;
    let sampled = (last_t - first_t) as f64 / 1e3;
    let avg_step = sampled / (points.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= range_secs;
    }
    Some(result * factor)
}

fn smoothing(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, points[0].1);
    let mut b = points[1].1 - points[0].1;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

fn over_time(name: &str, points: &[(i64, f64)]) -> Option<f64> {
    let values = || points.iter().map(|p| p.1);
    let first = *points.first()?;
    let last = *points.last()?;
    Some(match name {
        "avg_over_time" => {
            let mut m = MeanAcc::default();
            values().for_each(|v| m.add(v));
            m.value()
        }
        "sum_over_time" => {
            let mut k = KahanSum::default();
            values().for_each(|v| k.add(v));
            k.value()
        }
        "count_over_time" => points.len() as f64,
        "min_over_time" | "max_over_time" => extreme(points, name == "max_over_time").1,
        "ts_of_min_over_time" | "ts_of_max_over_time" => {
            extreme(points, name == "ts_of_max_over_time").0 as f64 / 1e3
        }
        "stddev_over_time" | "stdvar_over_time" => {
            let (mut n, mut mean, mut cm, mut aux, mut ca) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for v in values() {
                n += 1.0;
                let delta = v - (mean + cm);
                (mean, cm) = kahan_inc(delta / n, mean, cm);
                (aux, ca) = kahan_inc(delta * (v - (mean + cm)), aux, ca);
            }
            let var = (aux + ca) / n;
            if name == "stdvar_over_time" { var } else { var.sqrt() }
        }
        "last_over_time" => last.1,
        "first_over_time" => first.1,
        "ts_of_last_over_time" => last.0 as f64 / 1e3,
        "ts_of_first_over_time" => first.0 as f64 / 1e3,
        "present_over_time" => 1.0,
        "mad_over_time" => {
            if values().any(f64::is_nan) {
                return Some(f64::NAN);
            }
            let median = quantile(0.5, values().collect());
            quantile(0.5, values().map(|v| (v - median).abs()).collect())
        }
        _ => return None,
    })
}

/// The (timestamp, value) of the maximum (or minimum); NaN only when every value is NaN; the
/// latest of equal extremes.
fn extreme(points: &[(i64, f64)], max: bool) -> (i64, f64) {
    let mut best = points[0];
    for &p in &points[1..] {
        let better = if max { p.1 >= best.1 } else { p.1 <= best.1 };
        if best.1.is_nan() || better {
            best = p;
        }
    }
    best
}
