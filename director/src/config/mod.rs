//! keepalived.conf compatibility: read a keepalived configuration unchanged
//! and tell the operator, with `FILE:LINE:COL`, everything that is wrong or
//! suspicious in it.
//!
//! ```no_run
//! use director::config::{load_file, LoadOptions};
//! let loaded = load_file("/etc/keepalived/keepalived.conf".as_ref(), &LoadOptions::default());
//! for d in &loaded.diagnostics {
//!     eprintln!("{d}");
//! }
//! std::process::exit(loaded.exit_code());
//! ```
//!
//! Pipeline: `lexer` (includes, comments, `$VAR`, `@id`) → `parser` (block
//! tree with positions) → `build` (typed `model` with keepalived's defaults,
//! per-keyword checks, using the `keywords` tables) → `validate`
//! (cross-object checks). None of the stages panics on any input.
//!
//! Choices where director says more than keepalived does:
//! - Arguments a keyword does not take are reported (keepalived silently
//!   drops them). This catches `//` used as a comment, which keepalived.conf
//!   does not have: `state MASTER // backup: BACKUP` is read as `state
//!   MASTER` plus a warning about `// backup: BACKUP`.
//! - Old spellings (`lb_algo`, `lb_kind`, `nb_get_retry`, `vrrp_track_file`)
//!   are read as their modern names, with a warning naming the new spelling.
//!   (`nb_get_retry` is honoured as `retry`, as keepalived 1.x did.)
//! - Keywords keepalived knows but director does not implement are ignored
//!   with a warning saying so.

mod build;
pub mod check;
mod diag;
mod host;
mod keywords;
mod lexer;
mod model;
mod parser;
pub mod testgen;
mod validate;
mod values;

use std::collections::HashMap;
use std::path::Path;

pub use diag::{Diagnostic, Severity};
pub use host::{Host, SystemHost};
pub use model::*;

/// How to read a configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The id matched by `@id` / `@^id` line prefixes. `None` uses the short
    /// host name, as keepalived does without `--config-id`.
    pub config_id: Option<String>,
}

/// A loaded configuration and everything worth telling about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Sorted by file (in order of first mention), line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// Where the objects were defined, for diagnostics found later.
    refs: validate::Refs,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// A diagnostic at the `virtual_server` of `vs` (the configuration's
    /// entry), for checks made outside the configuration, e.g. capacity.
    pub fn at_virtual_server(&self, vs: &VirtualServer, severity: Severity, message: String) -> Diagnostic {
        let pos = self.refs.virtual_servers.iter().find(|d| d.key == vs.key && d.protocol == vs.protocol).map(|d| &d.pos);
        diag::at(pos, severity, message)
    }

    /// A diagnostic at the `vrrp_instance` named `name`.
    pub fn at_instance(&self, name: &str, severity: Severity, message: String) -> Diagnostic {
        diag::at(self.refs.vrids.iter().find(|u| u.instance == name).map(|u| &u.pos), severity, message)
    }

    /// Adds diagnostics found after loading, keeping the order.
    pub fn extend(&mut self, more: Vec<Diagnostic>) {
        self.diagnostics.extend(more);
        self.diagnostics = sorted(std::mem::take(&mut self.diagnostics));
    }

    /// Host-dependent checks (see [`host::check`]).
    pub fn host_diagnostics(&self, host: &dyn Host, severity: Severity) -> Vec<Diagnostic> {
        host::check(&self.config, &self.refs, host, severity)
    }

    /// 0 = clean, 1 = warnings only (runs), 2 = errors (refused).
    pub fn exit_code(&self) -> i32 {
        match self.diagnostics.iter().map(|d| d.severity).max() {
            None => 0,
            Some(Severity::Warning) => 1,
            Some(Severity::Error) => 2,
        }
    }
}

/// Read a configuration file and the files it includes. An unreadable file
/// is reported as an error diagnostic; this never panics.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Loaded {
    let mut diags = diag::Diags::default();
    let config_id = config_id(opts);
    match lexer::lex_file(path, &config_id, &mut diags) {
        Some(tokens) => finish(tokens, diags),
        None => Loaded {
            config: Config::default(),
            diagnostics: diags.into_vec(),
            refs: validate::Refs::default(),
        },
    }
}

/// Read a configuration from memory; `name` is used in diagnostics and, if
/// it is a path, anchors relative includes.
pub fn load_str(text: &str, name: &str, opts: &LoadOptions) -> Loaded {
    let mut diags = diag::Diags::default();
    let tokens = lexer::lex_str(text, name, &config_id(opts), &mut diags);
    finish(tokens, diags)
}

fn config_id(opts: &LoadOptions) -> String {
    opts.config_id
        .clone()
        .unwrap_or_else(lexer::default_config_id)
}

fn finish(tokens: Vec<lexer::Token>, mut diags: diag::Diags) -> Loaded {
    let tree = parser::parse(tokens, &keywords::needs_block, &mut diags);
    let (config, refs) = build::build(&tree, &mut diags);
    validate::validate(&config, &refs, &mut diags);
    Loaded {
        config,
        diagnostics: sorted(diags.into_vec()),
        refs,
    }
}

/// Order diagnostics like a compiler: by file (first mention), line, column.
fn sorted(mut list: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut order: HashMap<String, usize> = HashMap::new();
    for d in &list {
        let n = order.len();
        order.entry(d.file.clone()).or_insert(n);
    }
    list.sort_by_key(|d| {
        (
            order.get(&d.file).copied().unwrap_or(usize::MAX),
            d.line,
            d.col,
        )
    });
    list
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn load(text: &str) -> Loaded {
        load_str(
            text,
            "t.conf",
            &LoadOptions {
                config_id: Some("node1".into()),
            },
        )
    }

    /// The keepalived-semantics messages: these tests leave out the notes
    /// on where the XDP data plane differs from IPVS (tested on their own).
    fn messages(l: &Loaded) -> Vec<String> {
        l.diagnostics
            .iter()
            .filter(|d| !d.message.contains("XDP"))
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn xdp_differences_from_ipvs_are_warned_at_the_line_that_decides() {
        let rs = " real_server 10.0.0.2 80 {\n }\n";
        let l = load(&format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n lvs_sched lc\n{rs}}}\nvirtual_server fwmark 7 {{\n lvs_sched sh\n{rs}}}\n"));
        let m: Vec<String> = l.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("t.conf:3:2: warning:") && m[0].contains("lvs_sched lc"), "{m:?}");
        assert!(m[1].starts_with("t.conf:7:1: warning:") && m[1].contains("firewall marks"), "{m:?}");
    }

    const MINIMAL_VRRP: &str = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 51\n virtual_ipaddress {\n  10.0.0.100\n }\n}\n";

    #[test]
    fn vrrp_defaults() {
        let l = load(MINIMAL_VRRP);
        assert_eq!(messages(&l), Vec::<String>::new());
        assert_eq!(l.exit_code(), 0);
        let i = &l.config.instances[0];
        assert_eq!(i.priority, 100);
        assert_eq!(i.state, VrrpState::Backup);
        assert_eq!(i.advert_int, Duration::from_secs(1));
        assert_eq!(i.version, 2);
        assert_eq!(i.garp_master_delay, Duration::from_secs(5));
        assert_eq!(i.garp_master_repeat, 5);
        assert!(!i.nopreempt);
        assert_eq!(i.virtual_ipaddress[0].prefix, 32);
    }

    #[test]
    fn master_without_priority_is_address_owner() {
        let l = load(&MINIMAL_VRRP.replace("interface eth0", "interface eth0\n state MASTER"));
        assert_eq!(l.config.instances[0].priority, 255);
        let l = load(&MINIMAL_VRRP.replace("interface eth0", "interface eth0\n priority 255"));
        assert_eq!(l.config.instances[0].state, VrrpState::Master);
    }

    #[test]
    fn vrrp_script_defaults() {
        let l = load("vrrp_script chk {\n user nobody\n script \"pidof nginx\"\n}\n");
        let s = &l.config.vrrp_scripts[0];
        assert_eq!(
            (s.interval, s.weight, s.rise, s.fall),
            (Duration::from_secs(1), 0, 1, 1)
        );
        assert_eq!(
            s.script.as_ref().map(|s| s.argv.clone()),
            Some(vec!["pidof".to_string(), "nginx".to_string()])
        );
        let user = s
            .script
            .as_ref()
            .and_then(|s| s.run_as.as_ref())
            .map(|r| r.user.as_str());
        assert_eq!(user, Some("nobody"));
    }

    const MINIMAL_VS: &str = "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.0.2 80 {\n  TCP_CHECK {\n  }\n }\n}\n";

    #[test]
    fn lvs_defaults() {
        let l = load(MINIMAL_VS);
        assert_eq!(messages(&l), Vec::<String>::new());
        let vs = &l.config.virtual_servers[0];
        assert_eq!(vs.delay_loop, Duration::from_secs(60));
        assert_eq!(vs.lvs_sched, "wlc");
        assert_eq!(vs.lvs_method, LvsMethod::Nat);
        assert_eq!((vs.quorum, vs.hysteresis), (1, 0));
        assert_eq!(vs.persistence_timeout, None);
        let rs = &vs.real_servers[0];
        assert_eq!(rs.weight, 1);
        let c = &rs.checkers[0].common;
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.retry, 1);
        assert_eq!(c.delay_before_retry, Duration::from_secs(1));
        assert_eq!(c.delay_loop, Duration::from_secs(60));
    }

    #[test]
    fn file_check_resolves_its_track_file_defined_later() {
        let text = "virtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.0.0.2 80 {\n weight 5\n  FILE_CHECK {\n   track_file up\n  }\n  FILE_CHECK {\n   track_file up\n   weight 3 reverse\n  }\n }\n}\ntrack_file up {\n file /run/up\n weight 0 reverse\n}\n";
        let l = load(text);
        assert_eq!(messages(&l), Vec::<String>::new());
        let rs = &l.config.virtual_servers[0].real_servers[0];
        let files: Vec<(Option<String>, Option<i32>, bool, u32)> = rs
            .checkers
            .iter()
            .map(|c| match &c.check {
                Check::File(f) => (f.file.clone(), f.weight, f.reverse, f.base_weight),
                other => panic!("{other:?}"),
            })
            .collect();
        let path = Some("/run/up".to_string());
        assert_eq!(files, [(path.clone(), Some(0), true, 5), (path, Some(3), true, 5)]);
        let c = &rs.checkers[0].common;
        assert_eq!((c.retry, c.alpha, c.warmup), (0, false, Some(Duration::ZERO)));
        assert_eq!(c.delay_loop, Duration::from_secs(1));
    }

    #[test]
    fn checker_inheritance() {
        let text = MINIMAL_VS
            .replace(
                " protocol TCP",
                " protocol TCP\n delay_loop 6\n connect_timeout 2\n retry 4",
            )
            .replace(
                "  TCP_CHECK {",
                "  connect_timeout 3\n  TCP_CHECK {\n   delay_before_retry 7",
            );
        let l = load(&text);
        let c = &l.config.virtual_servers[0].real_servers[0].checkers[0].common;
        assert_eq!(c.delay_loop, Duration::from_secs(6));
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.retry, 4);
        assert_eq!(c.delay_before_retry, Duration::from_secs(7));
    }

    #[test]
    fn checker_kind_defaults() {
        let text = MINIMAL_VS.replace(
            "  TCP_CHECK {\n  }",
            "  HTTP_GET {\n   url {\n    path /\n   }\n  }\n  DNS_CHECK {\n  }\n  MISC_CHECK {\n   misc_path /bin/true\n  }",
        );
        let l = load(&text);
        assert_eq!(messages(&l), Vec::<String>::new());
        let cs = &l.config.virtual_servers[0].real_servers[0].checkers;
        assert_eq!(cs[0].common.delay_before_retry, Duration::from_secs(3));
        let Check::Http(h) = &cs[0].check else {
            panic!("not http")
        };
        assert_eq!(h.urls[0].status_code, [(200, 299)]);
        assert_eq!(
            (cs[1].common.retry, cs[1].common.delay_before_retry),
            (3, Duration::from_secs(60))
        );
        let Check::Dns(d) = &cs[1].check else {
            panic!("not dns")
        };
        assert_eq!((d.query_type.as_str(), d.name.as_str()), ("SOA", "."));
        assert_eq!(cs[2].common.retry, 0);
    }

    #[test]
    fn persistence_timeout_without_value_is_360() {
        let l = load(&MINIMAL_VS.replace(" protocol TCP", " protocol TCP\n persistence_timeout"));
        assert_eq!(l.config.virtual_servers[0].persistence_timeout, Some(360));
        assert_eq!(messages(&l), Vec::<String>::new());
    }

    #[test]
    fn missing_protocol_warns_and_uses_keepalived_default() {
        let l = load(&MINIMAL_VS.replace(" protocol TCP\n", ""));
        assert_eq!(l.config.virtual_servers[0].protocol, Protocol::Udp);
        assert_eq!(l.exit_code(), 1);
        assert!(messages(&l)[0].contains("has no `protocol`"));
    }

    #[test]
    fn multi_line_parameters_expand_to_blocks() {
        let text = "$RS= \\\nreal_server 10.0.0.${H} 80 { \\\n TCP_CHECK { \\\n } \\\n}\n\
                    virtual_server 10.0.0.1 80 {\n protocol TCP\n $H=11\n $RS\n $H=12\n $RS\n}\n";
        let l = load(text);
        assert_eq!(messages(&l), Vec::<String>::new());
        let ips: Vec<String> = l.config.virtual_servers[0]
            .real_servers
            .iter()
            .map(|r| r.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.11", "10.0.0.12"]);
    }

    #[test]
    fn conditional_lines_follow_the_config_id() {
        let text = "global_defs {\n @node1 router_id one\n @^node1 router_id other\n}\n";
        assert_eq!(load(text).config.global.router_id.as_deref(), Some("one"));
        let l = load_str(
            text,
            "t.conf",
            &LoadOptions {
                config_id: Some("node2".into()),
            },
        );
        assert_eq!(l.config.global.router_id.as_deref(), Some("other"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(load("").exit_code(), 0);
        assert_eq!(load("bogus_keyword\n").exit_code(), 1);
        assert_eq!(load("}\n").exit_code(), 2);
        assert!(load("}\n").has_errors());
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let l = load_file(
            Path::new("/nonexistent/keepalived.conf"),
            &LoadOptions::default(),
        );
        assert_eq!(l.exit_code(), 2);
        assert!(
            l.diagnostics[0]
                .message
                .starts_with("cannot read configuration file")
        );
    }

    #[test]
    fn serializes_to_json() {
        let l = load(MINIMAL_VS);
        let json = serde_json::to_string(&l.config).unwrap_or_default();
        assert!(json.contains("\"delay_loop\":60.0"), "{json}");
    }
}
