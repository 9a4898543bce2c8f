//! [`ValueFsts`]: regex matchers without a literal prefix (`{user_id=~".*42.*"}`) answered by
//! walking a finite state transducer of a label's values together with the regex's DFA, rather
//! than running the regex on every value.
//!
//! The walk follows only the FST's transitions the DFA can still match from (Lucene's and
//! tantivy's term dictionaries do the same; `fst` is the crate tantivy's own is derived from),
//! so a regex that fixes a few bytes anywhere (`.*42.*`, `.*-eu-.*`) prunes most of the
//! dictionary and each value's bytes are read at most once across shared prefixes. The
//! regex is the matcher's own (`^(?s:re)$`); a DFA that would be too large (huge Unicode
//! classes repeated) is not built, and such a matcher is answered by the scan as before.
//!
//! An FST is immutable: one is built per label name on its first such query (from the sorted
//! value map the index keeps anyway), values added later are kept aside and tested one by
//! one, and the FST is rebuilt once those exceed an eighth of it.

use std::collections::{BTreeMap, HashMap};

use fst::{IntoStreamer, Set, SetBuilder, Streamer};
use parking_lot::RwLock;
use regex_automata::Anchored;
use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};

use crate::matcher::Matcher;

/// Bytes a regex's DFA may take (and its construction): past it, the scan answers.
const DFA_LIMIT: usize = 4 << 20;
/// Values added since the FST was built that are tested one by one before it is rebuilt.
const PENDING_MIN: usize = 1024;

/// One label name's values as an FST, and the values added since it was built.
struct ValueFst {
    set: Set<Vec<u8>>,
    pending: Vec<String>,
}

impl ValueFst {
    fn build<'a>(values: impl Iterator<Item = &'a String>) -> Self {
        let mut b = SetBuilder::memory();
        for v in values {
            // Keys come sorted and unique from the index's map: insertion cannot fail.
            b.insert(v.as_bytes()).expect("values are inserted in order");
        }
        Self { set: b.into_set(), pending: Vec::new() }
    }

    fn stale(&self) -> bool {
        self.pending.len() > PENDING_MIN.max(self.set.len() / 8)
    }
}

/// The FSTs of the label names that regex matchers without a literal prefix have asked for.
#[derive(Default)]
pub(crate) struct ValueFsts {
    by_name: RwLock<HashMap<String, ValueFst>>,
}

impl std::fmt::Debug for ValueFsts {
    /// Names and sizes (an FST's own `Debug` lists every value).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<String, (usize, usize)> =
            self.by_name.read().iter().map(|(n, v)| (n.clone(), (v.set.len(), v.pending.len()))).collect();
        f.debug_struct("ValueFsts").field("values_and_pending", &sizes).finish()
    }
}

impl ValueFsts {
    /// A new value of label `name` (the caller holds the index for writing).
    pub(crate) fn added(&mut self, name: &str, value: &str) {
        if let Some(f) = self.by_name.get_mut().get_mut(name) {
            f.pending.push(value.to_string());
        }
    }

    /// The values of `values` (label `name`'s, the map the index keeps) that `m`, an `=~`
    /// matcher, accepts, or `None` when its DFA would be too large (the caller scans instead).
    pub(crate) fn matching<'v, P>(
        &self,
        name: &str,
        values: &'v BTreeMap<String, P>,
        m: &Matcher,
    ) -> Option<Vec<&'v P>> {
        let dfa = RegexDfa::new(&m.value)?;
        {
            let fsts = self.by_name.read();
            if let Some(f) = fsts.get(name).filter(|f| !f.stale()) {
                return Some(search(f, &dfa, values, m));
            }
        }
        let mut fsts = self.by_name.write();
        let f = fsts.entry(name.to_string()).or_insert_with(|| ValueFst::build(values.keys()));
        if f.stale() {
            *f = ValueFst::build(values.keys());
        }
        Some(search(f, &dfa, values, m))
    }
}

fn search<'v, P>(f: &ValueFst, dfa: &RegexDfa, values: &'v BTreeMap<String, P>, m: &Matcher) -> Vec<&'v P> {
    let mut out = Vec::new();
    let mut stream = f.set.search(dfa).into_stream();
    while let Some(key) = stream.next() {
        if let Some(p) = std::str::from_utf8(key).ok().and_then(|v| values.get(v)) {
            out.push(p);
        }
    }
    out.extend(f.pending.iter().filter(|v| m.matches(v)).filter_map(|v| values.get(v)));
    out
}

/// A matcher's regex as a DFA anchored at the start, walked byte by byte by the FST search; a
/// value matches when the DFA accepts at its end (the `$` of `^(?s:re)$`).
struct RegexDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl RegexDfa {
    fn new(regex: &str) -> Option<Self> {
        let config = dense::DFA::config()
            .start_kind(StartKind::Anchored)
            .dfa_size_limit(Some(DFA_LIMIT))
            .determinize_size_limit(Some(DFA_LIMIT));
        let dfa = dense::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().dot_matches_new_line(true))
            .build(&format!("(?:{regex})$"))
            .ok()?;
        let start = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)).ok()?;
        Some(Self { dfa, start })
    }
}

impl fst::Automaton for RegexDfa {
    type State = StateID;

    fn start(&self) -> StateID {
        self.start
    }

    fn is_match(&self, s: &StateID) -> bool {
        self.dfa.is_match_state(self.dfa.next_eoi_state(*s))
    }

    fn can_match(&self, s: &StateID) -> bool {
        !self.dfa.is_dead_state(*s) && !self.dfa.is_quit_state(*s)
    }

    fn accept(&self, s: &StateID, byte: u8) -> StateID {
        self.dfa.next_state(*s, byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::MatchOp;

    fn values() -> BTreeMap<String, usize> {
        let mut v: Vec<String> = (0..3000).map(|i| format!("u{i}")).collect();
        v.extend(["", "a\nb", "é-ü", "eu-west-1", "us-east-2", "API", "api", "x42y", "42"].map(String::from));
        v.into_iter().enumerate().map(|(i, s)| (s, i)).collect()
    }

    #[test]
    fn the_fst_walk_accepts_exactly_what_the_regex_does() {
        let mut values = values();
        let mut fsts = ValueFsts::default();
        let regexes = [
            ".*42.*", ".*", ".+", "u1.*0", "(?i)api", "a.b", ".*-[0-9]", "é.*", "[a-z]+", "u(12|7)", "",
            "x|", ".*(1|2)$", "\\d{4}",
        ];
        let check = |fsts: &ValueFsts, values: &BTreeMap<String, usize>| {
            for re in regexes {
                let m = Matcher::new(MatchOp::Regex, "l", re).unwrap();
                let mut got: Vec<usize> =
                    fsts.matching("l", values, &m).unwrap().into_iter().copied().collect();
                got.sort_unstable();
                let mut want: Vec<usize> =
                    values.iter().filter(|(v, _)| m.matches(v)).map(|(_, i)| *i).collect();
                want.sort_unstable();
                assert_eq!(got, want, "{re}");
            }
        };
        check(&fsts, &values);
        // Values added after the FST was built are found too, before and after a rebuild.
        for i in 0..2000 {
            let v = format!("late{i}42");
            fsts.added("l", &v);
            values.insert(v, 10_000 + i);
        }
        assert!(fsts.by_name.read()["l"].stale());
        check(&fsts, &values);
        assert!(fsts.by_name.read()["l"].pending.is_empty(), "rebuilt");
    }

    #[test]
    fn a_regex_too_large_for_a_dfa_is_left_to_the_scan() {
        assert!(RegexDfa::new("\\w{40}x\\w{40}").is_none());
        assert!(RegexDfa::new(".*42.*").is_some());
    }
}
