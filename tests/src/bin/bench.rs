//! `cargo xtask bench`: one `bench <scenario> <metric>=<n>` line each.
//!
//! XDP figures come from BPF_PROG_TEST_RUN, one call per packet (repeat=1),
//! averaging the kernel-reported duration, as Katran's harness does: with
//! repeat>1 the kernel would re-run on the already rewritten buffer. Each
//! figure is the best of several rounds: this VM's neighbours add noise that
//! is not the program's.
//! Every XDP scenario runs with the connection table already holding a
//! million other flows, on one pinned CPU.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use director::{
    config::{self, LoadOptions as ConfigOptions},
    dataplane::{
        Dataplane, maglev,
        xdp::{LoadOptions, PROGRAM_OBJECT, TrafficOf, XdpProgram, flow_key},
    },
    state::{DesiredState, Method, NextHop, Proto, RealSpec, ServiceAddr, ServiceSpec},
};
use director_common::lb::{CONN_NAT_REPLY, Conn, FlowKey};
use director_tests::frames::{self, Seg};

/// Packets per round.
const CALLS: u32 = 20_000;
const ROUNDS: usize = 5;
const PREFILL: u32 = 1_000_000;
const OUR_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];

fn main() -> Result<()> {
    config_parse()?;
    maglev_build()?;
    xdp()?;
    Ok(())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config_parse() -> Result<()> {
    let n = 5000;
    let text = config::testgen::many_real_servers(n);
    let start = Instant::now();
    let loaded = config::load_str(&text, "bench.conf", &ConfigOptions::default());
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(loaded.config.virtual_servers[0].real_servers.len() == n, "parsed {n} real servers");
    println!("bench config_parse_{n}_real_servers ms={ms:.1}");
    Ok(())
}

fn maglev_build() -> Result<()> {
    let backends: Vec<maglev::Backend> = (0..1000u32)
        .map(|i| maglev::Backend { key: u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15), id: i, weight: 1 + i % 7 })
        .collect();
    let start = Instant::now();
    let table = maglev::build(&backends, 65537)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(table.len() == 65537);
    println!("bench maglev_build_1000_servers ms={ms:.1}");
    Ok(())
}

fn real(addr: &str, port: u16, method: Method) -> RealSpec {
    let a = ip(addr);
    let tun_src = (method == Method::Tun).then(|| ip("10.0.0.2"));
    // ifindex 1: BPF_PROG_TEST_RUN's ingress, so the program answers XDP_TX.
    RealSpec { addr: a, port, weight: 1, method, next_hop: NextHop { mac: [2, 0xee, 0, 0, 0, 1], src_mac: OUR_MAC, ifindex: 1, tun_src } }
}

fn service(vip: &str, method: Method, rport: u16) -> ServiceSpec {
    ServiceSpec {
        addr: ServiceAddr { vip: ip(vip), port: 80, proto: Proto::Tcp },
        sched: "wlc".into(),
        persistence: None,
        reals: (1..=10).map(|i| real(&format!("10.0.1.{i}"), rport, method)).collect(),
        sorry: None,
    }
}

/// 64-byte TCP frames from distinct clients to `vip`.
fn flows(vip: &str, count: u32) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let src = IpAddr::from([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let mut f = frames::tcp(&Seg { src_mac: CLIENT_MAC, dst_mac: OUR_MAC, src, dst: ip(vip), sport: 40000, dport: 80, vlan: None });
            f.resize(f.len().max(64), 0);
            f
        })
        .collect()
}

/// Kernel-measured ns per packet, one call per packet: the best round's
/// average, each round sending every frame of its set once.
fn time(prog: &Xdp, rounds: &[&[Vec<u8>]], expect: u32) -> Result<f64> {
    let mut best = f64::MAX;
    let mut out = vec![0u8; 512];
    for frames in rounds {
        let mut total = Duration::ZERO;
        for f in frames.iter() {
            let r = prog
                .test_run(TestRunOptions { data_in: Some(f), data_out: Some(&mut out), repeat: 1, ..Default::default() })
                .context("BPF_PROG_TEST_RUN")?;
            anyhow::ensure!(r.return_value == expect, "verdict {} (wanted {expect})", r.return_value);
            total += r.duration;
        }
        best = best.min(total.as_nanos() as f64 / frames.len() as f64);
    }
    Ok(best)
}

fn pin_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        anyhow::ensure!(libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0, "sched_setaffinity");
    }
    Ok(())
}

/// Fills the connection table with `PREFILL` flows that are not the
/// benchmark's, so hits are measured on a full table.
fn prefill(prog: &mut XdpProgram) -> Result<()> {
    for i in 0..PREFILL {
        let key = FlowKey { src: [0x0a00_0000 | i, 0, 0, 0], dst: [1, 0, 0, 0], sport: 1, dport: 2, proto: 6, family: 4, _pad: [0; 2] };
        prog.maps.conns.insert(key, Conn::default(), 0)?;
    }
    Ok(())
}

fn xdp() -> Result<()> {
    pin_to_cpu(0)?;
    let mut baseline = Ebpf::load(PROGRAM_OBJECT)?;
    let base: &mut Xdp = baseline.program_mut("baseline_xdp_tx").context("baseline program")?.try_into()?;
    base.load()?;
    let any = flows("10.0.0.100", 1);
    println!("bench baseline_xdp_tx ns_per_pkt={:.0}", time(base, &[any.as_slice(); ROUNDS], 3)?);

    let mut prog = XdpProgram::load_with(LoadOptions { ring_size: 65537, max_conns: 2 * PREFILL, pin_dir: None })?;
    let desired = DesiredState {
        services: vec![
            service("10.0.0.100", Method::Dr, 80),
            service("10.0.0.101", Method::Tun, 80),
            service("10.0.0.102", Method::Nat, 8080),
        ],
    };
    prog.apply(&desired)?;
    // Every scenario runs against a table that already holds a million flows.
    prefill(&mut prog)?;

    for (name, vip, verdict) in [("dr", "10.0.0.100", 3), ("tun", "10.0.0.101", 3), ("nat", "10.0.0.102", 3)] {
        // Misses first: every frame a new flow, through Maglev, inserting.
        let fresh = flows(vip, CALLS * ROUNDS as u32);
        let rounds: Vec<&[Vec<u8>]> = fresh.chunks(CALLS as usize).collect();
        let miss = time(prog.program()?, &rounds, verdict)?;
        if name != "nat" {
            println!("bench {name}_lru_miss ns_per_pkt={miss:.0}");
        }
        // Hits: the flows just scheduled, now in the table.
        let ring = prog.service_ids(&ServiceAddr { vip: ip(vip), port: 80, proto: Proto::Tcp }).context("service")?.ring;
        let conns = prog.traffic(TrafficOf::Service(ring))?.conns;
        let hit = time(prog.program()?, &[&fresh[..1000]; ROUNDS], verdict)?;
        let rescheduled = prog.traffic(TrafficOf::Service(ring))?.conns - conns;
        anyhow::ensure!(rescheduled == 0, "{name}: {rescheduled} of the hit packets missed the connection table");
        println!("bench {name}_lru_hit ns_per_pkt={hit:.0}");
    }

    // NAT replies: the reverse entries exist for the flows above.
    let reply_entries = prog.maps.conns.iter().filter_map(Result::ok).filter(|(_, c)| c.kind == CONN_NAT_REPLY).count();
    anyhow::ensure!(reply_entries >= 1000, "NAT reply entries: {reply_entries}");
    let replies: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let client = IpAddr::from([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            let key = flow_key(client, 40000, ip("10.0.0.102"), 80, Proto::Tcp);
            let real = prog.maps.conns.get(&key, 0).expect("flow in the table").real;
            let ids = prog.service_ids(&desired.services[2].addr).expect("nat service");
            let (raddr, _) = *ids.reals.iter().find(|(_, v)| **v == real).expect("real").0;
            let mut f = frames::tcp(&Seg { src_mac: [2, 0xee, 0, 0, 0, 1], dst_mac: OUR_MAC, src: raddr, sport: 8080, dst: client, dport: 40000, vlan: None });
            f.resize(f.len().max(64), 0);
            f
        })
        .collect();
    println!("bench nat_reply ns_per_pkt={:.0}", time(prog.program()?, &[replies.as_slice(); ROUNDS], 3)?);
    Ok(())
}
