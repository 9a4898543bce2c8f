//! `/api/v1/query`, `/api/v1/query_range` and `/api/v1/format_query`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{Api, json};
use crate::error::Error;
use crate::params::{Params, parse_duration, parse_time};
use crate::promql::{self, Engine, QueryResult};
use crate::query_metrics::Kind;

/// Prometheus refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn query_text(p: &Params) -> Result<String, Error> {
    match p.get("query") {
        Some(q) if !q.trim().is_empty() => Ok(q.to_string()),
        _ => Err(Error::BadParam { name: "query", reason: "the query is empty; send query=<PromQL>".into() }),
    }
}

/// The effective timeout: the request's `timeout`, never more than the configured one.
fn timeout(api: &Api, p: &Params) -> Result<Duration, Error> {
    Ok(match p.get("timeout") {
        Some(t) if !t.is_empty() => {
            let ms = parse_duration("timeout", t)?;
            if ms <= 0 {
                return Err(Error::BadParam {
                    name: "timeout",
                    reason: "the timeout must be positive".into(),
                });
            }
            api.slots.timeout().min(Duration::from_millis(ms as u64))
        }
        _ => api.slots.timeout(),
    })
}

/// Waits for a query slot (within the timeout), then evaluates on a blocking thread with what
/// is left of the timeout.
async fn run(
    api: &Api,
    kind: Kind,
    timeout: Duration,
    f: impl FnOnce(Engine) -> Result<QueryResult, promql::EvalError> + Send + 'static,
) -> Result<QueryResult, Error> {
    let slot = api.slots.take("the query queue", timeout).await?;
    let engine = api.engine.with_timeout(slot.left());
    let metrics = api.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let started = std::time::Instant::now();
        let result = f(engine);
        metrics.record(kind, started.elapsed().as_secs_f64(), result.as_ref().ok().map(|r| r.samples));
        result
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?
    .map_err(Error::from)
}

fn respond(result: &QueryResult, extra_warnings: &[String]) -> Response {
    let body = json::query_result(&result.value, &result.annotations, extra_warnings);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) async fn instant(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &body);
    let query = query_text(&p)?;
    api.consistency(&p).await?;
    let t = match p.get("time") {
        Some(t) if !t.is_empty() => parse_time("time", t)?,
        _ => now_ms(),
    };
    let timeout = timeout(&api, &p)?;
    let result = run(&api, Kind::Instant, timeout, move |engine| engine.instant(&query, t)).await?;
    Ok(respond(&result, &[]))
}

pub(crate) async fn range(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &body);
    let query = query_text(&p)?;
    let required = |name: &'static str| {
        p.get(name).filter(|v| !v.is_empty()).ok_or(Error::BadParam { name, reason: "missing".into() })
    };
    let start = parse_time("start", required("start")?)?;
    let end = parse_time("end", required("end")?)?;
    if end < start {
        return Err(Error::BadData("end timestamp must not be before start time".into()));
    }
    let step = parse_duration("step", required("step")?)?;
    if step <= 0 {
        return Err(Error::BadData(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if (end - start) / step >= MAX_POINTS {
        return Err(Error::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution \
             (?step=XX)"
                .into(),
        ));
    }
    let timeout = timeout(&api, &p)?;
    api.consistency(&p).await?;
    let result =
        run(&api, Kind::Range, timeout, move |engine| engine.range(&query, start, end, step)).await?;
    Ok(respond(&result, &[]))
}

pub(crate) async fn format(RawQuery(q): RawQuery, body: Bytes) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &body);
    let query = query_text(&p)?;
    let expr = promql::parse(&query)?;
    Ok(axum::Json(serde_json::json!({ "status": "success", "data": expr.prettify() })).into_response())
}
