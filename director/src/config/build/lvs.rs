//! LVS blocks: `virtual_server_group`, `virtual_server`, `real_server` and
//! the health checkers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{Cx, Parent};
use crate::config::diag::Pos;
use crate::config::keywords::{self, CheckerKind, Ctx};
use crate::config::model::{
    DataplaneChoice,
    Check, CheckCommon, Checker, Config, DnsCheck, Family, FileCheck, HttpCheck, LvsMethod,
    MiscCheck, Protocol, RealServer, Script, SmtpCheck, SorryServer, Tunnel, TunnelKind, UdpCheck,
    Url,
    VirtualServer, VirtualServerGroup, VsGroupEntry, VsKey,
};
use crate::config::parser::Node;
use crate::config::validate::{Ref, VsDef};
use crate::config::values;

/// keepalived's defaults (check_data.c / man page).
const DEFAULT_SCHED: &str = "wlc";
const DEFAULT_DELAY_LOOP: Duration = Duration::from_secs(60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PERSISTENCE: u32 = 360;
/// Without `protocol`, keepalived asks the kernel for protocol 0, which IPVS
/// reads as UDP; keepalived 2.x therefore sets UDP explicitly (with a warning).
const DEFAULT_PROTOCOL: Protocol = Protocol::Udp;

const SCHEDULERS: [&str; 14] = [
    "rr", "wrr", "lc", "wlc", "lblc", "sh", "mh", "dh", "fo", "ovf", "lblcr", "sed", "nq", "twos",
];

/// Settings a virtual server passes down to its real servers, and a real
/// server to its checkers. `None` = not set at this level.
#[derive(Clone, Default)]
struct Inherit {
    connect_timeout: Option<Duration>,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    delay_loop: Option<Duration>,
    alpha: Option<bool>,
    virtualhost: Option<String>,
    inhibit_on_failure: Option<bool>,
}

impl Inherit {
    /// Handle an inheritable keyword; `false` if `kw` is not one.
    fn set(&mut self, cx: &mut Cx, kw: &str, n: &Node) -> bool {
        match kw {
            "connect_timeout" => {
                self.connect_timeout = cx
                    .timer(n, 0.000_001, 4_294.967_295)
                    .or(self.connect_timeout)
            }
            "retry" => self.retry = cx.int(n, 0, i64::from(u32::MAX), "").or(self.retry),
            "delay_before_retry" => {
                self.delay_before_retry =
                    cx.timer(n, 0.0, 4_294.967_295).or(self.delay_before_retry)
            }
            "warmup" => self.warmup = cx.timer(n, 0.0, 4_294.967_295).or(self.warmup),
            "delay_loop" => {
                self.delay_loop = cx.timer(n, 0.000_001, 4_294.967_295).or(self.delay_loop)
            }
            "alpha" => self.alpha = Some(cx.flag(n)),
            "virtualhost" => self.virtualhost = cx.string(n).or(self.virtualhost.take()),
            "inhibit_on_failure" => self.inhibit_on_failure = Some(cx.flag(n)),
            _ => return false,
        }
        true
    }
}

pub fn group(cx: &mut Cx, node: &Node, config: &mut Config) {
    cx.no_args(node, 1);
    let Some(name) = cx.arg(node, 0, "a name").map(|a| a.text.clone()) else {
        return;
    };
    let mut g = VirtualServerGroup {
        name,
        entries: Vec::new(),
    };
    for e in cx.body(node) {
        cx.no_block(e);
        if e.keyword == "fwmark" {
            cx.no_args(e, 2);
            let Some(mark) = cx
                .arg(e, 0, "a number")
                .map(|a| (a, values::int::<u32>(&a.text, 1, i64::from(u32::MAX))))
            else {
                continue;
            };
            let mark = match mark {
                (_, Ok(m)) => m,
                (a, Err(err)) => {
                    cx.bad(e, a, &err, "");
                    continue;
                }
            };
            let family = match e.args.get(1).map(|a| (a, a.text.as_str())) {
                None => None,
                Some((_, "inet")) => Some(Family::Inet),
                Some((_, "inet6")) => Some(Family::Inet6),
                Some((a, other)) => {
                    cx.diags.error(
                        &a.pos,
                        format!("fwmark family must be `inet` or `inet6`, not `{other}`"),
                    );
                    None
                }
            };
            g.entries.push(VsGroupEntry::Fwmark { mark, family });
            continue;
        }
        cx.no_args(e, 1);
        let Some((first, last)) = range(&e.keyword) else {
            let msg = format!(
                "`{}` in virtual_server_group {} is not an address, range (10.0.0.1-10, 10.0.0.0/29) or `fwmark N`; skipped",
                e.keyword, g.name
            );
            cx.diags.error(&e.pos, msg);
            continue;
        };
        let port = match e.args.first() {
            None => None,
            Some(p) => match values::int::<u16>(&p.text, 0, 65535) {
                Ok(port) => Some(port),
                Err(err) => {
                    cx.diags.error(&p.pos, format!("port {err}; entry skipped"));
                    continue;
                }
            },
        };
        g.entries.push(VsGroupEntry::Range { first, last, port });
    }
    config.virtual_server_groups.push(g);
}

/// `A`, `A-B` (last octet / hextet), `A-FULL` or `A/PREFIX` → inclusive range.
fn range(s: &str) -> Option<(IpAddr, IpAddr)> {
    if s.contains('/') {
        let (ip, prefix) = values::ip_prefix(s).ok()?;
        return Some(match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let net = u32::from(v4) & mask;
                (IpAddr::V4(net.into()), IpAddr::V4((net | !mask).into()))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                let net = u128::from(v6) & mask;
                (IpAddr::V6(net.into()), IpAddr::V6((net | !mask).into()))
            }
        });
    }
    let Some((a, b)) = s.rsplit_once('-') else {
        let ip = values::ip(s).ok()?;
        return Some((ip, ip));
    };
    let first = values::ip(a).ok()?;
    let last = match (first, values::ip(b)) {
        (_, Ok(full)) => full,
        (IpAddr::V4(f), Err(_)) => {
            let o = f.octets();
            IpAddr::V4([o[0], o[1], o[2], b.parse().ok()?].into())
        }
        (IpAddr::V6(f), Err(_)) => {
            let mut seg = f.segments();
            seg[7] = u16::from_str_radix(b, 16).ok()?;
            IpAddr::V6(seg.into())
        }
    };
    (first.is_ipv4() == last.is_ipv4() && first <= last).then_some((first, last))
}

pub fn virtual_server(cx: &mut Cx, node: &Node, config: &mut Config) {
    let key = vs_key(cx, node);
    let parent = Parent::new(node);
    let label = parent.label();
    let mut vs = VirtualServer {
        key: key.clone().unwrap_or(VsKey::Fwmark(0)),
        lvs_sched: DEFAULT_SCHED.to_string(),
        lvs_method: LvsMethod::Nat,
        protocol: DEFAULT_PROTOCOL,
        persistence_timeout: None,
        persistence_granularity: None,
        persistence_engine: None,
        ha_suspend: false,
        ops: false,
        smtp_alert: None,
        virtualhost: None,
        alpha: false,
        omega: false,
        quorum: 1,
        hysteresis: 0,
        quorum_up: None,
        quorum_down: None,
        ip_family: None,
        sorry_server: None,
        delay_loop: DEFAULT_DELAY_LOOP,
        inhibit_on_failure: false,
        real_servers: Vec::new(),
        director_dataplane: None,
    };
    let mut inh = Inherit::default();
    let mut protocol_set = false;
    let mut sorry: Option<(IpAddr, Option<u16>)> = None;
    let (mut sorry_inhibit, mut sorry_method) = (false, None);
    let mut rs_nodes = Vec::new();
    let mut sched_pos = None;
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::VirtualServer, n) else {
            continue;
        };
        if inh.set(cx, &kw, n) {
            continue;
        }
        match kw.as_ref() {
            "real_server" => rs_nodes.push(n),
            "lvs_sched" => {
                sched_pos = Some(n.pos.clone());
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "a scheduler name") {
                    match values::choice(&a.text, &SCHEDULERS) {
                        Ok(s) => vs.lvs_sched = s.to_string(),
                        Err(e) => {
                            let hint = keywords::closest(&a.text, SCHEDULERS.into_iter())
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                            cx.bad(n, a, &e, &hint);
                        }
                    }
                }
            }
            "lvs_method" => vs.lvs_method = method(cx, n).unwrap_or(vs.lvs_method),
            "protocol" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                protocol_set = true;
                if let Some(a) = cx.arg(n, 0, "TCP, UDP or SCTP") {
                    match values::choice(&a.text, &["TCP", "UDP", "SCTP"]) {
                        Ok("TCP") => vs.protocol = Protocol::Tcp,
                        Ok("UDP") => vs.protocol = Protocol::Udp,
                        Ok(_) => vs.protocol = Protocol::Sctp,
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "persistence_timeout" => {
                vs.persistence_timeout = if n.args.is_empty() {
                    cx.no_block(n);
                    Some(DEFAULT_PERSISTENCE)
                } else {
                    cx.int(n, 1, 2_678_400, "").or(vs.persistence_timeout)
                };
            }
            "persistence_granularity" => vs.persistence_granularity = cx.ip(n),
            "persistence_engine" => vs.persistence_engine = cx.string(n),
            "ha_suspend" => vs.ha_suspend = cx.bare(n),
            "ops" => vs.ops = cx.bare(n),
            "director_dataplane" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "xdp or ipvs") {
                    match values::choice(&a.text, &["xdp", "ipvs"]) {
                        Ok("xdp") => vs.director_dataplane = Some(DataplaneChoice::Xdp),
                        Ok(_) => vs.director_dataplane = Some(DataplaneChoice::Ipvs),
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "smtp_alert" => vs.smtp_alert = Some(cx.flag(n)),
            "omega" => vs.omega = cx.bare(n),
            "quorum" => vs.quorum = cx.int(n, 1, i64::from(u32::MAX), "").unwrap_or(vs.quorum),
            "hysteresis" => {
                vs.hysteresis = cx
                    .int(n, 0, i64::from(u32::MAX), "")
                    .unwrap_or(vs.hysteresis)
            }
            "quorum_up" => vs.quorum_up = cx.script(n),
            "quorum_down" => vs.quorum_down = cx.script(n),
            "ip_family" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "inet or inet6") {
                    match values::choice(&a.text, &["inet", "inet6"]) {
                        Ok("inet") => vs.ip_family = Some(Family::Inet),
                        Ok(_) => vs.ip_family = Some(Family::Inet6),
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "sorry_server" => sorry = sorry_server(cx, n).or(sorry),
            "sorry_server_inhibit" => sorry_inhibit = cx.bare(n),
            "sorry_server_lvs_method" => sorry_method = method(cx, n),
            _ => cx.unknown(Ctx::VirtualServer, n, Some(&parent)),
        }
    }
    vs.delay_loop = inh.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    vs.alpha = inh.alpha.unwrap_or(false);
    vs.virtualhost = inh.virtualhost.clone();
    vs.inhibit_on_failure = inh.inhibit_on_failure.unwrap_or(false);
    let vs_port = match &vs.key {
        VsKey::Addr { port, .. } => *port,
        _ => 0,
    };
    xdp_differences(cx, &vs, &label, sched_pos.as_ref(), &node.pos, matches!(key, Some(VsKey::Fwmark(_))));
    let by_address = matches!(vs.key, VsKey::Addr { .. } | VsKey::Group(_));
    if !protocol_set && by_address {
        let msg = format!(
            "`{label}` has no `protocol`: UDP is used, as keepalived (and the kernel) default to it; add `protocol TCP` for a TCP service"
        );
        cx.diags.warn(&node.pos, msg);
    }
    if let VsKey::Addr { port: 0, .. } = vs.key
        && vs.persistence_timeout.is_none()
    {
        let msg = format!(
            "`{label}` has no port: only persistent services may omit it; `persistence_timeout {DEFAULT_PERSISTENCE}` is used, as keepalived does"
        );
        cx.diags.warn(&node.pos, msg);
        vs.persistence_timeout = Some(DEFAULT_PERSISTENCE);
    }
    if let Some((ip, port)) = sorry {
        vs.sorry_server = Some(SorryServer {
            ip,
            port: port.unwrap_or(vs_port),
            inhibit: sorry_inhibit,
            lvs_method: sorry_method.unwrap_or_else(|| vs.lvs_method.clone()),
        });
    }
    let mut seen: HashMap<(IpAddr, u16), Pos> = HashMap::new();
    for n in rs_nodes {
        let Some(rs) = real_server(cx, n, &vs, vs_port, &inh) else {
            continue;
        };
        let pos = n.args.first().map_or(&n.pos, |a| &a.pos);
        if let Some(first) = seen.get(&(rs.ip, rs.port)) {
            let msg = format!(
                "`real_server {}` is already defined at {} in this virtual_server; this second one is ignored, as keepalived does",
                n.args
                    .iter()
                    .map(|a| a.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                first.relative_to(pos)
            );
            cx.diags.warn(pos, msg);
            continue;
        }
        seen.insert((rs.ip, rs.port), pos.clone());
        vs.real_servers.push(rs);
    }
    let Some(key) = key else { return };
    if let VsKey::Group(name) = &key {
        let pos = node.args.get(1).map_or(&node.pos, |a| &a.pos);
        cx.refs.vs_groups.push(Ref {
            name: name.clone(),
            pos: pos.clone(),
            from: "virtual_server".to_string(),
        });
    }
    if vs.real_servers.is_empty() && vs.sorry_server.is_none() {
        let msg = format!(
            "`{label}` has no real_server (and no sorry_server): keepalived ignores it, and so does director"
        );
        cx.diags.warn(&node.pos, msg);
        return;
    }
    cx.refs.virtual_servers.push(VsDef {
        key,
        protocol: vs.protocol,
        pos: node.pos.clone(),
    });
    config.virtual_servers.push(vs);
}

/// `virtual_server IP [PORT] | fwmark N | group NAME`.
fn vs_key(cx: &mut Cx, node: &Node) -> Option<VsKey> {
    let first = cx.arg(node, 0, "an address and port, `fwmark N` or `group NAME`")?;
    match first.text.as_str() {
        "fwmark" => {
            cx.no_args(node, 2);
            let a = cx.arg(node, 1, "a firewall mark number after `fwmark`")?;
            values::int(&a.text, 1, i64::from(u32::MAX))
                .map(VsKey::Fwmark)
                .map_err(|e| cx.bad(node, a, &e, ""))
                .ok()
        }
        "group" => {
            cx.no_args(node, 2);
            cx.arg(node, 1, "a virtual_server_group name after `group`")
                .map(|a| VsKey::Group(a.text.clone()))
        }
        _ => {
            cx.no_args(node, 2);
            let ip = match values::ip(&first.text) {
                Ok(ip) => ip,
                Err(e) => {
                    let msg = format!(
                        "`virtual_server` {e} (or `fwmark N` / `group NAME`); this virtual server is skipped"
                    );
                    cx.diags.error(&first.pos, msg);
                    return None;
                }
            };
            let port = match node.args.get(1) {
                None => 0,
                Some(p) => match values::int(&p.text, 0, 65535) {
                    Ok(port) => port,
                    Err(e) => {
                        cx.diags.error(
                            &p.pos,
                            format!("`virtual_server` port {e}; this virtual server is skipped"),
                        );
                        return None;
                    }
                },
            };
            Some(VsKey::Addr { ip, port })
        }
    }
}

/// `sorry_server IP [PORT]`.
fn sorry_server(cx: &mut Cx, n: &Node) -> Option<(IpAddr, Option<u16>)> {
    cx.no_block(n);
    cx.no_args(n, 2);
    let a = cx.arg(n, 0, "an IP address and port")?;
    let ip = values::ip(&a.text).map_err(|e| cx.bad(n, a, &e, "")).ok()?;
    let port = match n.args.get(1) {
        None => None,
        Some(p) => Some(
            values::int(&p.text, 0, 65535)
                .map_err(|e| cx.bad(n, p, &e, ""))
                .ok()?,
        ),
    };
    Some((ip, port))
}

/// `lvs_method NAT|DR|TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`.
fn method(cx: &mut Cx, n: &Node) -> Option<LvsMethod> {
    cx.no_block(n);
    let a = cx.arg(n, 0, "NAT, DR or TUN")?;
    let m = match values::choice(&a.text, &["NAT", "DR", "TUN"]) {
        Ok(m) => m,
        Err(e) => {
            cx.bad(n, a, &e, "");
            return None;
        }
    };
    if m != "TUN" {
        cx.no_args(n, 1);
        return Some(if m == "NAT" {
            LvsMethod::Nat
        } else {
            LvsMethod::Dr
        });
    }
    let mut t = Tunnel::default();
    let mut args = n.args.iter().skip(1);
    while let Some(opt) = args.next() {
        match opt.text.as_str() {
            "type" => match args.next().map(|v| (v, v.text.as_str())) {
                Some((_, "ipip")) => t.kind = TunnelKind::Ipip,
                Some((_, "gre")) => t.kind = TunnelKind::Gre,
                Some((_, "gue")) => {
                    let port = match (args.next(), args.next()) {
                        (Some(k), Some(p)) if k.text == "port" => {
                            values::int(&p.text, 1, 65535).ok()
                        }
                        _ => None,
                    };
                    match port {
                        Some(port) => t.kind = TunnelKind::Gue { port },
                        None => cx
                            .diags
                            .error(&opt.pos, "`type gue` needs `port N` (1-65535)"),
                    }
                }
                Some((v, other)) => cx.diags.error(
                    &v.pos,
                    format!("tunnel type must be ipip, gue or gre, not `{other}`"),
                ),
                None => cx.diags.error(&opt.pos, "`type` needs ipip, gue or gre"),
            },
            "nocsum" | "csum" | "remcsum" => t.checksum = Some(opt.text.clone()),
            other => {
                cx.diags.warn(
                    &opt.pos,
                    format!("unexpected argument `{other}` after `lvs_method TUN`; ignored"),
                );
                break;
            }
        }
    }
    Some(LvsMethod::Tun(t))
}

fn real_server(
    cx: &mut Cx,
    node: &Node,
    vs: &VirtualServer,
    vs_port: u16,
    vs_inh: &Inherit,
) -> Option<RealServer> {
    cx.no_args(node, 2);
    let a = cx.arg(node, 0, "an IP address and port")?;
    let ip = match values::ip(&a.text) {
        Ok(ip) => ip,
        Err(e) => {
            cx.diags.error(
                &a.pos,
                format!("`real_server` {e}; this real server is skipped"),
            );
            return None;
        }
    };
    let port = match node.args.get(1) {
        None => vs_port,
        Some(p) => match values::int(&p.text, 0, 65535) {
            Ok(port) => port,
            Err(e) => {
                cx.diags.error(
                    &p.pos,
                    format!("`real_server` port {e}; this real server is skipped"),
                );
                return None;
            }
        },
    };
    let parent = Parent::new(node);
    let mut inh = vs_inh.clone();
    let mut rs = RealServer {
        ip,
        port,
        weight: 1,
        lvs_method: vs.lvs_method.clone(),
        inhibit_on_failure: vs.inhibit_on_failure,
        notify_up: None,
        notify_down: None,
        uthreshold: None,
        lthreshold: None,
        smtp_alert: None,
        checkers: Vec::new(),
    };
    let mut checker_nodes = Vec::new();
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::RealServer, n) else {
            continue;
        };
        if inh.set(cx, &kw, n) {
            continue;
        }
        if let Some(kind) = CheckerKind::from_keyword(&kw) {
            checker_nodes.push((kind, n));
            continue;
        }
        match kw.as_ref() {
            "weight" => rs.weight = cx.int(n, 0, 65535, "").unwrap_or(rs.weight),
            "lvs_method" => rs.lvs_method = method(cx, n).unwrap_or(rs.lvs_method),
            "notify_up" => rs.notify_up = cx.script(n),
            "notify_down" => rs.notify_down = cx.script(n),
            "uthreshold" => rs.uthreshold = cx.int(n, 0, i64::from(u32::MAX), ""),
            "lthreshold" => rs.lthreshold = cx.int(n, 0, i64::from(u32::MAX), ""),
            "smtp_alert" => rs.smtp_alert = Some(cx.flag(n)),
            _ => cx.unknown(Ctx::RealServer, n, Some(&parent)),
        }
    }
    rs.inhibit_on_failure = inh.inhibit_on_failure.unwrap_or(rs.inhibit_on_failure);
    for (kind, n) in checker_nodes {
        rs.checkers.push(checker(cx, kind, n, &inh));
    }
    Some(rs)
}

fn checker(cx: &mut Cx, kind: CheckerKind, node: &Node, rs_inh: &Inherit) -> Checker {
    cx.no_args(node, 0);
    let ctx = Ctx::Checker(kind);
    let parent = Parent::new(node);
    let mut inh = rs_inh.clone();
    let mut c = CheckCommon {
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_if: None,
        bind_port: None,
        fwmark: None,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        delay_loop: DEFAULT_DELAY_LOOP,
        warmup: None,
        alpha: false,
        log_all_failures: false,
    };
    let mut http = HttpCheck::default();
    let mut misc = MiscCheck {
        misc_path: None,
        misc_timeout: None,
        misc_dynamic: false,
        script_security: false,
    };
    let mut misc_user = None;
    let mut smtp = SmtpCheck::default();
    let mut dns = DnsCheck {
        query_type: "SOA".to_string(),
        name: ".".to_string(),
    };
    let mut udp = UdpCheck {
        payload: None,
        require_reply: false,
        reply_pattern: None,
        min_reply_length: 0,
        max_reply_length: 255,
    };
    let mut file = FileCheck {
        track_file: String::new(),
        dynamic: false,
        weight: None,
        reverse: false,
        file: None,
        base_weight: 0,
    };
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(ctx, n) else {
            continue;
        };
        if !ctx.keywords().contains(&kw.as_ref()) {
            cx.unknown(ctx, n, Some(&parent));
            continue;
        }
        if inh.set(cx, &kw, n) {
            continue;
        }
        match kw.as_ref() {
            "connect_ip" => c.connect_ip = cx.ip(n),
            "connect_port" => c.connect_port = cx.int(n, 0, 65535, ""),
            "bindto" => c.bindto = cx.ip(n),
            "bind_if" => c.bind_if = cx.string(n),
            "bind_port" => c.bind_port = cx.int(n, 0, 65535, ""),
            "fwmark" => c.fwmark = cx.int(n, 0, i64::from(u32::MAX), ""),
            "log_all_failures" => c.log_all_failures = cx.flag(n),
            "http_protocol" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "1.0, 1.0C or 1.1") {
                    match values::choice(&a.text, &["1.0", "1.0C", "1.1"]) {
                        Ok(p) => http.http_protocol = Some(p.to_string()),
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "fast_recovery" => http.fast_recovery = cx.flag(n),
            "url" => http.urls.extend(url(cx, n)),
            "enable_sni" => http.enable_sni = cx.bare(n),
            "sni_name" => http.sni_name = cx.string(n),
            "verify_cert" => http.verify_cert = cx.bare(n),
            "misc_path" => misc.misc_path = cx.script(n),
            "misc_timeout" => {
                misc.misc_timeout = cx.int::<u64>(n, 1, 1_000_000, "").map(Duration::from_secs)
            }
            "misc_dynamic" => misc.misc_dynamic = cx.bare(n),
            "user" => misc_user = cx.run_as(n),
            "helo_name" => smtp.helo_name = cx.string(n),
            "type" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "a DNS query type") {
                    match values::choice(&a.text, &["A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"])
                    {
                        Ok(t) => dns.query_type = t.to_string(),
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "name" => dns.name = cx.string(n).unwrap_or(dns.name),
            "payload" => {
                cx.no_block(n);
                udp.payload = Some(
                    n.args
                        .iter()
                        .map(|a| a.text.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            "require_reply" => {
                cx.no_block(n);
                udp.require_reply = true;
                if !n.args.is_empty() {
                    udp.reply_pattern = Some(
                        n.args
                            .iter()
                            .map(|a| a.text.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    );
                }
            }
            "min_reply_length" => {
                udp.min_reply_length = cx.int(n, 0, 65535, "").unwrap_or(udp.min_reply_length)
            }
            "max_reply_length" => {
                udp.max_reply_length = cx.int(n, 0, 65535, "").unwrap_or(udp.max_reply_length)
            }
            "track_file" => {
                if let Some(name) = cx.string(n) {
                    let r = Ref {
                        name: name.clone(),
                        pos: n.pos.clone(),
                        from: kind.keyword().to_string(),
                    };
                    cx.refs.track_files.push(r);
                    file.track_file = name;
                }
            }
            "dynamic" => file.dynamic = cx.bare(n),
            "weight" => {
                cx.no_block(n);
                cx.no_args(n, 2);
                if let Some(w) = cx.arg(n, 0, "a number") {
                    match values::int(&w.text, -2_147_483_647, 2_147_483_647) {
                        Ok(v) => file.weight = Some(v),
                        Err(e) => cx.bad(n, w, &e, ""),
                    }
                }
                file.reverse = n.args.get(1).is_some_and(|a| a.text == "reverse");
            }
            _ => cx.unknown(ctx, n, Some(&parent)),
        }
    }
    c.delay_loop = inh.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
    c.connect_timeout = inh.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    c.warmup = inh.warmup;
    c.alpha = inh.alpha.unwrap_or(false);
    c.retry = inh.retry.unwrap_or(match kind {
        CheckerKind::Dns => 3,
        CheckerKind::Misc | CheckerKind::File => 0,
        _ => 1,
    });
    c.delay_before_retry = inh.delay_before_retry.unwrap_or(match kind {
        CheckerKind::Dns => c.delay_loop,
        CheckerKind::Http | CheckerKind::Ssl => Duration::from_secs(3),
        _ => Duration::from_secs(1),
    });
    http.virtualhost = inh.virtualhost;
    let check = match kind {
        CheckerKind::Tcp => Check::Tcp,
        CheckerKind::Ping => Check::Ping,
        CheckerKind::Http | CheckerKind::Ssl => {
            if http.urls.is_empty() {
                let msg = format!(
                    "`{}` has no `url {{ path ... }}` block: there is nothing to check",
                    kind.keyword()
                );
                cx.diags.error(&node.pos, msg);
            }
            if kind == CheckerKind::Http {
                Check::Http(http)
            } else {
                Check::Ssl(http)
            }
        }
        CheckerKind::Misc => {
            match (&mut misc.misc_path, misc_user) {
                (Some(script), Some(user)) => script.run_as = Some(user),
                (None, _) => cx
                    .diags
                    .error(&node.pos, "`MISC_CHECK` has no `misc_path` script to run"),
                _ => {}
            }
            Check::Misc(misc)
        }
        CheckerKind::Smtp => Check::Smtp(smtp),
        CheckerKind::Dns => Check::Dns(dns),
        CheckerKind::Udp => Check::Udp(udp),
        CheckerKind::File => {
            // keepalived reads the file at start-up (no alpha, no warmup)
            // and reacts to changes at once through inotify; we re-read it
            // every second at most.
            c.alpha = false;
            c.warmup = Some(Duration::ZERO);
            c.delay_loop = c.delay_loop.min(Duration::from_secs(1));
            if file.track_file.is_empty() {
                cx.diags
                    .error(&node.pos, "`FILE_CHECK` has no `track_file` to watch");
            }
            Check::File(file)
        }
    };
    Checker { common: c, check }
}

/// Gives the LVS scripts that name no user (MISC_CHECK `misc_path`,
/// notify_up/notify_down, quorum_up/quorum_down) the global `script_user`,
/// as keepalived runs them.
/// MISC_CHECKs also get `enable_script_security`.
pub fn resolve_script_users(config: &mut Config) {
    let security = config.global.enable_script_security;
    let user = config.global.script_user.clone();
    let default = |s: &mut Option<Script>| {
        if let (Some(s), Some(u)) = (s.as_mut().filter(|s| s.run_as.is_none()), &user) {
            s.run_as = Some(u.clone());
        }
    };
    for vs in &mut config.virtual_servers {
        default(&mut vs.quorum_up);
        default(&mut vs.quorum_down);
        for rs in &mut vs.real_servers {
            default(&mut rs.notify_up);
            default(&mut rs.notify_down);
            for c in &mut rs.checkers {
                if let Check::Misc(m) = &mut c.check {
                    default(&mut m.misc_path);
                    m.script_security = security;
                }
            }
        }
    }
}

/// Resolves every FILE_CHECK's `track_file` block (which may come later in
/// the file): its path, and its weight when the checker sets none or 0, as
/// keepalived's `file_end_handler`. An unknown name is reported by
/// `validate`; such a checker keeps `file: None` and fails when run.
pub fn resolve_file_checks(config: &mut Config) {
    let files = &config.track_files;
    for vs in &mut config.virtual_servers {
        for rs in &mut vs.real_servers {
            for c in &mut rs.checkers {
                let Check::File(f) = &mut c.check else { continue };
                f.base_weight = rs.weight;
                let Some(t) = files.iter().find(|t| t.name == f.track_file) else { continue };
                f.file = t.file.clone();
                if f.weight.unwrap_or(0) == 0 {
                    f.weight = Some(t.weight);
                    f.reverse = t.reverse;
                }
            }
        }
    }
}

/// `url { path P; digest D; status_code ...; virtualhost H; regex R }`.
fn url(cx: &mut Cx, node: &Node) -> Option<Url> {
    cx.no_args(node, 0);
    let parent = Parent::new(node);
    let mut u = Url {
        path: String::new(),
        digest: None,
        status_code: Vec::new(),
        virtualhost: None,
        regex: None,
        regex_no_match: false,
    };
    let mut has_path = false;
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::Url, n) else {
            continue;
        };
        match kw.as_ref() {
            "path" => {
                if let Some(p) = cx.string(n) {
                    u.path = p;
                    has_path = true;
                }
            }
            "digest" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "an MD5 digest") {
                    if a.text.len() == 32 && a.text.chars().all(|c| c.is_ascii_hexdigit()) {
                        u.digest = Some(a.text.to_ascii_lowercase());
                    } else {
                        let msg = format!(
                            "`digest` must be the 32 hex digits MD5 that `genhash` prints, not '{}'; ignored",
                            a.text
                        );
                        cx.diags.error(&a.pos, msg);
                    }
                }
            }
            "status_code" => {
                cx.no_block(n);
                if cx
                    .arg(n, 0, "HTTP status codes (e.g. `200` or `200-299 301`)")
                    .is_some()
                {
                    for a in &n.args {
                        match status_range(&a.text) {
                            Some(r) => u.status_code.push(r),
                            None => {
                                let msg = format!(
                                    "`status_code` entries must be codes or ranges from 100 to 599 (e.g. 200-299), not '{}'; ignored",
                                    a.text
                                );
                                cx.diags.error(&a.pos, msg);
                            }
                        }
                    }
                }
            }
            "virtualhost" => u.virtualhost = cx.string(n),
            "regex" => u.regex = cx.string(n),
            "regex_no_match" => u.regex_no_match = cx.bare(n),
            _ => cx.unknown(Ctx::Url, n, Some(&parent)),
        }
    }
    if !has_path {
        cx.diags
            .error(&node.pos, "`url` block has no `path`; ignored");
        return None;
    }
    if u.status_code.is_empty() {
        u.status_code.push((200, 299));
    }
    Some(u)
}

fn status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.parse().ok()?, b.parse().ok()?);
    ((100..=599).contains(&a) && (100..=599).contains(&b) && a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ranges() {
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            range("192.168.200.1-10"),
            Some((v4("192.168.200.1"), v4("192.168.200.10")))
        );
        assert_eq!(
            range("10.0.0.250-10.0.1.10"),
            Some((v4("10.0.0.250"), v4("10.0.1.10")))
        );
        assert_eq!(
            range("192.168.202.8/29"),
            Some((v4("192.168.202.8"), v4("192.168.202.15")))
        );
        assert_eq!(
            range("10.0.0.1/0").map(|r| r.1),
            Some(v4("255.255.255.255"))
        );
        assert_eq!(
            range("2001:db8::1-ff").map(|r| r.1),
            Some(v4("2001:db8::ff"))
        );
        assert_eq!(range("10.0.0.9-1"), None);
        assert_eq!(range("10.0.0.1-300"), None);
        assert_eq!(range("nonsense"), None);
    }

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("200-299"), Some((200, 299)));
        assert_eq!(status_range("299-200"), None);
        assert_eq!(status_range("99"), None);
    }
}

/// Where the XDP data plane will not do what IPVS would with this service,
/// the operator hears it from `--config-test`, at the line that decides it.
/// A service that goes to IPVS (`director_dataplane ipvs`, fwmark, SCTP)
/// has no such difference.
fn xdp_differences(cx: &mut Cx, vs: &VirtualServer, label: &str, sched_at: Option<&Pos>, vs_at: &Pos, fwmark: bool) {
    let plan = crate::dataplane::sched::plan(&vs.lvs_sched);
    let on_ipvs = vs.director_dataplane == Some(DataplaneChoice::Ipvs) || fwmark || vs.protocol == Protocol::Sctp;
    if let Some(note) = plan.and_then(|p| p.note).filter(|_| !on_ipvs) {
        let msg = match sched_at {
            Some(_) => format!("`{label}`: lvs_sched {}: {note}", vs.lvs_sched),
            None => format!("`{label}` has no lvs_sched, so keepalived's default {}: {note}", vs.lvs_sched),
        };
        cx.diags.warn(sched_at.unwrap_or(vs_at), msg);
    }
    if fwmark {
        cx.diags.warn(
            vs_at,
            format!("`{label}`: firewall marks are set by netfilter, after XDP has run, so the XDP data plane cannot see them; this service goes to the IPVS data plane"),
        );
    }
    if vs.protocol == Protocol::Sctp {
        cx.diags.warn(
            vs_at,
            format!("`{label}`: the XDP data plane forwards TCP and UDP only; this SCTP service goes to the IPVS data plane"),
        );
    }
}
