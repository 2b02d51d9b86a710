//! Diagnostics: what the loader tells the operator about their config.
//!
//! Every diagnostic names `FILE:LINE:COL` (1-based; the column counts
//! characters, not bytes, and points at the offending token).
//!
//! Severity policy:
//! - `Error`: part of the configuration cannot be applied as written (a bad
//!   value, a broken block structure, a missing required setting). director
//!   refuses such a config: exit code 2.
//! - `Warning`: director runs the config exactly as keepalived would, but the
//!   text is probably not what the operator meant (unknown keyword, old
//!   spelling, ignored argument, default applied). Exit code 1.

use std::fmt;
use std::sync::Arc;

/// How bad a diagnostic is; see the module docs for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Severity {
    Warning,
    Error,
}

/// One message about the configuration, anchored at a token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, sev, self.message
        )
    }
}

/// Where a token came from. Cheap to clone: the file name is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(file: &Arc<str>, line: u32, col: u32) -> Self {
        Pos {
            file: Arc::clone(file),
            line,
            col,
        }
    }

    /// `LINE:COL`, for messages that point at another place in the same file.
    pub fn short(&self) -> String {
        format!("{}:{}", self.line, self.col)
    }

    /// `LINE:COL` when `other` is in the same file, else `FILE:LINE:COL`.
    pub fn relative_to(&self, other: &Pos) -> String {
        if self.file == other.file {
            self.short()
        } else {
            format!("{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// Collects diagnostics in the order they are found.
#[derive(Debug, Default)]
pub struct Diags {
    list: Vec<Diagnostic>,
}

/// A diagnostic at `pos`; at the start of the (unknown) file without one.
pub fn at(pos: Option<&Pos>, severity: Severity, message: String) -> Diagnostic {
    let (file, line, col) = pos.map_or((String::from("<config>"), 0, 0), |p| (p.file.to_string(), p.line, p.col));
    Diagnostic { severity, file, line, col, message }
}

impl Diags {
    pub fn warn(&mut self, pos: &Pos, message: impl Into<String>) {
        self.push(Severity::Warning, pos, message.into());
    }

    pub fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        self.push(Severity::Error, pos, message.into());
    }

    fn push(&mut self, severity: Severity, pos: &Pos, message: String) {
        self.list.push(Diagnostic {
            severity,
            file: pos.file.to_string(),
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_format() {
        let f: Arc<str> = Arc::from("a.conf");
        let mut d = Diags::default();
        d.warn(&Pos::new(&f, 3, 7), "hello");
        d.error(&Pos::new(&f, 4, 1), "bad");
        let v = d.into_vec();
        assert_eq!(v[0].to_string(), "a.conf:3:7: warning: hello");
        assert_eq!(v[1].to_string(), "a.conf:4:1: error: bad");
    }

    #[test]
    fn relative_positions() {
        let a: Arc<str> = Arc::from("a.conf");
        let b: Arc<str> = Arc::from("b.conf");
        let p = Pos::new(&a, 1, 2);
        assert_eq!(p.relative_to(&Pos::new(&a, 9, 9)), "1:2");
        assert_eq!(p.relative_to(&Pos::new(&b, 9, 9)), "a.conf:1:2");
    }
}
