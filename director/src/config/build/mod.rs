//! Builder: statement tree → typed `Config`, reporting every keyword it
//! does not understand and every value it cannot accept.
//!
//! `global.rs`, `vrrp.rs` and `lvs.rs` hold one handler per block; this file
//! holds what they share: argument access with diagnostics, old spellings,
//! and the "unknown keyword" reporter with its hints.

mod global;
mod lvs;
mod vrrp;

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use super::diag::{Diags, Pos};
use super::keywords::{self, Ctx};
use super::model::{Config, RunAs, Script};
use super::parser::{Arg, Node};
use super::validate::Refs;
use super::values::{self, ValueError};

/// Build the config from the parsed tree. Cross-object references are
/// returned for `validate` to check once everything is known.
pub fn build(nodes: &[Node], diags: &mut Diags) -> (Config, Refs) {
    let mut cx = Cx {
        diags,
        refs: Refs::default(),
    };
    let mut config = Config::default();
    // global_defs first: instances take their defaults from it.
    for node in nodes.iter().filter(|n| n.keyword == "global_defs") {
        cx.no_args(node, 0);
        global::global_defs(&mut cx, node, &mut config.global);
    }
    let mut names = vrrp::Names::default();
    for node in nodes.iter().filter(|n| n.keyword != "global_defs") {
        top_level(&mut cx, node, &mut names, &mut config);
    }
    lvs::resolve_file_checks(&mut config);
    lvs::resolve_script_users(&mut config);
    (config, cx.refs)
}

/// One top-level statement (except global_defs).
fn top_level(cx: &mut Cx, node: &Node, names: &mut vrrp::Names, config: &mut Config) {
    let Some(kw) = cx.keyword(Ctx::Top, node) else {
        return;
    };
    match kw.as_ref() {
        "global_defs" => {
            let mut scratch = config.global.clone();
            global::global_defs(cx, node, &mut scratch);
        }
        "vrrp_script" => vrrp::script(cx, node, names, config),
        "track_file" => vrrp::track_file(cx, node, names, config),
        "vrrp_sync_group" => vrrp::sync_group(cx, node, names, config),
        "vrrp_instance" => vrrp::instance(cx, node, names, config),
        "virtual_server_group" => lvs::group(cx, node, config),
        "virtual_server" => lvs::virtual_server(cx, node, config),
        _ => cx.unknown(Ctx::Top, node, None),
    }
}

/// Shared state of one build: the diagnostics sink and collected references.
pub struct Cx<'d> {
    pub diags: &'d mut Diags,
    pub refs: Refs,
}

/// The block a statement sits in, for messages ("in `vrrp_instance VI_1`").
pub struct Parent<'a> {
    pub node: &'a Node,
}

impl<'a> Parent<'a> {
    pub fn new(node: &'a Node) -> Self {
        Parent { node }
    }

    /// The block's opening line as written (built only when reporting).
    pub fn label(&self) -> String {
        self.node.line_text()
    }
}

impl Cx<'_> {
    /// The statements of a block keyword (empty when it has no block; the
    /// parser already reported that).
    pub fn body<'n>(&self, node: &'n Node) -> &'n [Node] {
        node.block.as_deref().unwrap_or(&[])
    }

    /// The keyword of a statement in `ctx`, with old spellings translated
    /// (and reported). `None` for obsolete keywords, already reported.
    pub fn keyword<'n>(&mut self, ctx: Ctx, node: &'n Node) -> Option<Cow<'n, str>> {
        if let Some(msg) = keywords::obsolete(ctx, &node.keyword) {
            self.diags.warn(&node.pos, msg);
            return None;
        }
        let Some(r) = ctx.renames().iter().find(|r| r.old == node.keyword) else {
            return Some(Cow::Borrowed(&node.keyword));
        };
        let args: Vec<&str> = node.args.iter().map(|a| a.text.as_str()).collect();
        let modern = std::iter::once(r.new)
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ");
        let msg = match r.old {
            "nb_get_retry" => format!(
                "`nb_get_retry` is the keepalived 1.x name of `retry` (keepalived 2.x ignores it); read as `{modern}`"
            ),
            _ => format!(
                "`{}` is the old name of `{}`; read as `{modern}`",
                r.old, r.new
            ),
        };
        self.diags.warn(&node.pos, msg);
        Some(Cow::Borrowed(r.new))
    }

    /// Report a statement `ctx` does not know, with the most useful hint.
    pub fn unknown(&mut self, ctx: Ctx, node: &Node, parent: Option<&Parent>) {
        let kw = node.keyword.as_str();
        let place = parent.map_or_else(
            || "at the top level".to_string(),
            |p| format!("in `{}`", p.label()),
        );
        let ignored = if node.block.is_some() {
            "it and its block are ignored"
        } else {
            "ignored"
        };
        if ctx.unsupported().contains(&kw) {
            let msg = format!(
                "`{kw}` is a keepalived keyword that director does not implement; {ignored}"
            );
            self.diags.warn(&node.pos, msg);
            return;
        }
        // A top-level block (maybe glued to its name) where it cannot be.
        let top = match Ctx::Top.child(kw) {
            Some(_) => Some((kw.to_string(), None)),
            None => keywords::glued(Ctx::Top, kw)
                .map(|(k, name)| (k.to_string(), Some(name.to_string()))),
        };
        if let Some((block, name)) = top {
            let meant = name
                .as_ref()
                .map(|n| format!(" (did you mean `{block} {n}`, with a space?)"))
                .unwrap_or_default();
            let checked = if node.block.is_some() {
                " (its content is still checked below)"
            } else {
                ""
            };
            match parent {
                Some(p) => {
                    let msg = format!(
                        "`{kw}`{meant} cannot appear inside `{}` (opened at {}): is a `}}` missing before this line? Ignored, as keepalived does{checked}",
                        p.label(),
                        p.node.pos.relative_to(&node.pos)
                    );
                    self.diags.error(&node.pos, msg);
                }
                None => {
                    let msg = format!(
                        "unknown keyword `{kw}`{meant}; ignored with its block, as keepalived does{checked}"
                    );
                    self.diags.warn(&node.pos, msg);
                }
            }
            if node.block.is_some() {
                self.check_as_top(&block, name.as_deref(), node);
            }
            return;
        }
        if let Some(s) = keywords::hint(ctx, kw).or_else(|| keywords::suggest(ctx, kw)) {
            self.diags.warn(
                &node.pos,
                format!("unknown keyword `{kw}` {place}; did you mean `{s}`? ({ignored})"),
            );
            return;
        }
        if let Some(home) = keywords::home_of(ctx, kw) {
            let msg = format!(
                "`{kw}` is not valid {place} (it belongs in `{}`); {ignored}",
                home.name()
            );
            self.diags.warn(&node.pos, msg);
            return;
        }
        self.diags.warn(
            &node.pos,
            format!("unknown keyword `{kw}` {place}; {ignored}"),
        );
    }

    /// Check a block keepalived ignores (misplaced, or its keyword glued to
    /// its name) as if it were a `keyword` block, so that its own mistakes
    /// are reported too. The result is thrown away.
    fn check_as_top(&mut self, keyword: &str, name: Option<&str>, node: &Node) {
        let mut n = node.clone();
        n.keyword = keyword.to_string();
        if let Some(name) = name {
            let offset = node
                .keyword
                .chars()
                .count()
                .saturating_sub(name.chars().count());
            let col = node
                .pos
                .col
                .saturating_add(u32::try_from(offset).unwrap_or(0));
            let pos = Pos {
                col,
                ..node.pos.clone()
            };
            n.args.insert(
                0,
                Arg {
                    text: name.to_string(),
                    quoted: false,
                    pos,
                },
            );
        }
        let saved = std::mem::take(&mut self.refs);
        top_level(
            self,
            &n,
            &mut vrrp::Names::default(),
            &mut Config::default(),
        );
        self.refs = saved;
    }

    /// Warn about arguments past the first `max` (one warning per line).
    pub fn no_args(&mut self, node: &Node, max: usize) {
        if let Some(extra) = node.args.get(max) {
            self.extra_arg(node, extra);
        }
    }

    fn extra_arg(&mut self, node: &Node, extra: &Arg) {
        let text = &extra.text;
        let msg = if text.starts_with("//") {
            format!(
                "unexpected argument `{text}` after `{}`: `//` does not start a comment in keepalived.conf (use `#` or `!`); ignored",
                node.keyword
            )
        } else {
            format!(
                "unexpected argument `{text}` after `{}`; ignored",
                node.keyword
            )
        };
        self.diags.warn(&extra.pos, msg);
    }

    /// Warn when a statement that takes no block has one.
    pub fn no_block(&mut self, node: &Node) {
        if node.block.is_some() {
            let msg = format!(
                "`{}` does not take a `{{ }}` block; the block is ignored",
                node.keyword
            );
            self.diags.warn(&node.pos, msg);
        }
    }

    /// The `i`th argument, or an error saying what is missing.
    pub fn arg<'n>(&mut self, node: &'n Node, i: usize, what: &str) -> Option<&'n Arg> {
        let arg = node.args.get(i);
        if arg.is_none() {
            self.diags
                .error(&node.pos, format!("`{}` needs {what}", node.keyword));
        }
        arg
    }

    /// Report a bad value of `node`'s argument `arg`.
    pub fn bad(&mut self, node: &Node, arg: &Arg, err: &ValueError, note: &str) {
        let undefined = if arg.text.contains('$') {
            " (a `$` parameter that is not defined stays as written)"
        } else {
            ""
        };
        self.diags.error(
            &arg.pos,
            format!("`{}` {err}{note}{undefined}; ignored", node.keyword),
        );
    }

    /// A single-argument statement: its value as a string.
    pub fn string(&mut self, node: &Node) -> Option<String> {
        self.no_block(node);
        self.no_args(node, 1);
        self.arg(node, 0, "a value").map(|a| a.text.clone())
    }

    /// A single integer argument within `[min, max]`.
    pub fn int<T: TryFrom<i64>>(
        &mut self,
        node: &Node,
        min: i64,
        max: i64,
        note: &str,
    ) -> Option<T> {
        self.no_block(node);
        self.no_args(node, 1);
        let arg = self.arg(node, 0, &format!("a number from {min} to {max}"))?;
        values::int(&arg.text, min, max)
            .map_err(|e| self.bad(node, arg, &e, note))
            .ok()
    }

    /// A single time argument (seconds, fractions allowed) within `[min, max]`.
    pub fn timer(&mut self, node: &Node, min: f64, max: f64) -> Option<Duration> {
        self.no_block(node);
        self.no_args(node, 1);
        let arg = self.arg(node, 0, "a time in seconds")?;
        values::timer(&arg.text, min, max)
            .map_err(|e| self.bad(node, arg, &e, ""))
            .ok()
    }

    /// A single IP address argument.
    pub fn ip(&mut self, node: &Node) -> Option<IpAddr> {
        self.no_block(node);
        self.no_args(node, 1);
        let arg = self.arg(node, 0, "an IP address")?;
        values::ip(&arg.text)
            .map_err(|e| self.bad(node, arg, &e, ""))
            .ok()
    }

    /// A flag with an optional `<BOOL>` argument (`alpha`, `smtp_alert on`).
    pub fn flag(&mut self, node: &Node) -> bool {
        self.no_block(node);
        self.no_args(node, 1);
        match node.args.first() {
            None => true,
            Some(arg) => values::boolean(&arg.text)
                .map_err(|e| self.bad(node, arg, &e, ""))
                .unwrap_or(false),
        }
    }

    /// A flag that takes no argument at all (`nopreempt`, `ha_suspend`).
    pub fn bare(&mut self, node: &Node) -> bool {
        self.no_block(node);
        self.no_args(node, 0);
        true
    }

    /// A notify-style script: `KEYWORD SCRIPT [USER [GROUP]]`.
    pub fn script(&mut self, node: &Node) -> Option<Script> {
        self.no_block(node);
        self.no_args(node, 3);
        let cmd = self.arg(node, 0, "a script")?;
        let mut run_as = None;
        if let Some(user) = node.args.get(1) {
            let group = node.args.get(2);
            for name in std::iter::once(user).chain(group) {
                if !values::is_user_name(&name.text) {
                    let role = if std::ptr::eq(name, user) {
                        "user"
                    } else {
                        "group"
                    };
                    let msg = format!(
                        "`{}` reads `{}` after the script as the {role} to run it as (`{} SCRIPT [USER [GROUP]]`), but it is not a valid {role} name, so the script cannot run; remove it, or quote the whole command",
                        node.keyword, name.text, node.keyword
                    );
                    self.diags.error(&name.pos, msg);
                }
            }
            run_as = Some(RunAs {
                user: user.text.clone(),
                group: group.map(|g| g.text.clone()),
            });
        }
        Some(Script {
            command: cmd.text.clone(),
            argv: values::split_command(&cmd.text),
            run_as,
        })
    }

    /// `user USER [GROUP]`.
    pub fn run_as(&mut self, node: &Node) -> Option<RunAs> {
        self.no_block(node);
        self.no_args(node, 2);
        let user = self.arg(node, 0, "a user name")?;
        Some(RunAs {
            user: user.text.clone(),
            group: node.args.get(1).map(|g| g.text.clone()),
        })
    }

    /// A list block's entries, each checked to be a plain value line.
    pub fn entries<'n>(&mut self, node: &'n Node) -> &'n [Node] {
        self.no_args(node, 0);
        let body = self.body(node);
        for entry in body {
            self.no_block(entry);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keywords::CheckerKind;
    use crate::config::{LoadOptions, load_str};

    /// Wrap `line` so that it sits in a block of kind `ctx`.
    fn wrap(ctx: Ctx, line: &str) -> String {
        match ctx {
            Ctx::Top => line.to_string(),
            Ctx::GlobalDefs => format!("global_defs {{\n{line}\n}}"),
            Ctx::VrrpScript => format!("vrrp_script s {{\n{line}\n}}"),
            Ctx::TrackFile => format!("track_file f {{\n{line}\n}}"),
            Ctx::SyncGroup => format!("vrrp_sync_group g {{\n{line}\n}}"),
            Ctx::Instance => format!("vrrp_instance i {{\n{line}\n}}"),
            Ctx::Authentication => wrap(Ctx::Instance, &format!("authentication {{\n{line}\n}}")),
            Ctx::VirtualServer => format!("virtual_server 10.0.0.1 80 {{\n{line}\n}}"),
            Ctx::RealServer => wrap(
                Ctx::VirtualServer,
                &format!("real_server 10.0.0.2 80 {{\n{line}\n}}"),
            ),
            Ctx::Checker(k) => wrap(Ctx::RealServer, &format!("{} {{\n{line}\n}}", k.keyword())),
            Ctx::Url => wrap(
                Ctx::Checker(CheckerKind::Http),
                &format!("url {{\n{line}\n}}"),
            ),
            Ctx::VsGroup | Ctx::List | Ctx::Opaque => line.to_string(),
        }
    }

    /// Every keyword in the tables is handled by the builder (no "unknown").
    #[test]
    fn builder_handles_every_listed_keyword() {
        let ctxs = [
            Ctx::Top,
            Ctx::GlobalDefs,
            Ctx::VrrpScript,
            Ctx::TrackFile,
            Ctx::SyncGroup,
            Ctx::Instance,
            Ctx::Authentication,
            Ctx::VirtualServer,
            Ctx::RealServer,
            Ctx::Url,
        ];
        for ctx in ctxs.into_iter().chain(CheckerKind::ALL.map(Ctx::Checker)) {
            for kw in ctx.keywords() {
                let text = wrap(ctx, &format!("{kw} 1"));
                let loaded = load_str(&text, "t.conf", &LoadOptions::default());
                for d in &loaded.diagnostics {
                    assert!(
                        !d.message.contains("unknown keyword") && !d.message.contains("not valid"),
                        "{ctx:?} {kw}: {d}"
                    );
                }
            }
        }
    }
}
