//! The command line's standard output: the only place the binary prints (logs go
//! to standard error through tracing).

use std::io::Write;

/// Prints one line to standard output and flushes it (scripts read it at once).
pub fn line(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

/// Prints a question without a newline, for an answer on the same line.
pub fn prompt(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{s}");
    let _ = out.flush();
}
