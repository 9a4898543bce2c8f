//! Running `collabstream produce` from a test, and reading what it says it sent.

use std::process::{Command, Output};

use crate::binary;

/// Runs `collabstream produce ARGS` with `env` (and without the caller's
/// `KAFKA_BOOTSTRAP_SERVERS`, which would change what a bare `kafka` target means).
pub async fn produce(args: &[&str], env: &[(&str, String)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .arg("produce")
            .args(args)
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .envs(env)
            .output()
    })
    .await
    .expect("joined")
    .expect("collabstream produce runs")
}

/// The count from produce's `sent N` line; panics with its output when it failed.
pub fn sent(out: &Output) -> u64 {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "produce failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.trim().strip_prefix("sent ").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{stdout}"))
}
