//! Packet fixtures for the load balancer, run through the real program
//! with BPF_PROG_TEST_RUN: input frame → expected verdict and exact output
//! frame. Expected frames are built by etherparse, which computes every
//! checksum itself. Runs as root.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::Result;
use director::{
    dataplane::{
        Dataplane,
        xdp::{Family, LoadOptions, SeenAdvert, TrafficOf, VrrpWatch, XdpProgram, flow_key},
    },
    vrrp::{Advert, Auth, Version},
    state::{DesiredState, Method, NextHop, Persistence, Proto, RealSpec, ServiceAddr, ServiceSpec},
};
use director_common::{hash::flow_hash, lb::Persist, stats::Reason};
use director_tests::{
    fixture::{self, Fixture, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, run_once},
    frames::{self, Mac, Seg},
};

const CLIENT_MAC: Mac = [0x02, 0xcc, 0, 0, 0, 1];
const OUR_MAC: Mac = [0x02, 0xdd, 0, 0, 0, 1];
/// BPF_PROG_TEST_RUN runs as if the frame arrived on loopback (ifindex 1):
/// a real behind ifindex 1 is reached with XDP_TX, any other by redirect.
const SAME_IF: u32 = 1;
const OTHER_IF: u32 = 7;
const RING: u32 = 1021;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac_for(addr: IpAddr) -> Mac {
    let o = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    [0x02, 0xee, o[o.len() - 4], o[o.len() - 3], o[o.len() - 2], o[o.len() - 1]]
}

fn real(addr: &str, port: u16, weight: u32, method: Method) -> RealSpec {
    let addr = ip(addr);
    let tun_src = match (method, addr) {
        (Method::Tun, IpAddr::V4(_)) => Some(ip("10.0.0.2")),
        (Method::Tun, IpAddr::V6(_)) => Some(ip("fd00::2")),
        _ => None,
    };
    let ifindex = if method == Method::Nat { OTHER_IF } else { SAME_IF };
    RealSpec { addr, port, weight, method, next_hop: NextHop { mac: mac_for(addr), src_mac: OUR_MAC, ifindex, tun_src } }
}

fn svc(vip: &str, port: u16, proto: Proto, sched: &str, reals: Vec<RealSpec>) -> ServiceSpec {
    ServiceSpec { addr: ServiceAddr { vip: ip(vip), port, proto }, sched: sched.into(), persistence: None, reals, sorry: None, ring_size: 1021 }
}

fn desired() -> DesiredState {
    use Method::*;
    let dr4 = || vec![real("10.0.1.1", 80, 1, Dr), real("10.0.1.2", 80, 2, Dr), real("10.0.1.3", 80, 3, Dr)];
    let dr6 = || vec![real("fd00:1::1", 80, 1, Dr), real("fd00:1::2", 80, 1, Dr), real("fd00:1::3", 80, 1, Dr)];
    let mut persistent = svc("10.0.0.103", 443, Proto::Tcp, "wlc", vec![
        real("10.0.1.21", 443, 1, Dr),
        real("10.0.1.22", 443, 1, Dr),
        real("10.0.1.23", 443, 1, Dr),
    ]);
    persistent.persistence =
        Some(Persistence { timeout: std::time::Duration::from_secs(300), granularity: ip("255.255.255.0") });
    let mut sorry = svc("10.0.0.104", 80, Proto::Tcp, "wlc", vec![real("10.0.1.31", 80, 0, Dr)]);
    sorry.sorry = Some(real("10.0.1.99", 80, 1, Dr));
    DesiredState {
        services: vec![
            svc("10.0.0.100", 80, Proto::Tcp, "wrr", dr4()),
            svc("10.0.0.100", 53, Proto::Udp, "wrr", dr4()),
            svc("fd00::100", 80, Proto::Tcp, "wrr", dr6()),
            svc("fd00::100", 53, Proto::Udp, "wrr", dr6()),
            svc("10.0.0.101", 80, Proto::Tcp, "wlc", vec![real("10.0.1.11", 80, 1, Tun), real("10.0.1.12", 80, 1, Tun)]),
            svc("fd00::101", 80, Proto::Tcp, "wlc", vec![real("fd00:1::11", 80, 1, Tun)]),
            svc("10.0.0.101", 53, Proto::Udp, "wlc", vec![real("10.0.1.11", 53, 1, Tun)]),
            svc("fd00::101", 53, Proto::Udp, "wlc", vec![real("fd00:1::11", 53, 1, Tun)]),
            svc("10.0.0.102", 80, Proto::Tcp, "wlc", vec![real("10.0.2.1", 8080, 1, Nat), real("10.0.2.2", 8080, 1, Nat)]),
            svc("10.0.0.102", 53, Proto::Udp, "wlc", vec![real("10.0.2.1", 5353, 1, Nat)]),
            svc("fd00::102", 80, Proto::Tcp, "wlc", vec![real("fd00:2::1", 8080, 1, Nat)]),
            svc("fd00::102", 53, Proto::Udp, "wlc", vec![real("fd00:2::1", 5353, 1, Nat)]),
            persistent,
            sorry,
            svc("10.0.0.105", 80, Proto::Tcp, "wlc", vec![real("10.0.1.41", 80, 0, Dr)]),
            svc("10.0.0.106", 0, Proto::Tcp, "wlc", vec![real("10.0.1.51", 0, 1, Dr)]),
        ],
    }
}

fn load(state: &DesiredState) -> Result<XdpProgram> {
    let mut prog = XdpProgram::load_with(LoadOptions { ring_size: Some(RING), max_conns: 1 << 14, ..Default::default() })?;
    prog.apply(state)?;
    Ok(prog)
}

fn seg(src: &str, sport: u16, dst: &str, dport: u16) -> Seg {
    Seg { src_mac: CLIENT_MAC, dst_mac: OUR_MAC, src: ip(src), dst: ip(dst), sport, dport, vlan: None }
}

/// The real (by MAC) a forwarded frame went to.
fn dest_mac(out: &[u8]) -> Mac {
    out[0..6].try_into().unwrap()
}

/// The real server the ring picks for a new flow, predicted from the
/// applied ring and the shared hash.
fn ring_pick(prog: &XdpProgram, addr: &ServiceAddr, src: IpAddr, sport: u16, hash_by: u8) -> Option<IpAddr> {
    let ids = prog.service_ids(addr)?;
    let key = flow_key(src, sport, addr.vip, addr.port, addr.proto);
    let id = ids.table[(flow_hash(&key, hash_by) % ids.table.len() as u32) as usize];
    ids.reals.iter().find(|(_, v)| **v == id).map(|((a, _), _)| *a)
}

fn count(prog: &XdpProgram, reason: Reason) -> u64 {
    prog.stats().unwrap().into_iter().find(|(r, _)| *r == reason).unwrap().1.packets
}

#[test]
fn dr_forwards_tcp_and_udp_over_v4_and_v6_with_only_the_macs_changed() -> Result<()> {
    let mut prog = load(&desired())?;
    let mut table = Vec::new();
    for (name, s, proto) in [
        ("dr v4 tcp", seg("192.0.2.1", 40001, "10.0.0.100", 80), Proto::Tcp),
        ("dr v4 udp", seg("192.0.2.1", 40002, "10.0.0.100", 53), Proto::Udp),
        ("dr v6 tcp", seg("2001:db8::1", 40003, "fd00::100", 80), Proto::Tcp),
        ("dr v6 udp", seg("2001:db8::1", 40004, "fd00::100", 53), Proto::Udp),
    ] {
        let frame = if proto == Proto::Tcp { frames::tcp(&s) } else { frames::udp(&s) };
        let addr = ServiceAddr { vip: s.dst, port: s.dport, proto };
        let want = ring_pick(&prog, &addr, s.src, s.sport, 0).expect("a real");
        table.push(Fixture { name, output: Some(frames::with_macs(&frame, mac_for(want), OUR_MAC)), input: frame, verdict: XDP_TX });
    }
    for f in &table {
        fixture::check(prog.program()?, f)?;
    }
    assert_eq!(count(&prog, Reason::FwdDr), 4);
    let id = prog.service_ids(&ServiceAddr { vip: ip("10.0.0.100"), port: 80, proto: Proto::Tcp }).unwrap().ring;
    let t = prog.traffic(TrafficOf::Service(id))?;
    assert_eq!((t.packets, t.conns), (1, 1));
    Ok(())
}

#[test]
fn dr_keeps_the_vlan_tag() -> Result<()> {
    let mut prog = load(&desired())?;
    let mut s = seg("192.0.2.1", 40010, "10.0.0.100", 80);
    s.vlan = Some(100);
    let frame = frames::tcp(&s);
    let addr = ServiceAddr { vip: ip("10.0.0.100"), port: 80, proto: Proto::Tcp };
    let want = ring_pick(&prog, &addr, ip("192.0.2.1"), 40010, 0).unwrap();
    fixture::check(
        prog.program()?,
        &Fixture { name: "dr v4 tcp in vlan 100", output: Some(frames::with_macs(&frame, mac_for(want), OUR_MAC)), input: frame, verdict: XDP_TX },
    )
}

#[test]
fn tun_encapsulates_in_ipip_and_ip6ip6() -> Result<()> {
    let mut prog = load(&desired())?;
    let v4 = frames::tcp(&seg("192.0.2.1", 40020, "10.0.0.101", 80));
    let addr4 = ServiceAddr { vip: ip("10.0.0.101"), port: 80, proto: Proto::Tcp };
    let r4 = ring_pick(&prog, &addr4, ip("192.0.2.1"), 40020, 0).unwrap();
    let v6 = frames::tcp(&seg("2001:db8::1", 40021, "fd00::101", 80));
    let u4 = frames::udp(&seg("192.0.2.1", 40022, "10.0.0.101", 53));
    let u6 = frames::udp(&seg("2001:db8::1", 40023, "fd00::101", 53));
    let table = [
        Fixture {
            name: "tun v4: IPIP to the real server",
            output: Some(frames::tunnel(mac_for(r4), OUR_MAC, ip("10.0.0.2"), r4, &v4[14..])),
            input: v4.clone(),
            verdict: XDP_TX,
        },
        Fixture {
            name: "tun v6: IPv6-in-IPv6 to the real server",
            output: Some(frames::tunnel(mac_for(ip("fd00:1::11")), OUR_MAC, ip("fd00::2"), ip("fd00:1::11"), &v6[14..])),
            input: v6,
            verdict: XDP_TX,
        },
        Fixture {
            name: "tun v4 udp",
            output: Some(frames::tunnel(mac_for(ip("10.0.1.11")), OUR_MAC, ip("10.0.0.2"), ip("10.0.1.11"), &u4[14..])),
            input: u4,
            verdict: XDP_TX,
        },
        Fixture {
            name: "tun v6 udp",
            output: Some(frames::tunnel(mac_for(ip("fd00:1::11")), OUR_MAC, ip("fd00::2"), ip("fd00:1::11"), &u6[14..])),
            input: u6,
            verdict: XDP_TX,
        },
    ];
    for f in &table {
        fixture::check(prog.program()?, f)?;
    }
    assert_eq!(count(&prog, Reason::FwdTun), 4);
    Ok(())
}

#[test]
fn nat_translates_inbound_and_replies_back_to_the_vip() -> Result<()> {
    let mut prog = load(&desired())?;
    let cases = [
        ("nat v4 tcp", seg("192.0.2.1", 40030, "10.0.0.102", 80), Proto::Tcp, 8080),
        ("nat v4 udp", seg("192.0.2.1", 40031, "10.0.0.102", 53), Proto::Udp, 5353),
        ("nat v6 tcp", seg("2001:db8::1", 40032, "fd00::102", 80), Proto::Tcp, 8080),
        ("nat v6 udp", seg("2001:db8::1", 40033, "fd00::102", 53), Proto::Udp, 5353),
    ];
    for (name, s, proto, rport) in cases {
        let build = |s: &Seg| if proto == Proto::Tcp { frames::tcp(s) } else { frames::udp(s) };
        let addr = ServiceAddr { vip: s.dst, port: s.dport, proto };
        let r = ring_pick(&prog, &addr, s.src, s.sport, 0).unwrap();
        let inbound = build(&s);
        // What the real server must see: its own address and port, macs towards it.
        let translated = build(&Seg { src_mac: OUR_MAC, dst_mac: mac_for(r), dst: r, dport: rport, ..s });
        fixture::check(prog.program()?, &Fixture { name, input: inbound, verdict: XDP_REDIRECT, output: Some(translated) })?;

        // Its reply, from real:rport to the client, arrives on the inside...
        let reply = build(&Seg { src_mac: mac_for(r), dst_mac: OUR_MAC, src: r, sport: rport, dst: s.src, dport: s.sport, vlan: None });
        // ...and leaves from the VIP towards the hop the client came from,
        // out of the interface the client's packet came in on (TX here).
        let back = build(&Seg { src_mac: OUR_MAC, dst_mac: CLIENT_MAC, src: s.dst, sport: s.dport, dst: s.src, dport: s.sport, vlan: None });
        fixture::check(prog.program()?, &Fixture { name, input: reply, verdict: XDP_TX, output: Some(back) })?;
    }
    assert_eq!(count(&prog, Reason::FwdNat), 4);
    assert_eq!(count(&prog, Reason::FwdNatReply), 4);

    // A reply for a flow we never saw is not ours.
    let stray = frames::tcp(&Seg { src_mac: mac_for(ip("10.0.2.1")), dst_mac: OUR_MAC, src: ip("10.0.2.1"), sport: 8080, dst: ip("192.0.2.9"), dport: 1, vlan: None });
    fixture::check(prog.program()?, &Fixture { name: "unknown reply passes", input: stray, verdict: XDP_PASS, output: None })
}

#[test]
fn traffic_that_is_not_for_a_service_passes_untouched() -> Result<()> {
    let mut prog = load(&desired())?;
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&CLIENT_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&[0; 20]);
        f
    };
    let table = [
        Fixture { name: "tcp to a non-VIP", input: frames::tcp(&seg("192.0.2.1", 40040, "10.0.0.200", 80)), verdict: XDP_PASS, output: None },
        Fixture { name: "ssh to the VIP (no service on 22)", input: frames::tcp(&seg("192.0.2.1", 40041, "10.0.0.100", 22)), verdict: XDP_PASS, output: None },
        Fixture { name: "udp to a VIP port without service", input: frames::udp(&seg("192.0.2.1", 40042, "10.0.0.100", 123)), verdict: XDP_PASS, output: None },
        Fixture { name: "v6 tcp to a non-VIP", input: frames::tcp(&seg("2001:db8::1", 40043, "fd00::200", 80)), verdict: XDP_PASS, output: None },
        Fixture { name: "arp", input: arp, verdict: XDP_PASS, output: None },
        Fixture { name: "ping to a VIP", input: frames::ping(CLIENT_MAC, OUR_MAC, ip("192.0.2.1"), ip("10.0.0.100")), verdict: XDP_PASS, output: None },
        Fixture { name: "ping6 to a VIP", input: frames::ping(CLIENT_MAC, OUR_MAC, ip("2001:db8::1"), ip("fd00::100")), verdict: XDP_PASS, output: None },
    ];
    for f in &table {
        fixture::check(prog.program()?, f)?;
    }
    assert_eq!(count(&prog, Reason::PassNotService), 4);
    assert_eq!(count(&prog, Reason::PassNotIp), 1);
    assert_eq!(count(&prog, Reason::PassIcmpToVip), 2);
    Ok(())
}

/// Sends a flow and returns the MAC of the real it went to.
fn send(prog: &mut XdpProgram, frame: &[u8]) -> Result<Mac> {
    let out = run_once(prog.program()?, frame)?;
    assert!(out.verdict == XDP_TX || out.verdict == XDP_REDIRECT, "verdict {}", out.verdict);
    Ok(dest_mac(&out.output))
}

#[test]
fn an_established_flow_keeps_its_server_when_weights_or_servers_change() -> Result<()> {
    let state = desired();
    let mut prog = load(&state)?;
    let addr = state.services[0].addr;
    let client = ip("192.0.2.7");
    let mut reweighted = state.clone();
    reweighted.services[0].reals[0].weight = 50;

    // A flow on 10.0.1.3 that the new weights will hand to 10.0.1.1.
    let probe = load(&reweighted)?;
    let port = (50000..60000u16)
        .find(|&p| {
            ring_pick(&prog, &addr, client, p, 0) == Some(ip("10.0.1.3"))
                && ring_pick(&probe, &addr, client, p, 0) == Some(ip("10.0.1.1"))
        })
        .expect("a flow the weight change moves");
    let frame = frames::tcp(&seg("192.0.2.7", port, "10.0.0.100", 80));
    assert_eq!(send(&mut prog, &frame)?, mac_for(ip("10.0.1.3")));

    let report = prog.apply(&reweighted)?;
    assert_eq!(report.services_changed, 1);
    assert!(report.slots_written > 0);
    assert_eq!(ring_pick(&prog, &addr, client, port, 0), Some(ip("10.0.1.1")), "the ring moved this flow");
    assert_eq!(send(&mut prog, &frame)?, mac_for(ip("10.0.1.3")), "the connection table kept it");

    // Removing another server does not disturb it either.
    reweighted.services[0].reals.remove(1);
    prog.apply(&reweighted)?;
    assert_eq!(send(&mut prog, &frame)?, mac_for(ip("10.0.1.3")));

    // New flows follow the new ring.
    let fresh = (20000..20500u16).find(|&p| ring_pick(&prog, &addr, client, p, 0) == Some(ip("10.0.1.1"))).unwrap();
    assert_eq!(send(&mut prog, &frames::tcp(&seg("192.0.2.7", fresh, "10.0.0.100", 80)))?, mac_for(ip("10.0.1.1")));
    Ok(())
}

#[test]
fn weight_zero_is_quiescent_existing_flows_continue_new_ones_avoid_it() -> Result<()> {
    let mut state = desired();
    let mut prog = load(&state)?;
    let addr = state.services[0].addr;
    let client = ip("192.0.2.8");
    let port = (50000..51000u16).find(|&p| ring_pick(&prog, &addr, client, p, 0) == Some(ip("10.0.1.2"))).unwrap();
    let frame = frames::tcp(&seg("192.0.2.8", port, "10.0.0.100", 80));
    assert_eq!(send(&mut prog, &frame)?, mac_for(ip("10.0.1.2")));

    state.services[0].reals[1].weight = 0;
    prog.apply(&state)?;
    assert_eq!(send(&mut prog, &frame)?, mac_for(ip("10.0.1.2")), "existing flow continues");
    // A client reusing those ports for a new connection (SYN) is scheduled
    // afresh instead of following the old entry to the drained server...
    let syn = frames::tcp_syn(&seg("192.0.2.8", port, "10.0.0.100", 80));
    let moved = send(&mut prog, &syn)?;
    assert_ne!(moved, mac_for(ip("10.0.1.2")), "a new connection reached a quiescent server");
    // ...and its later packets follow the new choice.
    assert_eq!(send(&mut prog, &frame)?, moved);
    for p in 20000..20300u16 {
        let got = send(&mut prog, &frames::tcp(&seg("192.0.2.8", p, "10.0.0.100", 80)))?;
        assert_ne!(got, mac_for(ip("10.0.1.2")), "new flow from port {p} reached a quiescent server");
    }
    Ok(())
}

#[test]
fn persistence_holds_within_the_timeout_and_for_the_granularity_then_expires() -> Result<()> {
    let state = desired();
    let mut prog = load(&state)?;
    let addr = state.services.iter().find(|s| s.persistence.is_some()).unwrap().addr;
    let c = ip("192.0.2.20");
    let first = send(&mut prog, &frames::tcp(&seg("192.0.2.20", 40000, "10.0.0.103", 443)))?;
    // A second connection whose own hash points elsewhere still goes there.
    let other = (40001..41000u16).find(|&p| ring_pick(&prog, &addr, c, p, 0).is_some_and(|r| mac_for(r) != first)).unwrap();
    assert_eq!(send(&mut prog, &frames::tcp(&seg("192.0.2.20", other, "10.0.0.103", 443)))?, first);
    // So does a neighbour in the same /24 (persistence_granularity 255.255.255.0).
    let n = ip("192.0.2.99");
    let np = (1000..2000u16).find(|&p| ring_pick(&prog, &addr, n, p, 0).is_some_and(|r| mac_for(r) != first)).unwrap();
    assert_eq!(send(&mut prog, &frames::tcp(&seg("192.0.2.99", np, "10.0.0.103", 443)))?, first);

    // Age the entry past the timeout: the next new flow is scheduled afresh.
    let ring = prog.service_ids(&addr).unwrap().ring;
    let pkey = director_common::lb::PersistKey {
        service: ring,
        client: director::dataplane::xdp::addr_words(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0))),
    };
    let entry = prog.maps.persist.get(&pkey, 0)?;
    prog.maps.persist.insert(pkey, Persist { last_ns: 0, ..entry }, 0)?;
    let later = (42000..43000u16).find(|&p| ring_pick(&prog, &addr, c, p, 0).is_some_and(|r| mac_for(r) != first)).unwrap();
    let want = mac_for(ring_pick(&prog, &addr, c, later, 0).unwrap());
    assert_eq!(send(&mut prog, &frames::tcp(&seg("192.0.2.20", later, "10.0.0.103", 443)))?, want);
    Ok(())
}

#[test]
fn icmp_too_big_errors_go_to_the_flows_real_server() -> Result<()> {
    let mut prog = load(&desired())?;
    for (client, vip, router) in [("192.0.2.30", "10.0.0.100", "198.51.100.1"), ("2001:db8::30", "fd00::100", "2001:db8:ffff::1")] {
        let inbound = frames::tcp(&seg(client, 45000, vip, 80));
        let real_mac = send(&mut prog, &inbound)?;
        // The real server's reply (VIP → client) was too big for a router.
        let reply = frames::tcp(&Seg { src_mac: real_mac, dst_mac: OUR_MAC, src: ip(vip), sport: 80, dst: ip(client), dport: 45000, vlan: None });
        let icmp = frames::too_big([0x02, 0xaa, 0, 0, 0, 1], OUR_MAC, ip(router), ip(vip), &reply[14..]);
        let want = frames::with_macs(&icmp, real_mac, OUR_MAC);
        fixture::check(prog.program()?, &Fixture { name: "too big → flow's real", input: icmp, verdict: XDP_TX, output: Some(want) })?;
    }
    assert_eq!(count(&prog, Reason::FwdIcmpError), 2);
    // About a flow we do not know: the kernel's business.
    let unknown = frames::tcp(&seg("10.0.0.100", 80, "192.0.2.99", 1));
    let icmp = frames::too_big(CLIENT_MAC, OUR_MAC, ip("198.51.100.1"), ip("10.0.0.100"), &unknown[14..]);
    fixture::check(prog.program()?, &Fixture { name: "too big, unknown flow", input: icmp, verdict: XDP_PASS, output: None })?;
    assert_eq!(count(&prog, Reason::PassIcmpNoFlow), 1);
    Ok(())
}

#[test]
fn fragments_options_and_extension_headers_to_a_vip_are_dropped_with_a_reason() -> Result<()> {
    let mut prog = load(&desired())?;
    let base = frames::tcp(&seg("192.0.2.40", 40050, "10.0.0.100", 80));
    let mut frag = base.clone();
    frag[20] |= 0x20; // MF
    frames::fix_ipv4_checksum(&mut frag, 14);
    let mut later_frag = base.clone();
    later_frag[21] = 0x10; // offset 128 bytes
    frames::fix_ipv4_checksum(&mut later_frag, 14);
    let mut non_vip_frag = frames::tcp(&seg("192.0.2.40", 40050, "10.0.0.200", 80));
    non_vip_frag[20] |= 0x20;
    frames::fix_ipv4_checksum(&mut non_vip_frag, 14);
    // IPv4 with 4 bytes of options (NOP NOP NOP EOL).
    let mut opts = base[..34].to_vec();
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&base[34..]);
    opts[14] = 0x46;
    let tot = u16::from_be_bytes([opts[16], opts[17]]) + 4;
    opts[16..18].copy_from_slice(&tot.to_be_bytes());
    frames::fix_ipv4_checksum(&mut opts, 14);
    // IPv6 with a hop-by-hop header in front of TCP.
    let v6 = frames::tcp(&seg("2001:db8::40", 40051, "fd00::100", 80));
    let mut ext = v6[..54].to_vec();
    ext[20] = 0; // next header: hop-by-hop
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    ext.extend_from_slice(&v6[54..]);
    let plen = u16::from_be_bytes([ext[18], ext[19]]) + 8;
    ext[18..20].copy_from_slice(&plen.to_be_bytes());

    let table = [
        Fixture { name: "first fragment to a VIP", input: frag, verdict: XDP_DROP, output: None },
        Fixture { name: "later fragment to a VIP", input: later_frag, verdict: XDP_DROP, output: None },
        Fixture { name: "fragment to a non-VIP", input: non_vip_frag, verdict: XDP_PASS, output: None },
        Fixture { name: "ipv4 options to a VIP", input: opts, verdict: XDP_DROP, output: None },
        Fixture { name: "ipv6 hop-by-hop to a VIP", input: ext, verdict: XDP_DROP, output: None },
    ];
    for f in &table {
        fixture::check(prog.program()?, f)?;
    }
    assert_eq!(count(&prog, Reason::DropFragment), 2);
    assert_eq!(count(&prog, Reason::DropIpv4Options), 1);
    assert_eq!(count(&prog, Reason::DropIpv6ExtHeader), 1);
    Ok(())
}

#[test]
fn truncated_frames_at_every_header_boundary() -> Result<()> {
    let mut prog = load(&desired())?;
    for (frame, l3, l4) in [
        (frames::tcp(&seg("192.0.2.50", 40060, "10.0.0.100", 80)), 14, 34),
        (frames::tcp(&seg("2001:db8::50", 40061, "fd00::100", 80)), 14, 54),
    ] {
        for len in 14..frame.len() {
            let cut = &frame[..len];
            let out = run_once(prog.program()?, cut)?;
            let (want, why) = if len < l3 + if l4 == 34 { 20 } else { 40 } {
                (XDP_PASS, "IP header cut: the kernel decides")
            } else if len < l4 + 4 {
                (XDP_DROP, "ports cut on a VIP-bound packet")
            } else {
                (XDP_TX, "DR needs nothing past the ports")
            };
            assert_eq!(out.verdict, want, "{len}-byte frame: expected {why}");
        }
    }
    // NAT must rewrite the L4 checksum, so it needs the whole L4 header.
    let nat = frames::tcp(&seg("192.0.2.50", 40062, "10.0.0.102", 80));
    let out = run_once(prog.program()?, &nat[..34 + 10])?;
    assert_eq!(out.verdict, XDP_DROP, "NAT of a TCP header cut before its checksum");
    assert!(count(&prog, Reason::PassTruncated) > 0 && count(&prog, Reason::DropTruncatedL4) > 0);
    Ok(())
}

#[test]
fn sorry_server_takes_over_when_no_real_is_usable_else_drop() -> Result<()> {
    let mut prog = load(&desired())?;
    let sorry = frames::tcp(&seg("192.0.2.60", 40070, "10.0.0.104", 80));
    let want = frames::with_macs(&sorry, mac_for(ip("10.0.1.99")), OUR_MAC);
    fixture::check(prog.program()?, &Fixture { name: "sorry server", input: sorry, verdict: XDP_TX, output: Some(want) })?;
    let none = frames::tcp(&seg("192.0.2.60", 40071, "10.0.0.105", 80));
    fixture::check(prog.program()?, &Fixture { name: "no usable real", input: none, verdict: XDP_DROP, output: None })?;
    assert_eq!(count(&prog, Reason::DropNoReal), 1);
    Ok(())
}

#[test]
fn a_port_zero_service_takes_every_port_of_its_vip() -> Result<()> {
    let mut prog = load(&desired())?;
    for port in [1u16, 443, 8443, 65535] {
        let f = frames::tcp(&seg("192.0.2.70", 40080, "10.0.0.106", port));
        let want = frames::with_macs(&f, mac_for(ip("10.0.1.51")), OUR_MAC);
        fixture::check(prog.program()?, &Fixture { name: "all-ports service", input: f, verdict: XDP_TX, output: Some(want) })?;
    }
    Ok(())
}

/// Real servers moving from one service to another near the limit: the
/// apply must spend ids in the order `check` replayed (the configuration's),
/// or it runs out half-way through a state `check` passed. Here the
/// service listed first (10.0.0.201) gives up 1,000 servers and the one
/// after it, which sorts first by address (10.0.0.200), takes 900 more,
/// with 384 ids free.
#[test]
fn servers_moving_between_services_near_the_limit_apply_as_checked() -> Result<()> {
    use director_common::lb::MAX_REALS;
    let reals = |net: u8, n: u32| -> Vec<RealSpec> {
        (0..n).map(|i| real(&format!("10.{net}.{}.{}", i / 250, i % 250 + 1), 80, 1, Method::Dr)).collect()
    };
    let state = |b: u32, a: u32| DesiredState {
        services: vec![
            svc("10.0.0.201", 80, Proto::Tcp, "wrr", reals(61, b)),
            svc("10.0.0.200", 80, Proto::Tcp, "wrr", reals(60, a)),
        ],
    };
    let half = (MAX_REALS - 384) / 2;
    let mut prog = load(&state(half, half))?;
    let next = state(half - 1000, half + 900);
    prog.check(&next)?;
    prog.apply(&next).map_err(|e| anyhow::anyhow!("check passed, the apply failed: {e}"))?;
    let (usage, _) = prog.usage();
    assert_eq!(usage.reals, u64::from(2 * half - 100));
    Ok(())
}

#[test]
fn removing_a_service_makes_its_vip_traffic_pass_again() -> Result<()> {
    let mut state = desired();
    let mut prog = load(&state)?;
    state.services.retain(|s| s.addr.vip != ip("10.0.0.106"));
    let report = prog.apply(&state)?;
    assert_eq!(report.services_removed, 1);
    let f = frames::tcp(&seg("192.0.2.70", 40081, "10.0.0.106", 80));
    fixture::check(prog.program()?, &Fixture { name: "removed service", input: f, verdict: XDP_PASS, output: None })?;
    // Re-applying the same state changes nothing.
    assert_eq!(prog.apply(&state)?, Default::default());
    Ok(())
}

// The VRRP advert fast path. BPF_PROG_TEST_RUN's ingress is loopback
// (SAME_IF), so instances are configured on that interface.

const VRRP_MAC: Mac = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
const VRRP_GROUP_MAC: Mac = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];

fn watch(family: Family, vrid: u8, version: Version, auth: Auth) -> VrrpWatch {
    VrrpWatch::multicast(SAME_IF, family, vrid, version, auth)
}

/// v2 multicast 51, v3 unicast 52 (peer 192.0.2.9, any TTL), v3 over IPv6 51.
fn our_instances() -> Vec<VrrpWatch> {
    vec![
        watch(Family::V4, 51, Version::V2, Auth::simple("secret")),
        VrrpWatch { unicast_peers: vec![(ip("192.0.2.9"), None, None)], ..watch(Family::V4, 52, Version::V3, Auth::None) },
        watch(Family::V6, 51, Version::V3, Auth::None),
    ]
}

fn vrrp_advert(version: Version, vrid: u8, priority: u8, advert_int: u16, auth: Auth, addrs: &[&str]) -> Advert {
    Advert { version, vrid, priority, advert_int, auth, addrs: addrs.iter().map(|a| ip(a)).collect() }
}

/// The frame carrying `a` from `src` to `dst`; `edit` may spoil the VRRP message.
fn vrrp_frame(src: &str, dst: &str, ttl: u8, a: &Advert, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut msg = a.encode(ip(src), ip(dst)).expect("an encodable advert");
    edit(&mut msg);
    frames::vrrp(VRRP_MAC, VRRP_GROUP_MAC, ip(src), ip(dst), ttl, &msg)
}

fn v2_51(priority: u8) -> Advert {
    vrrp_advert(Version::V2, 51, priority, 1, Auth::simple("secret"), &["10.0.0.100"])
}

fn seen(prog: &XdpProgram, family: Family, vrid: u8) -> Option<SeenAdvert> {
    prog.vrrp_last_advert(SAME_IF, family, vrid).unwrap()
}

fn vrrp_counts(prog: &XdpProgram) -> Vec<(&'static str, u64)> {
    prog.stats()
        .unwrap()
        .into_iter()
        .filter(|(r, c)| r.name().contains("vrrp") && c.packets > 0)
        .map(|(r, c)| (r.name(), c.packets))
        .collect()
}

#[test]
fn valid_adverts_for_our_vrids_pass_and_are_recorded() -> Result<()> {
    let mut prog = load(&DesiredState::default())?;
    prog.set_vrrp_instances(&our_instances())?;
    assert_eq!(seen(&prog, Family::V4, 51), None, "nothing recorded yet");
    let v3_52 = vrrp_advert(Version::V3, 52, 200, 50, Auth::None, &["10.0.0.100", "10.0.0.101"]);
    let v3_v6 = vrrp_advert(Version::V3, 51, 100, 100, Auth::None, &["fd00::100"]);
    for (name, input) in [
        ("v2 over v4", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |_| {})),
        ("v3 over v4", vrrp_frame("10.0.0.3", "224.0.0.18", 255, &v3_52, |_| {})),
        ("v3 over v6", vrrp_frame("fe80::2", "ff02::12", 255, &v3_v6, |_| {})),
        // A unicast instance's adverts may cross routers: no TTL rule for
        // a peer without min_ttl / max_ttl.
        ("v3 unicast", vrrp_frame("192.0.2.9", "10.0.0.1", 61, &v3_52, |_| {})),
    ] {
        fixture::check(prog.program()?, &Fixture { name, input, verdict: XDP_PASS, output: None })?;
    }
    assert_eq!(vrrp_counts(&prog), [("pass_vrrp", 4)]);

    let v2 = seen(&prog, Family::V4, 51).expect("v2 advert recorded");
    let first_at = Instant::now() - v2.age;
    assert_eq!((v2.priority, v2.src, v2.interval, v2.count), (150, ip("10.0.0.2"), Duration::from_secs(1), 1));
    assert!(v2.age < Duration::from_secs(5), "age {:?}", v2.age);
    let v3 = seen(&prog, Family::V4, 52).expect("v3 advert recorded");
    // The unicast one came last.
    assert_eq!((v3.priority, v3.src, v3.interval, v3.count), (200, ip("192.0.2.9"), Duration::from_millis(500), 2));
    let v6 = seen(&prog, Family::V6, 51).expect("v6 advert recorded");
    assert_eq!((v6.priority, v6.src, v6.interval, v6.count), (100, ip("fe80::2"), Duration::from_secs(1), 1));
    // VRID 51 over IPv4 and over IPv6 are two routers.
    assert_eq!(seen(&prog, Family::V6, 52), None);

    // The next advert replaces the record.
    std::thread::sleep(Duration::from_millis(20));
    let f = vrrp_frame("10.0.0.4", "224.0.0.18", 255, &v2_51(160), |_| {});
    fixture::check(prog.program()?, &Fixture { name: "second v2", input: f, verdict: XDP_PASS, output: None })?;
    let again = seen(&prog, Family::V4, 51).unwrap();
    assert_eq!((again.priority, again.src, again.count), (160, ip("10.0.0.4"), 2));
    let again_at = Instant::now() - again.age;
    assert!(again_at >= first_at + Duration::from_millis(15), "the arrival time moved on by the 20 ms slept");
    Ok(())
}

#[test]
fn malformed_adverts_and_unknown_vrids_are_dropped_each_under_its_counter() -> Result<()> {
    let mut prog = load(&DesiredState::default())?;
    prog.set_vrrp_instances(&our_instances())?;
    let v3_v6 = vrrp_advert(Version::V3, 51, 100, 100, Auth::None, &["fd00::100"]);
    let table = [
        ("ttl 254", vrrp_frame("10.0.0.2", "224.0.0.18", 254, &v2_51(150), |_| {}), "drop_vrrp_ttl"),
        ("hop limit 1", vrrp_frame("fe80::2", "ff02::12", 1, &v3_v6, |_| {}), "drop_vrrp_ttl"),
        ("version 4", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |m| m[0] = 0x41), "drop_vrrp_version"),
        ("type 2", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |m| m[0] = 0x22), "drop_vrrp_version"),
        ("v2 over v6", vrrp_frame("fe80::2", "ff02::12", 255, &v3_v6, |m| m[0] = 0x21), "drop_vrrp_version"),
        ("count beyond the message", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |m| m[3] = 2), "drop_vrrp_length"),
        ("v2 without its auth data", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |m| m.truncate(12)), "drop_vrrp_length"),
        ("shorter than the header", vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |m| m.truncate(6)), "drop_vrrp_length"),
        (
            "unknown vrid",
            vrrp_frame("10.0.0.2", "224.0.0.18", 255, &vrrp_advert(Version::V2, 99, 150, 1, Auth::None, &["10.0.0.9"]), |_| {}),
            "drop_vrrp_unknown_vrid",
        ),
        (
            "vrid 0",
            vrrp_frame("10.0.0.2", "224.0.0.18", 255, &vrrp_advert(Version::V2, 1, 150, 1, Auth::None, &["10.0.0.9"]), |m| m[1] = 0),
            "drop_vrrp_unknown_vrid",
        ),
    ];
    for (name, input, counter) in table {
        let before = vrrp_counts(&prog);
        fixture::check(prog.program()?, &Fixture { name, input, verdict: XDP_DROP, output: None })?;
        let after = vrrp_counts(&prog);
        let bumped: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
        assert_eq!(bumped.len(), 1, "{name}: {before:?} -> {after:?}");
        assert_eq!(bumped[0].0, counter, "{name}");
    }

    // The IP header says the message is longer than the frame holds.
    let mut cut = vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |_| {});
    cut.truncate(cut.len() - 4);
    fixture::check(prog.program()?, &Fixture { name: "frame cut short", input: cut, verdict: XDP_DROP, output: None })?;
    assert!(vrrp_counts(&prog).contains(&("drop_vrrp_length", 4)), "{:?}", vrrp_counts(&prog));

    // Well formed, ours, but not what we run: the socket decides, nothing is recorded.
    let v3_for_v2 = vrrp_advert(Version::V3, 51, 150, 100, Auth::None, &["10.0.0.100"]);
    let wrong_pass = vrrp_advert(Version::V2, 51, 150, 1, Auth::simple("guessed"), &["10.0.0.100"]);
    let no_auth = vrrp_advert(Version::V2, 51, 150, 1, Auth::None, &["10.0.0.100"]);
    for (name, a) in [("v3 for a v2 instance", v3_for_v2), ("wrong password", wrong_pass), ("no auth", no_auth)] {
        let input = vrrp_frame("10.0.0.2", "224.0.0.18", 255, &a, |_| {});
        fixture::check(prog.program()?, &Fixture { name, input, verdict: XDP_PASS, output: None })?;
    }
    assert!(vrrp_counts(&prog).contains(&("pass_vrrp_unmatched", 3)), "{:?}", vrrp_counts(&prog));
    assert_eq!(seen(&prog, Family::V4, 51), None, "no bad advert was recorded");
    Ok(())
}

/// What the VRRP socket refuses by TTL or source is neither recorded nor
/// passed: a record the socket would never have accepted must not stand in
/// for a late Master_Down_Timer (a spoofed TTL-64 unicast advert used to be
/// recorded for a multicast instance, and kept its backups from ever taking
/// over).
#[test]
fn adverts_the_socket_refuses_by_ttl_or_source_are_dropped_not_recorded() -> Result<()> {
    let mut prog = load(&DesiredState::default())?;
    let peers = vec![(ip("10.0.0.2"), Some(250), None), (ip("10.0.0.3"), None, Some(64))];
    let checked = VrrpWatch { unicast_peers: peers, check_unicast_src: true, ..watch(Family::V4, 53, Version::V3, Auth::None) };
    prog.set_vrrp_instances(&[our_instances().remove(0), checked])?;
    let v3_53 = vrrp_advert(Version::V3, 53, 200, 100, Auth::None, &["10.0.0.100"]);
    let table = [
        ("spoofed unicast to a multicast instance", vrrp_frame("198.51.100.7", "10.0.0.1", 64, &v2_51(255), |_| {}), XDP_DROP, "drop_vrrp_ttl"),
        ("multicast instance, unicast at TTL 255", vrrp_frame("10.0.0.2", "10.0.0.1", 255, &v2_51(150), |_| {}), XDP_PASS, "pass_vrrp"),
        ("peer within min_ttl", vrrp_frame("10.0.0.2", "10.0.0.1", 250, &v3_53, |_| {}), XDP_PASS, "pass_vrrp"),
        ("peer below min_ttl", vrrp_frame("10.0.0.2", "10.0.0.1", 249, &v3_53, |_| {}), XDP_DROP, "drop_vrrp_ttl"),
        ("peer within max_ttl", vrrp_frame("10.0.0.3", "10.0.0.1", 64, &v3_53, |_| {}), XDP_PASS, "pass_vrrp"),
        ("peer above max_ttl", vrrp_frame("10.0.0.3", "10.0.0.1", 65, &v3_53, |_| {}), XDP_DROP, "drop_vrrp_ttl"),
        ("not a peer, check_unicast_src", vrrp_frame("10.0.0.9", "10.0.0.1", 255, &v3_53, |_| {}), XDP_DROP, "drop_vrrp_unicast_src"),
    ];
    for (name, input, verdict, counter) in table {
        let before = vrrp_counts(&prog);
        fixture::check(prog.program()?, &Fixture { name, input, verdict, output: None })?;
        let after = vrrp_counts(&prog);
        let bumped: Vec<_> = after.iter().filter(|c| !before.contains(c)).collect();
        assert_eq!(bumped.len(), 1, "{name}: {before:?} -> {after:?}");
        assert_eq!(bumped[0].0, counter, "{name}");
    }
    // The records are the accepted adverts', not the refused ones'.
    let v2 = seen(&prog, Family::V4, 51).expect("the TTL-255 advert is recorded");
    assert_eq!((v2.src, v2.priority, v2.count), (ip("10.0.0.2"), 150, 1));
    let v3 = seen(&prog, Family::V4, 53).expect("the peers' adverts are recorded");
    assert_eq!((v3.src, v3.count), (ip("10.0.0.3"), 2));
    Ok(())
}

/// A source sending faster than any router is cut at RATE_BURST per
/// window, alone: another source for the same instance still passes.
#[test]
fn a_flooding_source_is_cut_at_the_rate_limit_and_others_pass() -> Result<()> {
    use director_common::vrrp::{RATE_BURST, RATE_WINDOW_NS};
    let mut prog = load(&DesiredState::default())?;
    prog.set_vrrp_instances(&our_instances())?;
    let from = |src: &str| vrrp_frame(src, "224.0.0.18", 255, &v2_51(150), |_| {});
    let flood = from("10.0.0.66");
    let start = Instant::now();
    let sent = RATE_BURST + 30;
    let mut passed = 0;
    for _ in 0..sent {
        passed += u32::from(run_once(prog.program()?, &flood)?.verdict == XDP_PASS);
    }
    let window = Duration::from_nanos(RATE_WINDOW_NS);
    // One window, or the count restarted and says nothing.
    anyhow::ensure!(start.elapsed() < window, "{sent} runs took {:?}, longer than a rate window", start.elapsed());
    assert_eq!(passed, RATE_BURST, "{sent} adverts in one window from one source");
    assert_eq!(count(&prog, Reason::DropVrrpRate), u64::from(sent - RATE_BURST));
    fixture::check(prog.program()?, &Fixture { name: "another source", input: from("10.0.0.2"), verdict: XDP_PASS, output: None })?;
    // The next window lets the source be heard again.
    std::thread::sleep(window.saturating_sub(start.elapsed()) + Duration::from_millis(5));
    fixture::check(prog.program()?, &Fixture { name: "next window", input: flood, verdict: XDP_PASS, output: None })?;
    Ok(())
}

#[test]
fn vrrp_passes_untouched_where_director_runs_no_vrrp() -> Result<()> {
    let mut prog = load(&DesiredState::default())?;
    let unknown = vrrp_frame("10.0.0.2", "224.0.0.18", 255, &vrrp_advert(Version::V2, 99, 150, 1, Auth::None, &["10.0.0.9"]), |_| {});
    let bad_ttl = vrrp_frame("10.0.0.2", "224.0.0.18", 254, &v2_51(150), |_| {});
    let v6_unknown = vrrp_frame("fe80::2", "ff02::12", 255, &vrrp_advert(Version::V3, 99, 1, 100, Auth::None, &["fd00::9"]), |_| {});
    let run_all = |prog: &mut XdpProgram| -> Result<()> {
        for (name, input) in [("unknown vrid", &unknown), ("ttl 254", &bad_ttl), ("v6 unknown vrid", &v6_unknown)] {
            fixture::check(prog.program()?, &Fixture { name, input: input.clone(), verdict: XDP_PASS, output: None })?;
        }
        Ok(())
    };
    // No instance at all.
    run_all(&mut prog)?;
    assert_eq!(vrrp_counts(&prog), []);
    assert_eq!(count(&prog, Reason::PassNotService), 3);

    // Instances on another interface only.
    let elsewhere = VrrpWatch { ifindex: OTHER_IF, ..our_instances().remove(0) };
    prog.set_vrrp_instances(&[elsewhere])?;
    run_all(&mut prog)?;
    assert_eq!(vrrp_counts(&prog), []);

    // IPv4 only here: IPv6 VRRP is not judged.
    prog.set_vrrp_instances(&our_instances()[..2])?;
    fixture::check(prog.program()?, &Fixture { name: "v6, v4 only", input: v6_unknown.clone(), verdict: XDP_PASS, output: None })?;
    fixture::check(prog.program()?, &Fixture { name: "v4 unknown", input: unknown.clone(), verdict: XDP_DROP, output: None })?;
    let f = vrrp_frame("10.0.0.2", "224.0.0.18", 255, &v2_51(150), |_| {});
    fixture::check(prog.program()?, &Fixture { name: "ours", input: f, verdict: XDP_PASS, output: None })?;
    assert!(seen(&prog, Family::V4, 51).is_some());

    // Emptied again: everything passes, and the records are gone.
    prog.set_vrrp_instances(&[])?;
    assert_eq!(seen(&prog, Family::V4, 51), None);
    let before = vrrp_counts(&prog);
    run_all(&mut prog)?;
    assert_eq!(vrrp_counts(&prog), before);
    Ok(())
}

// ---------------------------------------------------------------------------
// Destination MAC filter: frames a switch floods to us (addressed to another
// host, e.g. the dead VRRP master) are not forwarded a second time.

#[test]
fn service_traffic_for_another_hosts_mac_is_left_to_the_kernel() -> Result<()> {
    let mut prog = load(&desired())?;
    let other: Mac = [0x02, 0xab, 0, 0, 0, 9];
    let vmac: Mac = [0x00, 0x00, 0x5e, 0x00, 0x01, 51];
    let syn = |sport, dst_mac| frames::with_macs(&frames::tcp_syn(&seg("192.0.2.7", sport, "10.0.0.100", 80)), dst_mac, CLIENT_MAC);
    // No entry for the interface: every MAC is accepted (as before the filter).
    assert!(matches!(run_once(prog.program()?, &syn(41001, other))?.verdict, XDP_TX | XDP_REDIRECT));

    prog.set_local_macs(SAME_IF, &[OUR_MAC, vmac])?;
    let before = count(&prog, Reason::PassOtherHost);
    let out = run_once(prog.program()?, &syn(41002, other))?;
    assert_eq!(out.verdict, XDP_PASS, "a new flow to another host's MAC");
    assert_eq!(out.output, syn(41002, other), "passed untouched");
    // An established flow too: its first packet came to us, a later flooded one must not be forwarded.
    send(&mut prog, &syn(41003, OUR_MAC))?;
    assert_eq!(run_once(prog.program()?, &syn(41003, other))?.verdict, XDP_PASS, "an established flow's flooded frame");
    assert_eq!(count(&prog, Reason::PassOtherHost), before + 2);
    // Our MAC and the VMAC we are master of are forwarded.
    send(&mut prog, &syn(41004, OUR_MAC))?;
    send(&mut prog, &syn(41005, vmac))?;
    // Non-service traffic is not looked at.
    let other_ip = frames::with_macs(&frames::tcp_syn(&seg("192.0.2.7", 41006, "10.9.9.9", 80)), other, CLIENT_MAC);
    let pass = count(&prog, Reason::PassNotService);
    assert_eq!(run_once(prog.program()?, &other_ip)?.verdict, XDP_PASS);
    assert_eq!(count(&prog, Reason::PassNotService), pass + 1);

    // More MACs than the filter holds is an error naming the interface.
    let err = prog.set_local_macs(SAME_IF, &[OUR_MAC; 5]).unwrap_err().to_string();
    assert!(err.contains("ifindex 1") && err.contains("holds 4"), "{err}");
    // Emptied: every MAC again.
    prog.set_local_macs(SAME_IF, &[])?;
    assert!(matches!(run_once(prog.program()?, &syn(41007, other))?.verdict, XDP_TX | XDP_REDIRECT));
    Ok(())
}
