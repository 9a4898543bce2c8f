//! SQL end to end on one node whose older half is in the cold tier: the statements of
//! `tests/sql/compare_duckdb.py` give the same rows as DuckDB over the same data in Parquet;
//! `EXPLAIN` shows what is pushed down and a query of one meeting's hour reads one hour's
//! files and hands up that meeting's events only; `psql` runs the origin project's query,
//! and a bad statement gets a PostgreSQL error on a connection that stays usable.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use collabstream_proto::v1::{self, ingest_service_client::IngestServiceClient};
use collabstream_tests::Node;
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const STEP: i64 = 30_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// 10-minute blocks, two hours hot: of four hours of history, the older half is cold.
/// External tables may read the test's directory.
fn config(dir: &Path) -> String {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\nblock_duration = \"10m\"\n[tiering]\nhot_retention = \"2h\"\ninterval = \"1h\"\n\
             [sql]\nexternal_paths = [{:?}]\n",
            dir.to_string_lossy()
        ),
    )
    .expect("config");
    path.to_string_lossy().into_owned()
}

fn event(kind: v1::event::Event) -> v1::Event {
    v1::Event { event: Some(kind) }
}

/// One step of history: samples of two metrics on ten instances, and three meetings' events
/// (joins and leaves, unmutes, chat messages, quality reports). Each also as the JSON line
/// DuckDB reads.
fn step(
    t: i64,
    series: &mut Vec<v1::TimeSeries>,
    events: &mut Vec<v1::Event>,
    samples_out: &mut String,
    events_out: &mut String,
) {
    let k = t / STEP;
    for i in 0..10 {
        for (name, value) in [
            ("sq_requests_total", (k % 1000 + i) as f64),
            ("sq_temperature", 0.25 * ((k * 7 + i * 13) % 1000) as f64),
        ] {
            series.push(v1::TimeSeries {
                labels: vec![
                    v1::Label { name: "__name__".into(), value: name.into() },
                    v1::Label { name: "instance".into(), value: format!("i{i}") },
                ],
                samples: vec![v1::Sample { timestamp_ms: t, value }],
            });
            let line = json!({"metric": name, "labels": {"instance": format!("i{i}")}, "timestamp": t, "value": value});
            samples_out.push_str(&format!("{line}\n"));
        }
    }
    for (m, meeting) in ["m1", "m2", "m3"].iter().enumerate() {
        let user = format!("u{}", (k + m as i64) % 5);
        let (ts, m_ms) = (t, t + m as i64);
        let action = match k % 4 {
            0 => v1::UserAction::Join,
            1 => v1::UserAction::Unmute,
            2 => v1::UserAction::Mute,
            _ => v1::UserAction::Leave,
        };
        events.push(event(v1::event::Event::User(v1::UserEvent {
            meeting_id: meeting.to_string(),
            user_id: user.clone(),
            action: action as i32,
            timestamp_ms: m_ms,
            ..Default::default()
        })));
        let name = ["join", "unmute", "mute", "leave"][(k % 4) as usize];
        events_out.push_str(&format!(
            "{}\n",
            json!({"timestamp": m_ms, "type": "user", "tenant": "", "meeting_id": meeting, "user_id": user, "action": name})
        ));
        let length = (k % 90) as u32 + m as u32;
        events.push(event(v1::event::Event::Chat(v1::ChatEvent {
            meeting_id: meeting.to_string(),
            user_id: user.clone(),
            message_id: format!("{meeting}-{k}"),
            length,
            kind: v1::ChatKind::Message as i32,
            timestamp_ms: ts + 10,
            ..Default::default()
        })));
        events_out.push_str(&format!(
            "{}\n",
            json!({"timestamp": ts + 10, "type": "chat", "tenant": "", "meeting_id": meeting, "user_id": user,
                   "message_id": format!("{meeting}-{k}"), "length": length, "kind": "message"})
        ));
        let (latency, jitter, loss) =
            (60.0 + ((k * 37 + m as i64 * 101) % 300) as f64, (k % 40) as f64, 0.1 * (k % 70) as f64);
        events.push(event(v1::event::Event::Meeting(v1::MeetingEvent {
            meeting_id: meeting.to_string(),
            user_id: user.clone(),
            kind: v1::MeetingKind::Quality as i32,
            latency_ms: latency,
            jitter_ms: jitter,
            packet_loss_pct: loss,
            timestamp_ms: ts + 20,
            ..Default::default()
        })));
        events_out.push_str(&format!(
            "{}\n",
            json!({"timestamp": ts + 20, "type": "meeting", "tenant": "", "meeting_id": meeting, "user_id": user,
                   "kind": "quality", "latency_ms": latency, "jitter_ms": jitter, "packet_loss_pct": loss})
        ));
    }
}

/// Four hours of history up to `end`, written to the node and to `dir` as JSON lines.
async fn write_history(node: &Node, dir: &Path, start: i64, end: i64) {
    let mut client = IngestServiceClient::connect(node.grpc_url()).await.expect("grpc");
    let (mut samples_out, mut events_out) = (String::new(), String::new());
    let times: Vec<i64> = (0..).map(|k| start + k * STEP).take_while(|t| *t < end).collect();
    for (b, chunk) in times.chunks(60).enumerate() {
        let (mut series, mut events) = (Vec::new(), Vec::new());
        for t in chunk {
            step(*t, &mut series, &mut events, &mut samples_out, &mut events_out);
        }
        let (n_samples, n_events) = (series.len() as u64, events.len() as u64);
        let r = client
            .write(v1::WriteRequest { batch_id: format!("sql-{b}"), series, events })
            .await
            .expect("write")
            .into_inner();
        assert_eq!((r.samples_accepted, r.events_accepted), (n_samples, n_events), "{r:?}");
    }
    std::fs::write(dir.join("samples.jsonl"), samples_out).expect("samples");
    std::fs::write(dir.join("events.jsonl"), events_out).expect("events");
}

/// Tiering passes until the samples' and events' cold tiers reach `until`.
async fn tier_until(node: &Node, until: i64) {
    for _ in 0..50 {
        let r = reqwest::Client::new().post(node.url("/api/v1/admin/tiering/run")).send().await.expect("run");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        let m: Value = reqwest::get(node.url("/api/v1/admin/tiering"))
            .await
            .expect("manifest")
            .json()
            .await
            .expect("JSON");
        let reached = |k: &str| m["data"][k].as_i64().is_some_and(|t| t >= until);
        if reached("cold_until_ms") && reached("events_cold_until_ms") {
            return;
        }
    }
    panic!("the cold tier did not reach {until}");
}

fn psql(node: &Node, args: &[&str]) -> std::process::Output {
    Command::new("psql")
        .args(["-h", &node.pg.ip().to_string(), "-p", &node.pg.port().to_string(), "-U", "collabstream"])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs (scripts/install-deps.sh installs postgresql-client)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_over_both_tiers_agrees_with_duckdb_and_speaks_postgresql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&dir.path().join("node"), &["--config", &config(dir.path())]).expect("node");
    let end = now_ms() / STEP * STEP;
    let start = end - 4 * HOUR;
    write_history(&node, dir.path(), start, end).await;
    // Blocks end on multiples of ten minutes: the older half is cold from here on.
    let half = (start + 2 * HOUR) / 600_000 * 600_000;
    tier_until(&node, half).await;

    // The meetings pack's windows have closed up to the last minutes: meeting_metrics has rows.
    let (status, r) = node.sql("SELECT count(*) FROM meeting_metrics WHERE meeting_health IS NOT NULL").await;
    assert_eq!(status, 200, "{r}");
    assert!(r["rows"][0][0].as_i64().unwrap_or(0) > 100, "{r}");

    // Every statement against DuckDB over the same data.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/compare_duckdb.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!("http://{}", node.http))
        .arg(dir.path())
        .arg(start.to_string())
        .arg(end.to_string())
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{report}");

    // EXPLAIN names what each tier was asked for.
    // An hour of ten-minute blocks, all cold.
    let block = 600_000;
    let first = (start + HOUR / 2 + block - 1) / block * block;
    assert!(first + HOUR <= half);
    let (from, to) = (iso(first), iso(first + HOUR));
    let one_meeting = format!(
        "SELECT count(*) FROM events WHERE meeting_id = 'm2' AND timestamp >= TIMESTAMP '{from}' AND timestamp < TIMESTAMP '{to}'"
    );
    let (status, r) = node.sql(&format!("EXPLAIN {one_meeting}")).await;
    assert_eq!(status, 200, "{r}");
    let plan = r["rows"].to_string();
    assert!(plan.contains("DataSourceExec") && plan.contains("meeting_id@3 = m2"), "{plan}");
    assert!(!plan.contains("HotExec"), "a cold hour reads no hot events: {plan}");
    assert_eq!(plan.matches(".parquet").count(), 6, "one hour is six ten-minute blocks: {plan}");
    let (_, r) = node.sql("EXPLAIN SELECT count(*) FROM samples WHERE metric = 'sq_temperature'").await;
    let plan = r["rows"].to_string();
    assert!(
        plan.contains("HotExec: samples from") && plan.contains("metric in [\\\"sq_temperature\\\"]"),
        "{plan}"
    );
    // Over both tiers: the optimizer pushes the filter through the union into the files' scan
    // (once: the scan itself adds only its boundary), and above the hot scan.
    let scan = plan.split("DataSourceExec").nth(1).expect("a cold scan");
    let predicate = scan.split(" predicate=").nth(1).and_then(|p| p.split(", pruning").next()).unwrap_or("");
    assert_eq!(predicate.matches("sq_temperature").count(), 1, "{plan}");
    assert!(plan.contains("FilterExec: metric@0 = sq_temperature"), "{plan}");
    // Run: the scan hands up that meeting's events only.
    let (_, counted) = node.sql(&one_meeting).await;
    let expected = counted["rows"][0][0].as_i64().expect("count");
    assert_eq!(expected, 3 * 120, "an hour of one meeting: three events a step: {counted}");
    let (_, r) = node.sql(&format!("EXPLAIN ANALYZE {one_meeting}")).await;
    let analyzed = r["rows"].to_string();
    let scan = analyzed.split("DataSourceExec").nth(1).expect("a scan");
    assert!(scan.contains(&format!("output_rows={expected}")), "{analyzed}");

    // psql: the origin project's query, as written in its README.
    let origin = "SELECT meeting_id, AVG(avg_latency_ms) as avg_latency, AVG(engagement_score) as avg_engagement, \
                  meeting_health FROM meeting_metrics WHERE timestamp >= CAST(now() - INTERVAL '1' HOUR AS BIGINT) \
                  GROUP BY meeting_id, meeting_health ORDER BY avg_engagement DESC;";
    let out = psql(&node, &["-c", origin]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| r.starts_with('m')), "{text}");
    let (_, last_hour) = node.sql(
        &format!(
            "SELECT count(*) FROM (SELECT DISTINCT meeting_id, meeting_health FROM meeting_metrics WHERE window_end >= {})",
            now_ms() - HOUR
        ),
    )
    .await;
    assert_eq!(rows.len() as i64, last_hour["rows"][0][0].as_i64().expect("count"), "{text}");

    // A bad statement, then a good one, on one connection.
    let mut file = tempfile::NamedTempFile::new().expect("file");
    writeln!(
        file,
        "SELECT nothing FROM nowhere;\nSELECT count(*) FROM samples WHERE metric = 'sq_temperature';"
    )
    .expect("write");
    let out = psql(&node, &["-f", file.path().to_str().expect("utf-8")]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("ERROR") && stderr.contains("nowhere"), "{stderr}");
    let steps = (end - start) / STEP;
    assert_eq!(stdout.trim(), (steps * 10).to_string(), "{stdout}{stderr}");

    // HTTP: a bad statement is a 400 with DataFusion's reason; a write is refused.
    let (status, r) = node.sql("SELEC 1").await;
    assert_eq!((status, r["errorType"].as_str()), (400, Some("bad_data")), "{r}");
    let (status, r) = node.sql("INSERT INTO samples VALUES ('m', NULL, 1, now(), 1.0)").await;
    assert_eq!(status, 400, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("not supported"), "{r}");
    let (status, r) = node.sql("DROP TABLE samples").await;
    assert_eq!(status, 400, "{r}");
    // External tables read only where the configuration allows.
    let (status, r) = node.sql("CREATE EXTERNAL TABLE etc STORED AS CSV LOCATION '/etc/hostname'").await;
    assert_eq!(status, 400, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("external_paths"), "{r}");

    // The external tables the comparison made are in the catalog, through a SIGKILL and a
    // replay of the log (or the checkpoint that holds them).
    let cohorts = "SELECT cohort, count(*) FROM historical_users GROUP BY 1 ORDER BY 1";
    let (status, before) = node.sql(cohorts).await;
    assert_eq!(status, 200, "{before}");
    let mut node = node;
    node.kill9();
    let data = node.data_dir.clone();
    drop(node);
    let node = Node::start(&data, &["--config", &config(dir.path())]).expect("restart");
    let (status, after) = node.sql(cohorts).await;
    assert_eq!((status, &after["rows"]), (200, &before["rows"]), "{after}");
    // The shell: `\d`, the origin query, and a failing statement for scripts.
    let shell = |args: &[&str]| {
        Command::new(collabstream_tests::binary())
            .args(["sql", "--endpoint", &format!("http://{}", node.http)])
            .args(args)
            .output()
            .expect("collabstream sql runs")
    };
    let out = shell(&["-c", "\\d", "-c", origin]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for table in ["samples", "series", "events", "meeting_metrics", "meeting_health", "historical_users"] {
        assert!(text.contains(&format!(" {table} ")), "{table} in \\d: {text}");
    }
    assert!(text.contains("avg_engagement") && text.contains(" rows; "), "{text}");
    let out = shell(&["-c", "SELEC 1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ERROR"), "{out:?}");
    let (status, r) = node.sql("DROP TABLE historical_users").await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = node.sql(cohorts).await;
    assert_eq!(status, 400, "{r}");
}

fn iso(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("time");
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
