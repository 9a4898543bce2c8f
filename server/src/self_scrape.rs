//! The node scraping its own `/metrics` into itself (`[metrics] self_scrape_interval`, off by
//! default; on in `collabstream demo`), as VictoriaMetrics' `-selfScrapeInterval` does: a node
//! without a Prometheus beside it still has its history for the "Cluster" dashboard. Each scrape
//! is an HTTP GET of the page and a remote write of its samples back to the node, labelled
//! `job="collabstream"` and `instance="<http address>"` as a Prometheus scrape would be, plus
//! `up`. A node that cannot write (no leader yet) drops that scrape and tries at the next.

use std::net::SocketAddr;
use std::time::Duration;

use collabstream_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::remote_write::RemoteWriteClient;

/// Scrapes `http` into itself every `interval` until `shutdown`.
pub(crate) async fn run(http: SocketAddr, interval: Duration, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(interval.max(Duration::from_secs(1))).build() {
        Ok(c) => c,
        Err(e) => return tracing::warn!(error = %e, "self-scrape off: no HTTP client"),
    };
    let Ok(writer) = RemoteWriteClient::new(format!("http://{http}/api/v1/write")) else { return };
    let (page_url, instance) = (format!("http://{http}/metrics"), instance_of(http));
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let t = now.as_millis() as i64;
        let page = match client.get(&page_url).send().await {
            Ok(r) => r.text().await.ok(),
            Err(_) => None,
        };
        let labels = [("job", "collabstream"), ("instance", instance.as_str())];
        let mut series = match page.as_deref().map(|p| parse(p, t, &labels)) {
            Some(Ok(series)) => series,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "self-scrape: the metrics page does not parse");
                Vec::new()
            }
            None => Vec::new(),
        };
        let up = if page.is_some() { 1.0 } else { 0.0 };
        series.push(one("up", &labels, t, up));
        let body = RemoteWriteClient::encode(&v1::WriteRequest { series, ..Default::default() });
        if let Err(e) = writer.send(body).await {
            tracing::debug!(error = %e, "self-scrape: the write was not taken; the next scrape tries again");
        }
    }
}

/// The `instance` label: the address as a scraper would reach it. A node listening on every
/// interface (`0.0.0.0:9201`, as in containers) is named by its host name instead, so that the
/// nodes of a cluster do not all label their series alike.
fn instance_of(http: SocketAddr) -> String {
    if !http.ip().is_unspecified() {
        return http.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok());
    match host {
        Some(h) => format!("{h}:{}", http.port()),
        None => http.to_string(),
    }
}

fn one(name: &str, labels: &[(&str, &str)], t: i64, value: f64) -> v1::TimeSeries {
    let mut l = vec![v1::Label { name: "__name__".into(), value: name.into() }];
    l.extend(labels.iter().map(|(n, v)| v1::Label { name: (*n).into(), value: (*v).into() }));
    v1::TimeSeries { labels: l, samples: vec![v1::Sample { timestamp_ms: t, value }] }
}

/// The samples of a page in Prometheus's text format, each at `t` with `labels` added (a
/// page's own label of the same name wins, as `honor_labels` would have it).
pub(crate) fn parse(page: &str, t: i64, labels: &[(&str, &str)]) -> Result<Vec<v1::TimeSeries>, String> {
    let mut out = Vec::new();
    for (n, line) in page.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        let mut own: Vec<(String, String)> = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let (pairs, after) = label_pairs(inner).ok_or_else(|| bad("labels"))?;
            own = pairs;
            rest = after;
        }
        let value = rest.split_whitespace().next().ok_or_else(|| bad("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| bad("value"))?,
        };
        let mut l = vec![v1::Label { name: "__name__".into(), value: name.into() }];
        for (k, v) in labels {
            if !own.iter().any(|(o, _)| o == k) {
                l.push(v1::Label { name: (*k).into(), value: (*v).into() });
            }
        }
        l.extend(own.into_iter().map(|(name, value)| v1::Label { name, value }));
        out.push(v1::TimeSeries { labels: l, samples: vec![v1::Sample { timestamp_ms: t, value }] });
    }
    Ok(out)
}

/// `a="x",b="y\"z"}` → the pairs, and what follows the closing brace.
fn label_pairs(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut pairs = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((pairs, after));
        }
        let eq = s.find('=')?;
        let name = s[..eq].trim().to_string();
        let mut chars = s[eq + 1..].trim_start().strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        let quoted = s[eq + 1..].trim_start();
        s = &quoted[1 + end + 1..];
        pairs.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(ts: &v1::TimeSeries) -> String {
        let labels: Vec<String> = ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
        format!("{} {}", labels.join(","), ts.samples[0].value)
    }

    #[test]
    fn a_node_on_every_interface_is_named_by_its_host() {
        assert_eq!(instance_of("127.0.0.1:9201".parse().unwrap()), "127.0.0.1:9201");
        let any = instance_of("0.0.0.0:9201".parse().unwrap());
        assert!(any.ends_with(":9201") && !any.starts_with("0.0.0.0"), "{any}");
    }

    #[test]
    fn a_metrics_page_becomes_labelled_samples() {
        let page = "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n\
                    h_bucket{handler=\"/api/v1/label/{name}/values\",le=\"+Inf\"} 7\n\
                    m{instance=\"own\",q=\"a\\\"b\\\\c\\nd\"} NaN\nbig 1.5e+09\n";
        let got: Vec<String> =
            parse(page, 5, &[("job", "j"), ("instance", "i")]).unwrap().iter().map(flat).collect();
        assert_eq!(got[0], "__name__=x_total,job=j,instance=i 3");
        assert_eq!(
            got[1],
            "__name__=h_bucket,job=j,instance=i,handler=/api/v1/label/{name}/values,le=+Inf 7"
        );
        assert_eq!(got[2], "__name__=m,job=j,instance=own,q=a\"b\\c\nd NaN", "the page's own instance wins");
        assert_eq!(got[3], "__name__=big,job=j,instance=i 1500000000");
        assert!(parse("x{a=\"unterminated} 1", 0, &[]).is_err());
        assert!(parse("x notanumber", 0, &[]).is_err());
    }
}
