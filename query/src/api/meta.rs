//! Series metadata endpoints (`labels`, `label/<name>/values`, `series`), and the ones that
//! exist so Prometheus clients find what they probe for (`metadata`, `query_exemplars`,
//! `status/buildinfo`, `rules`, `alerts`).

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use collabstream_common::{Labels, TimeRange};
use collabstream_store::Matcher;
use serde_json::{Value, json};

use super::Api;
use crate::error::Error;
use crate::params::{Params, parse_time};

fn success(data: Value, warnings: Vec<String>) -> Response {
    let mut body = json!({ "status": "success", "data": data });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// The time range of `start` and `end` (each optional: the beginning and the end of time),
/// which must parse and be ordered. Listings hold the series with samples in it.
fn time_range(p: &Params) -> Result<TimeRange, Error> {
    let start = p.get("start").filter(|s| !s.is_empty()).map(|s| parse_time("start", s)).transpose()?;
    let end = p.get("end").filter(|s| !s.is_empty()).map(|s| parse_time("end", s)).transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(Error::BadData("end timestamp must not be before start time".into()));
    }
    Ok(TimeRange::new(start.unwrap_or(TimeRange::ALL.start), end.unwrap_or(TimeRange::ALL.end)))
}

/// Truncates to `limit` (0: none), with Prometheus's warning when something was cut.
fn limited<T>(mut items: Vec<T>, limit: usize, warnings: &mut Vec<String>) -> Vec<T> {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    items
}

/// Runs a blocking index read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Task(e.to_string()))?
}

/// The union over every `match[]` (or everything, when there is none) of `f`.
fn union<T: Ord>(
    selectors: &[Vec<Matcher>],
    f: impl Fn(&[Matcher]) -> Result<Vec<T>, Error>,
) -> Result<Vec<T>, Error> {
    if selectors.is_empty() {
        return f(&[]);
    }
    let mut all = BTreeSet::new();
    for m in selectors {
        all.extend(f(m)?);
    }
    Ok(all.into_iter().collect())
}

pub(crate) async fn labels(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &body);
    let range = time_range(&p)?;
    api.consistency(&p).await?;
    let (selectors, limit) = (p.selectors()?, p.limit()?);
    let source = api.source.clone();
    let names = blocking(move || union(&selectors, |m| Ok(source.label_names(m, range)?))).await?;
    let mut warnings = Vec::new();
    let names = limited(names, limit, &mut warnings);
    Ok(success(json!(names), warnings))
}

pub(crate) async fn label_values(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &[]);
    let range = time_range(&p)?;
    api.consistency(&p).await?;
    // Prometheus 3 accepts `U__`-escaped names for label names that are not identifiers.
    let name = unescape_label_name(&name);
    let (selectors, limit) = (p.selectors()?, p.limit()?);
    let source = api.source.clone();
    let values = blocking(move || union(&selectors, |m| Ok(source.label_values(&name, m, range)?))).await?;
    let mut warnings = Vec::new();
    let values = limited(values, limit, &mut warnings);
    Ok(success(json!(values), warnings))
}

pub(crate) async fn series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Result<Response, Error> {
    let p = Params::new(q.as_deref(), &body);
    let range = time_range(&p)?;
    api.consistency(&p).await?;
    let (selectors, limit) = (p.selectors()?, p.limit()?);
    if selectors.is_empty() {
        return Err(Error::BadData("no match[] parameter provided".into()));
    }
    let source = api.source.clone();
    let series: Vec<Labels> = blocking(move || union(&selectors, |m| Ok(source.series(m, range)?))).await?;
    let mut warnings = Vec::new();
    let series = limited(series, limit, &mut warnings);
    let data: Vec<Value> = series
        .iter()
        .map(|l| Value::Object(l.iter().map(|l| (l.name.clone(), Value::String(l.value.clone()))).collect()))
        .collect();
    Ok(success(Value::Array(data), warnings))
}

/// Metric metadata (type, help, unit). Remote write metadata is not stored yet, so this is
/// empty, which Prometheus clients handle (Grafana then infers types from metric names).
pub(crate) async fn metadata() -> Response {
    success(json!({}), Vec::new())
}

/// No exemplars are stored.
pub(crate) async fn exemplars() -> Response {
    success(json!([]), Vec::new())
}

/// Build information in Prometheus's shape. `version` is the Prometheus version whose query
/// semantics we implement, because clients (Grafana's "detect version") enable features by it;
/// our own version is in `revision`. `features` is empty, so Grafana treats the datasource as
/// plain Prometheus rather than Mimir or Cortex.
pub(crate) async fn buildinfo() -> Response {
    success(
        json!({
            "version": PROMETHEUS_COMPATIBLE_VERSION,
            "revision": concat!("collabstream ", env!("CARGO_PKG_VERSION")),
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
            "features": {},
        }),
        Vec::new(),
    )
}

/// The Prometheus release whose PromQL and API semantics we follow.
const PROMETHEUS_COMPATIBLE_VERSION: &str = "3.0.0";

/// Recording and alerting rules are not evaluated here; stream aggregation rules answer in SQL.
pub(crate) async fn rules() -> Response {
    success(json!({ "groups": [] }), Vec::new())
}

pub(crate) async fn alerts() -> Response {
    success(json!({ "alerts": [] }), Vec::new())
}

/// `U__` followed by `_`-separated escapes: `U__a_2e_b` is `a.b`.
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else { return name.to_string() };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let hex: String = chars.by_ref().take_while(|c| *c != '_').collect();
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(ch) => out.push(ch),
            None => return name.to_string(),
        }
    }
    out
}
