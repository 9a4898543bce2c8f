//! `collabstream sql`: SQL against a node from a terminal or a script, through the node's
//! `POST /api/v1/sql`. Interactive, it reads statements ending in `;` with line editing and a
//! history file, and knows `\d` (the tables), `\d NAME` (a table's columns), `\?` and `\q`.
//! With `-c` or a non-terminal stdin it runs the statements given and exits non-zero if one
//! failed. Answers print as aligned tables, as psql does.

use std::io::{IsTerminal, Read};
use std::time::Instant;

use serde_json::Value;

/// What the shell talks to, and how it answers.
#[derive(Debug, Clone)]
pub struct SqlShell {
    /// The node's HTTP address, e.g. `http://127.0.0.1:9201`.
    pub endpoint: String,
    client: reqwest::Client,
}

/// An answer as the node sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

impl SqlShell {
    pub fn new(endpoint: &str) -> Self {
        let endpoint = endpoint.trim_end_matches('/');
        let endpoint =
            if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
        Self { endpoint, client: reqwest::Client::new() }
    }

    /// Runs one statement.
    pub async fn run(&self, statement: &str) -> Result<Table, String> {
        let r = self
            .client
            .post(format!("{}/api/v1/sql", self.endpoint))
            .json(&serde_json::json!({ "query": statement }))
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.endpoint))?;
        let status = r.status();
        let body: Value =
            r.json().await.map_err(|e| format!("the node's answer is not JSON ({status}): {e}"))?;
        if !status.is_success() {
            return Err(body["error"].as_str().map_or_else(|| body.to_string(), str::to_string));
        }
        let columns = body["columns"].as_array().map(|c| c.iter().map(cell).collect()).unwrap_or_default();
        let rows = body["rows"]
            .as_array()
            .map(|r| r.iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect());
        Ok(Table { columns, rows: rows.unwrap_or_default() })
    }

    /// Runs `text` (statements and backslash commands), printing each answer; the number of
    /// statements that failed.
    pub async fn run_script(&self, text: &str) -> usize {
        let mut failed = 0;
        for statement in split(text) {
            if !self.execute(&statement).await {
                failed += 1;
            }
        }
        failed
    }

    /// One statement or backslash command, printed; whether it succeeded.
    async fn execute(&self, statement: &str) -> bool {
        let started = Instant::now();
        let sql = match meta(statement) {
            Meta::Sql(s) => s,
            Meta::Help => {
                println!("{HELP}");
                return true;
            }
            Meta::Unknown(c) => {
                eprintln!("unknown command {c}: \\? lists the commands");
                return false;
            }
        };
        match self.run(&sql).await {
            Ok(t) => {
                print!("{}", render(&t));
                let n = t.rows.len();
                println!(
                    "({n} row{}; {:.1} ms)\n",
                    if n == 1 { "" } else { "s" },
                    started.elapsed().as_secs_f64() * 1e3
                );
                true
            }
            Err(e) => {
                eprintln!("ERROR: {e}\n");
                false
            }
        }
    }

    /// The interactive loop, until `\q` or end of input.
    pub async fn interactive(&self) -> anyhow::Result<()> {
        let mut editor = rustyline::DefaultEditor::new()?;
        let history =
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".collabstream_sql_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!(
            "collabstream sql on {} — statements end with ';', \\? for help, \\q to quit",
            self.endpoint
        );
        let mut pending = String::new();
        loop {
            let prompt = if pending.is_empty() { "collabstream=> " } else { "collabstream-> " };
            let line = match editor.readline(prompt) {
                Ok(l) => l,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    pending.clear();
                    continue;
                }
                Err(_) => break,
            };
            let trimmed = line.trim();
            if pending.is_empty() && trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                if trimmed == "\\q" {
                    break;
                }
                self.execute(trimmed).await;
                continue;
            }
            pending.push_str(&line);
            pending.push('\n');
            if ends_statement(&pending) {
                let text = std::mem::take(&mut pending);
                let _ = editor.add_history_entry(text.trim());
                self.run_script(&text).await;
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        Ok(())
    }
}

const HELP: &str = "\\d          the tables\n\\d NAME     a table's columns\n\\q          quit\n\
                    Statements end with ';'. Tables: samples, series, events, meeting_metrics, one per aggregation rule.";

enum Meta {
    Sql(String),
    Help,
    Unknown(String),
}

/// A backslash command as the statement it stands for.
fn meta(statement: &str) -> Meta {
    let s = statement.trim();
    let Some(command) = s.strip_prefix('\\') else { return Meta::Sql(s.to_string()) };
    let mut words = command.split_whitespace();
    match (words.next(), words.next()) {
        (Some("d" | "dt"), None) => Meta::Sql(
            "SELECT table_name AS name, table_type AS type FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY table_name"
                .into(),
        ),
        (Some("d"), Some(name)) => Meta::Sql(format!(
            "SELECT column_name AS column, data_type AS type, is_nullable AS nullable FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
            name.replace('\'', "''")
        )),
        (Some("?" | "h"), _) => Meta::Help,
        _ => Meta::Unknown(s.to_string()),
    }
}

/// Whether `text` ends with a complete statement (a `;` outside quotes and comments).
fn ends_statement(text: &str) -> bool {
    split_keep(text).1
}

/// The statements of `text`: split at `;` outside quotes and comments, backslash commands one
/// a line; empty ones left out.
pub fn split(text: &str) -> Vec<String> {
    split_keep(text).0
}

fn split_keep(text: &str) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quote, mut comment, mut ended) = (None::<char>, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            current.push(c);
            if c == '\n' {
                comment = false;
            }
            continue;
        }
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => comment = true,
            (None, '\\') if current.trim().is_empty() => {
                let line: String =
                    std::iter::once(c).chain(chars.by_ref().take_while(|c| *c != '\n')).collect();
                out.push(line.trim().to_string());
                current.clear();
                ended = true;
                continue;
            }
            (None, ';') => {
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
                ended = true;
                continue;
            }
            _ => {}
        }
        current.push(c);
        if !c.is_whitespace() {
            ended = false;
        }
    }
    let rest = current.trim();
    // Comment-only rest is no statement.
    let is_statement = rest.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"));
    if is_statement {
        out.push(rest.to_string());
    }
    (out, ended && !is_statement)
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table as psql aligns it: text left, numbers right.
pub fn render(t: &Table) -> String {
    let cells: Vec<Vec<String>> = t.rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    let mut widths: Vec<usize> = t.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..t.columns.len())
        .map(|i| t.rows.iter().all(|r| matches!(r.get(i), Some(Value::Number(_)) | Some(Value::Null) | None)))
        .collect();
    let mut out = String::new();
    let header: Vec<String> = t.columns.iter().zip(&widths).map(|(c, w)| format!(" {c:^w$} ")).collect();
    out.push_str(&header.join("|"));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(&numeric)
            .map(|((c, w), n)| if *n { format!(" {c:>w$} ") } else { format!(" {c:<w$} ") })
            .collect();
        out.push_str(line.join("|").trim_end());
        out.push('\n');
    }
    out
}

/// `collabstream sql`: `-c` statements, else stdin when it is not a terminal, else the
/// interactive shell. Fails when a statement failed (for scripts).
pub async fn main(endpoint: &str, commands: &[String]) -> anyhow::Result<()> {
    let shell = SqlShell::new(endpoint);
    let failed = if !commands.is_empty() {
        let mut failed = 0;
        for c in commands {
            failed += shell.run_script(c).await;
        }
        failed
    } else if !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        shell.run_script(&text).await
    } else {
        shell.interactive().await?;
        0
    };
    if failed > 0 {
        anyhow::bail!("{failed} statement{} failed", if failed == 1 { "" } else { "s" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statements_split_at_semicolons_outside_quotes_and_comments() {
        let text = "SELECT 'a;b' AS x; -- one; two\nSELECT \"c;d\" FROM t;\n\\d samples\nSELECT 3";
        assert_eq!(
            split(text),
            ["SELECT 'a;b' AS x", "-- one; two\nSELECT \"c;d\" FROM t", "\\d samples", "SELECT 3"]
        );
        assert!(ends_statement("SELECT 1;\n"));
        assert!(!ends_statement("SELECT 1\n"));
        assert!(!ends_statement("SELECT ';'\n"));
        assert!(split("-- nothing\n").is_empty());
    }

    #[test]
    fn tables_align_text_left_and_numbers_right() {
        let t = Table {
            columns: vec!["name".into(), "n".into()],
            rows: vec![vec![json!("samples"), json!(42)], vec![json!("x"), json!(7)]],
        };
        assert_eq!(render(&t), "  name   | n  \n---------+----\n samples | 42\n x       |  7\n");
    }

    #[test]
    fn backslash_d_asks_the_information_schema() {
        assert!(matches!(meta("\\d"), Meta::Sql(s) if s.contains("information_schema.tables")));
        assert!(matches!(meta("\\d it's"), Meta::Sql(s) if s.contains("'it''s'")));
        assert!(matches!(meta("\\x"), Meta::Unknown(_)));
    }
}
