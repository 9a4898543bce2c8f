//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, …) with `by`/`without`.

use std::sync::Arc;

use collabstream_common::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMIT_RATIO, T_LIMITK, T_MAX, T_MIN, T_QUANTILE,
    T_STDDEV, T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};
use rustc_hash::FxHashMap;

use super::error::{Result, exec};
use super::eval::Evaluator;
use super::stats::{KahanSum, MeanAcc, quantile};
use super::value::{Metric, Sample, Value, format_float, retain, signature, with_label};

/// The parameter of a parametrised aggregation, evaluated at this step.
enum Param {
    None,
    Number(f64),
    Label(String),
}

pub(crate) fn eval(ev: &mut Evaluator<'_>, a: &AggregateExpr, t: i64) -> Result<Value> {
    let op = a.op.id();
    let param = match &a.param {
        None => Param::None,
        Some(p) => match ev.eval(p, t)? {
            Value::Scalar(f) => Param::Number(f),
            Value::String(s) => Param::Label(s),
            other => {
                return Err(exec(format!(
                    "aggregation parameter must be a scalar or string, got {}",
                    other.type_name()
                )));
            }
        },
    };
    let input = ev.eval_vector(&a.expr, t)?;
    let grouping = |l: &Labels| -> Labels {
        match &a.modifier {
            None => Labels::default(),
            Some(LabelModifier::Include(by)) => retain(l, |n| by.labels.iter().any(|b| b == n)),
            Some(LabelModifier::Exclude(without)) => {
                retain(l, |n| n != METRIC_NAME && !without.labels.iter().any(|w| w == n))
            }
        }
    };
    let group_sig = |l: &Labels| -> u64 {
        match &a.modifier {
            None => 0,
            Some(LabelModifier::Include(by)) => signature(l, |n| by.labels.iter().any(|b| b == n)),
            Some(LabelModifier::Exclude(without)) => {
                signature(l, |n| n != METRIC_NAME && !without.labels.iter().any(|w| w == n))
            }
        }
    };
    // Groups in order of first appearance, each with its members and labels.
    let node = a as *const AggregateExpr as usize;
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    let mut group_labels: Vec<Metric> = Vec::new();
    for s in input {
        let key = (node, Arc::as_ptr(&s.metric) as usize);
        let (sig, labels) = match ev.group_cache.get(&key) {
            Some((_, sig, labels)) => (*sig, labels.clone()),
            None => {
                let (sig, labels) = (group_sig(&s.metric), Arc::new(grouping(&s.metric)));
                ev.group_cache.insert(key, (s.metric.clone(), sig, labels.clone()));
                (sig, labels)
            }
        };
        let g = *index.entry(sig).or_insert_with(|| {
            groups.push(Vec::new());
            group_labels.push(labels);
            groups.len() - 1
        });
        groups[g].push(s);
    }
    let mut out = Vec::new();
    match op {
        T_TOPK | T_BOTTOMK | T_LIMITK => {
            let Param::Number(k) = param else { return Err(exec("topk, bottomk and limitk need a number")) };
            if k.is_nan() {
                return Err(exec("Parameter value is NaN"));
            }
            if !(-(i64::MAX as f64)..(i64::MAX as f64)).contains(&k) {
                return Err(exec(format!("Scalar value {} overflows int64", format_float(k))));
            }
            let k = k as i64;
            if k < 1 {
                return Ok(Value::Vector(out));
            }
            let k = usize::try_from(k).unwrap_or(usize::MAX);
            for mut g in groups {
                if op == T_LIMITK {
                    g.truncate(k);
                    out.extend(g);
                } else {
                    out.extend(select_k(g, k, op == T_TOPK));
                }
            }
        }
        T_LIMIT_RATIO => {
            let Param::Number(mut r) = param else { return Err(exec("limit_ratio needs a number")) };
            if r.is_nan() {
                return Err(exec("Ratio value is NaN"));
            }
            if r > 1.0 {
                ev.annotations.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to 1",
                    format_float(r)
                ));
                r = 1.0;
            } else if r < -1.0 {
                ev.annotations.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to -1",
                    format_float(r)
                ));
                r = -1.0;
            }
            for g in groups {
                out.extend(g.into_iter().filter(|s| {
                    let at = ratio_position(&s.metric);
                    if r >= 0.0 { at < r } else { at >= 1.0 + r }
                }));
            }
        }
        T_COUNT_VALUES => {
            let Param::Label(name) = param else { return Err(exec("count_values needs a label name")) };
            if name.is_empty() {
                return Err(exec(format!("invalid label name {name:?}")));
            }
            let mut idx: FxHashMap<u64, usize> = FxHashMap::default();
            let mut counted: Vec<(Labels, f64)> = Vec::new();
            for g in groups {
                for s in g {
                    let labels = with_label(&grouping(&s.metric), &name, &format_float(s.value));
                    let i = *idx.entry(signature(&labels, |_| true)).or_insert_with(|| {
                        counted.push((labels, 0.0));
                        counted.len() - 1
                    });
                    counted[i].1 += 1.0;
                }
            }
            out.extend(counted.into_iter().map(|(l, c)| Sample {
                metric: Arc::new(l),
                value: c,
                drop_name: false,
            }));
        }
        _ => {
            let q = match param {
                Param::Number(q) => q,
                _ if op == T_QUANTILE => return Err(exec("quantile needs a number")),
                _ => f64::NAN,
            };
            if op == T_QUANTILE && !(0.0..=1.0).contains(&q) {
                ev.annotations
                    .warn(format!("quantile value should be between 0 and 1, got {}", format_float(q)));
            }
            for (g, metric) in groups.into_iter().zip(group_labels) {
                let drop_name = g.iter().any(|s| s.drop_name);
                let value = match op {
                    T_SUM => {
                        let mut k = KahanSum::default();
                        g.iter().for_each(|s| k.add(s.value));
                        k.value()
                    }
                    T_AVG => {
                        let mut m = MeanAcc::default();
                        g.iter().for_each(|s| m.add(s.value));
                        m.value()
                    }
                    T_COUNT => g.len() as f64,
                    T_GROUP => 1.0,
                    T_MIN | T_MAX => {
                        let mut v = g[0].value;
                        for s in &g[1..] {
                            if v.is_nan() || (op == T_MAX && s.value > v) || (op == T_MIN && s.value < v) {
                                v = s.value;
                            }
                        }
                        v
                    }
                    T_STDDEV | T_STDVAR => {
                        let (mut n, mut mean, mut m2) = (0.0, 0.0, 0.0);
                        for s in &g {
                            n += 1.0;
                            let delta = s.value - mean;
                            mean += delta / n;
                            m2 += delta * (s.value - mean);
                        }
                        if op == T_STDVAR { m2 / n } else { (m2 / n).sqrt() }
                    }
                    T_QUANTILE => quantile(q, g.iter().map(|s| s.value).collect()),
                    _ => return Err(exec(format!("aggregation {} is not supported", a.op))),
                };
                out.push(Sample { metric, value, drop_name });
            }
        }
    }
    Ok(Value::Vector(out))
}

/// `topk`/`bottomk` of one group, chosen exactly as Prometheus chooses (a bounded binary heap
/// in Go's `container/heap` order), so that ties resolve to the same series; returned best
/// first, NaN last.
fn select_k(group: Vec<Sample>, k: usize, top: bool) -> Vec<Sample> {
    // `worse(a, b)`: a belongs nearer the heap top, the element to evict first. NaN is worst.
    let worse = |a: f64, b: f64| a.is_nan() || if top { a < b } else { a > b };
    let mut heap: Vec<Sample> = Vec::with_capacity(k.min(group.len()));
    for s in group {
        if heap.len() < k {
            heap.push(s);
            heap_up(&mut heap, &worse);
        } else if let Some(first) = heap.first()
            && ((if top { first.value < s.value } else { first.value > s.value })
                || (first.value.is_nan() && !s.value.is_nan()))
        {
            heap[0] = s;
            if k > 1 {
                heap_down(&mut heap, &worse);
            }
        }
    }
    heap.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if top => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
    heap
}

/// Go's `heap.Push` tail: sift the last element up.
fn heap_up(h: &mut [Sample], less: &impl Fn(f64, f64) -> bool) {
    let mut j = h.len() - 1;
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

/// Go's `heap.Fix(h, 0)`: sift the root down (it can only move down from the root).
fn heap_down(h: &mut [Sample], less: &impl Fn(f64, f64) -> bool) {
    let n = h.len();
    let mut i = 0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(h[j1 + 1].value, h[j1].value) {
            j = j1 + 1;
        }
        if !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

/// Where a series falls in [0, 1] for `limit_ratio`: Prometheus's label hash (xxhash64 over
/// `name 0xff value 0xff …`) over the largest u64, so the same series are picked as in
/// Prometheus, at every step, and `limit_ratio(r)` and `limit_ratio(-(1-r))` are complements.
fn ratio_position(labels: &Labels) -> f64 {
    let mut h = xxhash_rust::xxh64::Xxh64::new(0);
    for l in labels {
        h.update(l.name.as_bytes());
        h.update(&[0xff]);
        h.update(l.value.as_bytes());
        h.update(&[0xff]);
    }
    h.digest() as f64 / u64::MAX as f64
}
