//! A dataset and a query set for comparing our PromQL with a real Prometheus: used by the
//! differential test and by the range-query benchmark.
//!
//! Sample timestamps sit 300 ms past whole seconds and query times on whole seconds (7 s past
//! the minute), so no sample or subquery step falls on a window boundary: Prometheus 2.42
//! closes windows on the left and 3.x does not, and the two then agree.

use collabstream_proto::prompb;

/// Samples are this far apart.
pub const SCRAPE_MS: i64 = 15_000;
/// How much data the dataset holds.
pub const SPAN_MS: i64 = 3_600_000;

fn labels(pairs: &[(&str, &str)]) -> Vec<prompb::Label> {
    pairs
        .iter()
        .map(|(n, v)| prompb::Label { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
        .collect()
}

/// One series: labels and a value for each scrape index (None: no sample; a stale marker
/// is written as `Some(STALE)`).
struct Def {
    labels: Vec<prompb::Label>,
    value: Box<dyn Fn(i64) -> Option<f64>>,
}

const STALE: f64 = f64::from_bits(collabstream_common::STALE_NAN_BITS);

/// The series: counters (with resets), gauges (negative too), classic histogram buckets, a
/// series that goes stale halfway, and a constant; `scale` copies of each for benchmarks.
fn defs(scale: usize) -> Vec<Def> {
    let mut out = Vec::new();
    for copy in 0..scale {
        let c = copy.to_string();
        for (job, jf) in [("api", 1.0), ("web", 2.5)] {
            for inst in 0..3 {
                for (code, cf) in [("200", 10.0), ("500", 0.7)] {
                    let i = inst.to_string();
                    let reset_at = if inst == 1 { 130 } else { i64::MAX };
                    out.push(Def {
                        labels: labels(&[
                            ("__name__", "diff_requests_total"),
                            ("job", job),
                            ("instance", &i),
                            ("code", code),
                            ("copy", &c),
                        ]),
                        value: Box::new(move |k: i64| {
                            let k2 = if k >= reset_at { k - reset_at } else { k };
                            // Instances differ slightly: Prometheus breaks topk/bottomk ties
                            // in range queries in hash-map order, so the data has none.
                            Some(k2 as f64 * cf * jf * (1.0 + inst as f64 * 0.011) + (k2 % 7) as f64 * 0.37)
                        }),
                    });
                }
                let i = inst.to_string();
                let phase = inst as f64;
                out.push(Def {
                    labels: labels(&[
                        ("__name__", "diff_temperature"),
                        ("job", job),
                        ("instance", &i),
                        ("copy", &c),
                    ]),
                    value: Box::new(move |k| Some(20.0 * (k as f64 / 17.0 + phase).sin() * jf - 3.25)),
                });
            }
            for (le, share) in [("0.1", 0.2), ("0.5", 0.55), ("1", 0.8), ("+Inf", 1.0)] {
                out.push(Def {
                    labels: labels(&[
                        ("__name__", "diff_latency_seconds_bucket"),
                        ("job", job),
                        ("le", le),
                        ("copy", &c),
                    ]),
                    value: Box::new(move |k| Some((k as f64 * 4.0 * jf * share).floor())),
                });
            }
        }
        out.push(Def {
            labels: labels(&[("__name__", "diff_flappy"), ("instance", "0"), ("copy", &c)]),
            value: Box::new(|k| match k {
                k if k < 120 => Some((k % 5) as f64),
                120 => Some(STALE),
                _ => None,
            }),
        });
        out.push(Def {
            labels: labels(&[("__name__", "diff_const"), ("copy", &c)]),
            value: Box::new(|_| Some(42.0)),
        });
    }
    out
}

/// The dataset from `t0` (ms, a multiple of a minute) as remote-write requests in time order
/// (Prometheus refuses samples more than an hour behind its newest), one per 5 minutes.
pub fn dataset(t0: i64, scale: usize) -> Vec<prompb::WriteRequest> {
    let defs = defs(scale);
    let per_request = 20;
    let scrapes = SPAN_MS / SCRAPE_MS;
    (0..scrapes)
        .step_by(per_request)
        .map(|first| {
            let timeseries = defs
                .iter()
                .map(|d| prompb::TimeSeries {
                    labels: d.labels.clone(),
                    samples: (first..(first + per_request as i64).min(scrapes))
                        .filter_map(|k| {
                            (d.value)(k)
                                .map(|v| prompb::Sample { value: v, timestamp: t0 + 300 + k * SCRAPE_MS })
                        })
                        .collect(),
                    ..Default::default()
                })
                .filter(|ts| !ts.samples.is_empty())
                .collect();
            prompb::WriteRequest { timeseries, ..Default::default() }
        })
        .collect()
}

/// The instant-query time: 45 min 7 s into the data.
pub fn instant_time(t0: i64) -> i64 {
    t0 + 45 * 60_000 + 7_000
}

/// Range queries: from 20 min 7 s to 50 min 7 s, every minute.
pub fn range_window(t0: i64) -> (i64, i64, i64) {
    (t0 + 20 * 60_000 + 7_000, t0 + 50 * 60_000 + 7_000, 60_000)
}

/// Queries covering every function, aggregation and operator both systems implement, with
/// `{AT}` standing for an absolute `@` time in seconds.
pub fn queries() -> Vec<String> {
    let mut q: Vec<String> = Vec::new();
    let counters = ["diff_requests_total", "diff_requests_total{job=\"web\",code=\"200\"}"];
    let gauges = ["diff_temperature", "diff_temperature{instance=~\"0|2\"}"];
    for f in ["rate", "irate", "increase", "resets"] {
        for s in counters {
            for r in ["1m", "5m", "10m"] {
                q.push(format!("{f}({s}[{r}])"));
            }
        }
    }
    for f in [
        "delta",
        "idelta",
        "deriv",
        "changes",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "last_over_time",
        "present_over_time",
    ] {
        for s in gauges {
            for r in ["2m", "10m"] {
                q.push(format!("{f}({s}[{r}])"));
            }
        }
        q.push(format!("{f}(diff_flappy[5m])"));
    }
    for s in gauges {
        q.push(format!("quantile_over_time(0.25, {s}[10m])"));
        q.push(format!("quantile_over_time(0.9, {s}[3m])"));
        q.push(format!("predict_linear({s}[10m], 300)"));
        q.push(format!("predict_linear({s}[5m], -60)"));
    }
    q.push("absent_over_time(diff_flappy[5m])".into());
    q.push("absent_over_time(nonexistent{job=\"x\"}[5m])".into());
    q.push("absent(nonexistent{job=\"x\",instance=~\"a.*\"})".into());
    q.push("absent(diff_const)".into());
    for f in [
        "abs",
        "ceil",
        "floor",
        "exp",
        "sqrt",
        "ln",
        "log2",
        "log10",
        "sgn",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "tanh",
        "asinh",
        "acosh",
        "atanh",
        "deg",
        "rad",
        "timestamp",
    ] {
        q.push(format!("{f}(diff_temperature)"));
    }
    q.push("asin(diff_temperature / 30)".into());
    q.push("round(diff_temperature)".into());
    q.push("round(diff_temperature, 0.25)".into());
    q.push("clamp(diff_temperature, -5, 5)".into());
    q.push("clamp(diff_temperature, 5, -5)".into());
    q.push("clamp_min(diff_temperature, 0)".into());
    q.push("clamp_max(diff_temperature, 0)".into());
    for f in
        ["day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"]
    {
        q.push(format!("{f}()"));
        q.push(format!("{f}(timestamp(diff_const))"));
    }
    q.push("label_replace(diff_temperature, \"host\", \"h-$1\", \"instance\", \"(.*)\")".into());
    q.push("label_replace(diff_temperature, \"instance\", \"\", \"instance\", \"0\")".into());
    q.push("label_join(diff_temperature, \"id\", \"/\", \"job\", \"instance\")".into());
    q.push("vector(time())".into());
    q.push("time()".into());
    q.push("pi()".into());
    q.push("scalar(sum(diff_const))".into());
    q.push("scalar(diff_temperature)".into());
    q.push("sort(diff_temperature)".into());
    q.push("sort_desc(diff_temperature)".into());
    for p in ["0.5", "0.9", "0.99"] {
        q.push(format!("histogram_quantile({p}, rate(diff_latency_seconds_bucket[5m]))"));
        q.push(format!("histogram_quantile({p}, sum by (le) (rate(diff_latency_seconds_bucket[10m])))"));
    }
    for agg in ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"] {
        for s in ["diff_temperature", "rate(diff_requests_total[5m])"] {
            q.push(format!("{agg}({s})"));
            q.push(format!("{agg} by (job) ({s})"));
            q.push(format!("{agg} without (instance) ({s})"));
        }
    }
    for (agg, p) in
        [("topk", "2"), ("bottomk", "2"), ("quantile", "0.3"), ("quantile", "0.75"), ("topk", "1")]
    {
        q.push(format!("{agg}({p}, diff_temperature)"));
        q.push(format!("{agg} by (job) ({p}, rate(diff_requests_total[5m]))"));
    }
    q.push("count_values(\"value\", round(diff_temperature))".into());
    q.push("count_values by (job) (\"v\", floor(diff_temperature / 10))".into());
    // Prometheus 2.42 keeps the metric name on `vector atan2 scalar` (3.x drops it, as we
    // do), so atan2 is compared between vectors only, where `on` removes the name anyway.
    for op in ["+", "-", "*", "/", "%", "^", "atan2"] {
        if op != "atan2" {
            q.push(format!("diff_temperature {op} 3"));
            q.push(format!("2 {op} diff_temperature"));
        }
        q.push(format!("rate(diff_requests_total[5m]) {op} ignoring(code) group_left rate(diff_requests_total{{code=\"200\"}}[5m])"));
        q.push(format!("diff_temperature {op} on(job, instance) diff_temperature"));
    }
    q.push("1 + 2 * 3 - 4 / 2 ^ 2 % 3".into());
    q.push("-diff_temperature".into());
    q.push("(diff_temperature + 1) * -2".into());
    for op in ["==", "!=", ">", "<", ">=", "<="] {
        q.push(format!("diff_temperature {op} 0"));
        q.push(format!("diff_temperature {op} bool 0"));
        q.push(format!("0 {op} diff_temperature"));
        q.push(format!(
            "diff_temperature {op} on(job, instance) group_left diff_temperature{{instance=\"0\"}}"
        ));
        q.push(format!("diff_temperature {op} bool ignoring(copy) diff_temperature"));
        q.push(format!("1 {op} bool 2"));
    }
    for op in ["and", "or", "unless"] {
        q.push(format!("diff_temperature {op} diff_temperature > 0"));
        q.push(format!("diff_temperature {op} on(instance) diff_requests_total{{code=\"500\",job=\"api\"}}"));
        q.push(format!("rate(diff_requests_total[5m]) {op} ignoring(code) rate(diff_requests_total{{code=\"500\"}}[5m]) > 0.5"));
    }
    q.push("diff_requests_total{code=\"200\"} / on(job, instance) group_left(code) diff_requests_total{code=\"500\"}".into());
    q.push("diff_requests_total{code=\"500\"} / on(job, instance) group_right(code) diff_requests_total{code=\"200\"}".into());
    for s in [
        "diff_temperature offset 5m",
        "diff_temperature offset -5m",
        "rate(diff_requests_total[5m] offset 10m)",
        "diff_temperature @ {AT}",
        "rate(diff_requests_total[5m] @ {AT})",
        "diff_temperature @ start()",
        "diff_temperature @ end() offset 1m",
        "max_over_time(diff_temperature[10m:1m])",
        "max_over_time(diff_temperature[10m:30s] offset 2m)",
        "avg_over_time(rate(diff_requests_total[2m])[15m:1m])",
        "rate(diff_requests_total[5m:1m])",
        "min_over_time(sum by (job) (diff_temperature)[7m:45s])",
        "sum_over_time(deriv(diff_temperature[5m])[10m:2m] @ {AT})",
        "max_over_time((diff_temperature > 0)[10m:1m])",
        "count_over_time(diff_flappy[10m:1m])",
        "timestamp(diff_flappy)",
    ] {
        q.push(s.into());
    }
    q
}

/// Our node and a Prometheus 2.42 side by side, both holding [`dataset`] at `scale`.
#[derive(Debug)]
pub struct Pair {
    pub node: crate::Node,
    pub prometheus: crate::Prometheus,
    /// Where the data starts: two hours before the pair started, on a whole minute.
    pub t0: i64,
    pub series: usize,
    pub samples: usize,
}

/// Starts both under `dir` (Prometheus with its remote-write receiver and negative offsets)
/// and remote-writes the dataset to each.
pub async fn start_pair(dir: &std::path::Path, scale: usize) -> anyhow::Result<Pair> {
    start_pair_with(dir, scale, &[]).await
}

/// [`start_pair`] with more arguments for the node (a `--config`).
pub async fn start_pair_with(
    dir: &std::path::Path,
    scale: usize,
    node_args: &[&str],
) -> anyhow::Result<Pair> {
    use anyhow::Context;
    let node = crate::Node::start(&dir.join("node"), node_args)?;
    let prom_dir = dir.join("prometheus");
    std::fs::create_dir_all(&prom_dir)?;
    let prometheus = crate::Prometheus::start(
        &prom_dir,
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver", "--enable-feature=promql-negative-offset"],
    )?;
    let client = reqwest::Client::new();
    crate::wait_until(std::time::Duration::from_secs(30), || async {
        client
            .get(prometheus.url("/-/ready"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await
    .context("Prometheus did not become ready within 30 s")?;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let t0 = (now - 2 * 3_600_000) / 60_000 * 60_000;
    let (mut series, mut samples) = (0, 0);
    for (i, req) in dataset(t0, scale).into_iter().enumerate() {
        samples += req.timeseries.iter().map(|t| t.samples.len()).sum::<usize>();
        if i == 0 {
            series = req.timeseries.len();
        }
        let body = crate::remote_write_body(&req);
        for url in [node.url("/api/v1/write"), prometheus.url("/api/v1/write")] {
            let r = client
                .post(&url)
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await?;
            if !r.status().is_success() {
                anyhow::bail!("{url}: {} {}", r.status(), r.text().await.unwrap_or_default());
            }
        }
    }
    Ok(Pair { node, prometheus, t0, series, samples })
}
