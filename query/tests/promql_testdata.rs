//! Prometheus's own PromQL test files (`../shared/promql-testdata`), read by our parser of
//! their format. The runner that evaluates them against our engine builds on this.

mod promqltest;

use std::path::PathBuf;

use promqltest::parse::{Command, EvalKind, parse};
use promqltest::run::run_file;
use promqltest::values::Value;

fn testdata() -> PathBuf {
    // Read when the test runs: checkouts share one target directory, and a binary another
    // checkout built would otherwise look in that checkout.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    let dir = manifest.join("../../shared/promql-testdata");
    assert!(
        dir.is_dir(),
        "{} not found: the Prometheus test files live beside the repository",
        dir.display()
    );
    dir
}

/// The files whose every float case must pass (README of the test data).
const CORE: [&str; 9] = [
    "aggregators",
    "functions",
    "histograms",
    "limit",
    "literals",
    "name_label_dropping",
    "operators",
    "range_queries",
    "selectors",
];

#[test]
fn every_core_test_file_parses() {
    for name in CORE {
        let path = testdata().join(format!("{name}.test"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let commands = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let evals = commands.iter().filter(|c| matches!(c, Command::Eval(_))).count();
        let expected = text.lines().filter(|l| l.starts_with("eval")).count();
        assert_eq!(evals, expected, "{}: every eval line becomes a command", path.display());
        assert!(evals > 0, "{name} has evals");
    }
}

#[test]
fn a_known_case_parses_to_what_it_says() {
    let text = std::fs::read_to_string(testdata().join("functions.test")).expect("functions.test");
    let commands = parse(&text).expect("parses");
    let Command::Load(load) = &commands[0] else { panic!("first command is a load") };
    assert_eq!(load.step_ms, 300_000);
    assert_eq!(load.series[0].metric, r#"http_requests{path="/foo"}"#);
    assert_eq!(
        load.series[0].values[..4],
        [Value::Float(1.0), Value::Float(2.0), Value::Float(3.0), Value::Float(0.0)]
    );
    let Command::Eval(first) = &commands[1] else { panic!("then an eval") };
    assert_eq!(first.kind, EvalKind::Instant { at_ms: 3_000_000 });
    assert_eq!(first.expr, "resets(http_requests[5m])");
    assert!(first.results.is_empty());
    let Command::Eval(second) = &commands[2] else { panic!("then an eval") };
    assert_eq!(second.results.len(), 3);
    assert_eq!(second.results[0].metric, r#"{path="/foo"}"#);
    let range = commands
        .iter()
        .find_map(|c| match c {
            Command::Eval(e) if matches!(e.kind, EvalKind::Range { .. }) => Some(e),
            _ => None,
        })
        .expect("a range eval");
    assert_eq!(range.kind, EvalKind::Range { start_ms: 0, end_ms: 1_200_000, step_ms: 300_000 });
}

/// promql-parser reads every expression of the core files that is not expected to fail (some
/// expected failures are parse errors by design).
#[test]
fn promql_parser_reads_every_core_expression() {
    let mut unexpected = Vec::new();
    let mut parsed = 0;
    for name in CORE {
        let text = std::fs::read_to_string(testdata().join(format!("{name}.test"))).expect("readable");
        for c in parse(&text).expect("parses") {
            let Command::Eval(e) = c else { continue };
            match promql_parser::parser::parse(&e.expr) {
                Ok(_) => parsed += 1,
                Err(err) if e.fail.is_none() => {
                    unexpected.push(format!("{name}.test:{}: {}: {err}", e.line, e.expr))
                }
                Err(_) => {}
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "{} expressions did not parse:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(parsed > 1_000, "parsed only {parsed}");
}

/// Every float case of the core files passes against our engine. Cases that need native
/// histograms (loaded or expected) are counted separately; `docs/promql-compatibility.md`
/// lists the counts.
#[test]
fn core_files_pass() {
    let mut failures = Vec::new();
    let mut table =
        String::from("| file | passed | failed | skipped (native histograms) |\n|---|---:|---:|---:|\n");
    for name in CORE {
        let text = std::fs::read_to_string(testdata().join(format!("{name}.test"))).expect("readable");
        let report = run_file(name, &parse(&text).expect("parses"));
        table.push_str(&format!(
            "| {name}.test | {} | {} | {} |\n",
            report.passed, report.failed, report.skipped_histogram
        ));
        failures.extend(report.failures);
    }
    println!("{table}");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The runner is not vacuous: a wrong value, a missing series and a missing expected error
/// each fail, and a native-histogram case is counted as skipped.
#[test]
fn runner_reports_wrong_expectations() {
    let text = "load 1m\n  up{job=\"a\"} 1 2 3\n  h {{schema:0 sum:1 count:1}}\n\
                eval instant at 2m up\n  up{job=\"a\"} 4\n\
                eval instant at 2m up\n  up{job=\"b\"} 3\n\
                eval_fail instant at 2m up\n\
                eval instant at 2m up\n  up{job=\"a\"} 3\n\
                eval instant at 2m h\n";
    let report = run_file("synthetic", &parse(text).expect("parses"));
    assert_eq!((report.passed, report.failed, report.skipped_histogram), (1, 3, 1), "{:?}", report.failures);
}

/// The experimental and native-histogram files: what passes today may not regress. The
/// floors are the counts in `docs/promql-compatibility.md`; raise them as support grows.
#[test]
fn later_files_do_not_regress() {
    let floors: [(&str, usize); 7] = [
        ("duration_expression", 8),
        ("extended_vectors", 30),
        ("fill-modifier", 6),
        ("info", 0),
        ("native_histograms", 3),
        ("start_timestamps", 0),
        ("type_and_unit", 43),
    ];
    let mut table =
        String::from("| file | passed | failed | skipped (native histograms) |\n|---|---:|---:|---:|\n");
    let mut regressed = Vec::new();
    for (name, floor) in floors {
        let text = std::fs::read_to_string(testdata().join(format!("{name}.test"))).expect("readable");
        let report = match parse(&text) {
            Ok(commands) => run_file(name, &commands),
            Err(e) => {
                table.push_str(&format!("| {name}.test | file not parsed: {e} | | |\n"));
                continue;
            }
        };
        table.push_str(&format!(
            "| {name}.test | {} | {} | {} |\n",
            report.passed, report.failed, report.skipped_histogram
        ));
        if report.passed < floor {
            regressed.push(format!("{name}: {} passed, floor {floor}", report.passed));
        }
    }
    println!("{table}");
    assert!(regressed.is_empty(), "regressed: {regressed:?}");
}
