//! Lexer: turns keepalived.conf text (and the files it includes) into one
//! token stream with positions.
//!
//! Handled here, line by line, in keepalived's order:
//! 1. `@id` / `@^id` conditional prefixes (matched against the config id);
//! 2. `$NAME=value` definitions (multi-line when the value ends with `\`);
//! 3. `$NAME` / `${NAME}` substitution (recursive, at use time; undefined
//!    names stay as written, so `$1` in a script is left alone);
//! 4. `include FILE` (and `includer`/`includem`/...): globs and `{a,b}` brace
//!    expansion, relative to the including file's directory;
//! 5. comments (`#` or `!` outside quotes, anywhere on a line), quoted
//!    strings with escapes, and `{` / `}` even when glued to a word (`80{`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::diag::{Diags, Pos};

/// One lexical unit. `Eol` ends every line that produced tokens, since
/// keepalived statements are line based.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: TokenKind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// A word; `quoted` when any part of it was inside quotes.
    Word {
        text: String,
        quoted: bool,
    },
    Open,
    Close,
    Eol,
}

/// Lex a file and everything it includes. Returns `None` (after reporting an
/// error) when the file itself cannot be read.
pub fn lex_file(path: &Path, config_id: &str, diags: &mut Diags) -> Option<Vec<Token>> {
    let name: Arc<str> = Arc::from(path.display().to_string());
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            diags.error(
                &Pos::new(&name, 1, 1),
                format!("cannot read configuration file: {e}"),
            );
            return None;
        }
    };
    let mut lx = Lexer::new(config_id, diags);
    lx.stack.push(canonical(path));
    lx.source(&text, &name, &parent_dir(path), 0);
    Some(lx.tokens)
}

/// Lex in-memory text; `name` is used in diagnostics and, when it looks like
/// a path, its directory anchors relative includes.
pub fn lex_str(text: &str, name: &str, config_id: &str, diags: &mut Diags) -> Vec<Token> {
    let file: Arc<str> = Arc::from(name);
    let mut lx = Lexer::new(config_id, diags);
    lx.stack.push(canonical(Path::new(name)));
    lx.source(text, &file, &parent_dir(Path::new(name)), 0);
    lx.tokens
}

/// The config id keepalived uses by default: the short host name.
pub fn default_config_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Guards against runaway recursion in includes and multi-line parameters.
const MAX_DEPTH: usize = 32;
/// Substitution passes before we call a definition recursive.
const MAX_SUBST_PASSES: usize = 32;
/// Longest line substitution may produce, and total characters all
/// substitutions may produce: definitions like `$A=$A $A` grow exponentially.
const MAX_EXPANDED_LINE: usize = 1 << 16;
const MAX_EXPANDED_TOTAL: usize = 1 << 21;

const INCLUDE_WORDS: [&str; 6] = [
    "include", "includer", "includem", "includew", "includeb", "includea",
];

/// A character of a line after substitution: its source column, and whether
/// it must be taken literally (from `${_HASH}` / `${_BANG}`).
#[derive(Clone, Copy)]
struct Ch {
    c: char,
    col: u32,
    literal: bool,
}

struct Lexer<'d> {
    config_id: String,
    vars: HashMap<String, String>,
    /// Canonical paths of the files being read, outermost first.
    stack: Vec<PathBuf>,
    tokens: Vec<Token>,
    diags: &'d mut Diags,
    /// Characters substitution may still produce (see MAX_EXPANDED_TOTAL).
    expansion_budget: usize,
}

impl<'d> Lexer<'d> {
    fn new(config_id: &str, diags: &'d mut Diags) -> Self {
        Lexer {
            config_id: config_id.to_string(),
            vars: HashMap::new(),
            stack: Vec::new(),
            tokens: Vec::new(),
            diags,
            expansion_budget: MAX_EXPANDED_TOTAL,
        }
    }

    fn source(&mut self, text: &str, file: &Arc<str>, dir: &Path, depth: usize) {
        let mut lines = text.lines().enumerate();
        while let Some((idx, line)) = lines.next() {
            let lineno = u32::try_from(idx + 1).unwrap_or(u32::MAX);
            // A definition whose value ends in `\` continues on the next lines.
            if let Some((name, value)) = definition(line) {
                let mut value = value.to_string();
                while let Some(stripped) = value.strip_suffix('\\') {
                    value = stripped.trim_end().to_string();
                    match lines.next() {
                        Some((_, next)) => {
                            if !value.is_empty() {
                                value.push('\n');
                            }
                            value.push_str(next.trim());
                        }
                        None => break,
                    }
                }
                self.vars.insert(name, value);
                continue;
            }
            let chars: Vec<Ch> = line
                .chars()
                .zip(1u32..)
                .map(|(c, col)| Ch {
                    c,
                    col,
                    literal: false,
                })
                .collect();
            self.line(chars, file, lineno, dir, depth);
        }
    }

    /// Process one logical line (possibly produced by substitution).
    fn line(&mut self, chars: Vec<Ch>, file: &Arc<str>, lineno: u32, dir: &Path, depth: usize) {
        let Some(start) = self.strip_condition(&chars, file, lineno) else {
            return;
        };
        let mut chars = chars[start..].to_vec();
        let text: String = chars.iter().map(|c| c.c).collect();
        if let Some((name, value)) = definition(&text) {
            self.vars.insert(name, value.to_string());
            return;
        }
        if text.trim_start().starts_with("~SEQ") || text.trim_start().starts_with("~LST") {
            let col = chars
                .iter()
                .find(|c| !c.c.is_whitespace())
                .map_or(1, |c| c.col);
            self.diags.error(
                &Pos::new(file, lineno, col),
                "`~SEQ` / `~LST` sequence lines are not supported by director; line ignored",
            );
            return;
        }
        if text.contains('$') {
            chars = self.substitute(chars, dir, file, lineno);
            let expanded: String = chars.iter().map(|c| c.c).collect();
            let reprocess = expanded.contains('\n')
                || expanded.trim_start().starts_with('@')
                || definition(&expanded).is_some();
            if reprocess && expanded != text {
                if depth >= MAX_DEPTH {
                    self.diags.error(
                        &Pos::new(file, lineno, 1),
                        "parameter expansion nested too deeply; line ignored",
                    );
                    return;
                }
                for part in chars.split(|c| c.c == '\n') {
                    self.line(part.to_vec(), file, lineno, dir, depth + 1);
                }
                return;
            }
        }
        if let Some((word, start)) = include_word(&chars) {
            self.include(&chars[start..], word, file, lineno, dir, depth);
            return;
        }
        let before = self.tokens.len();
        let words = self.tokenize(&chars, file, lineno);
        self.tokens.extend(words);
        if self.tokens.len() > before {
            self.tokens.push(Token {
                kind: TokenKind::Eol,
                pos: Pos::new(file, lineno, eol_col(&chars)),
            });
        }
    }

    /// Returns the index where the line's content starts, or `None` when an
    /// `@id` / `@^id` prefix excludes the line for this config id.
    fn strip_condition(&mut self, chars: &[Ch], file: &Arc<str>, lineno: u32) -> Option<usize> {
        let first = chars.iter().position(|c| !c.c.is_whitespace())?;
        if chars[first].c != '@' || chars[first].literal {
            return Some(first);
        }
        let negate = chars.get(first + 1).is_some_and(|c| c.c == '^');
        let id_start = first + 1 + usize::from(negate);
        let id_end = chars[id_start..]
            .iter()
            .position(|c| c.c.is_whitespace())
            .map_or(chars.len(), |n| id_start + n);
        let id: String = chars[id_start..id_end].iter().map(|c| c.c).collect();
        if id.is_empty() {
            self.diags.warn(
                &Pos::new(file, lineno, chars[first].col),
                "`@` must be followed by a config id (e.g. `@node1 priority 150`); line ignored",
            );
            return None;
        }
        ((id == self.config_id) != negate).then_some(id_end)
    }

    fn substitute(
        &mut self,
        mut chars: Vec<Ch>,
        dir: &Path,
        file: &Arc<str>,
        lineno: u32,
    ) -> Vec<Ch> {
        let col = chars.iter().find(|c| c.c == '$').map_or(1, |c| c.col);
        let pos = Pos::new(file, lineno, col);
        for _ in 0..MAX_SUBST_PASSES {
            let (next, changed) = self.substitute_once(&chars, dir);
            if !changed {
                return next;
            }
            if next.len() > MAX_EXPANDED_LINE || next.len() > self.expansion_budget {
                if self.expansion_budget > 0 {
                    let msg = "parameter substitution grows without bound (a definition that repeats itself?); line ignored";
                    self.diags.error(&pos, msg);
                }
                self.expansion_budget = 0;
                return Vec::new();
            }
            self.expansion_budget -= next.len();
            // A multi-line value is split and each line substituted on its
            // own, so definitions inside it take effect in order.
            if next.iter().any(|c| c.c == '\n') {
                return next;
            }
            chars = next;
        }
        self.diags.error(
            &pos,
            "parameter substitution does not terminate (a definition refers to itself?)",
        );
        chars
    }

    fn substitute_once(&self, chars: &[Ch], dir: &Path) -> (Vec<Ch>, bool) {
        let mut out = Vec::with_capacity(chars.len());
        let mut changed = false;
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if ch.c != '$' || ch.literal {
                out.push(ch);
                i += 1;
                continue;
            }
            let (name, end) = if chars.get(i + 1).is_some_and(|c| c.c == '{') {
                match chars[i + 2..].iter().position(|c| c.c == '}') {
                    Some(n) => (
                        chars[i + 2..i + 2 + n]
                            .iter()
                            .map(|c| c.c)
                            .collect::<String>(),
                        i + 3 + n,
                    ),
                    None => (String::new(), i + 1),
                }
            } else {
                let n = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.c.is_ascii_alphanumeric() || c.c == '_')
                    .count();
                let end = i + 1 + n;
                // keepalived only substitutes a bare `$NAME` followed by whitespace.
                if chars.get(end).is_some_and(|c| !c.c.is_whitespace()) {
                    (String::new(), i + 1)
                } else {
                    (chars[i + 1..end].iter().map(|c| c.c).collect(), end)
                }
            };
            match self.lookup(&name, dir) {
                Some((value, literal)) if valid_name(&name) => {
                    out.extend(value.chars().map(|c| Ch {
                        c,
                        col: ch.col,
                        literal,
                    }));
                    changed = true;
                    i = end;
                }
                _ => {
                    out.push(ch);
                    i += 1;
                }
            }
        }
        (out, changed)
    }

    fn lookup(&self, name: &str, dir: &Path) -> Option<(String, bool)> {
        if let Some(v) = self.vars.get(name) {
            return Some((v.clone(), false));
        }
        match name {
            "_PWD" => Some((dir.display().to_string(), false)),
            "_INSTANCE" => Some((self.config_id.clone(), false)),
            "_HASH" => Some(("#".to_string(), true)),
            "_BANG" => Some(("!".to_string(), true)),
            _ => None,
        }
    }

    /// Split a line into words and braces.
    fn tokenize(&mut self, chars: &[Ch], file: &Arc<str>, lineno: u32) -> Vec<Token> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let ch = chars[i];
            if ch.c.is_whitespace() {
                i += 1;
                continue;
            }
            if is_comment(ch) {
                break;
            }
            let pos = Pos::new(file, lineno, ch.col);
            if !ch.literal && (ch.c == '{' || ch.c == '}') {
                let kind = if ch.c == '{' {
                    TokenKind::Open
                } else {
                    TokenKind::Close
                };
                out.push(Token { kind, pos });
                i += 1;
                continue;
            }
            let (text, quoted, next) = self.word(chars, i, &pos);
            out.push(Token {
                kind: TokenKind::Word { text, quoted },
                pos,
            });
            i = next;
        }
        out
    }

    /// Read one word starting at `start`; returns (text, quoted, next index).
    fn word(&mut self, chars: &[Ch], start: usize, pos: &Pos) -> (String, bool, usize) {
        let mut text = String::new();
        let mut quoted = false;
        let mut i = start;
        while i < chars.len() {
            let ch = chars[i];
            if ch.literal {
                text.push(ch.c);
                i += 1;
                continue;
            }
            match ch.c {
                c if c.is_whitespace() => break,
                '{' | '}' => break,
                '#' | '!' => break,
                '"' | '\'' => {
                    quoted = true;
                    i = self.quoted(chars, i, &mut text, pos);
                }
                // An unquoted `${UNDEFINED}` stays one word rather than a block.
                '$' if chars.get(i + 1).is_some_and(|c| c.c == '{') => {
                    let close = chars[i..]
                        .iter()
                        .position(|c| c.c == '}')
                        .map_or(chars.len(), |n| i + n + 1);
                    text.extend(chars[i..close].iter().map(|c| c.c));
                    i = close;
                }
                c => {
                    text.push(c);
                    i += 1;
                }
            }
        }
        (text, quoted, i)
    }

    /// Read a quoted section opening at `open`; returns the index after it.
    fn quoted(&mut self, chars: &[Ch], open: usize, text: &mut String, pos: &Pos) -> usize {
        let quote = chars[open].c;
        let mut i = open + 1;
        while i < chars.len() {
            let c = chars[i].c;
            if c == quote && !chars[i].literal {
                return i + 1;
            }
            if c == '\\' {
                i = unescape(chars, i + 1, text);
                continue;
            }
            text.push(c);
            i += 1;
        }
        let at = Pos {
            col: chars[open].col,
            ..pos.clone()
        };
        self.diags.warn(
            &at,
            format!("unterminated {quote} quote: the string runs to the end of the line"),
        );
        i
    }

    /// `include PATTERN`: `rest` is the line after the keyword; the pattern is
    /// taken raw (so `{a,b}` braces stay part of it), comments removed.
    fn include(
        &mut self,
        rest: &[Ch],
        word: &str,
        file: &Arc<str>,
        lineno: u32,
        dir: &Path,
        depth: usize,
    ) {
        let end = rest
            .iter()
            .position(|c| is_comment(*c))
            .unwrap_or(rest.len());
        let rest = &rest[..end];
        let Some(start) = rest.iter().position(|c| !c.c.is_whitespace()) else {
            let col = rest.first().map_or(1, |c| c.col.saturating_sub(1));
            self.diags.warn(
                &Pos::new(file, lineno, col),
                format!("`{word}` needs a file name or pattern; ignored"),
            );
            return;
        };
        let len = rest[start..]
            .iter()
            .position(|c| c.c.is_whitespace())
            .unwrap_or(rest.len() - start);
        let pattern: String = rest[start..start + len].iter().map(|c| c.c).collect();
        let at = Pos::new(file, lineno, rest[start].col);
        if let Some(extra) = rest[start + len..].iter().find(|c| !c.c.is_whitespace()) {
            let msg =
                format!("`{word}` takes one file name or pattern; the rest of the line is ignored");
            self.diags.warn(&Pos::new(file, lineno, extra.col), msg);
        }
        if depth >= MAX_DEPTH {
            self.diags.error(
                &at,
                format!("includes nested more than {MAX_DEPTH} deep; `{pattern}` not read"),
            );
            return;
        }
        let pattern = pattern.as_str();
        let at = &at;
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        for alt in expand_braces(&full.display().to_string()) {
            if alt.contains(['*', '?', '[']) {
                let mut matches: Vec<PathBuf> = match glob::glob(&alt) {
                    Ok(paths) => paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect(),
                    Err(e) => {
                        self.diags
                            .warn(at, format!("bad include pattern `{alt}`: {e}"));
                        continue;
                    }
                };
                matches.sort();
                if matches.is_empty() {
                    self.diags
                        .warn(at, format!("include pattern `{alt}` matches no file"));
                }
                for m in matches {
                    self.include_one(&m, at, depth);
                }
            } else {
                let p = PathBuf::from(&alt);
                if p.is_file() {
                    self.include_one(&p, at, depth);
                } else {
                    self.diags
                        .warn(at, format!("include file `{alt}` not found; skipped"));
                }
            }
        }
    }

    fn include_one(&mut self, path: &Path, at: &Pos, depth: usize) {
        let canon = canonical(path);
        if let Some(i) = self.stack.iter().position(|p| *p == canon) {
            let chain: Vec<String> = self.stack[i..]
                .iter()
                .chain([&canon])
                .map(|p| p.display().to_string())
                .collect();
            self.diags.error(
                at,
                format!("include loop: {}; not read again", chain.join(" -> ")),
            );
            return;
        }
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                self.diags.warn(
                    at,
                    format!(
                        "cannot read include file `{}`: {e}; skipped",
                        path.display()
                    ),
                );
                return;
            }
        };
        let name: Arc<str> = Arc::from(path.display().to_string());
        self.stack.push(canon);
        self.source(&text, &name, &parent_dir(path), depth + 1);
        self.stack.pop();
    }
}

/// The include keyword starting a line, and the index just after it.
fn include_word(chars: &[Ch]) -> Option<(&'static str, usize)> {
    let start = chars.iter().position(|c| !c.c.is_whitespace())?;
    if chars[start].c != 'i' {
        return None;
    }
    let len = chars[start..]
        .iter()
        .position(|c| c.c.is_whitespace())
        .unwrap_or(chars.len() - start);
    let word: String = chars[start..start + len].iter().map(|c| c.c).collect();
    INCLUDE_WORDS
        .iter()
        .find(|w| **w == word)
        .map(|w| (*w, start + len))
}

/// Parse `$NAME=value` (only whitespace may precede the `$`).
fn definition(line: &str) -> Option<(String, &str)> {
    let rest = line.trim_start().strip_prefix('$')?;
    let eq = rest.find('=')?;
    let name = &rest[..eq];
    valid_name(name).then(|| (name.to_string(), strip_comment(&rest[eq + 1..]).trim()))
}

fn valid_name(name: &str) -> bool {
    let mut cs = name.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Cut a `#` / `!` comment that is outside quotes.
fn strip_comment(s: &str) -> &str {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#' | '!') => return &s[..i],
            _ => {}
        }
    }
    s
}

fn is_comment(ch: Ch) -> bool {
    !ch.literal && (ch.c == '#' || ch.c == '!')
}

/// Column just past the last character (for "end of line" positions).
fn eol_col(chars: &[Ch]) -> u32 {
    chars.last().map_or(1, |c| c.col.saturating_add(1))
}

/// Decode one escape after a backslash at `i - 1`; returns the next index.
fn unescape(chars: &[Ch], i: usize, text: &mut String) -> usize {
    let Some(c) = chars.get(i).map(|c| c.c) else {
        text.push('\\');
        return i;
    };
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'E' => Some('\x1b'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        _ => None,
    };
    if let Some(s) = simple {
        text.push(s);
        return i + 1;
    }
    let digits = |from: usize, radix: u32, max: usize| {
        chars[from..]
            .iter()
            .take(max)
            .take_while(|c| c.c.is_digit(radix))
            .count()
    };
    match c {
        'x' => {
            let n = digits(i + 1, 16, 2);
            let s: String = chars[i + 1..i + 1 + n].iter().map(|c| c.c).collect();
            match u32::from_str_radix(&s, 16).ok().and_then(char::from_u32) {
                Some(v) if n > 0 => text.push(v),
                _ => text.push('x'),
            }
            i + 1 + n
        }
        '0'..='7' => {
            let n = digits(i, 8, 3);
            let s: String = chars[i..i + n].iter().map(|c| c.c).collect();
            if let Some(v) = u32::from_str_radix(&s, 8).ok().and_then(char::from_u32) {
                text.push(v);
            }
            i + n
        }
        'c' => match chars.get(i + 1) {
            Some(ch) => {
                text.push(char::from_u32(u32::from(ch.c) & 0x1f).unwrap_or(ch.c));
                i + 2
            }
            None => i + 1,
        },
        other => {
            text.push(other);
            i + 1
        }
    }
}

/// csh-style `{a,b}` expansion, as glob(3) with GLOB_BRACE does.
fn expand_braces(pattern: &str) -> Vec<String> {
    let Some(open) = pattern.find('{') else {
        return vec![pattern.to_string()];
    };
    let mut depth = 0usize;
    let mut parts = Vec::new();
    let mut part_start = open + 1;
    for (i, c) in pattern[open..].char_indices().map(|(i, c)| (i + open, c)) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(&pattern[part_start..i]);
                    let (head, tail) = (&pattern[..open], &pattern[i + 1..]);
                    return parts
                        .iter()
                        .flat_map(|p| expand_braces(&format!("{head}{p}{tail}")))
                        .collect();
                }
            }
            ',' if depth == 1 => {
                parts.push(&pattern[part_start..i]);
                part_start = i + 1;
            }
            _ => {}
        }
    }
    vec![pattern.to_string()]
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str, id: &str) -> Vec<String> {
        let mut d = Diags::default();
        lex_str(text, "t.conf", id, &mut d)
            .into_iter()
            .map(|t| match t.kind {
                TokenKind::Word { text, .. } => text,
                TokenKind::Open => "{".into(),
                TokenKind::Close => "}".into(),
                TokenKind::Eol => ";".into(),
            })
            .collect()
    }

    #[test]
    fn comments_and_braces() {
        assert_eq!(words("a b # c\nd! e\n", "x"), ["a", "b", ";", "d", ";"]);
        assert_eq!(
            words("virtual_server 1.2.3.4 80{\n}", "x"),
            ["virtual_server", "1.2.3.4", "80", "{", ";", "}", ";"]
        );
        assert_eq!(words("x{y}z", "x"), ["x", "{", "y", "}", "z", ";"]);
    }

    #[test]
    fn quotes() {
        assert_eq!(
            words(r#"a "b c" 'd # e' f"g h"i"#, "x"),
            ["a", "b c", "d # e", "fg hi", ";"]
        );
        assert_eq!(words(r#"s "a\tb\x41\101\"""#, "x"), ["s", "a\tbAA\"", ";"]);
    }

    #[test]
    fn unterminated_quote_warns() {
        let mut d = Diags::default();
        let t = lex_str("script \"abc def", "t.conf", "x", &mut d);
        assert_eq!(t.len(), 3);
        assert_eq!(
            d.into_vec()[0].to_string(),
            "t.conf:1:8: warning: unterminated \" quote: the string runs to the end of the line"
        );
    }

    #[test]
    fn conditionals() {
        let text = "@main a 1\n@backup a 2\n@^main b 3\n@^backup b 4\n";
        assert_eq!(words(text, "main"), ["a", "1", ";", "b", "4", ";"]);
        assert_eq!(words(text, "backup"), ["a", "2", ";", "b", "3", ";"]);
    }

    #[test]
    fn parameters() {
        let text = "$BASE=10.2.${SUB}\n$SUB=0\n${BASE}.100/32\n$SUB=10\n${BASE}.100/32\n$P=7\nprio $P x$P $P.\n";
        assert_eq!(
            words(text, "x"),
            [
                "10.2.0.100/32",
                ";",
                "10.2.10.100/32",
                ";",
                "prio",
                "7",
                "x7",
                "$P.",
                ";"
            ]
        );
        assert_eq!(
            words("$IF=@main\n$IF priority 240\n", "main"),
            ["priority", "240", ";"]
        );
        assert_eq!(
            words("$IF=@main\n$IF priority 240\n", "other"),
            Vec::<String>::new()
        );
        assert_eq!(
            words("@main $PR=240\n@other $PR=200\np $PR\n", "main"),
            ["p", "240", ";"]
        );
        assert_eq!(words("x ${UNDEF} $1\n", "x"), ["x", "${UNDEF}", "$1", ";"]);
        assert_eq!(words("a${_HASH}b ${_BANG}\n", "x"), ["a#b", "!", ";"]);
    }

    #[test]
    fn exponential_parameters_are_cut_off() {
        let mut d = Diags::default();
        lex_str("$A=$A $A\nv $A\n", "t.conf", "x", &mut d);
        assert!(
            d.into_vec()
                .iter()
                .any(|m| m.message.contains("without bound"))
        );
        let mut d = Diags::default();
        lex_str("$B=$C\\\n$C\n$C=$B\\\n$B\n$B\n", "t.conf", "x", &mut d);
        assert!(
            d.into_vec()
                .iter()
                .any(|m| m.message.contains("without bound"))
        );
    }

    #[test]
    fn multiline_parameter() {
        let text = "$BLK= \\\n  a {\\\n   b $N\\\n  }\n$N=1\n$BLK\n";
        assert_eq!(words(text, "x"), ["a", "{", ";", "b", "1", ";", "}", ";"]);
    }

    #[test]
    fn recursive_parameter_is_reported() {
        let mut d = Diags::default();
        lex_str("$A=${A}x\nv $A\n", "t.conf", "x", &mut d);
        assert!(d.into_vec()[0].message.contains("does not terminate"));
    }

    #[test]
    fn columns_count_characters() {
        let mut d = Diags::default();
        let t = lex_str("状态 MATSER", "t.conf", "x", &mut d);
        assert_eq!(t[1].pos.col, 4);
    }

    #[test]
    fn braces_expand() {
        assert_eq!(expand_braces("a{b,c{d,e}}f"), ["abf", "acdf", "acef"]);
        assert_eq!(expand_braces("plain"), ["plain"]);
        assert_eq!(expand_braces("open{a,b"), ["open{a,b"]);
    }

    #[test]
    fn seq_is_refused() {
        let mut d = Diags::default();
        lex_str("~SEQ(X, 1, 3) a $X\n", "t.conf", "x", &mut d);
        assert!(d.into_vec()[0].message.contains("not supported"));
    }
}
