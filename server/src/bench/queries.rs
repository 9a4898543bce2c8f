//! The fixed PromQL query set (what node-exporter dashboards ask), the completeness check run
//! before measuring, and the timed runs over the Prometheus HTTP API.

use std::time::Instant;

use super::Check;
use super::report::{QueryTiming, median};
use super::systems::System;
use crate::error::Error;

/// Range queries over the last hour of data at a 60 s step. Each system answers every one of
/// them; only functions whose results the three agree on are used (VictoriaMetrics' `rate` does
/// not extrapolate, which changes values but not the work).
pub(crate) fn query_set() -> Vec<&'static str> {
    vec![
        r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#,
        r#"rate(node_network_receive_bytes_total{instance="host-0001:9100"}[5m])"#,
        "avg(node_load1)",
        "max_over_time(node_load5[10m])",
        "topk(5, rate(node_disk_read_bytes_total[5m]))",
        "sum by (job) (node_memory_field1_bytes)",
        r#"node_filesystem_avail_bytes{mountpoint="/mnt/sda1"} / node_filesystem_size_bytes{mountpoint="/mnt/sda1"}"#,
        "count by (instance) (node_uname_info)",
        "sum(increase(node_netstat_field1_total[15m]))",
        "quantile(0.9, rate(node_disk_io_time_seconds_total[5m]))",
        "avg_over_time(node_memory_field3_bytes[30m])",
        "sum by (device) (rate(node_network_transmit_packets_total[5m]))",
    ]
}

async fn get(system: &System, path: &str, params: &[(&str, String)]) -> Result<serde_json::Value, Error> {
    let resp = system
        .http()
        .get(format!("{}{path}", system.base))
        .query(params)
        .send()
        .await
        .map_err(|e| Error::Bench(format!("{}: {e}", system.kind.name())))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| Error::Bench(e.to_string()))?;
    if !status.is_success() {
        return Err(Error::Bench(format!(
            "{} answered {status} to {path} {params:?}: {body}",
            system.kind.name()
        )));
    }
    serde_json::from_str(&body).map_err(|e| Error::Bench(format!("{}: {e}: {body}", system.kind.name())))
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The first value of an instant query's vector answer.
fn scalar_of(v: &serde_json::Value) -> Option<f64> {
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// Every series is there, and a sample series holds every scrape.
pub(crate) async fn verify(system: &System, check: &Check) -> Result<(), Error> {
    let time = secs(check.last_ms);
    let count =
        get(system, "/api/v1/query", &[("query", "count({job=\"node\"})".into()), ("time", time.clone())])
            .await?;
    let window = format!("{}s", check.span.as_secs());
    let per_series = get(
        system,
        "/api/v1/query",
        &[
            ("query", format!("count_over_time(node_load1{{instance=\"host-0000:9100\"}}[{window}])")),
            ("time", time),
        ],
    )
    .await?;
    let (series, samples) = (scalar_of(&count), scalar_of(&per_series));
    if series != Some(check.series as f64) || samples != Some(check.scrapes as f64) {
        return Err(Error::Bench(format!(
            "{} holds {series:?} series (expected {}) and {samples:?} samples of one series (expected {}): the data is incomplete",
            system.kind.name(),
            check.series,
            check.scrapes
        )));
    }
    Ok(())
}

/// Each query `runs` times over the hour before `last_ms`; the median latency per query.
pub(crate) async fn run(
    system: &System,
    queries: &[&str],
    last_ms: i64,
    runs: usize,
) -> Result<Vec<QueryTiming>, Error> {
    let (start, end) = (secs(last_ms - 3_600_000), secs(last_ms));
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let params =
            [("query", q.to_string()), ("start", start.clone()), ("end", end.clone()), ("step", "60".into())];
        let mut times = Vec::with_capacity(runs);
        let mut series = 0;
        for _ in 0..runs.max(1) {
            let t = Instant::now();
            let v = get(system, "/api/v1/query_range", &params).await?;
            times.push(t.elapsed());
            series = v["data"]["result"].as_array().map_or(0, Vec::len);
        }
        out.push(QueryTiming { query: q.to_string(), median: median(&mut times), series });
    }
    Ok(out)
}
