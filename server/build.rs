//! The web UI (`src/web_ui.rs`) embeds its chart library from `ui/node_modules`, which `npm ci`
//! fills; say so here rather than with `include_bytes!`'s bare "file not found".

use std::path::Path;

const VENDOR: [&str; 2] = ["uplot/dist/uPlot.iife.min.js", "uplot/dist/uPlot.min.css"];

fn main() {
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
