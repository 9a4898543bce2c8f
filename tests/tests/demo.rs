//! `collabstream demo`: the PromQL queries its banner prints over the meetings pack's series
//! return data within a minute of its start, as the banner promises; and so does every panel
//! of the Grafana dashboards in `deploy/grafana/dashboards`, its queries expanded as Grafana
//! does (template variables from `label_values`, for "All" and for one value, and
//! `$__rate_interval`, `$__interval`, `$__range`; a SQL panel's `$__timeFilter`, run through
//! `psql` as the PostgreSQL data source would). The "Cluster" dashboard reads the demo's own
//! metrics, which it scrapes into itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use collabstream_tests::{Demo, binary, free_port, wait_until};

/// The (URL, query) of each banner line that queries a meetings series.
fn meeting_queries(banner: &[String]) -> Vec<(String, String)> {
    banner
        .iter()
        .filter(|l| l.contains("/api/v1/query'") && l.contains("meeting_"))
        .filter_map(|l| {
            let url = l.split("curl -s '").nth(1)?.split('\'').next()?.to_string();
            let query = l.split("query=").nth(1)?.rsplit_once('\'')?.0.to_string();
            Some((url, query))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banners_queries_and_every_dashboard_panel_return_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();
    let demo = Demo::start(dir.path()).expect("demo");
    let banner = demo.banner.clone();
    let queries = meeting_queries(&banner);
    let named: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    for metric in ["meeting_active_users", "meeting_health_score", "meeting_engagement_score"] {
        assert!(named.iter().any(|q| q.contains(metric)), "no query over {metric} in {banner:#?}");
    }
    let client = reqwest::Client::new();
    for (url, query) in &queries {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let data = wait_until(left, || async {
            let body: serde_json::Value =
                client.get(url).query(&[("query", query)]).send().await.ok()?.json().await.ok()?;
            body["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|r| r.len())
        })
        .await;
        assert!(data.is_some(), "{query} returned no data within a minute of the demo's start");
    }
    let http = queries
        .first()
        .map(|(url, _)| url.split("/api/").next().expect("a URL").to_string())
        .expect("a query");
    // The banner's SQL: over HTTP, and the origin project's query through psql.
    let sql_line = banner.iter().find(|l| l.contains("/api/v1/sql")).expect("a SQL line");
    let statement = sql_line.split("query=").nth(1).and_then(|q| q.rsplit_once('\'')).expect("a query").0;
    let rows = wait_until(Duration::from_secs(60), || async {
        let body = json(client.post(format!("{http}/api/v1/sql")).form(&[("query", statement)])).await?;
        body["rows"].as_array().filter(|r| !r.is_empty()).map(|r| r.len())
    })
    .await;
    assert!(rows.is_some(), "{statement} returned no rows");
    let psql = banner.iter().find_map(|l| l.split_once("psql ").map(|(_, rest)| rest)).expect("a psql line");
    let out = Command::new("sh").arg("-c").arg(format!("psql -X -A -t {psql}")).output().expect("psql runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.lines().any(|l| l.starts_with('m')), "{text}{out:?}");
    let words: Vec<&str> = psql.split_whitespace().collect();
    let after = |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).copied();
    let pg = (after("-h").expect("psql -h"), after("-p").expect("psql -p"));
    let left = Duration::from_secs(120).saturating_sub(started.elapsed());
    dashboards_return_data(&client, &http, pg, left).await;
    drop(demo);
}

/// A demo whose stdout reader went away (a closed pipe, `| head`) keeps serving: printing its
/// banner into the closed pipe once killed it (EPIPE panics `println!`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demo_whose_stdout_is_closed_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = format!("127.0.0.1:{}", free_port().expect("a port"));
    let mut child = Command::new(binary())
        .args(["demo", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--http-listen", &http, "--grpc-listen", "127.0.0.1:0", "--pg-listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    drop(child.stdout.take());
    let client = reqwest::Client::new();
    let ready = wait_until(Duration::from_secs(60), || async {
        let r = client.get(format!("http://{http}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // By now the banner is written (it follows the bind); give a panic time to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let exited = child.try_wait().expect("try_wait");
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.is_some(), "the demo never became ready");
    assert!(exited.is_none(), "the demo exited with its stdout closed: {exited:?}");
}

/// Grafana's built-in variables as it sets them for a 5 min range at a 15 s step, with the
/// data source's scrape interval of 15 s (`$__rate_interval` = max(4 × scrape interval,
/// `$__interval` + scrape interval)).
const BUILTINS: [(&str, &str); 3] = [("$__rate_interval", "1m"), ("$__interval", "15s"), ("$__range", "5m")];

/// The JSON a request answers, if it answers any.
async fn json(request: reqwest::RequestBuilder) -> Option<serde_json::Value> {
    request.send().await.ok()?.json().await.ok()
}

/// A value as Grafana puts it into a regex matcher: special characters escaped, the escape
/// itself doubled inside PromQL's double-quoted string.
fn regex_escape(v: &str) -> String {
    v.chars().fold(String::new(), |mut out, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
        out
    })
}

/// A SQL panel's statement as Grafana's PostgreSQL data source sends it for the last five
/// minutes: `$__timeFilter(x)` becomes `x BETWEEN '<from>' AND '<to>'` (RFC 3339, UTC).
fn expand_sql(sql: &str, end_s: u64) -> String {
    let iso = |s: u64| {
        let t = time::OffsetDateTime::from_unix_timestamp(s as i64).expect("time");
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let mut out = sql.to_string();
    while let Some(at) = out.find("$__timeFilter(") {
        let open = at + "$__timeFilter(".len();
        let mut depth = 1;
        let close = out[open..]
            .char_indices()
            .find_map(|(i, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                (depth == 0).then_some(open + i)
            })
            .expect("a closed $__timeFilter(");
        let column = out[open..close].to_string();
        let range = format!("{column} BETWEEN '{}' AND '{}'", iso(end_s - 300), iso(end_s));
        out.replace_range(at..=close, &range);
    }
    out
}

async fn dashboards_return_data(client: &reqwest::Client, http: &str, pg: (&str, &str), within: Duration) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards");
    let mut files: Vec<_> =
        std::fs::read_dir(&dir).expect("dashboards").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let deadline = Instant::now() + within;
    let mut ran = 0;
    for file in files {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).expect("dashboard")).expect("JSON");
        let title = dash["title"].as_str().expect("title").to_string();
        // Each variable as "All" and as its first value.
        let mut settings: Vec<Vec<(String, String)>> = vec![Vec::new(), Vec::new()];
        for var in dash["templating"]["list"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().expect("name");
            // Data-source variables pick where a panel's queries go (deploy_files.rs checks
            // them); here every query goes to the demo node.
            if var["type"] == "datasource" {
                continue;
            }
            let query = var["query"]["query"].as_str().or(var["query"].as_str()).expect("query");
            let inner =
                query.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values");
            let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
            let (metric, label) = (metric.trim(), label.trim());
            let values = wait_until(deadline.saturating_duration_since(Instant::now()), || async {
                let body = json(
                    client.get(format!("{http}/api/v1/label/{label}/values")).query(&[("match[]", metric)]),
                )
                .await?;
                body["data"].as_array().filter(|v| !v.is_empty()).cloned()
            })
            .await
            .unwrap_or_else(|| panic!("{title}: variable {name}: {query} has no values"));
            let all = var["allValue"].as_str().expect("an All value").to_string();
            settings[0].push((format!("${name}"), all));
            settings[1].push((format!("${name}"), regex_escape(values[0].as_str().expect("a value"))));
        }
        for panel in dash["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                // A SQL panel: through psql, as the PostgreSQL data source would ask.
                if let Some(sql) = target["rawSql"].as_str() {
                    let rows = wait_until(deadline.saturating_duration_since(Instant::now()), || async {
                        let end = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .expect("clock")
                            .as_secs();
                        let out = Command::new("psql")
                            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg.0, "-p", pg.1])
                            .args(["-c", &expand_sql(sql, end)])
                            .output()
                            .ok()?;
                        assert!(
                            out.status.success(),
                            "{title}: {sql}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        let text = String::from_utf8_lossy(&out.stdout).into_owned();
                        let n = text.lines().filter(|l| !l.is_empty()).count();
                        (n > 0).then_some(n)
                    })
                    .await;
                    assert!(rows.is_some(), "{title}, panel {:?}: {sql} returned no rows", panel["title"]);
                    ran += 1;
                    continue;
                }
                let expr = target["expr"].as_str().expect("expr");
                for vars in &settings {
                    let mut q = expr.to_string();
                    for (k, v) in vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(BUILTINS) {
                        q = q.replace(k, v);
                    }
                    assert!(!q.contains('$'), "{title}: a variable left in {q}");
                    let found = wait_until(deadline.saturating_duration_since(Instant::now()), || async {
                        let end = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .expect("clock")
                            .as_secs();
                        let params = [
                            ("query", q.clone()),
                            ("start", (end - 300).to_string()),
                            ("end", end.to_string()),
                            ("step", "15".to_string()),
                        ];
                        let body =
                            json(client.post(format!("{http}/api/v1/query_range")).form(&params)).await?;
                        assert_eq!(body["status"], "success", "{title}: {q}: {body}");
                        body["data"]["result"].as_array().filter(|r| !r.is_empty()).map(|r| r.len())
                    })
                    .await;
                    assert!(found.is_some(), "{title}, panel {:?}: {q} returned no data", panel["title"]);
                    ran += 1;
                }
            }
        }
    }
    assert!(ran >= 20, "only {ran} queries ran");
}
