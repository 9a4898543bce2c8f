//! Binary operators: arithmetic, comparison (filtering or `bool`), and the set operators, with
//! `on`/`ignoring` vector matching and `group_left`/`group_right`.

use std::sync::Arc;

use collabstream_common::{Labels, METRIC_NAME};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD, T_MUL, T_NEQ,
    T_POW, T_SUB, TokenId,
};
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use rustc_hash::{FxHashMap, FxHashSet};

use super::error::{Result, exec};
use super::eval::Evaluator;
use super::value::{Sample, Value, retain, signature};

pub(crate) fn eval(ev: &mut Evaluator<'_>, b: &BinaryExpr, t: i64) -> Result<Value> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = elem(op, l, r)?;
            Ok(Value::Scalar(if is_comparison(op) { f64::from(u8::from(keep)) } else { v }))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, v, s, false, return_bool)?))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, v, s, true, return_bool)?))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            let card =
                b.modifier.as_ref().map(|m| m.card.clone()).unwrap_or(VectorMatchCardinality::OneToOne);
            let out = match op {
                T_LAND => and_unless(l, r, &matching, true),
                T_LUNLESS => and_unless(l, r, &matching, false),
                T_LOR => or(l, r, &matching),
                _ => vector_vector(op, l, r, &matching, &card, return_bool)?,
            };
            Ok(Value::Vector(out))
        }
        (l, r) => Err(exec(format!(
            "binary operator {} is not defined between a {} and a {}",
            b.op,
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn is_comparison(op: TokenId) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Arithmetic drops the metric name; a filtering comparison keeps it.
fn drops_name(op: TokenId) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2)
}

/// One element operation: the value, and for comparisons whether it holds (the value is then
/// the left operand).
fn elem(op: TokenId, l: f64, r: f64) -> Result<(f64, bool)> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_MOD => (l % r, true),
        T_POW => (l.powf(r), true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => return Err(exec(format!("operator {op} is not a binary operator between numbers"))),
    })
}

fn vector_scalar(op: TokenId, v: Vec<Sample>, s: f64, swap: bool, return_bool: bool) -> Result<Vec<Sample>> {
    let mut out = Vec::with_capacity(v.len());
    for mut x in v {
        let (l, r) = if swap { (s, x.value) } else { (x.value, s) };
        let (mut value, mut keep) = elem(op, l, r)?;
        // A comparison keeps the vector's value even when the scalar is on the left.
        if is_comparison(op) && swap {
            value = r;
        }
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if keep {
            x.value = value;
            x.drop_name |= drops_name(op) || return_bool;
            out.push(x);
        }
    }
    Ok(out)
}

/// The matching signature of a series: the `on` labels, or all but the `ignoring` labels and
/// the metric name.
fn sig(labels: &Labels, matching: &Option<LabelModifier>) -> u64 {
    match matching {
        Some(LabelModifier::Include(on)) => signature(labels, |n| on.labels.iter().any(|l| l == n)),
        Some(LabelModifier::Exclude(ign)) => {
            signature(labels, |n| n != METRIC_NAME && !ign.labels.iter().any(|l| l == n))
        }
        None => signature(labels, |n| n != METRIC_NAME),
    }
}

fn match_labels(labels: &Labels, matching: &Option<LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => retain(labels, |n| on.labels.iter().any(|l| l == n)),
        Some(LabelModifier::Exclude(ign)) => {
            retain(labels, |n| n != METRIC_NAME && !ign.labels.iter().any(|l| l == n))
        }
        None => retain(labels, |n| n != METRIC_NAME),
    }
}

fn and_unless(l: Vec<Sample>, r: Vec<Sample>, m: &Option<LabelModifier>, and: bool) -> Vec<Sample> {
    let right: FxHashSet<u64> = r.iter().map(|s| sig(&s.metric, m)).collect();
    l.into_iter().filter(|s| right.contains(&sig(&s.metric, m)) == and).collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, m: &Option<LabelModifier>) -> Vec<Sample> {
    let left: FxHashSet<u64> = l.iter().map(|s| sig(&s.metric, m)).collect();
    let mut out = l;
    out.extend(r.into_iter().filter(|s| !left.contains(&sig(&s.metric, m))));
    out
}

fn vector_vector(
    op: TokenId,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    m: &Option<LabelModifier>,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    if matches!(card, VectorMatchCardinality::ManyToMany) {
        return Err(exec("many-to-many matching is only allowed for set operators"));
    }
    // `many` is the side that may repeat a match group; `one` must not.
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let one_side = if swapped { "left" } else { "right" };
    let mut one_sigs: FxHashMap<u64, usize> = FxHashMap::default();
    for (i, s) in one.iter().enumerate() {
        if let Some(&prev) = one_sigs.get(&sig(&s.metric, m)) {
            return Err(exec(format!(
                "found duplicate series for the match group {} on the {one_side} hand-side of the operation: \
                 [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                match_labels(&s.metric, m),
                one[prev].metric,
                s.metric
            )));
        }
        one_sigs.insert(sig(&s.metric, m), i);
    }
    let include: &[String] = card.labels().map(|l| l.labels.as_slice()).unwrap_or(&[]);
    let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
    // For one-to-one: which groups matched already; otherwise, the result label sets per group.
    let mut matched: FxHashMap<u64, FxHashSet<u64>> = FxHashMap::default();
    let mut out = Vec::new();
    for ms in many {
        let s = sig(&ms.metric, m);
        let Some(&oi) = one_sigs.get(&s) else { continue };
        let os = &one[oi];
        // Matching is checked before the operation, so a filter that drops the sample does
        // not hide ambiguous matching.
        let metric = result_metric(&ms.metric, &os.metric, m, one_to_one, include);
        let seen = matched.entry(s).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
            seen.insert(0);
        } else if !seen.insert(signature(&metric, |n| !(drops_name(op) && n == METRIC_NAME))) {
            // Prometheus removes the name from an arithmetic result before this check (with
            // delayed name removal too), so results that differ only in it are ambiguous.
            return Err(exec("multiple matches for labels: grouping labels must ensure unique matches"));
        }
        let (l, r) = if swapped { (os.value, ms.value) } else { (ms.value, os.value) };
        let (mut value, mut keep) = elem(op, l, r)?;
        if return_bool {
            value = f64::from(u8::from(keep));
            keep = true;
        }
        if !keep {
            continue;
        }
        out.push(Sample {
            metric: Arc::new(metric),
            value,
            drop_name: ms.drop_name || drops_name(op) || return_bool,
        });
    }
    Ok(out)
}

fn result_metric(
    many: &Labels,
    one: &Labels,
    m: &Option<LabelModifier>,
    one_to_one: bool,
    include: &[String],
) -> Labels {
    let mut labels = if one_to_one {
        match m {
            Some(LabelModifier::Include(on)) => retain(many, |n| on.labels.iter().any(|l| l == n)),
            Some(LabelModifier::Exclude(ign)) => retain(many, |n| !ign.labels.iter().any(|l| l == n)),
            None => many.clone(),
        }
    } else {
        many.clone()
    };
    for name in include {
        labels = super::value::with_label(&labels, name, one.get(name).unwrap_or(""));
    }
    labels
}
