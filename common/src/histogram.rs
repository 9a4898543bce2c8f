//! [`Histogram`]: a Prometheus histogram (cumulative buckets, sum, count) for the node's own
//! `/metrics`, shared by every layer that times something.

use std::fmt::Write;
use std::sync::Mutex;

/// Upper bounds in seconds: Prometheus's defaults, with 30 s and 2 min (the query timeout).
pub const SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

/// Finer bounds for what usually takes well under a millisecond (applying a log entry).
pub const FAST_SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<Counts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    /// Observations at or under each bound (not yet cumulative).
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, inner: Mutex::new(Counts { buckets: vec![0; bounds.len()], count: 0, sum: 0.0 }) }
    }

    pub fn observe(&self, v: f64) {
        let mut c = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = self.bounds.iter().position(|le| v <= *le) {
            c.buckets[i] += 1;
        }
        c.count += 1;
        c.sum += v;
    }

    /// The series of the histogram `name` with `labels` (`a="x",b="y"`, or empty), in the
    /// text format; the `# HELP`/`# TYPE` lines are the caller's (one per family).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let c = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let sep = if labels.is_empty() { "" } else { "," };
        let mut below = 0;
        for (n, le) in c.buckets.iter().zip(self.bounds) {
            below += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {below}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", c.count);
        let braces = |s: &str| if s.is_empty() { String::new() } else { format!("{{{s}}}") };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), c.sum);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), c.count);
    }
}

/// `# HELP` and `# TYPE` of a family.
pub fn family_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_rest_counts_in_inf() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 7.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert_eq!(
            out,
            "x_seconds_bucket{le=\"0.1\"} 2\nx_seconds_bucket{le=\"1\"} 3\nx_seconds_bucket{le=\"+Inf\"} 4\n\
             x_seconds_sum 7.65\nx_seconds_count 4\n"
        );
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "handler=\"/q\"");
        assert!(out.contains("x_seconds_bucket{handler=\"/q\",le=\"1\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count{handler=\"/q\"} 4\n"), "{out}");
    }
}
