//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics: a missing label matches as
//! the empty string, and regexes are fully anchored.

use regex::Regex;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|e| Error::Regex { pattern: value.clone(), source: Box::new(e) })?,
            ),
            _ => None,
        };
        Ok(Self { name: name.into(), op, value, regex })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), op: MatchOp::Equal, value: value.into(), regex: None }
    }

    /// The matcher that accepts exactly the values this one rejects.
    pub(crate) fn negated(&self) -> Matcher {
        let op = match self.op {
            MatchOp::Equal => MatchOp::NotEqual,
            MatchOp::NotEqual => MatchOp::Equal,
            MatchOp::Regex => MatchOp::NotRegex,
            MatchOp::NotRegex => MatchOp::Regex,
        };
        Matcher { name: self.name.clone(), op, value: self.value.clone(), regex: self.regex.clone() }
    }

    /// Whether `value` (empty for a missing label) satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// Whether the matcher selects series that lack the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~`: the strings the regex can start with, if it can be narrowed to a few literal
    /// prefixes (`u12.*` → `u12`), and whether those are whole values rather than prefixes
    /// (`a|b|c`). `None` means every value must be tested.
    pub(crate) fn literal_prefixes(&self) -> Option<(Vec<String>, bool)> {
        use regex_syntax::hir::literal::{ExtractKind, Extractor};
        if self.op != MatchOp::Regex {
            return None;
        }
        let hir = regex_syntax::Parser::new().parse(&format!("(?s:{})", self.value)).ok()?;
        let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
        let lits = seq.literals()?;
        if lits.is_empty() || lits.iter().any(|l| l.as_bytes().is_empty()) {
            return None;
        }
        let exact = lits.iter().all(|l| l.is_exact());
        let prefixes =
            lits.iter().map(|l| String::from_utf8(l.as_bytes().to_vec()).ok()).collect::<Option<Vec<_>>>()?;
        Some((prefixes, exact))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_semantics() {
        let m = Matcher::new(MatchOp::Regex, "job", "api|web").unwrap();
        assert!(m.matches("api") && !m.matches("apis") && !m.matches(""));
        let m = Matcher::new(MatchOp::NotEqual, "job", "api").unwrap();
        assert!(m.matches_empty());
        let m = Matcher::new(MatchOp::Regex, "job", ".*").unwrap();
        assert!(m.matches_empty());
        let m = Matcher::new(MatchOp::NotRegex, "job", "a.*").unwrap();
        assert!(m.matches("b") && !m.matches("abc"));
        assert!(Matcher::new(MatchOp::Regex, "job", "(").is_err());
        // Prometheus regexes let `.` match newlines.
        assert!(Matcher::new(MatchOp::Regex, "x", "a.b").unwrap().matches("a\nb"));
    }

    #[test]
    fn extracts_prefixes() {
        let m = Matcher::new(MatchOp::Regex, "user_id", "u12.*").unwrap();
        assert_eq!(m.literal_prefixes(), Some((vec!["u12".to_string()], false)));
        let m = Matcher::new(MatchOp::Regex, "job", "api|web").unwrap();
        let (mut p, exact) = m.literal_prefixes().unwrap();
        p.sort();
        assert_eq!((p, exact), (vec!["api".to_string(), "web".to_string()], true));
        assert_eq!(Matcher::new(MatchOp::Regex, "j", ".*x").unwrap().literal_prefixes(), None);
    }
}
