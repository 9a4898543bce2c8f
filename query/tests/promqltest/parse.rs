//! Parsing a `.test` file into [`Command`]s.

use super::values::{Value, expand};

/// One command of a test file, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Load(Load),
    Clear,
    Eval(Eval),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub line: usize,
    pub step_ms: i64,
    /// `load_with_nhcb`: native histograms also loaded as classic buckets.
    pub with_nhcb: bool,
    pub series: Vec<SeriesLine>,
}

/// A series selector text (`name{a="b"}`, or empty for a scalar) and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLine {
    pub metric: String,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvalKind {
    Instant { at_ms: i64 },
    Range { start_ms: i64, end_ms: i64, step_ms: i64 },
}

/// What an `expect` line asks of annotations: none, some, or one with this text.
#[derive(Debug, Clone, PartialEq)]
pub enum Annotation {
    Absent,
    Present(Option<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    pub line: usize,
    pub expr: String,
    pub kind: EvalKind,
    /// `Some(None)`: must fail; `Some(Some(text))`: must fail with this message or regex.
    pub fail: Option<Option<String>>,
    pub ordered: bool,
    pub warn: Option<Annotation>,
    pub info: Option<Annotation>,
    /// `expect string "…"`.
    pub string: Option<String>,
    /// `expect range vector from A to B step S`: an instant query's range-vector result is
    /// listed at these times.
    pub range_vector: Option<(i64, i64, i64)>,
    pub results: Vec<SeriesLine>,
}

/// A duration as the test files write it: `50m`, `1h30m`, `8000s`, `100ms`, `0`.
pub fn duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1000);
    }
    let mut total = 0i64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits =
            rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| format!("duration {s:?} lacks a unit"))?;
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|e| format!("duration {s:?}: {e}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("duration {s:?}: unknown unit {u:?}")),
        };
        total += n * unit;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// Splits a result or load line into the metric text and the values text. A metric's braces
/// may hold spaces inside quotes.
fn split_metric(line: &str) -> (String, &str) {
    let mut in_quotes = false;
    let mut depth = 0;
    let mut prev = '\0';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_quotes = !in_quotes,
            '{' if !in_quotes => depth += 1,
            '}' if !in_quotes => depth -= 1,
            c if c.is_whitespace() && !in_quotes && depth == 0 => {
                return (line[..i].to_string(), line[i..].trim());
            }
            _ => {}
        }
        prev = c;
    }
    (line.to_string(), "")
}

fn series_line(text: &str, line_no: usize) -> Result<SeriesLine, String> {
    let (metric, rest) = split_metric(text);
    if rest.is_empty() {
        // A bare value: a scalar result.
        let values = expand(&metric).map_err(|e| format!("line {line_no}: {e}"))?;
        return Ok(SeriesLine { metric: String::new(), values });
    }
    let values = expand(rest).map_err(|e| format!("line {line_no}: {e}"))?;
    Ok(SeriesLine { metric, values })
}

fn eval_header(rest: &str, line_no: usize) -> Result<(EvalKind, String), String> {
    let err = |m: &str| format!("line {line_no}: {m}: {rest:?}");
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (at, expr) =
            r.split_once(' ').ok_or_else(|| err("eval instant needs a time and an expression"))?;
        return Ok((EvalKind::Instant { at_ms: duration_ms(at)? }, expr.trim().to_string()));
    }
    if let Some(r) = rest.strip_prefix("range from ") {
        let words: Vec<&str> = r.splitn(6, ' ').collect();
        if words.len() < 6 || words[1] != "to" || words[3] != "step" {
            return Err(err("expected `range from T to T step D EXPR`"));
        }
        let kind = EvalKind::Range {
            start_ms: duration_ms(words[0])?,
            end_ms: duration_ms(words[2])?,
            step_ms: duration_ms(words[4])?,
        };
        return Ok((kind, words[5].trim().to_string()));
    }
    Err(err("unknown eval form"))
}

fn annotation(rest: &str) -> Annotation {
    let text = rest.trim();
    let text = text.strip_prefix("msg:").or_else(|| text.strip_prefix("regex:")).unwrap_or(text).trim();
    Annotation::Present((!text.is_empty()).then(|| text.to_string()))
}

/// Parses a whole file.
pub fn parse(text: &str) -> Result<Vec<Command>, String> {
    let mut out: Vec<Command> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = raw.starts_with(|c: char| c.is_whitespace());
        if indented {
            match out.last_mut() {
                Some(Command::Load(load)) => load.series.push(series_line(trimmed, line_no)?),
                Some(Command::Eval(eval)) => {
                    if let Some(exp) = trimmed.strip_prefix("expect ") {
                        let (what, rest) = exp.split_once(' ').unwrap_or((exp, ""));
                        match what {
                            "fail" => eval.fail = Some(annotation(rest).into_text()),
                            "ordered" => eval.ordered = true,
                            "warn" => eval.warn = Some(annotation(rest)),
                            "no_warn" => eval.warn = Some(Annotation::Absent),
                            "info" => eval.info = Some(annotation(rest)),
                            "no_info" => eval.info = Some(Annotation::Absent),
                            "string" => eval.string = Some(rest.trim().trim_matches(['"', '`']).to_string()),
                            "range" => {
                                let w: Vec<&str> = rest.split_whitespace().collect();
                                if w.len() != 7
                                    || w[..2] != ["vector", "from"]
                                    || w[3] != "to"
                                    || w[5] != "step"
                                {
                                    return Err(format!(
                                        "line {line_no}: expected `expect range vector from A to B step S`"
                                    ));
                                }
                                eval.range_vector =
                                    Some((duration_ms(w[2])?, duration_ms(w[4])?, duration_ms(w[6])?));
                            }
                            other => return Err(format!("line {line_no}: unknown expectation {other:?}")),
                        }
                    } else {
                        eval.results.push(series_line(trimmed, line_no)?);
                    }
                }
                _ => return Err(format!("line {line_no}: indented line outside load or eval")),
            }
            continue;
        }
        let (word, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        match word {
            "clear" => out.push(Command::Clear),
            "load" | "load_with_nhcb" => out.push(Command::Load(Load {
                line: line_no,
                step_ms: duration_ms(rest.trim())?,
                with_nhcb: word == "load_with_nhcb",
                series: Vec::new(),
            })),
            "eval" | "eval_fail" | "eval_ordered" | "eval_warn" | "eval_info" => {
                let (kind, expr) = eval_header(rest, line_no)?;
                out.push(Command::Eval(Eval {
                    line: line_no,
                    expr,
                    kind,
                    fail: (word == "eval_fail").then_some(None),
                    ordered: word == "eval_ordered",
                    warn: (word == "eval_warn").then_some(Annotation::Present(None)),
                    info: (word == "eval_info").then_some(Annotation::Present(None)),
                    string: None,
                    range_vector: None,
                    results: Vec::new(),
                }));
            }
            other => return Err(format!("line {line_no}: unknown command {other:?}")),
        }
    }
    Ok(out)
}

impl Annotation {
    fn into_text(self) -> Option<String> {
        match self {
            Annotation::Present(t) => t,
            Annotation::Absent => None,
        }
    }
}
