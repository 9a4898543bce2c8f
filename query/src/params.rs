//! Parameters of the Prometheus HTTP API: times and `match[]` series selectors.

use collabstream_store::{MatchOp, Matcher};
use promql_parser::label::MatchOp as PMatchOp;
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

/// The matchers of one series selector such as `up{job=~"api|web"}`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, Error> {
    let bad = |reason: String| Error::BadParam { name: "match[]", reason };
    let expr = parser::parse(s).map_err(bad)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!("{s:?} is not a series selector")));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(
            bad("selectors with `or` are not supported yet; send one match[] per alternative".into()),
        );
    }
    let mut out = Vec::new();
    if let Some(name) = vs.name {
        out.push(Matcher::equal("__name__", name));
    }
    for m in vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::Regex,
            PMatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name, m.value).map_err(|e| bad(e.to_string()))?);
    }
    if out.iter().all(|m| m.matches_empty()) {
        return Err(bad(format!("{s:?}: match[] must contain at least one non-empty matcher")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("t", "1.5").unwrap(), 1_500);
        assert_eq!(parse_time("t", "2024-11-28T08:00:00Z").unwrap(), 1_732_780_800_000);
        assert!(parse_time("t", "soon").is_err());
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
