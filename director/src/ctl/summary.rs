//! `directorctl status`: a short, human summary of the daemon. Scripts use
//! `--json` (the snapshot itself), so this layout is free to read well.

use std::fmt::Write as _;

use crate::status::{AdminState, DaemonView, Snapshot, VrrpView};

/// How many drop reasons the summary names.
const TOP_DROPS: usize = 3;

pub fn status(snapshot: &Snapshot) -> String {
    let d = &snapshot.daemon;
    let mut out = String::new();
    let _ = writeln!(out, "director {}, pid {}, up {}", d.version, d.pid, uptime(d.uptime_secs));
    let _ = writeln!(out, "config        {} (generation {})", d.config_file, d.config_generation);
    let _ = writeln!(out, "reloads       {} ok, {} failed", d.reloads_ok, d.reloads_failed);
    if let Some(err) = &d.last_reload_error {
        let mut lines = err.lines();
        let _ = writeln!(out, "  last error  {}", lines.next().unwrap_or_default());
        for line in lines {
            let _ = writeln!(out, "              {line}");
        }
    }
    let _ = writeln!(out, "dataplane     {}", dataplane(d));
    let _ = writeln!(out, "services      {}", snapshot.services.len());
    let _ = writeln!(out, "real servers  {}", reals(snapshot));
    let _ = writeln!(out, "top drops     {}", drops(snapshot));
    if !d.limits.is_empty() {
        let used: Vec<String> = d.limits.iter().map(|l| format!("{} {}/{}", l.name, l.used, l.max)).collect();
        let _ = writeln!(out, "xdp limits    {}", used.join(", "));
    }
    for v in &snapshot.vrrp {
        let _ = writeln!(out, "{}", vrrp(v));
    }
    out
}

/// "vrrp VI_1     MASTER, priority 150, VRID 51 on eth0 (v2), VIPs 10.0.0.100",
/// then who the master is and what was dropped.
fn vrrp(v: &VrrpView) -> String {
    let prio = if v.priority == v.base_priority {
        v.priority.to_string()
    } else {
        format!("{} (configured {})", v.priority, v.base_priority)
    };
    let vips: Vec<String> = v.vips.iter().map(ToString::to_string).collect();
    let mut line = format!(
        "vrrp {:<8} {}, priority {prio}, VRID {} on {} (v{}), VIPs {}",
        v.name,
        v.state,
        v.vrid,
        v.interface,
        v.version,
        vips.join(" ")
    );
    if let (Some(m), "BACKUP") = (v.master, v.state.as_str()) {
        let _ = write!(line, ", master {m}");
    }
    let _ = write!(line, "; adverts {} sent, {} received", v.adverts_sent, v.adverts_received);
    if v.late_timer_saves > 0 {
        let _ = write!(line, ", {} late timer(s) saved by XDP", v.late_timer_saves);
    }
    let dropped: u64 = v.rejects.values().sum();
    if dropped > 0 {
        let why: Vec<String> = v.rejects.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = write!(line, ", {dropped} dropped ({})", why.join(", "));
    }
    line
}

fn dataplane(d: &DaemonView) -> String {
    if d.interfaces.is_empty() {
        return format!("{}, no interface attached", d.dataplane);
    }
    let ifaces: Vec<String> = d.interfaces.iter().map(|i| format!("{} ({})", i.name, i.attach_mode)).collect();
    format!("{} on {}", d.dataplane, ifaces.join(", "))
}

/// "5: 3 up, 1 down, 1 disabled". Admin state wins over health: a disabled
/// server takes no new traffic whatever its checker says.
fn reals(snapshot: &Snapshot) -> String {
    let (mut up, mut down, mut unchecked, mut disabled) = (0, 0, 0, 0);
    let all = snapshot.services.iter().flat_map(|s| &s.reals);
    for r in all {
        match (r.admin, r.health.as_str()) {
            (AdminState::Disabled, _) => disabled += 1,
            (_, "up") => up += 1,
            (_, "down") => down += 1,
            _ => unchecked += 1,
        }
    }
    let total = up + down + unchecked + disabled;
    if total == 0 {
        return "none".to_owned();
    }
    let parts: Vec<String> = [(up, "up"), (down, "down"), (unchecked, "not health-checked"), (disabled, "disabled")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    format!("{total}: {}", parts.join(", "))
}

fn drops(snapshot: &Snapshot) -> String {
    let mut drops: Vec<_> = snapshot.reasons.iter().filter(|r| r.action == "drop" && r.packets > 0).collect();
    if drops.is_empty() {
        return "none".to_owned();
    }
    // Most packets first; the name breaks ties so the output is stable.
    drops.sort_by(|a, b| b.packets.cmp(&a.packets).then_with(|| a.reason.cmp(&b.reason)));
    let top: Vec<String> = drops.iter().take(TOP_DROPS).map(|r| format!("{} {} pkts", r.reason, r.packets)).collect();
    top.join(", ")
}

/// "42s", "5m 3s", "3h 4m", "2d 3h 4m".
fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{InterfaceView, LimitView, RealView, ReasonView, ServiceView, TrafficView};

    fn real(health: &str, admin: AdminState) -> RealView {
        RealView {
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
            forward: "Route".into(),
            configured_weight: 1,
            effective_weight: 1,
            admin,
            health: health.into(),
            active_conns: 0,
            inactive_conns: 0,
            traffic: TrafficView::default(),
        }
    }

    fn reason(name: &str, action: &str, packets: u64) -> ReasonView {
        ReasonView { reason: name.into(), action: action.into(), packets, bytes: packets * 60 }
    }

    #[test]
    fn full_status() {
        let snapshot = Snapshot {
            daemon: DaemonView {
                version: "0.1.0".into(),
                pid: 4242,
                config_file: "/etc/keepalived/keepalived.conf".into(),
                config_generation: 3,
                reloads_ok: 2,
                reloads_failed: 1,
                last_reload_error: Some(
                    "keepalived.conf:12:5: error: unknown keyword `foo`\nkeepalived.conf:14:1: error: unbalanced `}`"
                        .into(),
                ),
                dataplane: "xdp".into(),
                interfaces: vec![
                    InterfaceView { name: "eth0".into(), attach_mode: "native".into() },
                    InterfaceView { name: "eth1".into(), attach_mode: "skb".into() },
                ],
                uptime_secs: 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5,
                limits: vec![
                    LimitView { name: "services".into(), used: 2, max: 1024 },
                    LimitView { name: "real_servers".into(), used: 5, max: 16384 },
                ],
            },
            services: vec![ServiceView {
                proto: "TCP".into(),
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                sched: "wrr".into(),
                persistence_secs: None,
                persistence_mask: None,
                fwmark: None,
                reals: vec![
                    real("up", AdminState::Enabled),
                    real("up", AdminState::Weight(3)),
                    real("down", AdminState::Enabled),
                    real("down", AdminState::Disabled),
                    real("unknown", AdminState::Enabled),
                ],
                sorry: None,
                traffic: TrafficView::default(),
            }],
            reasons: vec![
                reason("fwd_dr", "fwd", 1_000_000),
                reason("drop_fragment", "drop", 3),
                reason("drop_no_real", "drop", 120),
                reason("drop_truncated_l4", "drop", 3),
                reason("drop_bad_real", "drop", 0),
                reason("drop_encap_failed", "drop", 1),
            ],
            vrrp: vec![
                VrrpView {
                    name: "VI_1".into(),
                    interface: "eth0".into(),
                    vrid: 51,
                    version: 2,
                    state: "BACKUP".into(),
                    priority: 90,
                    base_priority: 100,
                    master: Some("10.0.0.2".parse().unwrap()),
                    vips: vec!["10.0.0.100".parse().unwrap()],
                    transitions: 1,
                    adverts_sent: 0,
                    adverts_received: 40,
                    rejects: [("auth".to_string(), 3)].into(),
                    send_errors: 0,
                    late_timer_saves: 0,
                },
                VrrpView {
                    name: "VI_6".into(),
                    interface: "eth0".into(),
                    vrid: 61,
                    version: 3,
                    state: "MASTER".into(),
                    priority: 150,
                    base_priority: 150,
                    master: Some("fe80::1".parse().unwrap()),
                    vips: vec!["2001:db8::100".parse().unwrap()],
                    transitions: 2,
                    adverts_sent: 12,
                    adverts_received: 0,
                    rejects: Default::default(),
                    send_errors: 0,
                    late_timer_saves: 0,
                },
            ],
        };
        let expected = "\
director 0.1.0, pid 4242, up 2d 3h 4m
config        /etc/keepalived/keepalived.conf (generation 3)
reloads       2 ok, 1 failed
  last error  keepalived.conf:12:5: error: unknown keyword `foo`
              keepalived.conf:14:1: error: unbalanced `}`
dataplane     xdp on eth0 (native), eth1 (skb)
services      1
real servers  5: 2 up, 1 down, 1 not health-checked, 1 disabled
top drops     drop_no_real 120 pkts, drop_fragment 3 pkts, drop_truncated_l4 3 pkts
xdp limits    services 2/1024, real_servers 5/16384
vrrp VI_1     BACKUP, priority 90 (configured 100), VRID 51 on eth0 (v2), VIPs 10.0.0.100, master 10.0.0.2; adverts 0 sent, 40 received, 3 dropped (auth 3)
vrrp VI_6     MASTER, priority 150, VRID 61 on eth0 (v3), VIPs 2001:db8::100; adverts 12 sent, 0 received
";
        assert_eq!(status(&snapshot), expected);
    }

    #[test]
    fn empty_daemon() {
        let text = status(&Snapshot::default());
        assert!(text.contains("no interface attached\n"), "{text}");
        assert!(text.contains("real servers  none\n"));
        assert!(text.contains("top drops     none\n"));
        assert!(!text.contains("last error"));
    }

    #[test]
    fn uptime_forms() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(303), "5m 3s");
        assert_eq!(uptime(3 * 3600 + 4 * 60 + 59), "3h 4m");
        assert_eq!(uptime(86_400), "1d 0h 0m");
    }
}
