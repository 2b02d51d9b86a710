//! VRRP blocks: `vrrp_script`, `track_file`, `vrrp_sync_group`, `vrrp_instance`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{Cx, Parent};
use crate::config::diag::Pos;
use crate::config::keywords::{self, Ctx};
use crate::config::model::{
    AuthType, Authentication, Broadcast, Config, Notify, TrackFile, TrackFileInit, Tracked,
    UnicastPeer, VirtualAddress, Vmac, VrrpInstance, VrrpScript, VrrpState, VrrpSyncGroup,
};
use crate::config::parser::Node;
use crate::config::validate::{Ref, VridUse};
use crate::config::values;

/// Where each named VRRP object was first defined, to report duplicates.
#[derive(Default)]
pub struct Names {
    scripts: HashMap<String, Pos>,
    files: HashMap<String, Pos>,
    groups: HashMap<String, Pos>,
    instances: HashMap<String, Pos>,
}

/// The name after a block keyword; `None` (reported) when missing or a duplicate.
fn name(cx: &mut Cx, node: &Node, seen: &mut HashMap<String, Pos>) -> Option<String> {
    cx.no_args(node, 1);
    let arg = cx.arg(node, 0, "a name")?;
    if let Some(first) = seen.get(&arg.text) {
        let msg = format!(
            "`{} {}` is already defined at {}; this second definition is ignored",
            node.keyword,
            arg.text,
            first.relative_to(&arg.pos)
        );
        cx.diags.error(&arg.pos, msg);
        return None;
    }
    seen.insert(arg.text.clone(), node.pos.clone());
    Some(arg.text.clone())
}

pub fn script(cx: &mut Cx, node: &Node, names: &mut Names, config: &mut Config) {
    let Some(name) = name(cx, node, &mut names.scripts) else {
        return;
    };
    let parent = Parent::new(node);
    let mut s = VrrpScript::new(name);
    let mut run_as = None;
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::VrrpScript, n) else {
            continue;
        };
        match kw.as_ref() {
            "script" => s.script = vrrp_script_command(cx, n),
            "interval" => s.interval = cx.timer(n, 0.000_001, 86400.0).unwrap_or(s.interval),
            "timeout" => s.timeout = cx.timer(n, 0.000_001, 86400.0),
            "weight" => {
                cx.no_block(n);
                cx.no_args(n, 2);
                if let Some(w) = cx.arg(n, 0, "a number from -253 to 253") {
                    match values::int(&w.text, -253, 253) {
                        Ok(v) => s.weight = v,
                        Err(e) => cx.bad(n, w, &e, ""),
                    }
                }
                s.weight_reverse = reverse_flag(cx, n, 1);
            }
            "rise" => s.rise = cx.int(n, 1, 1_000_000, "").unwrap_or(s.rise),
            "fall" => s.fall = cx.int(n, 1, 1_000_000, "").unwrap_or(s.fall),
            "user" => run_as = cx.run_as(n),
            "init_fail" => s.init_fail = cx.bare(n),
            _ => cx.unknown(Ctx::VrrpScript, n, Some(&parent)),
        }
    }
    match (s.script.as_mut(), run_as) {
        (None, _) => {
            let msg = format!("`vrrp_script {}` has no `script` to run", s.name);
            cx.diags.error(&node.pos, msg);
        }
        (Some(script), Some(user)) => script.run_as = Some(user),
        (Some(_), None) => {}
    }
    config.vrrp_scripts.push(s);
}

/// `script CMD...`: every argument is part of the command (keepalived passes
/// words after a quoted command to it as more arguments).
fn vrrp_script_command(cx: &mut Cx, n: &Node) -> Option<crate::config::model::Script> {
    cx.no_block(n);
    let first = cx.arg(n, 0, "a command")?;
    if first.quoted
        && let Some(extra) = n.args.get(1)
    {
        let msg = format!(
            "unexpected argument `{}` after the quoted script: keepalived passes it to the script as one more argument; quote the whole command, and start comments with `#` or `!`",
            extra.text
        );
        cx.diags.warn(&extra.pos, msg);
    }
    let command = n
        .args
        .iter()
        .map(|a| a.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let argv = n
        .args
        .iter()
        .flat_map(|a| values::split_command(&a.text))
        .collect();
    Some(crate::config::model::Script {
        command,
        argv,
        run_as: None,
    })
}

/// Optional `reverse` / `noreverse` / `no_reverse` at argument `i`.
fn reverse_flag(cx: &mut Cx, n: &Node, i: usize) -> bool {
    match n.args.get(i).map(|a| (a, a.text.as_str())) {
        None => false,
        Some((_, "reverse")) => true,
        Some((_, "noreverse" | "no_reverse")) => false,
        Some((a, other)) => {
            cx.diags.warn(
                &a.pos,
                format!(
                    "expected `reverse` or `noreverse` after the weight, not `{other}`; ignored"
                ),
            );
            false
        }
    }
}

pub fn track_file(cx: &mut Cx, node: &Node, names: &mut Names, config: &mut Config) {
    let Some(name) = name(cx, node, &mut names.files) else {
        return;
    };
    let parent = Parent::new(node);
    let mut t = TrackFile {
        name,
        file: None,
        weight: 1,
        reverse: false,
        init_file: None,
    };
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::TrackFile, n) else {
            continue;
        };
        match kw.as_ref() {
            "file" => t.file = cx.string(n),
            "weight" => {
                cx.no_block(n);
                cx.no_args(n, 2);
                if let Some(w) = cx.arg(n, 0, "a number") {
                    match values::int(&w.text, -2_147_483_647, 2_147_483_647) {
                        Ok(v) => t.weight = v,
                        Err(e) => cx.bad(n, w, &e, ""),
                    }
                }
                t.reverse = reverse_flag(cx, n, 1);
            }
            "init_file" => {
                cx.no_block(n);
                cx.no_args(n, 2);
                let mut init = TrackFileInit {
                    value: 0,
                    overwrite: false,
                };
                for a in &n.args {
                    if a.text == "overwrite" {
                        init.overwrite = true;
                    } else {
                        match values::int(&a.text, i64::from(i32::MIN), i64::from(i32::MAX)) {
                            Ok(v) => init.value = v,
                            Err(e) => cx.bad(n, a, &e, ""),
                        }
                    }
                }
                t.init_file = Some(init);
            }
            _ => cx.unknown(Ctx::TrackFile, n, Some(&parent)),
        }
    }
    if t.file.is_none() {
        cx.diags.error(
            &node.pos,
            format!("`track_file {}` has no `file` to watch", t.name),
        );
    }
    config.track_files.push(t);
}

pub fn sync_group(cx: &mut Cx, node: &Node, names: &mut Names, config: &mut Config) {
    let Some(name) = name(cx, node, &mut names.groups) else {
        return;
    };
    let parent = Parent::new(node);
    let from = format!("vrrp_sync_group {name}");
    let mut g = VrrpSyncGroup {
        name,
        members: Vec::new(),
        track_interface: Vec::new(),
        track_script: Vec::new(),
        track_file: Vec::new(),
        notify: Notify::default(),
        smtp_alert: None,
        sync_group_tracking_weight: false,
    };
    let mut group_pos = None;
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::SyncGroup, n) else {
            continue;
        };
        match kw.as_ref() {
            "group" => {
                group_pos = Some(n.pos.clone());
                for e in cx.entries(n) {
                    cx.no_args(e, 0);
                    cx.refs.instances.push(Ref {
                        name: e.keyword.clone(),
                        pos: e.pos.clone(),
                        from: from.clone(),
                    });
                    g.members.push(e.keyword.clone());
                }
            }
            "track_interface" => g.track_interface = tracked(cx, n, 253, None),
            "track_script" => g.track_script = tracked(cx, n, 253, Some((&from, RefKind::Script))),
            "track_file" => g.track_file = tracked(cx, n, 254, Some((&from, RefKind::File))),
            "notify_master" => g.notify.master = cx.script(n),
            "notify_backup" => g.notify.backup = cx.script(n),
            "notify_fault" => g.notify.fault = cx.script(n),
            "notify_stop" => g.notify.stop = cx.script(n),
            "notify" => g.notify.any = cx.script(n),
            "smtp_alert" => g.smtp_alert = Some(cx.flag(n)),
            "sync_group_tracking_weight" => g.sync_group_tracking_weight = cx.bare(n),
            _ => cx.unknown(Ctx::SyncGroup, n, Some(&parent)),
        }
    }
    match (&group_pos, g.members.len()) {
        (None, _) => cx.diags.error(&node.pos, format!("`{from}` has no `group {{ ... }}` of instances")),
        (Some(pos), 1) => cx.diags.warn(
            pos,
            format!("`{from}` has only one instance; a sync group is for keeping several instances in step"),
        ),
        _ => {}
    }
    config.sync_groups.push(g);
}

#[derive(Clone, Copy)]
enum RefKind {
    Script,
    File,
}

/// Entries of `track_interface` / `track_script` / `track_file`:
/// `NAME [weight N] [reverse|noreverse]`.
fn tracked(
    cx: &mut Cx,
    node: &Node,
    max_weight: i64,
    refs: Option<(&str, RefKind)>,
) -> Vec<Tracked> {
    let mut out = Vec::new();
    for e in cx.entries(node) {
        let mut t = Tracked {
            name: e.keyword.clone(),
            weight: None,
            reverse: false,
        };
        let mut i = 0;
        while let Some(a) = e.args.get(i) {
            match a.text.as_str() {
                "weight" => {
                    match e.args.get(i + 1) {
                        Some(w) => match values::int(&w.text, -max_weight, max_weight) {
                            Ok(v) => t.weight = Some(v),
                            Err(err) => {
                                let msg = format!("weight of `{}` {err}; ignored", t.name);
                                cx.diags.error(&w.pos, msg);
                            }
                        },
                        None => cx.diags.error(&a.pos, "`weight` needs a number"),
                    }
                    i += 2;
                }
                "reverse" => {
                    t.reverse = true;
                    i += 1;
                }
                "noreverse" | "no_reverse" => i += 1,
                _ => {
                    let msg = if a.text.starts_with("//") {
                        format!(
                            "unexpected argument `{}`: `//` does not start a comment in keepalived.conf (use `#` or `!`); ignored",
                            a.text
                        )
                    } else {
                        format!(
                            "unexpected argument `{}` after `{}` (expected `weight N` or `reverse`); ignored",
                            a.text, t.name
                        )
                    };
                    cx.diags.warn(&a.pos, msg);
                    break;
                }
            }
        }
        if let Some((from, kind)) = refs {
            let r = Ref {
                name: t.name.clone(),
                pos: e.pos.clone(),
                from: from.to_string(),
            };
            match kind {
                RefKind::Script => cx.refs.scripts.push(r),
                RefKind::File => cx.refs.track_files.push(r),
            }
        }
        out.push(t);
    }
    out
}

/// What an instance block said, before keepalived's defaulting rules.
#[derive(Default)]
struct Seen {
    state: Option<VrrpState>,
    priority: Option<u8>,
    vrid: bool,
    advert_int: Option<(f64, Pos, String)>,
    version: Option<u8>,
    nopreempt: Option<Pos>,
    vip_typo: Option<(String, Pos)>,
    interface: Option<Pos>,
}

pub fn instance(cx: &mut Cx, node: &Node, names: &mut Names, config: &mut Config) {
    let Some(name) = name(cx, node, &mut names.instances) else {
        return;
    };
    let parent = Parent::new(node);
    let from = format!("vrrp_instance {name}");
    let g = &config.global;
    let mut v = VrrpInstance {
        name,
        state: VrrpState::Backup,
        interface: None,
        virtual_router_id: 0,
        priority: 100,
        advert_int: Duration::from_secs(1),
        version: g.vrrp_version,
        nopreempt: false,
        preempt_delay: Duration::ZERO,
        authentication: None,
        virtual_ipaddress: Vec::new(),
        virtual_ipaddress_excluded: Vec::new(),
        unicast_src_ip: None,
        mcast_src_ip: None,
        mcast_dst_ip: None,
        unicast_peer: Vec::new(),
        unicast_ttl: None,
        check_unicast_src: g.vrrp_check_unicast_src,
        track_interface: Vec::new(),
        track_script: Vec::new(),
        track_file: Vec::new(),
        dont_track_primary: false,
        use_vmac: None,
        vmac_xmit_base: false,
        garp_master_delay: g.vrrp_garp_master_delay,
        garp_master_repeat: g.vrrp_garp_master_repeat,
        garp_master_refresh: g.vrrp_garp_master_refresh,
        garp_master_refresh_repeat: g.vrrp_garp_master_refresh_repeat,
        notify: Notify::default(),
        smtp_alert: None,
        accept: None,
        strict_mode: g.vrrp_strict,
        skip_check_adv_addr: g.vrrp_skip_check_adv_addr,
    };
    let mut seen = Seen::default();
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::Instance, n) else {
            continue;
        };
        match kw.as_ref() {
            "state" => seen.state = state(cx, n).or(seen.state),
            "interface" => {
                v.interface = cx.string(n);
                seen.interface = Some(n.pos.clone());
            }
            "virtual_router_id" => {
                seen.vrid = true;
                v.virtual_router_id = cx.int(n, 1, 255, "").unwrap_or(0);
            }
            "priority" => seen.priority = cx.int(n, 1, 255, "").or(seen.priority),
            "advert_int" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "a time in seconds") {
                    match values::timer(&a.text, 0.0, 255.0) {
                        Ok(d) => {
                            seen.advert_int = Some((d.as_secs_f64(), a.pos.clone(), a.text.clone()))
                        }
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "version" => seen.version = cx.int(n, 2, 3, "").or(seen.version),
            "nopreempt" => {
                v.nopreempt = cx.bare(n);
                seen.nopreempt = Some(n.pos.clone());
            }
            "preempt" => v.nopreempt = !cx.bare(n),
            "preempt_delay" => {
                v.preempt_delay = cx.timer(n, 0.0, 1000.0).unwrap_or(v.preempt_delay)
            }
            "authentication" => v.authentication = authentication(cx, n),
            "virtual_ipaddress" => v.virtual_ipaddress.extend(addresses(cx, n)),
            "virtual_ipaddress_excluded" => v.virtual_ipaddress_excluded.extend(addresses(cx, n)),
            "unicast_src_ip" => v.unicast_src_ip = cx.ip(n),
            "mcast_src_ip" => v.mcast_src_ip = cx.ip(n),
            "mcast_dst_ip" => v.mcast_dst_ip = cx.ip(n),
            "unicast_peer" => v.unicast_peer.extend(peers(cx, n)),
            "unicast_ttl" => v.unicast_ttl = cx.int(n, 0, 255, ""),
            "check_unicast_src" => v.check_unicast_src = cx.bare(n),
            "track_interface" => v.track_interface = tracked(cx, n, 253, None),
            "track_script" => v.track_script = tracked(cx, n, 253, Some((&from, RefKind::Script))),
            "track_file" => v.track_file = tracked(cx, n, 254, Some((&from, RefKind::File))),
            "dont_track_primary" => v.dont_track_primary = cx.bare(n),
            "use_vmac" => {
                cx.no_block(n);
                cx.no_args(n, 2);
                let mut args = n.args.iter().map(|a| a.text.clone());
                v.use_vmac = Some(Vmac {
                    name: args.next(),
                    mac: args.next(),
                });
            }
            "vmac_xmit_base" => v.vmac_xmit_base = cx.bare(n),
            "garp_master_delay" => {
                v.garp_master_delay = cx.timer(n, 0.0, 86400.0).unwrap_or(v.garp_master_delay)
            }
            "garp_master_repeat" => {
                v.garp_master_repeat = cx.int(n, 0, 255, "").unwrap_or(v.garp_master_repeat)
            }
            "garp_master_refresh" => {
                v.garp_master_refresh = cx.timer(n, 0.0, 86400.0).filter(|d| !d.is_zero())
            }
            "garp_master_refresh_repeat" => {
                v.garp_master_refresh_repeat = cx
                    .int(n, 1, 255, "")
                    .unwrap_or(v.garp_master_refresh_repeat);
            }
            "notify_master" => v.notify.master = cx.script(n),
            "notify_backup" => v.notify.backup = cx.script(n),
            "notify_fault" => v.notify.fault = cx.script(n),
            "notify_stop" => v.notify.stop = cx.script(n),
            "notify" => v.notify.any = cx.script(n),
            "smtp_alert" => v.smtp_alert = Some(cx.flag(n)),
            "accept" => v.accept = Some(cx.bare(n)),
            "no_accept" => v.accept = Some(!cx.bare(n)),
            "strict_mode" => v.strict_mode = cx.flag(n),
            "skip_check_adv_addr" => v.skip_check_adv_addr = cx.flag(n),
            _ => {
                if keywords::suggest(Ctx::Instance, &n.keyword) == Some("virtual_ipaddress") {
                    seen.vip_typo = Some((n.keyword.clone(), n.pos.clone()));
                }
                cx.unknown(Ctx::Instance, n, Some(&parent));
            }
        }
    }
    let interface_pos = seen.interface.clone();
    complete(cx, node, &mut v, seen);
    cx.refs.vrids.push(VridUse {
        instance: v.name.clone(),
        pos: node.pos.clone(),
        interface: v.interface.clone(),
        interface_pos,
        ipv6: v
            .virtual_ipaddress
            .first()
            .is_some_and(|a| a.addr.is_ipv6()),
        vrid: v.virtual_router_id,
        unicast: !v.unicast_peer.is_empty(),
        mcast_dst: v.mcast_dst_ip,
    });
    config.instances.push(v);
}

/// `state MASTER|BACKUP`; keepalived reads anything else as BACKUP.
fn state(cx: &mut Cx, n: &Node) -> Option<VrrpState> {
    cx.no_block(n);
    cx.no_args(n, 1);
    let a = cx.arg(n, 0, "MASTER or BACKUP")?;
    match a.text.as_str() {
        "MASTER" => Some(VrrpState::Master),
        "BACKUP" => Some(VrrpState::Backup),
        other => {
            let hint = keywords::closest(other, ["MASTER", "BACKUP"].into_iter())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            let msg = format!(
                "`state {other}` is neither MASTER nor BACKUP: treated as BACKUP, as keepalived does{hint}"
            );
            cx.diags.warn(&a.pos, msg);
            Some(VrrpState::Backup)
        }
    }
}

/// keepalived's completion rules: defaults that depend on other settings,
/// and the checks that need the whole block.
fn complete(cx: &mut Cx, node: &Node, v: &mut VrrpInstance, seen: Seen) {
    let what = format!("vrrp_instance {}", v.name);
    if !seen.vrid {
        let msg = format!(
            "`{what}` has no `virtual_router_id` (1-255, the same on every node of this instance)"
        );
        cx.diags.error(&node.pos, msg);
    }
    if v.interface.is_none() && v.unicast_peer.is_empty() {
        let msg = format!(
            "`{what}` has no `interface`: VRRP adverts need one (only unicast instances may omit it)"
        );
        cx.diags.error(&node.pos, msg);
    }
    // Priority and state default from each other (keepalived vrrp_complete_instance).
    v.priority = seen
        .priority
        .unwrap_or(if seen.state == Some(VrrpState::Master) {
            255
        } else {
            100
        });
    v.state = seen.state.unwrap_or(if v.priority == 255 {
        VrrpState::Master
    } else {
        VrrpState::Backup
    });
    if let Some(pos) = &seen.nopreempt {
        if v.priority == 255 {
            cx.diags.warn(pos, "`nopreempt` does not work with priority 255 (the address owner always takes over); ignored, as keepalived does");
            v.nopreempt = false;
        } else if v.state == VrrpState::Master {
            cx.diags.warn(pos, "`nopreempt` does not work with `state MASTER`; ignored, as keepalived does. Use `state BACKUP` on every node for non-preemptive failover");
            v.nopreempt = false;
        }
    }
    if v.virtual_ipaddress.iter().any(|a| a.addr.is_ipv6()) {
        v.version = 3;
    } else if let Some(ver) = seen.version {
        v.version = ver;
    }
    if let Some(first) = v.virtual_ipaddress.first().map(|a| a.addr.is_ipv4())
        && v.virtual_ipaddress
            .iter()
            .any(|a| a.addr.is_ipv4() != first)
    {
        let msg = format!(
            "`{what}` mixes IPv4 and IPv6 in `virtual_ipaddress`; put the other family in `virtual_ipaddress_excluded`"
        );
        cx.diags.error(&node.pos, msg);
    }
    if let Some((secs, pos, text)) = seen.advert_int {
        v.advert_int = advert_int(cx, v.version, secs, &pos, &text).unwrap_or(v.advert_int);
    }
    if v.virtual_ipaddress.is_empty() {
        let because = match &seen.vip_typo {
            Some((kw, pos)) => format!(
                " (the `{kw}` block at {} was ignored: misspelled?)",
                pos.relative_to(&node.pos)
            ),
            None => String::new(),
        };
        let msg = format!(
            "`{what}` has no virtual IP address: it will elect a master but move no address{because}"
        );
        cx.diags.warn(&node.pos, msg);
    }
}

/// Check `advert_int` against the VRRP version in use.
fn advert_int(cx: &mut Cx, version: u8, secs: f64, pos: &Pos, text: &str) -> Option<Duration> {
    if version == 2 {
        if secs.fract() != 0.0 || !(1.0..=255.0).contains(&secs) {
            let msg = format!(
                "`advert_int {text}`: VRRPv2 adverts are sent every whole number of seconds (1-255); use a whole number, or `version 3` for sub-second intervals"
            );
            cx.diags.error(pos, msg);
            return None;
        }
        return Some(Duration::from_secs_f64(secs));
    }
    let centis = (secs * 100.0).round();
    if !(1.0..=4095.0).contains(&centis) {
        cx.diags.error(
            pos,
            format!("`advert_int {text}`: VRRPv3 intervals must be from 0.01 to 40.95 seconds"),
        );
        return None;
    }
    if (centis / 100.0 - secs).abs() > 1e-9 {
        cx.diags.warn(
            pos,
            format!(
                "`advert_int {text}`: VRRPv3 counts in hundredths of a second; rounded to {}",
                centis / 100.0
            ),
        );
    }
    Some(Duration::from_millis(centis as u64 * 10))
}

fn authentication(cx: &mut Cx, node: &Node) -> Option<Authentication> {
    cx.no_args(node, 0);
    let parent = Parent::new(node);
    let mut auth_type = None;
    let mut type_given = false;
    let mut auth_pass = None;
    for n in cx.body(node) {
        let Some(kw) = cx.keyword(Ctx::Authentication, n) else {
            continue;
        };
        match kw.as_ref() {
            "auth_type" => {
                type_given = true;
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "PASS or AH") {
                    match values::choice(&a.text, &["PASS", "AH"]) {
                        Ok("AH") => auth_type = Some(AuthType::Ah),
                        Ok(_) => auth_type = Some(AuthType::Pass),
                        Err(e) => cx.bad(n, a, &e, ""),
                    }
                }
            }
            "auth_pass" => {
                cx.no_block(n);
                cx.no_args(n, 1);
                if let Some(a) = cx.arg(n, 0, "a password") {
                    let mut pass = a.text.clone();
                    if pass.chars().count() > 8 {
                        pass = pass.chars().take(8).collect();
                        let msg = format!(
                            "`auth_pass` is longer than 8 characters; only `{pass}` is used, as keepalived does"
                        );
                        cx.diags.warn(&a.pos, msg);
                    }
                    auth_pass = Some(pass);
                }
            }
            _ => cx.unknown(Ctx::Authentication, n, Some(&parent)),
        }
    }
    match auth_type {
        Some(auth_type) => Some(Authentication {
            auth_type,
            auth_pass,
        }),
        None => {
            if !type_given {
                cx.diags.error(
                    &node.pos,
                    "`authentication` has no `auth_type` (PASS or AH); ignored",
                );
            }
            None
        }
    }
}

/// Entries of `virtual_ipaddress` / `virtual_ipaddress_excluded`.
fn addresses(cx: &mut Cx, node: &Node) -> Vec<VirtualAddress> {
    let mut out = Vec::new();
    for e in cx.entries(node) {
        let (addr, prefix) = match values::ip_prefix(&e.keyword) {
            Ok(v) => v,
            Err(err) => {
                let msg = format!("`{}` entry {err}; this address is skipped", node.keyword);
                cx.diags.error(&e.pos, msg);
                continue;
            }
        };
        let mut a = VirtualAddress::new(addr, prefix);
        address_options(cx, e, &mut a);
        out.push(a);
    }
    out
}

/// `[brd X] [dev IF] [scope S] [label L] [peer P] [flags...]` after an address.
fn address_options(cx: &mut Cx, e: &Node, a: &mut VirtualAddress) {
    let mut args = e.args.iter();
    while let Some(opt) = args.next() {
        let key = opt.text.as_str();
        if matches!(
            key,
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin"
        ) {
            a.flags.push(opt.text.clone());
            continue;
        }
        match key {
            "use_vmac" => a.use_vmac = true,
            "no_track" => a.no_track = true,
            "brd" | "dev" | "scope" | "label" | "peer" | "preferred_lft" | "track_group" => {
                let Some(val) = args.next() else {
                    cx.diags.error(
                        &opt.pos,
                        format!("`{key}` after `{}` needs a value", e.keyword),
                    );
                    return;
                };
                let text = val.text.as_str();
                match key {
                    "brd" => match text {
                        "+" => a.brd = Some(Broadcast::SetHostBits),
                        "-" => a.brd = Some(Broadcast::ClearHostBits),
                        _ => match values::ip(text) {
                            Ok(ip) => a.brd = Some(Broadcast::Addr(ip)),
                            Err(err) => cx.diags.error(&val.pos, format!("`brd` {err}")),
                        },
                    },
                    "dev" => a.dev = Some(text.to_string()),
                    "scope" => {
                        match values::choice(text, &["site", "link", "host", "nowhere", "global"]) {
                            Ok(s) => a.scope = Some(s.to_string()),
                            Err(err) => cx.diags.error(&val.pos, format!("`scope` {err}")),
                        }
                    }
                    "label" => a.label = Some(text.to_string()),
                    "peer" => match values::ip(text) {
                        Ok(ip) => a.peer = Some(ip),
                        Err(err) => cx.diags.error(&val.pos, format!("`peer` {err}")),
                    },
                    "preferred_lft" => a.flags.extend([opt.text.clone(), val.text.clone()]),
                    _ => cx.diags.warn(
                        &opt.pos,
                        "`track_group` only applies to static addresses; ignored",
                    ),
                }
            }
            _ => {
                let msg = if key.starts_with("//") {
                    format!(
                        "unexpected argument `{key}`: `//` does not start a comment in keepalived.conf (use `#` or `!`); ignored"
                    )
                } else {
                    let hint = keywords::closest(
                        key,
                        [
                            "brd",
                            "dev",
                            "scope",
                            "label",
                            "peer",
                            "home",
                            "noprefixroute",
                            "use_vmac",
                            "no_track",
                        ]
                        .into_iter(),
                    )
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                    format!("unknown address option `{key}` after `{}`{hint}", e.keyword)
                };
                cx.diags.warn(&opt.pos, msg);
                return;
            }
        }
    }
}

/// `unicast_peer { ADDR [min_ttl N] [max_ttl N] }`.
fn peers(cx: &mut Cx, node: &Node) -> Vec<UnicastPeer> {
    let mut out = Vec::new();
    for e in cx.entries(node) {
        let addr: IpAddr = match values::ip(&e.keyword) {
            Ok(a) => a,
            Err(err) => {
                cx.diags.error(
                    &e.pos,
                    format!("`unicast_peer` entry {err}; this peer is skipped"),
                );
                continue;
            }
        };
        let mut p = UnicastPeer {
            addr,
            min_ttl: None,
            max_ttl: None,
        };
        let mut args = e.args.iter();
        while let Some(opt) = args.next() {
            let slot = match opt.text.as_str() {
                "min_ttl" => &mut p.min_ttl,
                "max_ttl" => &mut p.max_ttl,
                other => {
                    cx.diags.warn(
                        &opt.pos,
                        format!(
                            "unexpected argument `{other}` after unicast peer `{}`; ignored",
                            e.keyword
                        ),
                    );
                    break;
                }
            };
            match args.next().map(|v| (v, values::int::<u8>(&v.text, 0, 255))) {
                Some((_, Ok(ttl))) => *slot = Some(ttl),
                Some((v, Err(err))) => cx.diags.error(&v.pos, format!("`{}` {err}", opt.text)),
                None => cx.diags.error(
                    &opt.pos,
                    format!("`{}` needs a number from 0 to 255", opt.text),
                ),
            }
        }
        out.push(p);
    }
    out
}
