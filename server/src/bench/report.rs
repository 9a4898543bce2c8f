//! [`Report`]: the benchmark's results as a Markdown table with ratios against the targets,
//! and the marked section of `docs/benchmarks.md` it replaces.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::systems::Kind;
use crate::error::Error;

/// The section of the benchmarks document the tool owns.
const BEGIN: &str = "<!-- collabstream bench: begin (generated, do not edit) -->";
const END: &str = "<!-- collabstream bench: end -->";

#[derive(Debug, Clone)]
pub(crate) struct QueryTiming {
    pub(crate) query: String,
    pub(crate) median: Duration,
    /// Series in the answer (a sanity check that the systems answered alike).
    pub(crate) series: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct SystemResult {
    pub(crate) kind: Kind,
    pub(crate) samples_per_s: f64,
    pub(crate) compacted_bytes: u64,
    pub(crate) live_bytes: u64,
    /// The same, once the system has had [`super::AT_REST`] without writes.
    pub(crate) rest_bytes: u64,
    pub(crate) rss: u64,
    pub(crate) peak_rss: u64,
    pub(crate) idle_rss: u64,
    pub(crate) queries: Vec<QueryTiming>,
}

/// One benchmark run.
#[derive(Debug, Clone)]
pub struct Report {
    pub(crate) samples: u64,
    pub(crate) series: u64,
    pub(crate) scrapes: usize,
    pub(crate) senders: usize,
    pub(crate) batch: usize,
    pub(crate) query_runs: usize,
    pub(crate) command: String,
    pub(crate) results: Vec<SystemResult>,
}

/// A row of the summary: its name, the measure, how to print it, and the target.
type Row<'a> = (&'a str, &'a dyn Fn(&SystemResult) -> f64, &'a dyn Fn(f64) -> String, &'a str);

pub(crate) fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

impl Report {
    fn get(&self, kind: Kind) -> Option<&SystemResult> {
        self.results.iter().find(|r| r.kind == kind)
    }

    /// Ours divided by theirs for one measure, as `1.23×`.
    fn ratio(&self, theirs: Kind, f: impl Fn(&SystemResult) -> f64) -> String {
        match (self.get(Kind::Collabstream), self.get(theirs)) {
            (Some(a), Some(b)) if f(b) > 0.0 => format!("{:.2}×", f(a) / f(b)),
            _ => "–".into(),
        }
    }

    /// Median over the query set of (our latency / Prometheus's latency) per query.
    pub fn query_ratio(&self) -> Option<f64> {
        let (ours, prom) = (self.get(Kind::Collabstream)?, self.get(Kind::Prometheus)?);
        let mut ratios: Vec<f64> = ours
            .queries
            .iter()
            .zip(&prom.queries)
            .map(|(a, b)| a.median.as_secs_f64() / b.median.as_secs_f64().max(1e-6))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios.get(ratios.len() / 2).copied()
    }

    /// Our ingestion rate over VictoriaMetrics'.
    pub fn ingest_ratio(&self) -> Option<f64> {
        Some(self.get(Kind::Collabstream)?.samples_per_s / self.get(Kind::VictoriaMetrics)?.samples_per_s)
    }

    /// Our compacted bytes per sample over VictoriaMetrics'.
    pub fn bytes_ratio(&self) -> Option<f64> {
        Some(
            self.get(Kind::Collabstream)?.compacted_bytes as f64
                / self.get(Kind::VictoriaMetrics)?.compacted_bytes.max(1) as f64,
        )
    }

    pub fn markdown(&self) -> String {
        let n = self.samples as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} node-exporter series × {} scrapes = {} samples over remote write ({} senders, {} series per request); \
             each query {} times over the last hour at a 60 s step, median. Command: `{}`.\n",
            self.series, self.scrapes, self.samples, self.senders, self.batch, self.query_runs, self.command
        );
        let _ = writeln!(
            s,
            "| measure | Collaborate-Stream | VictoriaMetrics | Prometheus | ours/VM | ours/Prom | target |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|");
        let cell = |kind: Kind, f: &dyn Fn(&SystemResult) -> String| self.get(kind).map_or("–".into(), f);
        let rows: [Row<'_>; 6] = [
            ("ingestion, samples/s", &|r| r.samples_per_s, &|v| format!("{v:.0}"), "≥ 1.0× VM"),
            (
                "disk, bytes/sample (compacted)",
                &|r| r.compacted_bytes as f64 / n,
                &|v| format!("{v:.2}"),
                "≤ 1.0× VM",
            ),
            (
                "disk, bytes/sample (live data dir, after ingestion and queries)",
                &|r| r.live_bytes as f64 / n,
                &|v| format!("{v:.2}"),
                "≤ 2.0× VM",
            ),
            (
                "disk, bytes/sample (live data dir, at rest)",
                &|r| r.rest_bytes as f64 / n,
                &|v| format!("{v:.2}"),
                "≤ 2.0× VM",
            ),
            (
                "memory, RSS bytes per series",
                &|r| r.rss as f64 / self.series as f64,
                &|v| format!("{v:.0}"),
                "",
            ),
            ("memory, peak RSS MiB", &|r| r.peak_rss as f64 / (1 << 20) as f64, &|v| format!("{v:.0}"), ""),
        ];
        for (name, f, fmt, target) in rows {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {target} |",
                cell(Kind::Collabstream, &|r| fmt(f(r))),
                cell(Kind::VictoriaMetrics, &|r| fmt(f(r))),
                cell(Kind::Prometheus, &|r| fmt(f(r))),
                self.ratio(Kind::VictoriaMetrics, f),
                self.ratio(Kind::Prometheus, f),
            );
        }
        let _ = writeln!(
            s,
            "| query latency, median of per-query ratios | | | | | {} | ≤ 1.0× Prometheus |",
            self.query_ratio().map_or("–".into(), |r| format!("{r:.2}×"))
        );
        let _ = writeln!(s, "\n| query | ours ms | VM ms | Prom ms | ours/Prom | series |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        if let Some(ours) = self.get(Kind::Collabstream) {
            for (i, q) in ours.queries.iter().enumerate() {
                let ms = |k: Kind| {
                    self.get(k)
                        .and_then(|r| r.queries.get(i))
                        .map_or("–".into(), |t| format!("{:.1}", t.median.as_secs_f64() * 1e3))
                };
                let ratio =
                    self.get(Kind::Prometheus).and_then(|p| p.queries.get(i)).map_or("–".into(), |p| {
                        format!("{:.2}", q.median.as_secs_f64() / p.median.as_secs_f64().max(1e-6))
                    });
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {ratio} | {} |",
                    q.query.replace('|', "\\|"),
                    ms(Kind::Collabstream),
                    ms(Kind::VictoriaMetrics),
                    ms(Kind::Prometheus),
                    q.series
                );
            }
        }
        let idle: Vec<String> = self
            .results
            .iter()
            .map(|r| format!("{} {:.0} MiB", r.kind.name(), r.idle_rss as f64 / (1 << 20) as f64))
            .collect();
        let _ = writeln!(s, "\nRSS right after start, before any data: {}.", idle.join(", "));
        s
    }

    /// Replaces the generated section of `doc` (appending one if it has none).
    pub fn update_doc(&self, doc: &Path) -> Result<(), Error> {
        let old = std::fs::read_to_string(doc).unwrap_or_default();
        let section = format!("{BEGIN}\n{}{END}", self.markdown());
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(a), Some(b)) if a < b => format!("{}{section}{}", &old[..a], &old[b + END.len()..]),
            _ => format!("{}\n{section}\n", old.trim_end()),
        };
        std::fs::write(doc, new).map_err(|e| Error::Bench(format!("cannot write {}: {e}", doc.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: Kind, rate: f64, bytes: u64, ms: u64) -> SystemResult {
        SystemResult {
            kind,
            samples_per_s: rate,
            compacted_bytes: bytes,
            live_bytes: bytes * 2,
            rest_bytes: bytes * 2,
            rss: 1 << 20,
            peak_rss: 2 << 20,
            idle_rss: 1 << 20,
            queries: vec![QueryTiming { query: "up".into(), median: Duration::from_millis(ms), series: 1 }],
        }
    }

    fn report() -> Report {
        Report {
            samples: 1000,
            series: 10,
            scrapes: 100,
            senders: 2,
            batch: 5,
            query_runs: 3,
            command: "collabstream bench".into(),
            results: vec![
                result(Kind::Collabstream, 500.0, 1500, 30),
                result(Kind::VictoriaMetrics, 1000.0, 1000, 10),
                result(Kind::Prometheus, 250.0, 7000, 20),
            ],
        }
    }

    #[test]
    fn ratios_are_ours_over_theirs() {
        let r = report();
        assert_eq!(r.ingest_ratio(), Some(0.5));
        assert_eq!(r.bytes_ratio(), Some(1.5));
        assert_eq!(r.query_ratio(), Some(1.5));
        let md = r.markdown();
        assert!(
            md.contains("| ingestion, samples/s | 500 | 1000 | 250 | 0.50× | 2.00× | ≥ 1.0× VM |"),
            "{md}"
        );
        assert!(
            md.contains("| disk, bytes/sample (compacted) | 1.50 | 1.00 | 7.00 | 1.50× | 0.21× |"),
            "{md}"
        );
    }

    #[test]
    fn the_doc_section_is_replaced_not_duplicated() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("b.md");
        std::fs::write(&doc, "# Benchmarks\n\nintro\n").unwrap();
        let r = report();
        r.update_doc(&doc).unwrap();
        r.update_doc(&doc).unwrap();
        let text = std::fs::read_to_string(&doc).unwrap();
        assert_eq!(text.matches(BEGIN).count(), 1);
        assert!(text.starts_with("# Benchmarks\n\nintro\n"));
        assert!(text.contains("| `up` | 30.0 | 10.0 | 20.0 | 1.50 | 1 |"), "{text}");
    }
}
