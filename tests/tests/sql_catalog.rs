//! External tables as a node keeps them: defined through `psql` with their options intact,
//! through a PostgreSQL driver's extended protocol, and judged on every build by the node's
//! own `[sql] external_paths`, even when committed without the SQL front door (the Admin
//! service). A table that cannot be read fails the statements naming it, not the others, and
//! a rule and an external table never share a name; listing columns leaves it out.

use std::path::Path;
use std::process::Command;

use collabstream_proto::v1::{self, admin_service_client::AdminServiceClient};
use collabstream_tests::Node;
use serde_json::{Value, json};

fn psql(node: &Node, command: &str) -> std::process::Output {
    Command::new("psql")
        .args(["-h", &node.pg.ip().to_string(), "-p", &node.pg.port().to_string(), "-U", "collabstream"])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", command])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql runs (scripts/install-deps.sh installs postgresql-client)")
}

fn config(dir: &Path, allowed: &Path) -> String {
    let path = dir.join("node.toml");
    std::fs::write(&path, format!("[sql]\nexternal_paths = [{:?}]\n", allowed.to_string_lossy()))
        .expect("config");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_tables_keep_their_definition_and_fail_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let allowed = dir.path().join("allowed");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&allowed).expect("dir");
    std::fs::create_dir_all(&outside).expect("dir");
    std::fs::write(allowed.join("semi.csv"), "a;b\n1;one\n2;\"two;2\"\n3;three\n").expect("csv");
    std::fs::write(allowed.join("gone.csv"), "x\n1\n").expect("csv");
    std::fs::write(outside.join("secret.csv"), "s\nsecret\n").expect("csv");
    std::os::unix::fs::symlink(&outside, allowed.join("link")).expect("link");
    let node =
        Node::start(&dir.path().join("data"), &["--config", &config(dir.path(), &allowed)]).expect("start");
    let at = allowed.to_string_lossy();

    // psql sends one simple query holding two statements: the definition runs from its own
    // text, OPTIONS included (without the delimiter the table would have one column), and the
    // ';' in quotes cuts no statement.
    let create = format!(
        "CREATE EXTERNAL TABLE semi (a BIGINT, b VARCHAR) STORED AS CSV LOCATION '{at}/semi.csv' \
         OPTIONS ('format.delimiter' ';', 'format.has_header' 'true')"
    );
    let out = psql(&node, &format!("{create}; SELECT b FROM semi WHERE a = 2"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.lines().last(), Some("two;2"), "{stdout}");

    // The extended protocol: parameters bound, definitions prepared.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/extended_protocol.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&node.pg.ip().to_string(), &node.pg.port().to_string(), &at.to_string()])
        .output()
        .expect("python3 runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let got: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(got["by_a"], json!([["two;2"]]), "{got}");
    assert_eq!(got["by_b"], json!([[2]]), "{got}");
    assert_eq!(got["above"], json!([[2]]), "{got}");
    assert_eq!(got["again"], json!([[3]]), "{got}");
    assert_eq!(got["dropped"], json!("42P01"), "{got}");
    assert_eq!(got["after_error"], json!([[3]]), "{got}");

    // A link out of the allowed directory is refused at the front door.
    let (status, r) =
        node.sql(&format!("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{at}/link/secret.csv'")).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("external_paths"), "{r}");
    let (status, r) =
        node.sql(&format!("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{at}/*/secret.csv'")).await;
    assert_eq!(status, 400, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("through a link"), "{r}");
    // And on every build: a definition committed through the Admin service, past the SQL
    // front door, reads nothing outside either; the statements not naming it still run.
    let mut admin = AdminServiceClient::connect(node.grpc_url()).await.expect("admin");
    let sneaky = |name: &str, location: String| v1::SqlTableChange {
        change: Some(v1::sql_table_change::Change::Create(v1::SqlTable {
            name: name.into(),
            statement: format!("CREATE EXTERNAL TABLE {name} STORED AS CSV LOCATION '{location}'"),
        })),
    };
    let through_link = allowed.join("link/secret.csv").to_string_lossy().into_owned();
    assert!(
        admin.change_sql_table(sneaky("leak", through_link)).await.expect("committed").into_inner().changed
    );
    let (status, r) = node.sql("SELECT * FROM leak").await;
    assert_eq!(status, 422, "{r}");
    assert!(r["error"].as_str().unwrap_or("").contains("external_paths"), "{r}");
    assert!(!r.to_string().contains("secret\""), "{r}");
    // A statement that is not a table definition is never run from the catalog.
    let not_a_table = v1::SqlTableChange {
        change: Some(v1::sql_table_change::Change::Create(v1::SqlTable {
            name: "copy".into(),
            statement: format!("COPY (SELECT 1) TO '{at}/written.csv'"),
        })),
    };
    admin.change_sql_table(not_a_table).await.expect("committed");
    let (status, r) = node.sql("SELECT * FROM copy").await;
    assert_eq!(status, 422, "{r}");
    assert!(!allowed.join("written.csv").exists(), "the catalog's statement ran");

    // A table whose files are gone fails its own statements only.
    let (status, r) =
        node.sql(&format!("CREATE EXTERNAL TABLE gone STORED AS CSV LOCATION '{at}/gone.csv'")).await;
    assert_eq!(status, 200, "{r}");
    std::fs::remove_file(allowed.join("gone.csv")).expect("rm");
    // Twice: the second answer is the remembered failure.
    for _ in 0..2 {
        let (status, r) = node.sql("SELECT count(*) FROM gone").await;
        assert_eq!(status, 422, "{r}");
        assert!(r["error"].as_str().unwrap_or("").contains("gone cannot be read"), "{r}");
    }
    let (status, r) = node.sql("SELECT count(*) FROM semi").await;
    assert_eq!((status, &r["rows"]), (200, &json!([[3]])), "{r}");
    // Listing columns (as Grafana's query builder does) leaves the unreadable tables out.
    let (status, r) = node
        .sql("SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1")
        .await;
    assert_eq!(status, 200, "{r}");
    let listed = r["rows"].to_string();
    for (name, there) in [("samples", true), ("semi", true), ("gone", false), ("leak", false)] {
        assert_eq!(listed.contains(&format!("\"{name}\"")), there, "{name}: {r}");
    }
    let (status, r) = node.sql("SHOW TABLES").await;
    assert_eq!(status, 200, "{r}");
    for name in ["samples", "semi", "gone", "leak"] {
        assert!(r["rows"].to_string().contains(&format!("\"{name}\"")), "{name} listed: {r}");
    }
    // It can be replaced (its old files are not read for that), then dropped.
    let (status, r) = node.sql(
        &format!("CREATE OR REPLACE EXTERNAL TABLE gone STORED AS CSV LOCATION '{at}/semi.csv' OPTIONS ('format.delimiter' ';')"),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = node.sql("SELECT count(*) FROM gone").await;
    assert_eq!((status, &r["rows"]), (200, &json!([[3]])), "{r}");
    let (status, r) = node.sql("DROP TABLE gone").await;
    assert_eq!(status, 200, "{r}");

    // One namespace: a rule may not take an external table's name, nor a table a rule's.
    let rule = json!({"name": "semi", "events": "chat", "value": "length", "group_by": ["meeting_id"],
                      "window": "10s", "outputs": ["count"]});
    let r =
        reqwest::Client::new().post(node.url("/api/v1/aggregations")).json(&rule).send().await.expect("rule");
    let (status, body): (u16, Value) = (r.status().as_u16(), r.json().await.expect("JSON"));
    assert!((400..500).contains(&status), "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("DROP TABLE semi"), "{body}");
    let (status, r) = node
        .sql(&format!("CREATE EXTERNAL TABLE meeting_health STORED AS CSV LOCATION '{at}/semi.csv'"))
        .await;
    assert_eq!(status, 400, "{r}");
    let (status, r) = node.sql("SELECT count(*) FROM semi").await;
    assert_eq!((status, &r["rows"]), (200, &json!([[3]])), "{r}");
}
