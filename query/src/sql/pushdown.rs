//! [`Pushdown`]: what a scan can read less of, taken from the filters DataFusion hands a table
//! (its `WHERE` conjuncts): the time range of the table's time column, and the values a text
//! column is compared with (`=` or `IN`). Tables report every filter as inexact, so DataFusion
//! applies each again above the scan: a pushdown only has to be no narrower than the filter.

use std::collections::BTreeMap;

use arrow::datatypes::{DataType, TimeUnit};
use collabstream_common::TimeRange;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

/// How a table's time column holds time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeColumn {
    /// An Arrow timestamp (any unit).
    Timestamp,
    /// A BIGINT of unix milliseconds.
    Millis,
    /// A BIGINT of unix nanoseconds (what `CAST(now() AS BIGINT)` compares with).
    Nanos,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pushdown {
    /// Rows outside it are not wanted (closed, in milliseconds).
    pub range: TimeRange,
    /// Per text column compared with literals: the values a row may have.
    pub values: BTreeMap<String, Vec<String>>,
}

impl Pushdown {
    /// What `filters` say of the time columns `times` (each with how it holds time) and of the
    /// text columns `texts`.
    pub(crate) fn from_filters(filters: &[Expr], times: &[(&str, TimeColumn)], texts: &[&str]) -> Self {
        let mut out = Pushdown { range: TimeRange::ALL, values: BTreeMap::new() };
        for f in filters {
            for e in split_conjunction(f) {
                out.take(e, times, texts);
            }
        }
        out
    }

    /// The values column `name` may have, if the filters limit it.
    pub(crate) fn values_of(&self, name: &str) -> Option<&[String]> {
        self.values.get(name).map(Vec::as_slice)
    }

    /// The pushdown as `EXPLAIN` shows it.
    pub(crate) fn describe(&self) -> String {
        let bound = |t: i64| match t {
            i64::MIN => "-inf".to_string(),
            i64::MAX => "+inf".to_string(),
            t => t.to_string(),
        };
        let mut s = format!("time=[{}, {}]", bound(self.range.start), bound(self.range.end));
        for (name, values) in &self.values {
            s.push_str(&format!(", {name} in {values:?}"));
        }
        s
    }

    fn take(&mut self, e: &Expr, times: &[(&str, TimeColumn)], texts: &[&str]) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, literal) = match (column_of(left), column_of(right)) {
                    (Some(c), None) => (c, *op, right.as_ref()),
                    (None, Some(c)) => match op.swap() {
                        Some(op) => (c, op, left.as_ref()),
                        None => return,
                    },
                    _ => return,
                };
                if let Some((_, kind)) = times.iter().find(|(n, _)| *n == column) {
                    if let Some(ms) = millis(literal, *kind) {
                        self.bound(op, ms);
                    }
                } else if texts.contains(&column)
                    && op == Operator::Eq
                    && let Some(v) = text(literal)
                {
                    self.restrict(column, vec![v]);
                }
            }
            Expr::Between(b) if !b.negated => {
                let Some(column) = column_of(&b.expr) else { return };
                if let Some((_, kind)) = times.iter().find(|(n, _)| *n == column) {
                    if let Some(lo) = millis(&b.low, *kind) {
                        self.bound(Operator::GtEq, lo);
                    }
                    if let Some(hi) = millis(&b.high, *kind) {
                        self.bound(Operator::LtEq, hi);
                    }
                }
            }
            Expr::InList(l) if !l.negated => {
                let Some(column) = column_of(&l.expr) else { return };
                if texts.contains(&column) {
                    let values: Option<Vec<String>> = l.list.iter().map(text).collect();
                    if let Some(values) = values {
                        self.restrict(column, values);
                    }
                }
            }
            _ => {}
        }
    }

    /// Narrows the range by `time <op> ms`: rounded outwards where the literal is finer than a
    /// millisecond, exact where it is not (`< t` ends at `t - 1`, so that a range written
    /// `>= a AND < b` does not reach the block starting at `b`).
    fn bound(&mut self, op: Operator, ms: Millis) {
        let exact = ms.floor == ms.ceil;
        match op {
            Operator::Gt if exact => self.range.start = self.range.start.max(ms.floor.saturating_add(1)),
            Operator::Lt if exact => self.range.end = self.range.end.min(ms.ceil.saturating_sub(1)),
            Operator::Gt | Operator::GtEq => self.range.start = self.range.start.max(ms.floor),
            Operator::Lt | Operator::LtEq => self.range.end = self.range.end.min(ms.ceil),
            Operator::Eq => {
                self.range.start = self.range.start.max(ms.floor);
                self.range.end = self.range.end.min(ms.ceil);
            }
            _ => {}
        }
    }

    /// Two conditions on one column: a row must meet both.
    fn restrict(&mut self, column: &str, mut values: Vec<String>) {
        values.sort();
        values.dedup();
        match self.values.get_mut(column) {
            Some(had) => had.retain(|v| values.binary_search(v).is_ok()),
            None => {
                self.values.insert(column.to_string(), values);
            }
        }
    }
}

/// A time in milliseconds, rounded both ways (a literal may be finer than a millisecond).
#[derive(Debug, Clone, Copy)]
struct Millis {
    floor: i64,
    ceil: i64,
}

/// The column an expression names, looking through the casts that keep every value apart (the
/// planner casts a column to compare it with a literal of another type: a millisecond time to
/// nanoseconds, a text to another text type). A cast that merges values, such as a time to
/// whole seconds, hides the column: `CAST(t AS TIMESTAMP(0)) <= '…:05'` keeps rows up to
/// 5.999 s, which a bound taken from the literal would cut at 5.000.
fn column_of(e: &Expr) -> Option<&str> {
    let (inner, to) = match e {
        Expr::Column(c) => return Some(c.name.as_str()),
        Expr::Cast(c) => (&c.expr, c.field.data_type()),
        Expr::TryCast(c) => (&c.expr, c.field.data_type()),
        _ => return None,
    };
    if keeps_values_apart(to) { column_of(inner) } else { None }
}

/// Whether a cast to `to` keeps the table columns' values apart and in order: times in
/// milliseconds or finer, texts, 64-bit integers (the time columns held as BIGINT).
fn keeps_values_apart(to: &DataType) -> bool {
    match to {
        DataType::Timestamp(unit, _) => !matches!(unit, TimeUnit::Second),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Int64 => true,
        DataType::Dictionary(_, value) => keeps_values_apart(value),
        _ => false,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn text(e: &Expr) -> Option<String> {
    match literal(e)? {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Some(s.clone())
        }
        ScalarValue::Dictionary(_, v) => text(&Expr::Literal(v.as_ref().clone(), None)),
        _ => None,
    }
}

fn millis(e: &Expr, kind: TimeColumn) -> Option<Millis> {
    // Rounded up by the remainder, not by adding `per_ms - 1` (which overflows near i64::MAX).
    let div = |v: i64, per_ms: i64| {
        let floor = v.div_euclid(per_ms);
        Millis { floor, ceil: floor + i64::from(v.rem_euclid(per_ms) != 0) }
    };
    let exact = |v: i64| Millis { floor: v, ceil: v };
    match (literal(e)?, kind) {
        (ScalarValue::TimestampSecond(Some(v), _), TimeColumn::Timestamp) => {
            Some(exact(v.checked_mul(1000)?))
        }
        (ScalarValue::TimestampMillisecond(Some(v), _), TimeColumn::Timestamp) => Some(exact(*v)),
        (ScalarValue::TimestampMicrosecond(Some(v), _), TimeColumn::Timestamp) => Some(div(*v, 1000)),
        (ScalarValue::TimestampNanosecond(Some(v), _), TimeColumn::Timestamp) => Some(div(*v, 1_000_000)),
        (ScalarValue::Int64(Some(v)), TimeColumn::Millis) => Some(exact(*v)),
        (ScalarValue::Int32(Some(v)), TimeColumn::Millis) => Some(exact(i64::from(*v))),
        (ScalarValue::Int64(Some(v)), TimeColumn::Nanos) => Some(div(*v, 1_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{cast, col, lit};

    fn ts_ms(v: i64) -> Expr {
        Expr::Literal(ScalarValue::TimestampMillisecond(Some(v), Some("UTC".into())), None)
    }

    #[test]
    fn time_bounds_and_text_values_are_taken_from_conjuncts() {
        let f = col("timestamp")
            .gt_eq(ts_ms(1000))
            .and(col("timestamp").lt(ts_ms(5000)))
            .and(col("metric").eq(lit("up")))
            .and(col("meeting_id").in_list(vec![lit("b"), lit("a")], false));
        let p =
            Pushdown::from_filters(&[f], &[("timestamp", TimeColumn::Timestamp)], &["metric", "meeting_id"]);
        assert_eq!(p.range, TimeRange::new(1000, 4999), "the range is closed: `< 5000` ends at 4999");
        assert_eq!(p.values_of("metric"), Some(&["up".to_string()][..]));
        assert_eq!(p.values_of("meeting_id"), Some(&["a".to_string(), "b".to_string()][..]));
    }

    #[test]
    fn a_literal_on_the_left_and_finer_units_round_outwards() {
        let ns = Expr::Literal(ScalarValue::TimestampNanosecond(Some(1_500_001), None), None);
        let p = Pushdown::from_filters(
            &[ns.lt_eq(col("timestamp"))],
            &[("timestamp", TimeColumn::Timestamp)],
            &[],
        );
        assert_eq!(p.range.start, 1, "1.500001 ms, floored: the pushdown may only be wider");
        let ns = Expr::Literal(ScalarValue::TimestampNanosecond(Some(1_500_001), None), None);
        let p =
            Pushdown::from_filters(&[col("timestamp").lt(ns)], &[("timestamp", TimeColumn::Timestamp)], &[]);
        assert_eq!(p.range.end, 2);
        let p = Pushdown::from_filters(
            &[col("timestamp").gt(ts_ms(7))],
            &[("timestamp", TimeColumn::Timestamp)],
            &[],
        );
        assert_eq!(p.range.start, 8);
    }

    #[test]
    fn what_it_cannot_read_leaves_the_scan_whole() {
        let f = col("timestamp").gt(col("other")).or(col("metric").eq(lit("x")));
        let p = Pushdown::from_filters(
            &[f, col("metric").not_eq(lit("y"))],
            &[("timestamp", TimeColumn::Timestamp)],
            &["metric"],
        );
        assert_eq!(p.range, TimeRange::ALL);
        assert!(p.values.is_empty());
    }

    #[test]
    fn a_cast_to_whole_seconds_hides_the_column_and_finer_casts_do_not() {
        let times = [("timestamp", TimeColumn::Timestamp)];
        let seconds = DataType::Timestamp(TimeUnit::Second, None);
        let f = cast(col("timestamp"), seconds).lt_eq(ts_ms(5000));
        let p = Pushdown::from_filters(&[f], &times, &[]);
        assert_eq!(p.range, TimeRange::ALL, "a row at 5999 ms is 5 s: the scan must read it");
        let nanos = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
        let f = cast(col("timestamp"), nanos).lt_eq(ts_ms(5000));
        assert_eq!(Pushdown::from_filters(&[f], &times, &[]).range.end, 5000);
        let f = cast(col("metric"), DataType::Utf8View).eq(lit("up"));
        assert_eq!(
            Pushdown::from_filters(&[f], &[], &["metric"]).values_of("metric").map(<[_]>::len),
            Some(1)
        );
        let f = cast(col("metric"), DataType::Float64).eq(lit("1"));
        assert!(Pushdown::from_filters(&[f], &[], &["metric"]).values.is_empty());
    }

    #[test]
    fn bounds_near_the_ends_of_time_do_not_overflow() {
        let times = [("w", TimeColumn::Nanos)];
        let p = Pushdown::from_filters(&[col("w").lt_eq(lit(i64::MAX))], &times, &[]);
        assert_eq!(p.range.end, i64::MAX / 1_000_000 + 1);
        let p = Pushdown::from_filters(&[col("w").gt_eq(lit(i64::MIN))], &times, &[]);
        assert_eq!(p.range.start, i64::MIN.div_euclid(1_000_000));
        let p = Pushdown::from_filters(&[col("w").lt(lit(-1_500_000i64))], &times, &[]);
        assert_eq!(p.range.end, -1, "-1.5 ms rounds up to -1");
    }

    #[test]
    fn two_conditions_on_one_column_intersect() {
        let f = col("metric").in_list(vec![lit("a"), lit("b")], false).and(col("metric").eq(lit("b")));
        let p = Pushdown::from_filters(&[f], &[], &["metric"]);
        assert_eq!(p.values_of("metric"), Some(&["b".to_string()][..]));
        let p = Pushdown::from_filters(
            &[col("w").between(lit(10i64), lit(20i64))],
            &[("w", TimeColumn::Millis)],
            &[],
        );
        assert_eq!(p.range, TimeRange::new(10, 20));
    }
}
