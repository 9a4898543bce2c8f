//! The web UI (`src/web_ui.rs`) embeds its chart library from `ui/node_modules`, which `npm ci`
//! fills; say so here rather than with `include_bytes!`'s bare "file not found".
//!
//! It also links `collabstream` as a position-dependent executable on Linux. A PIE binary
//! this size carries 6.8 MB of relative relocations that the loader reads in full at every
//! start, and applying them copies the 4.7 MB of `.data.rel.ro` into anonymous memory: 11 of
//! the idle node's 40 MiB, measured with `/proc/<pid>/pagemap` (docs/benchmarks.md, session
//! 23). Without PIE the loader has nothing to relocate and those pages stay file-backed and
//! untouched until used. Prometheus and VictoriaMetrics ship non-PIE (Go's default) too.

use std::path::Path;

const VENDOR: [&str; 2] = ["uplot/dist/uPlot.iife.min.js", "uplot/dist/uPlot.min.css"];

fn main() {
    // `-bins`: the package's binary targets only, not its tests or library. Other systems'
    // linkers spell it differently, or have nothing to turn off.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/node_modules");
    for file in VENDOR {
        let path = modules.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.exists() {
            panic!(
                "the web UI's chart library is missing: {} does not exist. Install it with \
                 `npm ci --prefix ui` (scripts/install-deps.sh does; it needs Node.js and npm)",
                path.display()
            );
        }
    }
}
