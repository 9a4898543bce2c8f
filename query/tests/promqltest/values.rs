//! Series value notation: `1 2 _ stale 0+10x5 1-2x3 _x4 {{schema:0 sum:1}}x2`.
//!
//! `a+bxn` expands to the n+1 values `a, a+b, …, a+n·b` (`a-bxn` counts down, `axn` repeats
//! `a` n+1 times); `_` is a missing sample and `_xn` is n of them; `stale` is Prometheus's
//! stale marker; `{{…}}` is a native histogram, kept as text.

/// One expanded value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Stale,
    Missing,
    Histogram(String),
}

/// Splits `text` into value tokens; `{{…}}` groups (which contain spaces) stay one token.
pub fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' && chars.get(i + 1) == Some(&'{') {
            depth += 1;
            cur.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && chars.get(i + 1) == Some(&'}') && depth > 0 {
            depth -= 1;
            cur.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if depth != 0 {
        return Err(format!("unclosed {{{{ in {text:?}"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Expands every token of a value list.
pub fn expand(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for t in tokens(text)? {
        expand_token(&t, &mut out)?;
    }
    Ok(out)
}

fn parse_float(s: &str) -> Result<f64, String> {
    let lower = s.to_ascii_lowercase();
    let v = match lower.trim_start_matches('+') {
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        "nan" | "-nan" => f64::NAN,
        _ => lower.parse::<f64>().map_err(|e| format!("{s:?} is not a number: {e}"))?,
    };
    Ok(v)
}

/// Splits `a+b`/`a-b` at the operator that is not an exponent sign or a leading sign.
fn split_step(s: &str) -> Option<(&str, char, &str)> {
    let bytes = s.as_bytes();
    for i in 1..bytes.len() {
        let c = bytes[i] as char;
        if (c == '+' || c == '-') && !matches!(bytes[i - 1], b'e' | b'E') {
            return Some((&s[..i], c, &s[i + 1..]));
        }
    }
    None
}

fn expand_token(t: &str, out: &mut Vec<Value>) -> Result<(), String> {
    if t.starts_with("{{") {
        let (body, times) = match t.rfind("}}x") {
            Some(pos) => (&t[..pos + 2], Some(&t[pos + 3..])),
            None => (t, None),
        };
        let n = match times {
            Some(n) => n.parse::<usize>().map_err(|e| format!("{t:?}: {e}"))? + 1,
            None => 1,
        };
        out.extend(std::iter::repeat_n(Value::Histogram(body.to_string()), n));
        return Ok(());
    }
    if t == "_" {
        out.push(Value::Missing);
        return Ok(());
    }
    if t == "stale" {
        out.push(Value::Stale);
        return Ok(());
    }
    // `<base>x<n>`: a repetition (there are no hex numbers in this notation: `0x10` is eleven
    // zeros).
    let (base, times) = match t.rsplit_once('x') {
        Some((b, n)) if !b.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => {
            (b, Some(n.parse::<usize>().map_err(|e| format!("{t:?}: {e}"))?))
        }
        _ => (t, None),
    };
    let Some(times) = times else {
        out.push(Value::Float(parse_float(base)?));
        return Ok(());
    };
    if base == "_" {
        out.extend(std::iter::repeat_n(Value::Missing, times));
        return Ok(());
    }
    let (start, step) = match split_step(base) {
        Some((a, op, b)) => {
            let b = parse_float(b)?;
            (parse_float(a)?, if op == '-' { -b } else { b })
        }
        None => (parse_float(base)?, 0.0),
    };
    for k in 0..=times {
        out.push(Value::Float(start + step * k as f64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(v: &[Value]) -> Vec<f64> {
        v.iter().map(|x| if let Value::Float(f) = x { *f } else { f64::NAN }).collect()
    }

    #[test]
    fn expansions() {
        assert_eq!(floats(&expand("0+10x3").unwrap()), [0.0, 10.0, 20.0, 30.0]);
        assert_eq!(floats(&expand("5-2x2").unwrap()), [5.0, 3.0, 1.0]);
        assert_eq!(floats(&expand("1x2").unwrap()), [1.0, 1.0, 1.0]);
        assert_eq!(floats(&expand("-1+1x1 1e3 -2").unwrap()), [-1.0, 0.0, 1000.0, -2.0]);
        assert_eq!(
            expand("_x3 _ stale").unwrap(),
            [Value::Missing, Value::Missing, Value::Missing, Value::Missing, Value::Stale]
        );
        assert_eq!(expand("{{schema:0 sum:1 count:1}}x1").unwrap().len(), 2);
        assert!(expand("Inf -Inf NaN").unwrap().iter().all(|v| matches!(v, Value::Float(_))));
        assert_eq!(floats(&expand("0x2 60").unwrap()), [0.0, 0.0, 0.0, 60.0]);
    }
}
