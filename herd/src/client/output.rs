//! How the CLI prints: results on stdout (an aligned table for people, the API's JSON
//! or YAML for scripts), messages and progress on stderr; colour only on a terminal
//! and without NO_COLOR / --no-color.

use crate::cli::OutputFormat;
use serde::Serialize;
use std::io::{IsTerminal, Write};

#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: OutputFormat,
    /// Colours on stdout.
    pub color: bool,
    /// Progress bars and colours on stderr.
    pub interactive: bool,
}

impl Out {
    pub fn new(format: OutputFormat, no_color: bool) -> Self {
        let no_color = no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            format,
            color: !no_color && std::io::stdout().is_terminal(),
            interactive: !no_color && std::io::stderr().is_terminal(),
        }
    }

    pub fn is_table(&self) -> bool {
        self.format == OutputFormat::Table
    }

    /// Prints a result: `table` renders it for people, JSON and YAML print `value`.
    pub fn result<T: Serialize>(&self, value: &T, table: impl FnOnce(&Out) -> String) -> anyhow::Result<()> {
        let text = match self.format {
            OutputFormat::Table => table(self),
            OutputFormat::Json => serde_json::to_string_pretty(value)? + "\n",
            OutputFormat::Yaml => serde_yaml::to_string(value)?,
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }

    /// A state word, coloured by what it means (green good, yellow in between, red bad).
    pub fn state(&self, s: &str) -> String {
        if !self.color {
            return s.to_owned();
        }
        let code = match s {
            "active" | "running" | "streaming" | "succeeded" | "completed" | "available" | "primary" => "32",
            "building" | "updating" | "degraded" | "queued" | "deleting" | "creating" | "stopped" | "starting" => "33",
            "failed" | "unreachable" | "cancelled" | "error" | "expired" => "31",
            _ => return s.to_owned(),
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    }

    pub fn bold(&self, s: &str) -> String {
        if self.color { format!("\x1b[1m{s}\x1b[0m") } else { s.to_owned() }
    }
}

/// One line of a result streamed to stdout (`cluster events --follow`).
pub fn line(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()?;
    Ok(())
}

/// A message for people, on stderr.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("{}", msg.as_ref());
}

/// Columns aligned to their widest cell (ANSI colour codes do not count), two spaces
/// apart, headers first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(visible_len(c));
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - visible_len(c) + 2));
            }
        }
        out.push('\n');
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

/// `key: value` lines with the keys aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k}:{} {v}\n", " ".repeat(w - k.len()))).collect()
}

fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// `-` for nothing.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// How long ago, for people: `42s`, `5m`, `3h`, `2d`.
pub fn ago(t: chrono::DateTime<chrono::Utc>) -> String {
    let s = (chrono::Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Bytes as MB with one decimal (replication lag, sizes).
pub fn mb(bytes: i64) -> String {
    format!("{:.1}", bytes as f64 / 1_048_576.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_visible_width() {
        let t = table(
            &["NAME", "STATUS"],
            &[vec!["a".into(), "\x1b[32mactive\x1b[0m".into()], vec!["long-name".into(), "x".into()]],
        );
        assert_eq!(t, "NAME       STATUS\na          \x1b[32mactive\x1b[0m\nlong-name  x\n");
        assert_eq!(fields(&[("id", "1".into()), ("status", "ok".into())]), "id:     1\nstatus: ok\n");
    }
}
