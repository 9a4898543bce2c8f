//! The web UI every node serves at `/ui/` (like VictoriaMetrics' vmui): a PromQL explorer, a
//! live meetings view and a cluster page. Its files (`ui/` and the uPlot package npm installs
//! beside them) are embedded at build time, so a node needs no file beside its binary. The
//! pages use only the public HTTP API.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// One embedded file: its path under `/ui/`, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset { path: $path, content_type: $type, body: include_bytes!(concat!("../../ui/", $file)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "index.html", "text/html; charset=utf-8"),
    asset!("style.css", "style.css", CSS),
    asset!("app.js", "app.js", JS),
    asset!("api.js", "api.js", JS),
    asset!("chart.js", "chart.js", JS),
    asset!("query.js", "query.js", JS),
    asset!("meetings.js", "meetings.js", JS),
    asset!("cluster.js", "cluster.js", JS),
    asset!("vendor/uPlot.iife.min.js", "node_modules/uplot/dist/uPlot.iife.min.js", JS),
    asset!("vendor/uPlot.min.css", "node_modules/uplot/dist/uPlot.min.css", CSS),
];

pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { serve("index.html") }))
        .route("/ui/{*file}", get(|Path(file): Path<String>| async move { serve(&file) }))
}

fn serve(file: &str) -> Response {
    match ASSETS.iter().find(|a| a.path == file) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                // Assets change with the binary, and a node is upgraded in place.
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            a.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no such file in the web UI: /ui/{file}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_a_page_imports_is_embedded() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/")) {
            let text = std::str::from_utf8(a.body).expect("UTF-8");
            for import in text.lines().filter_map(|l| l.split(" from './").nth(1)) {
                let name = import.split('\'').next().expect("a quoted path");
                assert!(
                    ASSETS.iter().any(|b| b.path == name),
                    "{} imports {name}, which is not embedded",
                    a.path
                );
            }
        }
        let index = std::str::from_utf8(ASSETS[0].body).expect("UTF-8");
        for src in index.split(['"']).filter(|s| s.ends_with(".js") || s.ends_with(".css")) {
            assert!(ASSETS.iter().any(|b| b.path == src), "index.html loads {src}, which is not embedded");
        }
    }
}
