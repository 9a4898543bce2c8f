//! [`ValueFsts`]: regex matchers without a literal prefix (`{user_id=~".*42.*"}`) answered
//! without running the regex on every value of the label.
//!
//! Per label name, on the first such query, a snapshot of its values is built:
//! - an FST (value → ordinal), walked together with the regex's DFA: only transitions the DFA
//!   can still match from are followed (Lucene's and tantivy's term dictionaries do the same;
//!   `fst` is the crate tantivy's own derives from), so `u1.*0` or `.*-eu-[0-9]` visit a part
//!   of the dictionary and each shared prefix once;
//! - the values back to back (separated by 0xFF, a byte UTF-8 never holds): a regex with a
//!   literal every match must contain (`.*42.*`, `.*12.*5`), which an FST walk could not prune,
//!   is answered by a SIMD substring search for that literal and the regex on those values only;
//!   one that begins with `.*` without such a literal (`.*[05]`), which no FST walk prunes, by
//!   one pass of its DFA over those values;
//! - for each ordinal, the series id when the value had exactly one series (an id-like label),
//!   so matches need no lookup in the index's map.
//!
//! The regex is the matcher's own (`^(?s:re)$`); a DFA that would be too large (huge Unicode
//! classes repeated) is not built, and such a matcher is answered by the scan as before.
//! Values added later, and values that gained series, are kept aside and looked up one by one;
//! the snapshot is rebuilt once those exceed an eighth of it. Memory: about 2.5 times the bytes
//! of the values, plus 12 bytes a value (1M values of 9 bytes: ~35 MB), for the labels that
//! prefix-less regexes ask for only.

use std::collections::{BTreeMap, HashMap, HashSet};

use collabstream_common::SeriesId;
use fst::{Automaton as _, IntoStreamer, Map, MapBuilder, Streamer};
use parking_lot::RwLock;
use regex_automata::Anchored;
use regex_automata::dfa::{Automaton as _, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::{start, syntax};

use crate::index::Postings;
use crate::matcher::Matcher;

/// Bytes a regex's DFA may take (and its construction): past it, the scan answers.
const DFA_LIMIT: usize = 4 << 20;
/// Changes since the snapshot that are looked up one by one before it is rebuilt.
const PENDING_MIN: usize = 1024;
/// Between two values in `ValueFst::joined`.
const SEPARATOR: u8 = 0xFF;
/// No single series (`ValueFst::single`).
const MANY: u64 = u64::MAX;

/// One label name's values as of the snapshot, and what changed since.
struct ValueFst {
    map: Map<Vec<u8>>,
    joined: Vec<u8>,
    /// Where value `i` starts in `joined`; one more entry at the end.
    starts: Vec<u32>,
    single: Vec<u64>,
    /// Values added since the snapshot.
    pending: Vec<String>,
    /// Values of the snapshot that gained a series since (their `single` no longer holds).
    grown: HashSet<String>,
}

impl ValueFst {
    /// `None` for values too large to join (offsets are 32 bits): the scan answers.
    fn build(values: &BTreeMap<String, Postings>) -> Option<Self> {
        let bytes: usize = values.keys().map(|v| v.len() + 1).sum();
        if bytes > u32::MAX as usize {
            return None;
        }
        let mut b = MapBuilder::memory();
        let mut joined = Vec::new();
        let mut starts = Vec::with_capacity(values.len() + 1);
        let mut single = Vec::with_capacity(values.len());
        for (i, (v, ids)) in values.iter().enumerate() {
            // Keys come sorted and unique from the index's map: insertion cannot fail.
            b.insert(v.as_bytes(), i as u64).expect("values are inserted in order");
            starts.push(joined.len() as u32);
            joined.extend_from_slice(v.as_bytes());
            joined.push(SEPARATOR);
            single.push(if ids.len() == 1 { ids[0].0 } else { MANY });
        }
        starts.push(joined.len() as u32);
        let map = Map::new(b.into_inner().expect("an in-memory FST")).expect("built just now");
        Some(Self { map, joined, starts, single, pending: Vec::new(), grown: HashSet::new() })
    }

    fn stale(&self) -> bool {
        self.pending.len() + self.grown.len() > PENDING_MIN.max(self.single.len() / 8)
    }

    fn value(&self, ordinal: usize) -> &[u8] {
        &self.joined[self.starts[ordinal] as usize..self.starts[ordinal + 1] as usize - 1]
    }

    /// Hands out the series of the snapshot's value `ordinal`.
    fn emit(&self, ordinal: usize, values: &BTreeMap<String, Postings>, out: &mut Postings) {
        let id = self.single[ordinal];
        let value = std::str::from_utf8(self.value(ordinal)).unwrap_or_default();
        if id != MANY && (self.grown.is_empty() || !self.grown.contains(value)) {
            out.push(SeriesId(id));
        } else if let Some(ids) = values.get(value) {
            out.extend_from_slice(ids);
        }
    }
}

/// The snapshots of the label names that regex matchers without a literal prefix asked for.
#[derive(Default)]
pub(crate) struct ValueFsts {
    by_name: RwLock<HashMap<String, ValueFst>>,
}

impl std::fmt::Debug for ValueFsts {
    /// Names and sizes (an FST's own `Debug` lists every value).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sizes: BTreeMap<String, (usize, usize)> =
            self.by_name.read().iter().map(|(n, v)| (n.clone(), (v.single.len(), v.pending.len()))).collect();
        f.debug_struct("ValueFsts").field("values_and_pending", &sizes).finish()
    }
}

impl ValueFsts {
    /// Series `id` has label `name` = `value`, a value the index did not have before when
    /// `new` (the caller holds the index for writing).
    pub(crate) fn added(&mut self, name: &str, value: &str, new: bool) {
        let by_name = self.by_name.get_mut();
        let Some(f) = by_name.get_mut(name) else { return };
        if new {
            f.pending.push(value.to_string());
        } else if !f.grown.contains(value)
            && f.map.get(value).is_some_and(|ordinal| f.single[ordinal as usize] != MANY)
        {
            // Only a value the snapshot holds a single series for needs a lookup from now on.
            f.grown.insert(value.to_string());
        }
        if f.stale() {
            // Built again by the next query that needs it, not kept growing meanwhile.
            by_name.remove(name);
        }
    }

    /// The series with a value of `values` (label `name`'s, the map the index keeps) that `m`,
    /// an `=~` matcher, accepts, sorted; `None` when its DFA would be too large (the caller
    /// scans instead).
    pub(crate) fn matching(
        &self,
        name: &str,
        values: &BTreeMap<String, Postings>,
        m: &Matcher,
    ) -> Option<Postings> {
        let dfa = RegexDfa::new(&m.value)?;
        let plan = Plan::of(&m.value);
        {
            let snapshots = self.by_name.read();
            if let Some(f) = snapshots.get(name).filter(|f| !f.stale()) {
                return Some(search(f, &dfa, &plan, values, m));
            }
        }
        let mut snapshots = self.by_name.write();
        if snapshots.get(name).is_none_or(ValueFst::stale) {
            snapshots.insert(name.to_string(), ValueFst::build(values)?);
        }
        Some(search(&snapshots[name], &dfa, &plan, values, m))
    }
}

fn search(
    f: &ValueFst,
    dfa: &RegexDfa,
    plan: &Plan,
    values: &BTreeMap<String, Postings>,
    m: &Matcher,
) -> Postings {
    let mut out = Postings::new();
    match plan {
        Plan::Substring(lit) => {
            let mut last = usize::MAX;
            for at in memchr::memmem::find_iter(&f.joined, lit) {
                let ordinal = f.starts.partition_point(|s| *s as usize <= at) - 1;
                if ordinal == last {
                    continue;
                }
                last = ordinal;
                if std::str::from_utf8(f.value(ordinal)).is_ok_and(|v| m.matches(v)) {
                    f.emit(ordinal, values, &mut out);
                }
            }
        }
        // A regex that matches anything first (`.*[05]`) prunes no branch of the FST: the walk
        // would visit every node, paying for the traversal besides the DFA. One pass of the
        // DFA over the values back to back does only the DFA's part.
        Plan::Pass => {
            for ordinal in 0..f.single.len() {
                let mut state = dfa.start;
                for &b in f.value(ordinal) {
                    state = dfa.accept(&state, b);
                    if !dfa.can_match(&state) {
                        // Nothing more of this value can match.
                        break;
                    }
                }
                if dfa.is_match(&state) {
                    f.emit(ordinal, values, &mut out);
                }
            }
        }
        Plan::Walk => {
            let mut stream = f.map.search(dfa).into_stream();
            while let Some((_, ordinal)) = stream.next() {
                f.emit(ordinal as usize, values, &mut out);
            }
        }
    }
    for v in f.pending.iter().filter(|v| m.matches(v)) {
        if let Some(ids) = values.get(v) {
            out.extend_from_slice(ids);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// How a regex's matches are looked for among a label's values, chosen from one parse of it.
/// (Only the cost depends on the choice, not what is found.)
#[derive(Debug, PartialEq)]
enum Plan {
    /// A substring search for a literal every match holds, then the regex on those values.
    Substring(Vec<u8>),
    /// One pass of the DFA over all values: the regex begins with `.*`, so no FST branch can
    /// be pruned.
    Pass,
    /// The FST walked with the DFA.
    Walk,
}

impl Plan {
    fn of(regex: &str) -> Self {
        let Ok(hir) = regex_syntax::ParserBuilder::new().dot_matches_new_line(true).build().parse(regex)
        else {
            return Plan::Walk;
        };
        match required_literal(&hir) {
            Some(literal) => Plan::Substring(literal),
            None if starts_with_any(&hir) => Plan::Pass,
            None => Plan::Walk,
        }
    }
}

/// Whether the regex begins with `.*` (any character, any number of times): its DFA cannot
/// reject a value by its first bytes.
fn starts_with_any(hir: &regex_syntax::hir::Hir) -> bool {
    use regex_syntax::hir::{Class, HirKind};
    let first = match hir.kind() {
        HirKind::Concat(parts) => parts.first(),
        _ => Some(hir),
    };
    let Some(HirKind::Repetition(r)) = first.map(|h| h.kind()) else { return false };
    // `.` is every scalar value but the surrogates: two ranges from \0 to the last one.
    let any = match r.sub.kind() {
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            ranges.len() <= 2
                && ranges.first().is_some_and(|x| x.start() == '\0')
                && ranges.last().is_some_and(|x| x.end() == char::MAX)
        }
        _ => false,
    };
    r.min == 0 && any
}

/// The longest literal of at least two bytes that every match of the regex contains, if its
/// top level is a concatenation holding one (`.*42.*` → `42`).
fn required_literal(hir: &regex_syntax::hir::Hir) -> Option<Vec<u8>> {
    use regex_syntax::hir::HirKind;
    let HirKind::Concat(parts) = hir.kind() else { return None };
    parts
        .iter()
        .filter_map(|p| match p.kind() {
            HirKind::Literal(l) => Some(l.0.to_vec()),
            _ => None,
        })
        .filter(|l| l.len() >= 2)
        .max_by_key(Vec::len)
}

/// A matcher's regex as a DFA anchored at the start, walked byte by byte by the FST search; a
/// value matches when the DFA accepts at its end (the `$` of `^(?s:re)$`).
struct RegexDfa {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
}

impl RegexDfa {
    fn new(regex: &str) -> Option<Self> {
        // The matcher compiles `^(?s:re)$`; a regex that parses only inside that (`a)|(b`)
        // would mean something else here: left to the scan.
        regex_syntax::Parser::new().parse(regex).ok()?;
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

    fn values() -> BTreeMap<String, Postings> {
        let mut v: Vec<String> = (0..3000).map(|i| format!("u{i}")).collect();
        v.extend(["", "a\nb", "é-ü", "eu-west-1", "us-east-2", "API", "api", "x42y", "42"].map(String::from));
        // Every tenth value is shared by two series.
        v.into_iter()
            .enumerate()
            .map(|(i, s)| {
                let ids = if i % 10 == 0 {
                    vec![SeriesId(i as u64), SeriesId(100_000 + i as u64)]
                } else {
                    vec![SeriesId(i as u64)]
                };
                (s, ids)
            })
            .collect()
    }

    #[test]
    fn the_search_accepts_exactly_what_the_regex_does() {
        let mut values = values();
        let mut fsts = ValueFsts::default();
        let regexes = [
            ".*42.*", ".*", ".+", "u1.*0", "(?i)api", "a.b", ".*-[0-9]", "é.*", "[a-z]+", "u(12|7)", "",
            "x|", ".*(1|2)$", "\\d{4}", ".*12.*5", "u.*9.*9", ".*-ü", ".*\n.*", ".*[05]", ".*ü", ".*",
            "(?-s).*b",
        ];
        let check = |fsts: &ValueFsts, values: &BTreeMap<String, Postings>| {
            for re in regexes {
                let m = Matcher::new(MatchOp::Regex, "l", re).unwrap();
                let got = fsts.matching("l", values, &m).unwrap();
                let mut want: Postings =
                    values.iter().filter(|(v, _)| m.matches(v)).flat_map(|(_, ids)| ids.clone()).collect();
                want.sort_unstable();
                assert_eq!(got, want, "{re}");
            }
        };
        check(&fsts, &values);
        // Values added after the snapshot, and a value that gains a series, are found too:
        // looked up one by one, then (past the threshold) by a new snapshot.
        let add = |fsts: &mut ValueFsts, values: &mut BTreeMap<String, Postings>, from: u64, n: u64| {
            for i in from..from + n {
                let v = format!("late{i}42");
                fsts.added("l", &v, true);
                values.insert(v, vec![SeriesId(10_000 + i)]);
            }
        };
        add(&mut fsts, &mut values, 0, 500);
        fsts.added("l", "u1421", false);
        values.get_mut("u1421").unwrap().push(SeriesId(99_999));
        assert_eq!(fsts.by_name.read()["l"].pending.len(), 500);
        assert!(fsts.by_name.read()["l"].grown.contains("u1421"));
        check(&fsts, &values);
        add(&mut fsts, &mut values, 500, 1500);
        assert!(!fsts.by_name.read().contains_key("l"), "stale: dropped, not kept growing");
        check(&fsts, &values);
        assert!(fsts.by_name.read()["l"].pending.is_empty(), "rebuilt");
        fsts.added("l", "u2421", false);
        values.get_mut("u2421").unwrap().push(SeriesId(99_998));
        assert!(!fsts.by_name.read()["l"].stale());
        check(&fsts, &values);
    }

    #[test]
    fn regexes_that_match_anything_first_are_told_apart() {
        for re in [".*[05]", ".*", ".*4", "(?s:.)*x", ".*?y"] {
            assert_eq!(Plan::of(re), Plan::Pass, "{re}");
        }
        for re in ["u.*", ".+x", "(.*)x", "[a-z]*x", "a|.*", "", "("] {
            assert_eq!(Plan::of(re), Plan::Walk, "{re}");
        }
    }

    #[test]
    fn literals_every_match_holds_are_found() {
        let literal = |re: &str| match Plan::of(re) {
            Plan::Substring(l) => Some(l),
            _ => None,
        };
        assert_eq!(literal(".*42.*"), Some(b"42".to_vec()));
        assert_eq!(literal(".*12.*567"), Some(b"567".to_vec()));
        assert_eq!(literal(".*(42|43).*"), None);
        assert_eq!(literal("(?i).*ab.*"), None);
        assert_eq!(literal(".*4.*"), None);
    }

    #[test]
    fn a_regex_too_large_for_a_dfa_is_left_to_the_scan() {
        assert!(RegexDfa::new("\\w{40}x\\w{40}").is_none());
        assert!(RegexDfa::new("a)|(b").is_none(), "means something else unwrapped");
        assert!(RegexDfa::new(".*42.*").is_some());
    }
}
