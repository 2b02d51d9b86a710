//! `directorctl list`: the snapshot in ipvsadm's layouts, so that operators'
//! eyes and scripts written for `ipvsadm -Ln` keep working.
//!
//! Every format string below is ipvsadm 1.31's (the version Debian bookworm
//! ships; 1.26 is identical for these lines), quoted in the comments next to
//! the code that reproduces it. Always numeric (`-n`): no name lookups.
//!
//! What ipvsadm cannot show gets a trailing annotation after the last
//! column of a real server's line, e.g. `(disabled)`; `annotate: false`
//! (`directorctl list --ipvsadm`) drops them for scripts that split columns.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use crate::{
    ctl::protocol::ConnView,
    status::{AdminState, RealView, ServiceView, Snapshot, TrafficView},
};

/// ipvsadm prints the kernel's IPVS version and connection hash size. XDP
/// has neither; scripts match this line, so it is IPVS's own long-standing
/// default, not a property of director.
pub const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n";

/// Which ipvsadm listing to reproduce.
#[derive(Clone, Copy, Debug)]
pub enum Layout<'a> {
    /// `ipvsadm -Ln`.
    Default,
    /// `ipvsadm -Ln --stats`.
    Stats,
    /// `ipvsadm -Ln --rate`: per-second rates between an earlier snapshot and
    /// this one (the data plane keeps counters, not rate estimators).
    Rate { earlier: &'a Snapshot, elapsed: Duration },
}

#[derive(Clone, Copy, Debug)]
pub struct ListOptions<'a> {
    pub layout: Layout<'a>,
    /// `--exact`: full numbers instead of K/M/G/T.
    pub exact: bool,
    /// Trailing notes for what ipvsadm has no column for.
    pub annotate: bool,
}

/// The whole listing: header, titles, services and their real servers.
pub fn list(snapshot: &Snapshot, opts: &ListOptions) -> String {
    let mut out = String::from(HEADER);
    out.push_str(title(opts.layout));
    let rates = match opts.layout {
        Layout::Rate { earlier, elapsed } => Some(Rates::new(earlier, elapsed)),
        _ => None,
    };
    for svc in sorted_services(snapshot) {
        service(&mut out, svc, opts, rates.as_ref());
    }
    out
}

/// `ipvsadm -Lnc`. The XDP connection table is an LRU map: entries have no
/// expiry timer and no TCP state, so those columns show `--:--` and `-`.
pub fn connections(entries: &[ConnView]) -> String {
    // list_conn(): "IPVS connection entries\n", then
    // "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination"
    let mut out = String::from(
        "IPVS connection entries\npro expire state       source             virtual            destination\n",
    );
    for c in entries {
        // "%-3s %-6s %-11s %-18s %-18s %s\n", protocol, expire_str, state, cname, vname, dname
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            c.proto,
            "--:--",
            "-",
            sockaddr(c.source),
            sockaddr(c.virtual_addr),
            sockaddr(c.destination)
        );
    }
    out
}

fn title(layout: Layout) -> &'static str {
    // print_title(): "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" with
    // "Prot LocalAddress:Port" and the five column names, or the fixed default.
    match layout {
        Layout::Stats => {
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  -> RemoteAddress:Port\n"
        }
        Layout::Rate { .. } => {
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n  -> RemoteAddress:Port\n"
        }
        Layout::Default => {
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        }
    }
}

fn service(out: &mut String, svc: &ServiceView, opts: &ListOptions, rates: Option<&Rates>) {
    // "%-4s %s", protocol_name(se->protocol), vname; "FWM  %d" (" IPv6")
    let name = match svc.fwmark {
        Some(m) if svc.vip.is_ipv6() => format!("FWM  {m} IPv6"),
        Some(m) => format!("FWM  {m}"),
        None => format!("{:<4} {}", svc.proto, addrport(svc.vip, svc.port)),
    };
    match opts.layout {
        Layout::Default => {
            // "%s %s", svc_name, se->sched_name; then " persistent %u"
            out.push_str(&name);
            out.push(' ');
            out.push_str(&svc.sched);
            if let Some(timeout) = svc.persistence_secs {
                let _ = write!(out, " persistent {timeout}");
                // " mask %s" (IPv4, inet_ntoa) / " mask %i" (IPv6 prefix)
                if let Some(mask) = &svc.persistence_mask {
                    let _ = write!(out, " mask {mask}");
                }
            }
        }
        Layout::Stats => {
            // "%-33s" then print_largenum() × 5
            let _ = write!(out, "{name:<33}");
            largenums(out, &counters(&svc.traffic), opts.exact);
        }
        Layout::Rate { .. } => {
            // "%-33s" then print_largenum() × 5
            let _ = write!(out, "{name:<33}");
            let r = rates.map(|r| r.service(svc)).unwrap_or_default();
            largenums(out, &r, opts.exact);
        }
    }
    out.push('\n');

    let mut reals: Vec<&RealView> = svc.reals.iter().collect();
    // ipvs_cmp_dests: by address, then port.
    reals.sort_by_key(|r| (r.addr, r.port));
    for r in reals {
        real(out, svc, r, opts, rates, notes(r, opts.annotate));
    }
    if let Some(sorry) = &svc.sorry {
        // keepalived puts the sorry server into IPVS only while no real
        // server can take traffic; the data plane does the same.
        let in_use = svc.reals.iter().all(|r| r.effective_weight == 0);
        if in_use || opts.annotate {
            let note = if in_use { "sorry server: in use" } else { "sorry server: standby" };
            let notes = if opts.annotate { vec![note.to_owned()] } else { Vec::new() };
            real(out, svc, sorry, opts, rates, notes);
        }
    }
}

fn real(
    out: &mut String,
    svc: &ServiceView,
    r: &RealView,
    opts: &ListOptions,
    rates: Option<&Rates>,
    notes: Vec<String>,
) {
    let name = addrport(r.addr, r.port);
    match opts.layout {
        Layout::Default => {
            // "  -> %-28s %-7s %-6d %-10u %-10u\n", dname, fwd_name(), weight, activeconns, inactconns
            let _ = write!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                name, r.forward, r.effective_weight, r.active_conns, r.inactive_conns
            );
        }
        Layout::Stats => {
            // "  -> %-28s" then print_largenum() × 5
            let _ = write!(out, "  -> {name:<28}");
            largenums(out, &counters(&r.traffic), opts.exact);
        }
        Layout::Rate { .. } => {
            // "  -> %-28s %8llu %8llu %8llu" (cps, inpps, outpps), then
            // print_largenum() for inbps and outbps
            let [cps, inpps, outpps, inbps, outbps] = rates.map(|rt| rt.real(svc, r)).unwrap_or_default();
            let _ = write!(out, "  -> {name:<28} {cps:>8} {inpps:>8} {outpps:>8}");
            largenums(out, &[inbps, outbps], opts.exact);
        }
    }
    if !notes.is_empty() {
        let _ = write!(out, " ({})", notes.join("; "));
    }
    out.push('\n');
}

/// What ipvsadm's columns cannot say about a real server.
fn notes(r: &RealView, annotate: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if !annotate {
        return notes;
    }
    match r.admin {
        AdminState::Enabled => {}
        AdminState::Disabled => notes.push("disabled".to_owned()),
        AdminState::Weight(_) => notes.push(format!("weight set by operator; configured {}", r.configured_weight)),
    }
    if r.health == "down" {
        notes.push("health: down".to_owned());
    }
    notes
}

/// print_largenum(): right-aligned in 9 columns, abbreviated past 8 digits
/// unless `--exact`.
fn largenum(out: &mut String, i: u64, exact: bool) {
    if exact {
        // len = snprintf("%llu"); printf("%*llu", len <= 8 ? 9 : len + 1, i)
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        let _ = write!(out, "{i:>width$}");
        return;
    }
    let _ = match i {
        // "%9llu"
        0..100_000_000 => write!(out, "{i:>9}"),
        // "%8lluK", i / 1000
        100_000_000..1_000_000_000 => write!(out, "{:>8}K", i / 1_000),
        // "%8lluM", i / 1000000
        1_000_000_000..100_000_000_000 => write!(out, "{:>8}M", i / 1_000_000),
        // "%8lluG", i / 1000000000ULL
        100_000_000_000..100_000_000_000_000 => write!(out, "{:>8}G", i / 1_000_000_000),
        // "%8lluT", i / 1000000000000ULL
        _ => write!(out, "{:>8}T", i / 1_000_000_000_000),
    };
}

fn largenums(out: &mut String, values: &[u64], exact: bool) {
    for &v in values {
        largenum(out, v, exact);
    }
}

/// Conns InPkts OutPkts InBytes OutBytes.
fn counters(t: &TrafficView) -> [u64; 5] {
    [t.conns, t.in_packets, t.out_packets, t.in_bytes, t.out_bytes]
}

/// ipvs_cmp_services: fwmark (0 for address services), address family,
/// protocol number, address, port.
fn sorted_services(snapshot: &Snapshot) -> Vec<&ServiceView> {
    let mut services: Vec<&ServiceView> = snapshot.services.iter().collect();
    services.sort_by_key(|s| {
        let proto = match s.proto.as_str() {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            _ => u8::MAX,
        };
        (s.fwmark.unwrap_or(0), s.vip.is_ipv6(), proto, s.vip, s.port)
    });
    services
}

/// A service's identity across snapshots; a fwmark service's mark stands
/// in for the port it does not have.
fn service_key(s: &ServiceView) -> (&str, IpAddr, u32) {
    (s.proto.as_str(), s.vip, s.fwmark.unwrap_or(s.port.into()))
}

/// addrport_to_anyname() with FMT_NUMERIC: "%s%s%s:%u", IPv6 in brackets.
fn addrport(addr: IpAddr, port: u16) -> String {
    sockaddr(SocketAddr::new(addr, port))
}

fn sockaddr(sa: SocketAddr) -> String {
    // SocketAddr's Display is exactly that: "a.b.c.d:p" or "[v6]:p".
    sa.to_string()
}

/// Rates between two snapshots, matched by service and real server
/// identity; anything absent from the earlier one (added since) shows 0.
struct Rates<'a> {
    earlier: HashMap<(&'a str, IpAddr, u32), &'a ServiceView>,
    elapsed: Duration,
}

impl<'a> Rates<'a> {
    fn new(earlier: &'a Snapshot, elapsed: Duration) -> Self {
        let earlier = earlier.services.iter().map(|s| (service_key(s), s)).collect();
        Self { earlier, elapsed }
    }

    fn service(&self, svc: &ServiceView) -> [u64; 5] {
        match self.earlier.get(&service_key(svc)) {
            Some(before) => self.per_second(&before.traffic, &svc.traffic),
            None => [0; 5],
        }
    }

    fn real(&self, svc: &ServiceView, r: &RealView) -> [u64; 5] {
        let before = self
            .earlier
            .get(&service_key(svc))
            .and_then(|s| s.reals.iter().chain(s.sorry.as_ref()).find(|b| b.addr == r.addr && b.port == r.port));
        match before {
            Some(before) => self.per_second(&before.traffic, &r.traffic),
            None => [0; 5],
        }
    }

    /// CPS InPPS OutPPS InBPS OutBPS; BPS is bytes per second, as in IPVS.
    fn per_second(&self, before: &TrafficView, now: &TrafficView) -> [u64; 5] {
        let micros = self.elapsed.as_micros();
        let (b, n) = (counters(before), counters(now));
        std::array::from_fn(|i| {
            // Counters restart when a service is re-created: no negative rates.
            let delta = u128::from(n[i].saturating_sub(b[i]));
            match micros {
                0 => 0,
                _ => u64::try_from((delta * 1_000_000 + micros / 2) / micros).unwrap_or(u64::MAX),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(conns: u64, pkts: u64, bytes: u64) -> TrafficView {
        TrafficView { conns, in_packets: pkts, in_bytes: bytes, out_packets: 0, out_bytes: 0 }
    }

    fn real(addr: &str, port: u16, weight: u32) -> RealView {
        RealView {
            addr: addr.parse().unwrap(),
            port,
            forward: "Route".into(),
            configured_weight: weight,
            effective_weight: weight,
            admin: AdminState::Enabled,
            health: "up".into(),
            active_conns: 0,
            inactive_conns: 0,
            traffic: TrafficView::default(),
        }
    }

    fn service(proto: &str, vip: &str, port: u16, sched: &str, reals: Vec<RealView>) -> ServiceView {
        ServiceView {
            proto: proto.into(),
            vip: vip.parse().unwrap(),
            port,
            sched: sched.into(),
            persistence_secs: None,
            persistence_mask: None,
            fwmark: None,
            reals,
            sorry: None,
            traffic: TrafficView::default(),
        }
    }

    /// Two services in the order a daemon might hand them over (unsorted),
    /// one persistent, one IPv6.
    fn lab() -> Snapshot {
        let mut web = service(
            "TCP",
            "192.168.122.100",
            80,
            "wrr",
            vec![real("192.168.122.12", 80, 2), real("192.168.122.11", 80, 1)],
        );
        web.persistence_secs = Some(360);
        web.reals[0].active_conns = 12;
        web.reals[0].inactive_conns = 3;
        let v6 = service("TCP", "2001:db8::100", 443, "rr", vec![real("2001:db8::11", 443, 1)]);
        let dns = service("UDP", "192.168.122.100", 53, "sh", vec![real("192.168.122.11", 53, 1)]);
        Snapshot { services: vec![v6, dns, web], ..Snapshot::default() }
    }

    fn opts(layout: Layout) -> ListOptions {
        ListOptions { layout, exact: false, annotate: true }
    }

    #[test]
    fn default_layout_matches_ipvsadm() {
        // What `ipvsadm -Ln` prints for the same IPVS table (trailing spaces
        // are ipvsadm's: "%-10u\n" pads the last column).
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.122.100:80 wrr persistent 360
  -> 192.168.122.11:80            Route   1      0          0         
  -> 192.168.122.12:80            Route   2      12         3         
UDP  192.168.122.100:53 sh
  -> 192.168.122.11:53            Route   1      0          0         
TCP  [2001:db8::100]:443 rr
  -> [2001:db8::11]:443           Route   1      0          0         
";
        assert_eq!(list(&lab(), &opts(Layout::Default)), expected);
    }

    #[test]
    fn annotations_trail_the_columns() {
        let mut snap = lab();
        let web = &mut snap.services[2];
        web.reals[0].admin = AdminState::Disabled;
        web.reals[0].effective_weight = 0;
        web.reals[1].health = "down".into();
        web.reals[1].effective_weight = 0;
        web.sorry = Some(RealView { forward: "Masq".into(), ..real("192.168.122.200", 8080, 1) });
        let text = list(&snap, &opts(Layout::Default));
        assert!(
            text.contains(
                "  -> 192.168.122.11:80            Route   0      0          0          (health: down)\n\
             \x20 -> 192.168.122.12:80            Route   0      12         3          (disabled)\n\
             \x20 -> 192.168.122.200:8080         Masq    1      0          0          (sorry server: in use)\n"
            ),
            "{text}"
        );

        // --ipvsadm: no notes, and the sorry server only while it is in use.
        let plain = list(&snap, &ListOptions { annotate: false, ..opts(Layout::Default) });
        assert!(!plain.lines().any(|l| l.starts_with("  -> ") && l.contains('(')), "{plain}");
        assert!(plain.contains("  -> 192.168.122.200:8080         Masq    1      0          0         \n"));
        let web = &mut snap.services[2];
        web.reals[1].effective_weight = 1;
        web.reals[1].health = "up".into();
        web.reals[0].admin = AdminState::Weight(5);
        web.reals[0].effective_weight = 5;
        let plain = list(&snap, &ListOptions { annotate: false, ..opts(Layout::Default) });
        assert!(!plain.contains("192.168.122.200"), "{plain}");
        let text = list(&snap, &opts(Layout::Default));
        assert!(text.contains("Route   5      12         3          (weight set by operator; configured 2)\n"));
        assert!(text.contains("(sorry server: standby)\n"));
    }

    #[test]
    fn stats_layout_and_abbreviations() {
        let mut snap = lab();
        snap.services.truncate(1);
        let v6 = &mut snap.services[0];
        v6.traffic = TrafficView {
            conns: 99_999_999,
            in_packets: 100_000_000,
            out_packets: 1_000_000_000,
            in_bytes: 100_000_000_000,
            out_bytes: 100_000_000_000_000,
        };
        v6.reals[0].traffic = traffic(7, 1234, 567_890);
        // ipvsadm -Ln --stats: "%-33s" + "%9llu" / "%8lluK" / "%8lluM" / ...
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  [2001:db8::100]:443          99999999  100000K    1000M     100G     100T
  -> [2001:db8::11]:443                  7     1234        0   567890        0
";
        assert_eq!(list(&snap, &opts(Layout::Stats)), expected);

        // --exact: "%*llu" with width len <= 8 ? 9 : len + 1.
        let exact = list(&snap, &ListOptions { exact: true, ..opts(Layout::Stats) });
        assert!(
            exact.contains(
                "TCP  [2001:db8::100]:443          99999999 100000000 1000000000 100000000000 100000000000000\n"
            ),
            "{exact}"
        );
    }

    #[test]
    fn stats_service_name_pads_to_33() {
        let snap = Snapshot { services: vec![service("UDP", "10.0.0.1", 53, "rr", Vec::new())], ..Snapshot::default() };
        let text = list(&snap, &opts(Layout::Stats));
        assert!(
            text.ends_with("UDP  10.0.0.1:53                         0        0        0        0        0\n"),
            "{text}"
        );
    }

    #[test]
    fn rate_layout_from_two_snapshots() {
        let mut before = lab();
        before.services.truncate(1);
        let mut after = before.clone();
        before.services[0].traffic = traffic(10, 100, 10_000);
        before.services[0].reals[0].traffic = traffic(10, 100, 10_000);
        after.services[0].traffic = traffic(30, 2_100, 3_010_000);
        after.services[0].reals[0].traffic = traffic(30, 2_100, 3_010_000);
        let text = list(&after, &opts(Layout::Rate { earlier: &before, elapsed: Duration::from_secs(2) }));
        // "%-33s" + print_largenum() × 5; reals "  -> %-28s %8llu %8llu %8llu" + 2 × print_largenum()
        let expected = "\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  [2001:db8::100]:443                10     1000        0  1500000        0
  -> [2001:db8::11]:443                 10     1000        0  1500000        0
";
        assert_eq!(text, expected);

        // A counter that went backwards (service re-created) is a zero rate,
        // and a service absent from the first snapshot shows zeros.
        let mut reset = after.clone();
        reset.services[0].traffic = traffic(1, 1, 1);
        let text = list(&reset, &opts(Layout::Rate { earlier: &after, elapsed: Duration::from_secs(1) }));
        assert!(text.contains("TCP  [2001:db8::100]:443                 0        0        0        0        0\n"));
        let text = list(&after, &opts(Layout::Rate { earlier: &Snapshot::default(), elapsed: Duration::from_secs(1) }));
        assert!(text.contains("  -> [2001:db8::11]:443                  0        0        0        0        0\n"));
    }

    #[test]
    fn largenum_boundaries() {
        // print_largenum(): "%9llu", "%8lluK", "%8lluM", "%8lluG", "%8lluT".
        let cases = [
            (0, "        0"),
            (99_999_999, " 99999999"),
            (100_000_000, "  100000K"),
            (999_999_999, "  999999K"),
            (1_000_000_000, "    1000M"),
            (99_999_999_999, "   99999M"),
            (100_000_000_000, "     100G"),
            (99_999_999_999_999, "   99999G"),
            (100_000_000_000_000, "     100T"),
            (u64::MAX, "18446744T"),
        ];
        for (n, want) in cases {
            let mut s = String::new();
            largenum(&mut s, n, false);
            assert_eq!(s, want, "{n}");
        }
        let mut s = String::new();
        largenum(&mut s, 12_345_678_901, true);
        assert_eq!(s, " 12345678901");
    }

    #[test]
    fn connections_layout() {
        let entries = vec![ConnView {
            proto: "TCP".into(),
            source: "192.168.122.1:51234".parse().unwrap(),
            virtual_addr: "192.168.122.100:80".parse().unwrap(),
            destination: "192.168.122.11:80".parse().unwrap(),
        }];
        // ipvsadm -Lnc: "pro expire %-11s %-18s %-18s %s" / "%-3s %-6s %-11s %-18s %-18s %s"
        let expected = "\
IPVS connection entries
pro expire state       source             virtual            destination
TCP --:--  -           192.168.122.1:51234 192.168.122.100:80 192.168.122.11:80
";
        assert_eq!(connections(&entries), expected);
    }
}
