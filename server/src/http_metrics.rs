//! [`HttpMetrics`]: every HTTP request counted by route and status, and timed by route, for
//! `/metrics` (`collabstream_http_requests_total`, `collabstream_http_request_duration_seconds`).
//!
//! Routes are the router's patterns (`/api/v1/label/{name}/values`), not the paths asked for,
//! so that a client cannot make the label set grow; a path no route matches is not counted (the
//! middleware runs on routes only). The time is until the response's head is ready: a streamed
//! body (an export) goes on after it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use collabstream_common::histogram::{self, Histogram};

#[derive(Debug, Default)]
pub(crate) struct HttpMetrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    routes: BTreeMap<String, Route>,
}

/// One route's figures.
#[derive(Debug)]
struct Route {
    /// Status → requests.
    codes: BTreeMap<u16, u64>,
    durations: Histogram,
}

impl HttpMetrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // A route's name is allocated the first time it is seen only.
        if !m.routes.contains_key(route) {
            let fresh = Route { codes: BTreeMap::new(), durations: Histogram::new(histogram::SECONDS) };
            m.routes.insert(route.to_string(), fresh);
        }
        let r = m.routes.get_mut(route).expect("inserted above");
        *r.codes.entry(status).or_default() += 1;
        r.durations.observe(seconds);
    }

    /// The two families, in Prometheus's text format.
    pub(crate) fn render(&self, out: &mut String) {
        let m = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let name = "collabstream_http_requests_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP requests answered, by route and status.\n# TYPE {name} counter"
        );
        for (route, r) in &m.routes {
            for (code, n) in &r.codes {
                let _ = writeln!(out, "{name}{{handler=\"{route}\",code=\"{code}\"}} {n}");
            }
        }
        let name = "collabstream_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer an HTTP request (until its head; a streamed body goes on), by route.\n# TYPE {name} histogram"
        );
        for (route, r) in &m.routes {
            r.durations.render(out, name, &format!("handler=\"{route}\""));
        }
    }
}

/// The middleware: times the request and counts it under its route's pattern.
pub(crate) async fn track(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("", MatchedPath::as_str);
    metrics.record(route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_and_status_and_timed_in_buckets() {
        let m = HttpMetrics::default();
        m.record("/api/v1/query", 200, 0.003);
        m.record("/api/v1/query", 200, 0.2);
        m.record("/api/v1/query", 400, 0.001);
        m.record("/api/v1/series", 404, 0.0001);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "collabstream_http_requests_total{handler=\"/api/v1/query\",code=\"200\"} 2",
            "collabstream_http_requests_total{handler=\"/api/v1/query\",code=\"400\"} 1",
            "collabstream_http_requests_total{handler=\"/api/v1/series\",code=\"404\"} 1",
            "collabstream_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.005\"} 2",
            "collabstream_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"0.25\"} 3",
            "collabstream_http_request_duration_seconds_bucket{handler=\"/api/v1/query\",le=\"+Inf\"} 3",
            "collabstream_http_request_duration_seconds_count{handler=\"/api/v1/query\"} 3",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line} in\n{out}");
        }
    }
}
