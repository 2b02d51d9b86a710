//! End to end: real TCP through the XDP program between namespaces. A client
//! opens hundreds of short HTTP connections to a VIP; the director's XDP
//! program forwards them (DR: MACs rewritten and sent back out of the same
//! veth; NAT: addresses translated, redirected to another veth, replies
//! translated back) to three real servers that answer with their own name.
//! Runs as root.
//!
//! Two traps of XDP on veth shape the topology (shared/TOOLCHAIN.md):
//! - a frame XDP_TX'd or redirected out of a veth is dropped unless the
//!   peer veth has an XDP program. Every director-facing bridge port in the
//!   switch namespace therefore runs the real `director_xdp` with no
//!   services, which passes everything (`baseline_xdp_tx` returns XDP_TX and
//!   cannot serve as a pass program);
//! - an XDP-transmitted frame loses the skb's "checksum still to be done"
//!   state, so a TCP segment sent with TX checksum offload would reach the
//!   real server (or the client) with only the pseudo-header sum in it and be
//!   dropped. TX checksumming is off on the client's eth0 and on the bridge
//!   ports that feed the director, so every frame the director sees carries
//!   a full checksum, as frames from a physical wire do. What counts is the
//!   device that transmits towards the director: turning it off only on the
//!   ports facing the real servers (the frames' receivers) does not help.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use director::{
    dataplane::{
        Dataplane,
        xdp::{AttachMode, LoadOptions, TrafficOf, XdpProgram, flow_key},
    },
    state::{DesiredState, Method, NextHop, Proto, RealSpec, ServiceAddr, ServiceSpec},
};
use director_common::{hash::flow_hash, lb::hash_by, stats::Reason};
use director_tests::{
    netns::Netns,
    topo::{Mac, NameServer, Reply, bridge, fmt_mac, http_get, ifindex, mac, plug, set_tx_csum, sysctl},
};

/// Connect, write and read timeout of every client connection.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole connection loop gives up after this long, pass or fail.
const LOOP_BUDGET: Duration = Duration::from_secs(40);

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn count(prog: &XdpProgram, reason: Reason) -> u64 {
    prog.stats().unwrap().into_iter().find(|(r, _)| *r == reason).unwrap().1.packets
}

/// Every non-zero counter, for failure messages and the log.
fn counters(prog: &XdpProgram) -> String {
    match prog.stats() {
        Ok(s) => s
            .iter()
            .filter(|(_, c)| c.packets != 0)
            .map(|(r, c)| format!("{}={}", r.name(), c.packets))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("(counters unreadable: {e})"),
    }
}

fn drops(prog: &XdpProgram) -> Vec<(Reason, u64)> {
    prog.stats()
        .unwrap()
        .into_iter()
        .filter(|(r, c)| r.action() == "drop" && c.packets != 0)
        .map(|(r, c)| (r, c.packets))
        .collect()
}

/// The director program loaded inside `ns` and attached natively to each
/// interface.
fn director(ns: &Netns, ifaces: &[&str]) -> Result<XdpProgram> {
    ns.enter(|| -> Result<XdpProgram> {
        let mut prog = XdpProgram::load()?;
        for &i in ifaces {
            let mode = prog.attach(i)?;
            ensure!(mode == AttachMode::Native, "{i}: attached in {mode} mode, native expected on veth");
        }
        Ok(prog)
    })?
}

/// The peer-side program for veths that receive XDP-transmitted frames:
/// `director_xdp` with no service passes every frame. Small tables, since
/// it never schedules anything.
fn passer(ns: &Netns, ifaces: &[&str]) -> Result<XdpProgram> {
    ns.enter(|| -> Result<XdpProgram> {
        let mut prog = XdpProgram::load_with(LoadOptions { ring_size: Some(3), max_conns: 16, ..Default::default() })?;
        for &i in ifaces {
            let mode = prog.attach(i)?;
            ensure!(mode == AttachMode::Native, "{i}: passer attached in {mode} mode");
        }
        Ok(prog)
    })?
}

fn real(addr: Ipv4Addr, port: u16, weight: u32, method: Method, mac: Mac, src_mac: Mac, ifindex: u32) -> RealSpec {
    RealSpec { addr: addr.into(), port, weight, method, next_hop: NextHop { mac, src_mac, ifindex, tun_src: None } }
}

/// The real server the service's ring gives a new flow from `src`, as the
/// program computes it (wrr spreads by the whole flow).
fn ring_pick(prog: &XdpProgram, addr: &ServiceAddr, src: SocketAddr) -> Option<IpAddr> {
    let ids = prog.service_ids(addr)?;
    let key = flow_key(src.ip(), src.port(), addr.vip, addr.port, addr.proto);
    let id = ids.table[(flow_hash(&key, hash_by::FLOW) % ids.table.len() as u32) as usize];
    ids.reals.iter().find(|(_, v)| **v == id).map(|((a, _), _)| *a)
}

/// `n` sequential GETs to `vip` from inside `client`, each from a port the
/// kernel picks; stops at the first failure.
fn hammer(client: &Netns, vip: SocketAddr, n: usize) -> Result<Vec<Reply>> {
    client.enter(|| -> Result<Vec<Reply>> {
        let start = Instant::now();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            if start.elapsed() > LOOP_BUDGET {
                bail!("only {i} of {n} connections done in {LOOP_BUDGET:?}");
            }
            out.push(http_get(vip, IO_TIMEOUT).with_context(|| format!("connection {} of {n}", i + 1))?);
        }
        Ok(out)
    })?
}

/// Connecting to `vip` before any service is applied: the director's own
/// kernel owns the VIP and has no listener, so it refuses. Proves the
/// answers later on come through the program, not around it.
fn refused_before_apply(client: &Netns, vip: SocketAddr) -> Result<()> {
    match client.enter(|| http_get(vip, IO_TIMEOUT))? {
        Ok(r) => bail!("{vip} answered by {} before any service was applied", r.server),
        Err(e) => {
            let refused = e
                .chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == ErrorKind::ConnectionRefused));
            ensure!(refused, "expected the director's kernel to refuse {vip}, got: {e:#}");
            Ok(())
        }
    }
}

/// Per-connection checks shared by both methods, then the per-server tally.
struct Tally {
    /// server name → connections it answered.
    answered: BTreeMap<String, usize>,
    /// server name → distinct flows (client ports) it answered.
    flows: BTreeMap<String, BTreeSet<u16>>,
}

fn tally(
    prog: &XdpProgram,
    svc: &ServiceAddr,
    replies: &[Reply],
    names: &BTreeMap<IpAddr, String>,
    check: impl Fn(&Reply) -> Result<()>,
) -> Result<Tally> {
    let vip = SocketAddr::new(svc.vip, svc.port);
    let mut t = Tally { answered: BTreeMap::new(), flows: BTreeMap::new() };
    for (i, r) in replies.iter().enumerate() {
        ensure!(r.peer == vip, "connection {i}: connected to {} instead of {vip}", r.peer);
        let want = ring_pick(prog, svc, r.local).context("service not applied")?;
        ensure!(
            r.server == names[&want],
            "connection {i} from {}: answered by {}, the ring says {} ({want})",
            r.local,
            r.server,
            names[&want]
        );
        check(r).with_context(|| format!("connection {i} from {}", r.local))?;
        *t.answered.entry(r.server.clone()).or_default() += 1;
        t.flows.entry(r.server.clone()).or_default().insert(r.local.port());
    }
    Ok(t)
}

/// Each real server's connection counter in the program equals the number
/// of flows it answered, and it saw at least `per_conn` packets a flow.
fn check_real_counters(
    prog: &XdpProgram,
    svc: &ServiceAddr,
    t: &Tally,
    names: &BTreeMap<IpAddr, String>,
    per_conn: u64,
) -> Result<()> {
    let ids = prog.service_ids(svc).context("service not applied")?;
    let mut total = 0;
    for ((addr, _), id) in &ids.reals {
        let name = &names[addr];
        let flows = t.flows.get(name).map_or(0, |f| f.len()) as u64;
        let traffic = prog.traffic(TrafficOf::Real(*id))?;
        println!("  real {name} ({addr}): conns={} packets={} bytes={}", traffic.conns, traffic.packets, traffic.bytes);
        ensure!(traffic.conns == flows, "{name}: conns counter {} for {flows} flows answered", traffic.conns);
        ensure!(
            traffic.packets >= per_conn * flows,
            "{name}: {} packets for {flows} flows, at least {per_conn} each expected",
            traffic.packets
        );
        total += flows;
    }
    let s = prog.traffic(TrafficOf::Service(ids.ring))?;
    ensure!(s.conns == total, "service conns counter {} for {total} flows", s.conns);
    Ok(())
}

/// DR as in seed 002: one L2 segment (a bridge in a switch namespace), the
/// VIP on the director and on each real server's loopback (which does not
/// answer ARP for it), wrr with weights 1:2:3.
#[test]
fn dr_spreads_real_tcp_across_three_real_servers_by_weight() -> Result<()> {
    const N: usize = 600;
    let started = Instant::now();
    let vip_ip = v4("10.77.0.100");
    let vip = SocketAddr::new(vip_ip.into(), 80);
    let rs_ips = [v4("10.77.0.10"), v4("10.77.0.20"), v4("10.77.0.30")];
    let weights = [1u32, 2, 3];

    // Namespaces first, so they are dropped (deleted) last.
    let switch = Netns::new("sw")?;
    let client = Netns::new("cli")?;
    let dir = Netns::new("dir")?;
    let rs = (1..=3).map(|i| Netns::new(&format!("rs{i}"))).collect::<Result<Vec<_>>>()?;

    bridge(&switch, "br0")?;
    plug(&switch, "br0", "c0", &client, "eth0")?;
    plug(&switch, "br0", "d0", &dir, "eth0")?;
    for (i, ns) in rs.iter().enumerate() {
        plug(&switch, "br0", &format!("r{}", i + 1), ns, "eth0")?;
    }
    client.ip(&["addr", "add", "10.77.0.1/24", "dev", "eth0"])?;
    dir.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"])?;
    // The director owns the VIP: the client's ARP for it resolves here.
    dir.ip(&["addr", "add", "10.77.0.100/32", "dev", "eth0"])?;
    for (ns, ip) in rs.iter().zip(rs_ips) {
        sysctl(ns, "net.ipv4.conf.all.arp_ignore", "1")?;
        sysctl(ns, "net.ipv4.conf.all.arp_announce", "2")?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.ip(&["addr", "add", "10.77.0.100/32", "dev", "lo"])?;
    }
    // DR forwards the client's segments untouched: they must carry full
    // checksums when they reach the director.
    set_tx_csum(&client, "eth0", false)?;
    set_tx_csum(&switch, "d0", false)?;
    // d0 receives what the director XDP_TXes out of its eth0.
    let passer = passer(&switch, &["d0"])?;

    let names: BTreeMap<IpAddr, String> =
        rs_ips.iter().enumerate().map(|(i, ip)| (IpAddr::V4(*ip), format!("rs{}", i + 1))).collect();
    let servers = rs
        .iter()
        .zip(rs_ips)
        .map(|(ns, ip)| NameServer::start(ns, "0.0.0.0:80".parse()?, &names[&IpAddr::V4(ip)]))
        .collect::<Result<Vec<_>>>()?;

    let mut prog = director(&dir, &["eth0"])?;
    refused_before_apply(&client, vip)?;
    assert_eq!(count(&prog, Reason::FwdDr), 0);

    let (dir_mac, dir_if) = (mac(&dir, "eth0")?, ifindex(&dir, "eth0")?);
    let mut reals = Vec::new();
    for ((ns, ip), w) in rs.iter().zip(rs_ips).zip(weights) {
        let m = mac(ns, "eth0")?;
        println!("  {} {ip} mac {} weight {w}", names[&IpAddr::V4(ip)], fmt_mac(&m));
        reals.push(real(ip, 80, w, Method::Dr, m, dir_mac, dir_if));
    }
    let svc = ServiceAddr { vip: vip_ip.into(), port: 80, proto: Proto::Tcp };
    let state = DesiredState {
        services: vec![ServiceSpec { addr: svc, sched: "wrr".into(), persistence: None, reals, sorry: None, ring_size: 1021 }],
    };
    prog.apply(&state)?;
    let setup = started.elapsed();

    // The ring itself follows the weights closely (deterministic).
    let ids = prog.service_ids(&svc).context("service not applied")?;
    let total_w: u32 = weights.iter().sum();
    for (ip, w) in rs_ips.iter().zip(weights) {
        let id = ids.reals[&(IpAddr::V4(*ip), 80)];
        let share = ids.table.iter().filter(|&&s| s == id).count() as f64 / ids.table.len() as f64;
        let want = w as f64 / total_w as f64;
        println!("  {ip}: {:.2}% of the ring for weight share {:.2}%", share * 100.0, want * 100.0);
        ensure!((share - want).abs() < 0.01, "{ip}: {share:.4} of the ring for weight share {want:.4}");
    }

    let t0 = Instant::now();
    let replies = hammer(&client, vip, N).with_context(|| format!("director counters: {}", counters(&prog)))?;
    let run = t0.elapsed();

    let t = tally(&prog, &svc, &replies, &names, |r| {
        // DR leaves L3 alone: the server sees the client as it is and the
        // connection arriving on the VIP (its loopback address).
        ensure!(r.seen_peer == r.local, "server saw the client as {}", r.seen_peer);
        ensure!(r.seen_local == vip, "server saw the connection on {}", r.seen_local);
        Ok(())
    })?;

    // The split. The ring is deterministic, so the only randomness is which
    // ports the kernel hands out: each connection lands on server i with
    // probability p_i = w_i/6 independently (the hash mixes the port). With
    // n = 600 the standard deviation of a share is sqrt(p(1-p)/n): 1.5, 1.9
    // and 2.0 points for 1/6, 2/6, 3/6, so ±8 points is 4 to 5 sigma (a
    // false failure about once in 10^4 runs), while any weight mix-up (say
    // 1:1:1 or 3:2:1) is off by 16 points or more.
    let distinct: BTreeSet<u16> = replies.iter().map(|r| r.local.port()).collect();
    println!(
        "dr: {N} connections from {} distinct ports in {run:.2?} ({:.0} µs each), setup {setup:.2?}",
        distinct.len(),
        run.as_micros() as f64 / N as f64
    );
    for ((ip, w), server) in rs_ips.iter().zip(weights).zip(&servers) {
        let name = &names[&IpAddr::V4(*ip)];
        let got = t.answered.get(name).copied().unwrap_or(0);
        let share = got as f64 / N as f64;
        let want = w as f64 / total_w as f64;
        println!("  {name}: {got} answers, share {:.1}% (weight share {:.1}%)", share * 100.0, want * 100.0);
        ensure!(got > 0, "{name} never answered");
        ensure!(
            (share - want).abs() <= 0.08,
            "{name}: share {:.1}% is more than 8 points from {:.1}%",
            share * 100.0,
            want * 100.0
        );
        ensure!(server.served() as usize == got, "{name} served {} requests, the client counted {got}", server.served());
    }

    // Counters: SYN, request and FIN are distinct client segments of every
    // connection, each forwarded by DR.
    println!("  director: {}", counters(&prog));
    println!("  switch passer: {}", counters(&passer));
    let fwd = count(&prog, Reason::FwdDr);
    ensure!(fwd >= 3 * N as u64, "fwd_dr {fwd} for {N} connections");
    ensure!(drops(&prog).is_empty(), "director dropped: {:?}", drops(&prog));
    check_real_counters(&prog, &svc, &t, &names, 3)?;

    for s in servers {
        s.stop()?;
    }
    println!("dr: total {:.2?}", started.elapsed());
    Ok(())
}

/// NAT: the client on one segment, the real servers on another behind the
/// director (their default route); the program translates the VIP to each
/// real server's address and port 8080 and redirects to eth1, and
/// translates the replies back to VIP:80 and redirects them to eth0.
#[test]
fn nat_translates_real_tcp_both_ways_across_three_real_servers() -> Result<()> {
    const N: usize = 300;
    let started = Instant::now();
    let vip_ip = v4("10.78.0.100");
    let vip = SocketAddr::new(vip_ip.into(), 80);
    let client_ip = v4("10.78.0.1");
    let rs_ips = [v4("10.79.0.10"), v4("10.79.0.20"), v4("10.79.0.30")];

    let switch = Netns::new("sw")?;
    let client = Netns::new("cli")?;
    let dir = Netns::new("dir")?;
    let rs = (1..=3).map(|i| Netns::new(&format!("rs{i}"))).collect::<Result<Vec<_>>>()?;

    // br0: client side; br1: real-server side.
    bridge(&switch, "br0")?;
    bridge(&switch, "br1")?;
    plug(&switch, "br0", "c0", &client, "eth0")?;
    plug(&switch, "br0", "d0", &dir, "eth0")?;
    plug(&switch, "br1", "d1", &dir, "eth1")?;
    for (i, ns) in rs.iter().enumerate() {
        plug(&switch, "br1", &format!("r{}", i + 1), ns, "eth0")?;
    }
    client.ip(&["addr", "add", &format!("{client_ip}/24"), "dev", "eth0"])?;
    dir.ip(&["addr", "add", "10.78.0.2/24", "dev", "eth0"])?;
    dir.ip(&["addr", "add", "10.78.0.100/32", "dev", "eth0"])?;
    dir.ip(&["addr", "add", "10.79.0.1/24", "dev", "eth1"])?;
    sysctl(&dir, "net.ipv4.ip_forward", "1")?;
    for (ns, ip) in rs.iter().zip(rs_ips) {
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.ip(&["route", "add", "default", "via", "10.79.0.1"])?;
    }
    // Both directions are rewritten incrementally and XDP-transmitted:
    // requests must arrive with full checksums, and so must replies.
    set_tx_csum(&client, "eth0", false)?;
    set_tx_csum(&switch, "d0", false)?;
    set_tx_csum(&switch, "d1", false)?;
    // d1 receives requests redirected out of eth1, d0 replies out of eth0.
    let passer = passer(&switch, &["d0", "d1"])?;

    let names: BTreeMap<IpAddr, String> =
        rs_ips.iter().enumerate().map(|(i, ip)| (IpAddr::V4(*ip), format!("rs{}", i + 1))).collect();
    let servers = rs
        .iter()
        .zip(rs_ips)
        .map(|(ns, ip)| NameServer::start(ns, "0.0.0.0:8080".parse()?, &names[&IpAddr::V4(ip)]))
        .collect::<Result<Vec<_>>>()?;

    // One program on both sides: requests arrive on eth0, replies on eth1.
    let mut prog = director(&dir, &["eth0", "eth1"])?;
    refused_before_apply(&client, vip)?;
    assert_eq!(count(&prog, Reason::FwdNat), 0);

    let (out_mac, out_if) = (mac(&dir, "eth1")?, ifindex(&dir, "eth1")?);
    let mut reals = Vec::new();
    for (ns, ip) in rs.iter().zip(rs_ips) {
        let m = mac(ns, "eth0")?;
        println!("  {} {ip} mac {}", names[&IpAddr::V4(ip)], fmt_mac(&m));
        reals.push(real(ip, 8080, 1, Method::Nat, m, out_mac, out_if));
    }
    let svc = ServiceAddr { vip: vip_ip.into(), port: 80, proto: Proto::Tcp };
    let state = DesiredState {
        services: vec![ServiceSpec { addr: svc, sched: "wrr".into(), persistence: None, reals, sorry: None, ring_size: 1021 }],
    };
    prog.apply(&state)?;
    let setup = started.elapsed();

    let t0 = Instant::now();
    let replies = hammer(&client, vip, N).with_context(|| format!("director counters: {}", counters(&prog)))?;
    let run = t0.elapsed();

    // The client talked to VIP:80 throughout (its socket would have reset
    // anything else), so the replies were translated back; the server saw
    // the client's own address and the connection on its own address:8080.
    let t = tally(&prog, &svc, &replies, &names, |r| {
        ensure!(r.seen_peer == r.local, "server saw the client as {}, not {}", r.seen_peer, r.local);
        let own = rs_ips.iter().find(|ip| names[&IpAddr::V4(**ip)] == r.server).context("unknown server")?;
        ensure!(
            r.seen_local == SocketAddr::new((*own).into(), 8080),
            "{} saw the connection on {}",
            r.server,
            r.seen_local
        );
        Ok(())
    })?;
    println!("nat: {N} connections in {run:.2?} ({:.0} µs each), setup {setup:.2?}", run.as_micros() as f64 / N as f64);
    for server in &servers {
        let got = t.answered.get(server.name()).copied().unwrap_or(0);
        println!("  {}: {got} answers", server.name());
        ensure!(got > 0, "{} never answered", server.name());
        ensure!(server.served() as usize == got, "{} served {}, the client counted {got}", server.name(), server.served());
    }

    // Client SYN, request and FIN are distinct segments; the server's
    // SYN-ACK and its response (FIN possibly riding on it) at least two.
    println!("  director: {}", counters(&prog));
    println!("  switch passer: {}", counters(&passer));
    let (fwd, back) = (count(&prog, Reason::FwdNat), count(&prog, Reason::FwdNatReply));
    ensure!(fwd >= 3 * N as u64, "fwd_nat {fwd} for {N} connections");
    ensure!(back >= 2 * N as u64, "fwd_nat_reply {back} for {N} connections");
    ensure!(drops(&prog).is_empty(), "director dropped: {:?}", drops(&prog));
    check_real_counters(&prog, &svc, &t, &names, 3)?;

    for s in servers {
        s.stop()?;
    }
    println!("nat: total {:.2?}", started.elapsed());
    Ok(())
}
