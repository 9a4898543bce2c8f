//! Function calls: dispatch, and the functions over instant vectors and scalars (math, clamp,
//! round, time and date, label manipulation, sorting, `absent`, `vector`, `scalar`).

use std::cmp::Ordering;
use std::sync::Arc;

use collabstream_common::{Labels, METRIC_NAME};
use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};
use regex::Regex;
use rustc_hash::FxHashSet;
use time::OffsetDateTime;

use super::error::{Result, duplicate_labelset, exec};
use super::eval::Evaluator;
use super::stats::{go_max, go_min};
use super::value::{Sample, Value, signature, with_label};
use super::{histogram, range_functions};

pub(crate) fn call(ev: &mut Evaluator<'_>, c: &Call, t: i64) -> Result<Value> {
    let name = c.func.name;
    let args = &c.args.args;
    let arg = |i: usize| -> Result<&Expr> {
        args.get(i).map(|b| b.as_ref()).ok_or_else(|| exec(format!("{name}: missing argument {}", i + 1)))
    };
    if range_functions::handles(name) {
        return range_functions::call(ev, name, args, t);
    }
    let secs = t as f64 / 1e3;
    Ok(match name {
        "time" => Value::Scalar(secs),
        "pi" => Value::Scalar(std::f64::consts::PI),
        "step" => Value::Scalar(ev.step as f64 / 1e3),
        "range" => Value::Scalar((ev.end - ev.start) as f64 / 1e3),
        "start" => Value::Scalar(ev.start as f64 / 1e3),
        "end" => Value::Scalar(ev.end as f64 / 1e3),
        "min_of" | "max_of" => {
            let (a, b) = (ev.eval_scalar(arg(0)?, t)?, ev.eval_scalar(arg(1)?, t)?);
            Value::Scalar(if name == "min_of" { go_min(a, b) } else { go_max(a, b) })
        }
        "vector" => {
            let f = ev.eval_scalar(arg(0)?, t)?;
            Value::Vector(vec![Sample { metric: Arc::new(Labels::default()), value: f, drop_name: false }])
        }
        "scalar" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            Value::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN })
        }
        "absent" | "absent_over_time" => {
            let present = match ev.eval(arg(0)?, t)? {
                Value::Vector(v) => !v.is_empty(),
                Value::Matrix(m) => !m.is_empty(),
                other => return Err(exec(format!("{name} of a {}", other.type_name()))),
            };
            if present {
                Value::Vector(Vec::new())
            } else {
                let metric = Arc::new(absent_labels(arg(0)?));
                Value::Vector(vec![Sample { metric, value: 1.0, drop_name: false }])
            }
        }
        "timestamp" => {
            let mut e = arg(0)?;
            while let Expr::Paren(p) = e {
                e = &p.expr;
            }
            let out = if let Expr::VectorSelector(vs) = e {
                ev.select_vector(vs, t)
                    .into_iter()
                    .map(|(s, ts)| Sample { value: ts as f64 / 1e3, drop_name: true, ..s })
                    .collect()
            } else {
                ev.eval_vector(e, t)?
                    .into_iter()
                    .map(|s| Sample { value: secs, drop_name: true, ..s })
                    .collect()
            };
            Value::Vector(out)
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sgn" | "sin" | "cos"
        | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh" | "atanh"
        | "deg" | "rad" => {
            let f = math_fn(name);
            map(ev.eval_vector(arg(0)?, t)?, f)
        }
        "round" => {
            let to = match args.get(1) {
                Some(e) => ev.eval_scalar(e, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            map(ev.eval_vector(arg(0)?, t)?, |v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            let (lo, hi) = (ev.eval_scalar(arg(1)?, t)?, ev.eval_scalar(arg(2)?, t)?);
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            map(v, |x| go_max(lo, go_min(hi, x)))
        }
        "clamp_min" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            let lo = ev.eval_scalar(arg(1)?, t)?;
            map(v, |x| go_max(lo, x))
        }
        "clamp_max" => {
            let v = ev.eval_vector(arg(0)?, t)?;
            let hi = ev.eval_scalar(arg(1)?, t)?;
            map(v, |x| go_min(hi, x))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" | "month"
        | "year" => {
            let v = match args.first() {
                Some(e) => ev.eval_vector(e, t)?,
                None => vec![Sample { metric: Arc::new(Labels::default()), value: secs, drop_name: false }],
            };
            map(v, |x| date_part(name, x))
        }
        "label_replace" => distinct(label_replace(ev, args, t)?)?,
        "label_join" => distinct(label_join(ev, args, t)?)?,
        "sort" | "sort_desc" => {
            if ev.is_range {
                ev.annotations
                    .warn("sort is ineffective for range queries since results are always ordered by labels");
            }
            let mut v = ev.eval_vector(arg(0)?, t)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ if desc => b.value.total_cmp(&a.value),
                _ => a.value.total_cmp(&b.value),
            });
            Value::Vector(v)
        }
        "sort_by_label" | "sort_by_label_desc" => {
            if ev.is_range {
                ev.annotations
                    .warn("sort is ineffective for range queries since results are always ordered by labels");
            }
            let mut v = ev.eval_vector(arg(0)?, t)?;
            let mut names = Vec::new();
            for e in &args[1..] {
                names.push(ev.eval_string(e, t)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                let mut ord = Ordering::Equal;
                for n in &names {
                    ord = natural_cmp(a.metric.get(n).unwrap_or(""), b.metric.get(n).unwrap_or(""));
                    if ord != Ordering::Equal {
                        break;
                    }
                }
                if ord == Ordering::Equal {
                    ord = a.metric.cmp(&b.metric);
                }
                if desc { ord.reverse() } else { ord }
            });
            Value::Vector(v)
        }
        "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
            histogram::call(ev, name, args, t)?
        }
        // Native-histogram functions ignore float samples; this store holds floats only.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
            ev.eval_vector(arg(0)?, t)?;
            Value::Vector(Vec::new())
        }
        other => return Err(exec(format!("function {other}() is not supported yet"))),
    })
}

fn map(v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(v.into_iter().map(|s| Sample { value: f(s.value), drop_name: true, ..s }).collect())
}

fn math_fn(name: &str) -> fn(f64) -> f64 {
    match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        _ => |v| v,
    }
}

fn date_part(name: &str, secs: f64) -> f64 {
    if !secs.is_finite() {
        return f64::NAN;
    }
    let Ok(d) = OffsetDateTime::from_unix_timestamp(secs.floor() as i64) else { return f64::NAN };
    f64::from(match name {
        "day_of_month" => u32::from(d.day()),
        "day_of_week" => u32::from(d.weekday().number_days_from_sunday()),
        "day_of_year" => u32::from(d.ordinal()),
        "days_in_month" => u32::from(d.month().length(d.year())),
        "hour" => u32::from(d.hour()),
        "minute" => u32::from(d.minute()),
        "month" => u32::from(u8::from(d.month())),
        _ => return f64::from(d.year()),
    })
}

/// The labels `absent(sel)` reports: the selector's equality matchers, except a label that is
/// matched more than once.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let mut labels = Labels::default();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !seen.contains(&m.name.as_str()) {
            labels = with_label(&labels, &m.name, &m.value);
        } else {
            labels = with_label(&labels, &m.name, "");
        }
        seen.push(&m.name);
    }
    labels
}

fn string_args(ev: &mut Evaluator<'_>, args: &[Box<Expr>], t: i64) -> Result<Vec<String>> {
    args.iter().map(|e| ev.eval_string(e, t)).collect()
}

/// Besides vector matching (which has its own errors), the label functions are the only
/// operations that can give two series the same labels at one step; dropping the name waits
/// for the end of the evaluation. Prometheus refuses it where the function runs, so neither an
/// enclosing aggregation nor a range query's assembly ever sees both samples.
fn distinct(v: Vec<Sample>) -> Result<Value> {
    let mut seen = FxHashSet::default();
    if v.iter().all(|s| seen.insert(signature(&s.metric, |_| true))) {
        Ok(Value::Vector(v))
    } else {
        Err(duplicate_labelset())
    }
}

fn label_replace(ev: &mut Evaluator<'_>, args: &[Box<Expr>], t: i64) -> Result<Vec<Sample>> {
    if args.len() != 5 {
        return Err(exec("label_replace(v, dst, replacement, src, regex) takes 5 arguments"));
    }
    let v = ev.eval_vector(&args[0], t)?;
    let s = string_args(ev, &args[1..], t)?;
    let (dst, repl, src, re) = (&s[0], &s[1], &s[2], &s[3]);
    let regex = Regex::new(&format!("^(?s:{re})$"))
        .map_err(|e| exec(format!("invalid regular expression in label_replace(): {re}: {e}")))?;
    if dst.is_empty() {
        return Err(exec(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            let value = s.metric.get(src).unwrap_or("");
            if let Some(caps) = regex.captures(value) {
                let mut res = String::new();
                caps.expand(repl, &mut res);
                s.metric = Arc::new(with_label(&s.metric, dst, &res));
                if dst == METRIC_NAME {
                    s.drop_name = false;
                }
            }
            s
        })
        .collect();
    Ok(out)
}

fn label_join(ev: &mut Evaluator<'_>, args: &[Box<Expr>], t: i64) -> Result<Vec<Sample>> {
    if args.len() < 3 {
        return Err(exec("label_join(v, dst, separator, src...) takes at least 3 arguments"));
    }
    let v = ev.eval_vector(&args[0], t)?;
    let s = string_args(ev, &args[1..], t)?;
    let (dst, sep, srcs) = (&s[0], &s[1], &s[2..]);
    if dst.is_empty() {
        return Err(exec(format!("invalid destination label name in label_join(): {dst}")));
    }
    let out = v
        .into_iter()
        .map(|mut s| {
            let joined: Vec<&str> = srcs.iter().map(|n| s.metric.get(n).unwrap_or("")).collect();
            s.metric = Arc::new(with_label(&s.metric, dst, &joined.join(sep)));
            if dst == METRIC_NAME {
                s.drop_name = false;
            }
            s
        })
        .collect();
    Ok(out)
}

/// Natural order: runs of digits compare as numbers, the rest byte-wise.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i]).unwrap_or("").trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j]).unwrap_or("").trim_start_matches('0');
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}
