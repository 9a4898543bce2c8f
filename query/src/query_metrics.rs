//! [`QueryMetrics`]: what PromQL evaluation measures of itself for `/metrics` — evaluations by
//! kind and outcome, their duration (on the evaluating thread, after any wait for a slot, which
//! the HTTP request's own duration includes) and the samples they held.

use std::sync::atomic::{AtomicU64, Ordering};

use collabstream_common::histogram::{self, Histogram, family_header};

#[derive(Debug)]
pub struct QueryMetrics {
    /// By kind (instant, range): evaluations that answered, that failed.
    answered: [AtomicU64; 2],
    failed: [AtomicU64; 2],
    durations: [Histogram; 2],
    samples: AtomicU64,
}

/// A PromQL evaluation's kind, as the metrics label it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Instant = 0,
    Range = 1,
}

const KINDS: [&str; 2] = ["instant", "range"];

impl Default for QueryMetrics {
    fn default() -> Self {
        Self {
            answered: Default::default(),
            failed: Default::default(),
            durations: [Histogram::new(histogram::SECONDS), Histogram::new(histogram::SECONDS)],
            samples: AtomicU64::new(0),
        }
    }
}

impl QueryMetrics {
    pub(crate) fn record(&self, kind: Kind, seconds: f64, samples: Option<usize>) {
        let k = kind as usize;
        self.durations[k].observe(seconds);
        match samples {
            Some(n) => {
                self.answered[k].fetch_add(1, Ordering::Relaxed);
                self.samples.fetch_add(n as u64, Ordering::Relaxed);
            }
            None => {
                self.failed[k].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn render(&self, out: &mut String) {
        let name = "collabstream_promql_queries_total";
        family_header(out, name, "counter", "PromQL evaluations since start, by kind and outcome.");
        for (k, kind) in KINDS.iter().enumerate() {
            for (outcome, n) in [("ok", &self.answered[k]), ("error", &self.failed[k])] {
                out.push_str(&format!(
                    "{name}{{kind=\"{kind}\",outcome=\"{outcome}\"}} {}\n",
                    n.load(Ordering::Relaxed)
                ));
            }
        }
        let name = "collabstream_promql_query_duration_seconds";
        family_header(
            out,
            name,
            "histogram",
            "Time evaluating a PromQL query, by kind (after waiting for a query slot).",
        );
        for (k, kind) in KINDS.iter().enumerate() {
            self.durations[k].render(out, name, &format!("kind=\"{kind}\""));
        }
        let name = "collabstream_promql_query_samples_total";
        family_header(
            out,
            name,
            "counter",
            "Samples PromQL evaluations that answered held (loaded and computed; what query.max_samples limits).",
        );
        out.push_str(&format!("{name} {}\n", self.samples.load(Ordering::Relaxed)));
    }
}
