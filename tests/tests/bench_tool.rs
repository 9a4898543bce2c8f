//! `collabstream bench` end to end on a small workload: all three systems start, hold every
//! sample, answer every query, and the report has the ratios and replaces its section of a
//! Markdown file.

use std::process::Command;

use collabstream_tests::binary;

#[test]
fn the_benchmark_runs_against_all_three_systems_and_reports_ratios() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc = dir.path().join("benchmarks.md");
    std::fs::write(&doc, "# Benchmarks\n\nkept\n").expect("doc");
    let out = Command::new(binary())
        .args(["bench", "--hosts", "2", "--scrapes", "30", "--senders", "2", "--query-runs", "1"])
        .arg("--dir")
        .arg(dir.path().join("data"))
        .arg("--update-doc")
        .arg(&doc)
        .output()
        .expect("collabstream bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}\n{stdout}");
    for system in ["Collaborate-Stream", "VictoriaMetrics", "Prometheus"] {
        assert!(stderr.contains(&format!("{system}: ingested 30000 samples")), "{system}:\n{stderr}");
    }
    let ingest = stdout.lines().find(|l| l.starts_with("| ingestion, samples/s |")).expect("ingestion row");
    let cells: Vec<&str> = ingest.split('|').map(str::trim).collect();
    // measure, ours, VM, Prometheus, ours/VM, ours/Prom, target
    for cell in &cells[2..5] {
        assert!(cell.parse::<f64>().is_ok_and(|v| v > 0.0), "{ingest}");
    }
    assert!(cells[5].ends_with('×') && cells[6].ends_with('×'), "{ingest}");
    assert!(stdout.contains("| query latency, median of per-query ratios |"), "{stdout}");
    let text = std::fs::read_to_string(&doc).expect("doc");
    assert!(text.starts_with("# Benchmarks\n\nkept\n") && text.contains(ingest), "{text}");
}
