//! The same samples pushed to Debian's Prometheus 2.42 and to our node; hundreds of generated
//! queries, instant and range, must give the same answers (labels equal, values within 1e-6
//! relative, NaN equal to NaN), or fail in both.

use std::collections::BTreeMap;

use collabstream_tests::Moto;
use collabstream_tests::promql_suite::{instant_time, queries, range_window, start_pair_with};
use serde_json::Value;

/// A result reduced to comparable form: series key → [(t ms, value)].
type Answer = Result<BTreeMap<String, Vec<(i64, f64)>>, String>;

fn parse_value(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn point(p: &Value) -> (i64, f64) {
    ((p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64, parse_value(&p[1]))
}

fn key(metric: &Value) -> String {
    let m = metric.as_object().cloned().unwrap_or_default();
    let mut pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    format!("{{{}}}", pairs.join(","))
}

async fn ask(client: &reqwest::Client, base: &str, params: &[(&str, String)], range: bool) -> Answer {
    let path = if range { "/api/v1/query_range" } else { "/api/v1/query" };
    let r = client.post(format!("{base}{path}")).form(params).send().await.map_err(|e| e.to_string())?;
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    let data = &body["data"];
    let mut out = BTreeMap::new();
    match data["resultType"].as_str() {
        Some("scalar") => {
            out.insert("scalar".into(), vec![point(&data["result"])]);
        }
        Some("vector") => {
            for s in data["result"].as_array().into_iter().flatten() {
                out.insert(key(&s["metric"]), vec![point(&s["value"])]);
            }
        }
        Some("matrix") => {
            for s in data["result"].as_array().into_iter().flatten() {
                out.insert(
                    key(&s["metric"]),
                    s["values"].as_array().into_iter().flatten().map(point).collect(),
                );
            }
        }
        other => return Err(format!("unexpected result type {other:?}")),
    }
    Ok(out)
}

/// Within 1e-6 relative, NaN equal to NaN. (This crate talks to nodes over the wire only, so it
/// does not borrow the engine's comparison.)
fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let diff = (a - b).abs();
    let scale = a.abs().max(b.abs());
    diff <= 1e-6 * scale || diff < 1e-12
}

fn same(ours: &Answer, theirs: &Answer) -> Result<(), String> {
    match (ours, theirs) {
        (Err(_), Err(_)) => Ok(()),
        (Ok(_), Err(e)) => Err(format!("Prometheus failed ({e}) but we answered")),
        (Err(e), Ok(_)) => Err(format!("we failed ({e}) but Prometheus answered")),
        (Ok(a), Ok(b)) => {
            if a.keys().ne(b.keys()) {
                let only_ours: Vec<_> = a.iter().filter(|(k, _)| !b.contains_key(*k)).collect();
                let only_theirs: Vec<_> = b.iter().filter(|(k, _)| !a.contains_key(*k)).collect();
                return Err(format!("series differ: only ours {only_ours:?}; only theirs {only_theirs:?}"));
            }
            for (k, pa) in a {
                let pb = &b[k];
                let equal =
                    pa.len() == pb.len() && pa.iter().zip(pb).all(|(x, y)| x.0 == y.0 && close(x.1, y.1));
                if !equal {
                    return Err(format!("{k}: ours {pa:?}, theirs {pb:?}"));
                }
            }
            Ok(())
        }
    }
}

/// Every generated query, instant and range, asked of both; the failures.
async fn compare(node: &str, prom: &str, t0: i64) -> Vec<String> {
    let client = reqwest::Client::new();
    let at = instant_time(t0);
    let (start, end, step) = range_window(t0);
    let secs = |ms: i64| format!("{}", ms as f64 / 1000.0);
    let at_modifier = secs(t0 + 40 * 60_000 + 7_000);
    let mut compared = 0;
    let mut non_empty = 0;
    let mut failures = Vec::new();
    for q in queries() {
        let q = q.replace("{AT}", &at_modifier);
        let instant = vec![("query", q.clone()), ("time", secs(at))];
        let range =
            vec![("query", q.clone()), ("start", secs(start)), ("end", secs(end)), ("step", secs(step))];
        for (params, is_range) in [(instant, false), (range, true)] {
            let ours = ask(&client, node, &params, is_range).await;
            let theirs = ask(&client, prom, &params, is_range).await;
            if theirs.as_ref().is_ok_and(|t| !t.is_empty()) {
                non_empty += 1;
            }
            if std::env::var("DIFF_DEBUG").is_ok_and(|d| q.contains(&d)) {
                eprintln!("{q} range={is_range}\nours: {ours:#?}\ntheirs: {theirs:#?}");
            }
            if let Err(why) = same(&ours, &theirs) {
                failures.push(format!("{} {q}: {why}", if is_range { "range" } else { "instant" }));
            }
            compared += 1;
        }
    }
    assert!(compared >= 300, "only {compared} comparisons");
    // Guards against comparing two empty answers: most queries must find data.
    assert!(non_empty * 10 >= compared * 8, "only {non_empty} of {compared} answers had data");
    failures
}

/// The same data hot, then with its older half moved to the cold tier on an S3-compatible
/// store (moto): the answers stay Prometheus's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_promql_answers_like_prometheus() {
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = Moto::start(dir.path()).expect("moto starts");
    moto.create_bucket("history").await.expect("bucket");
    // The data spans [t0, t0 + 1 h) with t0 two hours (and under a minute) ago: 85 minutes of
    // hot retention in 10-minute blocks seals the blocks before t0 + 26..36 min, in the middle
    // of the queries' windows (20 to 50 min), so most of them read both tiers. The timer's
    // passes wait an hour: the test runs the one pass itself, after the comparison all hot.
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nblock_duration = \"10m\"\n[tiering]\nhot_retention = \"85m\"\ninterval = \"1h\"\n\
             [object_store]\nurl = \"s3://history/cold\"\nendpoint = \"{}\"\nallow_http = true\n\
             access_key = \"test\"\nsecret_key = \"test\"\n",
            moto.endpoint()
        ),
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let pair = start_pair_with(dir.path(), 1, &["--config", &config])
        .await
        .expect("node and Prometheus hold the dataset");
    let (node, prom, t0) = (&pair.node, &pair.prometheus, pair.t0);

    let failures = compare(&node.url(""), &prom.url(""), t0).await;
    assert!(failures.is_empty(), "all hot: {} differ:\n{}", failures.len(), failures.join("\n"));

    let report: Value = reqwest::Client::new()
        .post(node.url("/api/v1/admin/tiering/run"))
        .send()
        .await
        .expect("tiering run")
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["status"], "success", "{report}");
    let tiered = report["data"]["tiered"].as_array().expect("tiered blocks");
    let samples: u64 = tiered.iter().map(|b| b["rows"].as_u64().unwrap_or(0)).sum();
    assert!(tiered.len() >= 3 && samples as usize >= pair.samples / 3, "{report}");
    let sealed = report["data"]["sealed_before_ms"].as_i64().expect("sealed");
    assert!((t0 + 25 * 60_000..=t0 + 36 * 60_000).contains(&sealed), "sealed at t0 + {} ms", sealed - t0);

    let failures = compare(&node.url(""), &prom.url(""), t0).await;
    assert!(failures.is_empty(), "older half cold: {} differ:\n{}", failures.len(), failures.join("\n"));
    assert!(node.metric("collabstream_cold_footer_cache_hits_total").await > 0.0);
    drop(moto);
}
