//! `global_defs { ... }`.

use std::net::IpAddr;

use super::{Cx, Parent};
use crate::config::keywords::Ctx;
use crate::config::model::{GlobalDefs, LvsTimeouts, SmtpServer};
use crate::config::parser::Node;
use crate::config::values;

pub fn global_defs(cx: &mut Cx, node: &Node, g: &mut GlobalDefs) {
    let parent = Parent::new(node);
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::GlobalDefs, n) else {
            continue;
        };
        match kw.as_ref() {
            "router_id" => g.router_id = cx.string(n).or(g.router_id.take()),
            "lvs_timeouts" => lvs_timeouts(cx, n, &mut g.lvs_timeouts),
            "notification_email" => {
                for e in cx.entries(n) {
                    cx.no_args(e, 0);
                    if !e.keyword.contains('@') {
                        cx.diags.warn(
                            &e.pos,
                            format!("`{}` does not look like an email address", e.keyword),
                        );
                    }
                    g.notification_email.push(e.keyword.clone());
                }
            }
            "notification_email_from" => g.notification_email_from = cx.string(n),
            "smtp_server" => {
                if let Some(s) = smtp_server(cx, n) {
                    g.smtp_server = Some(s);
                }
            }
            "smtp_helo_name" => g.smtp_helo_name = cx.string(n),
            "smtp_connect_timeout" => {
                if let Some(t) = cx.int::<u64>(n, 1, 3600, "") {
                    g.smtp_connect_timeout = std::time::Duration::from_secs(t);
                }
            }
            "smtp_alert" => g.smtp_alert = Some(cx.flag(n)),
            "smtp_alert_vrrp" => g.smtp_alert_vrrp = Some(cx.flag(n)),
            "smtp_alert_checker" => g.smtp_alert_checker = Some(cx.flag(n)),
            "no_email_faults" => g.no_email_faults = cx.bare(n),
            "enable_script_security" => g.enable_script_security = cx.bare(n),
            "script_user" => g.script_user = cx.run_as(n),
            "default_interface" => {
                if let Some(s) = cx.string(n) {
                    g.default_interface = s;
                }
            }
            "vrrp_version" => g.vrrp_version = cx.int(n, 2, 3, "").unwrap_or(g.vrrp_version),
            "vrrp_mcast_group4" => match cx.ip(n) {
                Some(IpAddr::V4(a)) if a.is_multicast() => g.vrrp_mcast_group4 = a,
                Some(a) => cx.diags.error(
                    &n.pos,
                    format!("`vrrp_mcast_group4` must be an IPv4 multicast address, not {a}"),
                ),
                None => {}
            },
            "vrrp_mcast_group6" => match cx.ip(n) {
                Some(IpAddr::V6(a)) if a.is_multicast() => g.vrrp_mcast_group6 = a,
                Some(a) => cx.diags.error(
                    &n.pos,
                    format!("`vrrp_mcast_group6` must be an IPv6 multicast address, not {a}"),
                ),
                None => {}
            },
            "vrrp_garp_master_delay" => {
                g.vrrp_garp_master_delay = cx
                    .timer(n, 0.0, 86400.0)
                    .unwrap_or(g.vrrp_garp_master_delay);
            }
            "vrrp_garp_master_repeat" => {
                g.vrrp_garp_master_repeat =
                    cx.int(n, 0, 255, "").unwrap_or(g.vrrp_garp_master_repeat);
            }
            "vrrp_garp_master_refresh" => {
                g.vrrp_garp_master_refresh = cx.timer(n, 0.0, 86400.0).filter(|d| !d.is_zero());
            }
            "vrrp_garp_master_refresh_repeat" => {
                g.vrrp_garp_master_refresh_repeat = cx
                    .int(n, 1, 255, "")
                    .unwrap_or(g.vrrp_garp_master_refresh_repeat);
            }
            "vrrp_garp_interval" => {
                g.vrrp_garp_interval = cx.timer(n, 0.0, 1.0).unwrap_or(g.vrrp_garp_interval)
            }
            "vrrp_gna_interval" => {
                g.vrrp_gna_interval = cx.timer(n, 0.0, 1.0).unwrap_or(g.vrrp_gna_interval)
            }
            "vrrp_strict" => g.vrrp_strict = cx.bare(n),
            "vrrp_skip_check_adv_addr" => g.vrrp_skip_check_adv_addr = cx.flag(n),
            "vrrp_check_unicast_src" => g.vrrp_check_unicast_src = cx.bare(n),
            "vrrp_startup_delay" => {
                g.vrrp_startup_delay = cx.timer(n, 0.0, 3600.0).unwrap_or(g.vrrp_startup_delay)
            }
            "lvs_flush" => g.lvs_flush = cx.bare(n),
            "checker_log_all_failures" => g.checker_log_all_failures = cx.flag(n),
            _ => cx.unknown(Ctx::GlobalDefs, n, Some(&parent)),
        }
    }
}

/// `smtp_server HOST [PORT]`.
fn smtp_server(cx: &mut Cx, n: &Node) -> Option<SmtpServer> {
    cx.no_block(n);
    cx.no_args(n, 2);
    let host = cx.arg(n, 0, "an IP address or host name")?;
    if !values::is_host(&host.text) {
        let msg = format!(
            "`smtp_server` must be an IP address or host name, not '{}'; no email can be sent",
            host.text
        );
        cx.diags.error(&host.pos, msg);
        return None;
    }
    let port = match n.args.get(1) {
        Some(p) => match values::int(&p.text, 1, 65535) {
            Ok(port) => port,
            Err(e) => {
                cx.bad(n, p, &e, "");
                return None;
            }
        },
        None => 25,
    };
    Some(SmtpServer {
        host: host.text.clone(),
        port,
    })
}

/// `lvs_timeouts [tcp N] [tcpfin N] [udp N]`, seconds as keepalived takes them.
fn lvs_timeouts(cx: &mut Cx, n: &Node, t: &mut LvsTimeouts) {
    cx.no_block(n);
    let mut args = n.args.iter();
    while let Some(name) = args.next() {
        let slot = match name.text.as_str() {
            "tcp" => &mut t.tcp,
            "tcpfin" => &mut t.tcpfin,
            "udp" => &mut t.udp,
            _ => {
                cx.diags.error(&name.pos, format!("`lvs_timeouts` takes `tcp N`, `tcpfin N` and `udp N`, not `{}`", name.text));
                return;
            }
        };
        let Some(value) = args.next() else {
            cx.diags.error(&name.pos, format!("`lvs_timeouts {}` needs a number of seconds", name.text));
            return;
        };
        match values::int(&value.text, 1, 86_400 * 31) {
            Ok(v) => *slot = Some(v),
            Err(e) => cx.bad(n, value, &e, ""),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{LoadOptions, LvsTimeouts, load_str};

    #[test]
    fn lvs_timeouts_take_any_subset_and_reject_unknown_names() {
        let conf = "global_defs {\n    lvs_timeouts tcp 900 udp 120\n}\n";
        let loaded = load_str(conf, "t.conf", &LoadOptions::default());
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        assert_eq!(loaded.config.global.lvs_timeouts, LvsTimeouts { tcp: Some(900), tcpfin: None, udp: Some(120) });
        let bad = load_str("global_defs {\n    lvs_timeouts tcp 900 sctp 5\n}\n", "t.conf", &LoadOptions::default());
        assert!(bad.has_errors());
        assert!(bad.diagnostics[0].to_string().starts_with("t.conf:2:26: error: `lvs_timeouts` takes"), "{}", bad.diagnostics[0]);
        let missing = load_str("global_defs {\n    lvs_timeouts tcp\n}\n", "t.conf", &LoadOptions::default());
        assert!(missing.diagnostics[0].to_string().contains("`lvs_timeouts tcp` needs a number"), "{}", missing.diagnostics[0]);
    }
}
