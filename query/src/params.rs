//! Parameters of the Prometheus HTTP API: times and `match[]` series selectors.

use collabstream_store::Matcher;
use promql_parser::parser::{self, Expr};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::Error;

/// A time as Prometheus accepts it: unix seconds (with a fraction) or RFC 3339. Milliseconds.
pub fn parse_time(name: &'static str, s: &str) -> Result<i64, Error> {
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| Error::BadParam { name, reason: format!("cannot parse {s:?} to a valid timestamp") })
}

/// A duration as Prometheus accepts it: float seconds (`15`, `0.5`) or `1h30m`, `500ms`, `2d`.
/// Milliseconds.
pub fn parse_duration(name: &'static str, s: &str) -> Result<i64, Error> {
    let bad = || Error::BadParam { name, reason: format!("cannot parse {s:?} to a valid duration") };
    if let Ok(secs) = s.parse::<f64>() {
        let ms = secs * 1000.0;
        if !ms.is_finite() || ms.abs() > i64::MAX as f64 {
            return Err(bad());
        }
        return Ok(ms.round() as i64);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: i64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(bad()),
        };
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Request parameters from the query string and a form body together, as Prometheus reads
/// them (`GET` and form `POST` alike).
#[derive(Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn new(query: Option<&str>, body: &[u8]) -> Self {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
        pairs.extend(form_urlencoded::parse(body).into_owned());
        Self(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every `match[]` parsed.
    pub fn selectors(&self) -> Result<Vec<Vec<Matcher>>, Error> {
        self.all("match[]").map(parse_selector).collect()
    }

    /// `limit`: 0 or absent means none.
    pub fn limit(&self) -> Result<usize, Error> {
        match self.get("limit") {
            None | Some("") => Ok(0),
            Some(v) => v.parse::<usize>().map_err(|_| Error::BadParam {
                name: "limit",
                reason: format!("cannot parse {v:?}: the limit must be a non-negative integer"),
            }),
        }
    }
}

/// The matchers of one series selector such as `up{job=~"api|web"}`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, Error> {
    let bad = |reason: String| Error::BadParam { name: "match[]", reason };
    let expr = parser::parse(s).map_err(bad)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!("{s:?} is not a series selector")));
    };
    let out = crate::promql::selector_matchers(&vs).map_err(|e| bad(e.to_string()))?;
    if out.iter().all(|m| m.matches_empty()) {
        return Err(bad(format!("{s:?}: match[] must contain at least one non-empty matcher")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use collabstream_store::MatchOp;

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "1.5").unwrap(), 1_500);
        assert_eq!(parse_time("t", "2024-11-28T08:00:00Z").unwrap(), 1_732_780_800_000);
        assert!(parse_time("t", "soon").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("step", "15").unwrap(), 15_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
        assert_eq!(parse_duration("step", "1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("step", "250ms").unwrap(), 250);
        assert!(parse_duration("step", "1x").is_err());
        assert!(parse_duration("step", "").is_err());
        assert!(parse_duration("step", "m").is_err());
    }

    #[test]
    fn selectors() {
        let m = parse_selector(r#"up{job=~"a|b", zone!=""}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].name.as_str(), m[0].op), ("__name__", MatchOp::Equal));
        assert!(parse_selector(r#"{job=~".*"}"#).is_err());
        assert!(parse_selector("rate(up[5m])").is_err());
    }
}
