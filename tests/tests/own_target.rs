//! `scripts/own-target.sh`: when the shared target directory was last built from another
//! checkout, this checkout's files are made newer than its artifacts (so cargo rebuilds our
//! crates instead of taking the other checkout's), once; the same checkout again touches nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

fn run(checkout: &Path, target: &Path) -> String {
    let out = Command::new("bash")
        .arg(checkout.join("scripts/own-target.sh"))
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_target_directory_built_from_another_checkout_makes_this_one_rebuild() {
    let root = tempfile::tempdir().expect("tempdir");
    let checkout = root.path().join("checkout");
    std::fs::create_dir_all(checkout.join("scripts")).expect("mkdir");
    std::fs::create_dir_all(checkout.join("src")).expect("mkdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/own-target.sh");
    std::fs::copy(script, checkout.join("scripts/own-target.sh")).expect("copy");
    let source = checkout.join("src/lib.rs");
    std::fs::write(&source, "").expect("write");
    let target = root.path().join("target");
    let old = SystemTime::now() - Duration::from_secs(3600);
    let age = || {
        std::fs::File::options().write(true).open(&source).expect("open").set_modified(old).expect("mtime");
    };
    let touched = || std::fs::metadata(&source).expect("stat").modified().expect("mtime") > old;

    age();
    run(&checkout, &target);
    assert!(touched(), "a directory no checkout has claimed: nothing in it can be trusted as ours");
    age();
    run(&checkout, &target);
    assert!(!touched(), "the same checkout again: its artifacts are its own");
    std::fs::write(target.join(".collabstream-checkout"), "/another/checkout\n").expect("write");
    age();
    let said = run(&checkout, &target);
    assert!(touched(), "another checkout built last");
    assert!(said.contains("/another/checkout"), "{said}");
}
