//! Parser: token stream → generic tree of statements with positions.
//!
//! A statement is a keyword and its arguments on one line, optionally
//! followed by a `{ ... }` block (the `{` may end the line or start the next
//! one). The parser knows nothing about keepalived's keywords except through
//! the `needs_block` callback, used to recover like keepalived does when a
//! block keyword has no `{`: the lines that follow are read as its block.
//!
//! It never recurses, and blocks nested deeper than keepalived ever needs
//! are dropped, so no input can overflow the stack (here or when the tree is
//! later walked or dropped).

use super::diag::{Diags, Pos};
use super::lexer::{Token, TokenKind};

/// One statement: `keyword args... [{ children }]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub keyword: String,
    pub pos: Pos,
    pub args: Vec<Arg>,
    /// `Some` when the statement has a block (possibly empty).
    pub block: Option<Vec<Node>>,
}

/// One argument of a statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub text: String,
    pub quoted: bool,
    pub pos: Pos,
}

impl Node {
    /// The keyword and its arguments as written, for messages.
    pub fn line_text(&self) -> String {
        std::iter::once(self.keyword.as_str())
            .chain(self.args.iter().map(|a| a.text.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Build the statement tree. `needs_block(path, keyword)` says whether
/// `keyword`, inside the blocks named by `path`, must open a block.
pub fn parse(
    tokens: Vec<Token>,
    needs_block: &dyn Fn(&[String], &str) -> bool,
    diags: &mut Diags,
) -> Vec<Node> {
    let mut p = Parser {
        frames: vec![Frame {
            owner: None,
            children: Vec::new(),
        }],
        path: Vec::new(),
        needs_block,
        diags,
        too_deep_reported: false,
    };
    let mut current: Option<Node> = None;
    // A finished statement that may still receive a `{` starting the next line.
    let mut pending: Option<Node> = None;
    for tok in tokens {
        match tok.kind {
            TokenKind::Word { text, quoted } => {
                if let Some(node) = pending.take() {
                    p.settle(node, false);
                }
                match current.as_mut() {
                    Some(node) => node.args.push(Arg {
                        text,
                        quoted,
                        pos: tok.pos,
                    }),
                    None => {
                        current = Some(Node {
                            keyword: text,
                            pos: tok.pos,
                            args: Vec::new(),
                            block: None,
                        })
                    }
                }
            }
            TokenKind::Eol => {
                if let Some(node) = current.take()
                    && let Some(prev) = pending.replace(node)
                {
                    p.settle(prev, false);
                }
            }
            TokenKind::Open => {
                let owner = current.take().or_else(|| pending.take());
                if owner.is_none() {
                    p.diags.error(
                        &tok.pos,
                        "`{` without a keyword before it; this block is ignored",
                    );
                }
                p.open(owner);
            }
            TokenKind::Close => {
                if let Some(node) = pending.take() {
                    p.settle(node, true);
                }
                if let Some(node) = current.take() {
                    p.settle(node, true);
                }
                if p.frames.len() == 1 {
                    p.diags
                        .error(&tok.pos, "unmatched `}`: no block is open here");
                } else {
                    p.close();
                }
            }
        }
    }
    for node in [pending, current].into_iter().flatten() {
        p.settle(node, true);
    }
    while p.frames.len() > 1 {
        if let Some(Some(owner)) = p.frames.last().map(|f| f.owner.as_ref()) {
            let msg = format!(
                "`{}` block is never closed: a `}}` is missing before the end of the file",
                owner.keyword
            );
            p.diags.warn(&owner.pos, msg);
        }
        p.close();
    }
    p.frames.pop().map(|f| f.children).unwrap_or_default()
}

struct Frame {
    /// The statement owning this block; `None` for the file itself and for
    /// stray `{` blocks (whose contents are dropped).
    owner: Option<Node>,
    children: Vec<Node>,
}

struct Parser<'a> {
    frames: Vec<Frame>,
    /// Keywords of the open blocks, outermost first.
    path: Vec<String>,
    needs_block: &'a dyn Fn(&[String], &str) -> bool,
    diags: &'a mut Diags,
    too_deep_reported: bool,
}

/// keepalived's deepest real nesting is about 5 (virtual_server, real_server,
/// HTTP_GET, url); anything far deeper is garbage.
const MAX_NESTING: usize = 32;

impl Parser<'_> {
    /// Place a finished statement that got no `{`.
    fn settle(&mut self, node: Node, next_is_close: bool) {
        if !(self.needs_block)(&self.path, &node.keyword) {
            self.push(node);
            return;
        }
        if next_is_close {
            let msg = format!("`{}` needs a `{{ ... }}` block after it", node.line_text());
            self.diags.error(&node.pos, msg);
            self.push(node);
        } else {
            let msg = format!(
                "`{}` needs a `{{` at the end of the line; as keepalived does, the lines below are read as its block, until a `}}` closes it",
                node.line_text()
            );
            self.diags.error(&node.pos, msg);
            self.open(Some(node));
        }
    }

    fn push(&mut self, node: Node) {
        if let Some(frame) = self.frames.last_mut() {
            frame.children.push(node);
        }
    }

    fn open(&mut self, mut owner: Option<Node>) {
        if self.frames.len() > MAX_NESTING {
            if let Some(node) = owner.take().filter(|_| !self.too_deep_reported) {
                self.too_deep_reported = true;
                self.diags.error(
                    &node.pos,
                    format!(
                        "blocks nested more than {MAX_NESTING} deep; the inner blocks are ignored"
                    ),
                );
            }
            owner = None;
        }
        self.path.push(
            owner
                .as_ref()
                .map_or_else(String::new, |n| n.keyword.clone()),
        );
        self.frames.push(Frame {
            owner,
            children: Vec::new(),
        });
    }

    fn close(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        self.path.pop();
        if let Some(mut owner) = frame.owner {
            owner.block = Some(frame.children);
            self.push(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lexer::lex_str;

    fn tree(text: &str) -> (Vec<Node>, Vec<String>) {
        let mut d = Diags::default();
        let toks = lex_str(text, "t.conf", "x", &mut d);
        let blocks = |_: &[String], kw: &str| kw == "real_server";
        let nodes = parse(toks, &blocks, &mut d);
        (
            nodes,
            d.into_vec().iter().map(ToString::to_string).collect(),
        )
    }

    fn shape(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| match &n.block {
                Some(c) => format!("{}[{}]", n.line_text(), shape(c)),
                None => n.line_text(),
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    #[test]
    fn nested_blocks() {
        let (n, d) = tree("a 1 {\n b 2\n c {\n  d\n }\n}\ne\n");
        assert_eq!(shape(&n), "a 1[b 2;c[d]];e");
        assert!(d.is_empty());
        assert_eq!((n[0].args[0].pos.line, n[0].args[0].pos.col), (1, 3));
    }

    #[test]
    fn brace_on_next_line_and_one_line_blocks() {
        let (n, d) = tree("a\n{\n b\n}\nurl { path / }\n");
        assert_eq!(shape(&n), "a[b];url[path /]");
        assert!(d.is_empty());
    }

    #[test]
    fn missing_open_brace_recovers_like_keepalived() {
        let (n, d) = tree("vs {\n real_server 1.1.1.1 80\n  weight 1\n }\n}\n}\n");
        assert_eq!(shape(&n), "vs[real_server 1.1.1.1 80[weight 1]]");
        assert_eq!(d.len(), 2);
        assert!(d[0].starts_with("t.conf:2:2: error: `real_server 1.1.1.1 80` needs a `{`"));
        assert_eq!(
            d[1],
            "t.conf:6:1: error: unmatched `}`: no block is open here"
        );
    }

    #[test]
    fn block_keyword_right_before_close() {
        let (n, d) = tree("vs {\n real_server 1.1.1.1 80\n}\n");
        assert_eq!(shape(&n), "vs[real_server 1.1.1.1 80]");
        assert!(d[0].contains("needs a `{ ... }` block"));
    }

    #[test]
    fn unclosed_block_is_reported() {
        let (n, d) = tree("vs 1 {\n a {\n  b\n");
        assert_eq!(shape(&n), "vs 1[a[b]]");
        assert_eq!(d.len(), 2);
        assert!(d[0].starts_with("t.conf:2:2: warning: `a` block is never closed"));
    }

    #[test]
    fn stray_open_brace() {
        let (n, d) = tree("{\n x\n}\ny\n");
        assert_eq!(shape(&n), "y");
        assert!(d[0].contains("without a keyword"));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let text = "a {".repeat(100_000);
        let (n, d) = tree(&text);
        assert_eq!(n.len(), 1);
        assert!(d.iter().any(|m| m.contains("nested more than")));
    }
}
