//! What the CLI prints: lines on stdout that end the process quietly when the reader goes
//! away (`sluice consume t | head`), progress on stderr only for a person at a terminal,
//! aligned tables and plural forms.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

/// Writes one line to stdout. A closed pipe ends the process with success, as `cat` does;
/// any other write error ends it with the error.
pub fn line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// Progress for a person watching: on stderr, and only when stderr is a terminal.
pub fn progress(text: impl Display) {
    if std::io::stderr().is_terminal() {
        eprint!("\r{text}");
    }
}

/// Ends a progress line (when one was shown).
pub fn progress_done() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// A note on stderr (what is about to happen), kept off stdout so scripts read only results.
pub fn note(text: impl Display) {
    eprintln!("{text}");
}

/// `1 record`, `2 records`.
pub fn count(n: impl Into<u64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A table whose columns are as wide as their widest cell; `right` marks numeric columns.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str], right: &[bool]) -> Table {
        Table {
            header: header.to_vec(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let render = |cells: &mut dyn Iterator<Item = &str>| {
            let mut s = String::new();
            for (i, c) in cells.enumerate() {
                let w = widths.get(i).copied().unwrap_or(0);
                let last = i + 1 == widths.len();
                if i > 0 {
                    s.push_str("  ");
                }
                if self.right.get(i).copied().unwrap_or(false) {
                    s.push_str(&format!("{c:>w$}"));
                } else if last {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}"));
                }
            }
            s
        };
        line(render(&mut self.header.iter().copied()));
        for r in &self.rows {
            line(render(&mut r.iter().map(String::as_str)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_read_naturally() {
        assert_eq!(count(1u32, "record", "records"), "1 record");
        assert_eq!(count(0u32, "record", "records"), "0 records");
        assert_eq!(count(3u32, "partition", "partitions"), "3 partitions");
    }
}
