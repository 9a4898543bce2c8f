//! Settings come from the TOML file, then `COLLABSTREAM_*` environment variables, then flags.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use collabstream_tests::binary;

/// Starts `collabstream server` with `env` and `args`, returns the `data_dir=` it reports
/// serving with, and kills it.
fn served_data_dir(env: &[(&str, &str)], args: &[&str]) -> String {
    let mut child = Command::new(binary())
        .arg("server")
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("collabstream starts");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(pos) = line.find("data_dir=") {
                let _ = tx.send(line[pos + 9..].split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let got = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    got.expect("the node reported what it serves")
}

#[test]
fn toml_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8").to_string();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhttp_listen = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n[sql]\npg_listen = \"127.0.0.1:0\"\n",
            path("from-toml")
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf-8");

    assert_eq!(served_data_dir(&[], &["--config", config]), path("from-toml"));
    let env_dir = path("from-env");
    let env = [("COLLABSTREAM_DATA_DIR", env_dir.as_str())];
    assert_eq!(served_data_dir(&env, &["--config", config]), env_dir);
    let flag_dir = path("from-flag");
    assert_eq!(served_data_dir(&env, &["--config", config, "--data-dir", &flag_dir]), flag_dir);
    // The config file itself may come from the environment too.
    let env = [("COLLABSTREAM_CONFIG", config)];
    assert_eq!(served_data_dir(&env, &[]), path("from-toml"));
}
