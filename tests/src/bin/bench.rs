//! `cargo xtask bench`: one `bench <scenario> <metric>=<n>` line each.
//!
//! XDP figures come from BPF_PROG_TEST_RUN, one call per packet (repeat=1),
//! averaging the kernel-reported duration, as Katran's harness does: with
//! repeat>1 the kernel would re-run on the already rewritten buffer. Each
//! figure is the best of several rounds: this VM's neighbours add noise that
//! is not the program's.
//! Every XDP scenario runs with the connection table already holding a
//! million other flows, on one pinned CPU. `vrrp_advert_xdp` is a valid
//! VRRPv2 advert for a VRID we run, each from a source not counted yet:
//! judged, counted for the rate limit, recorded, passed.
//!
//! `checks_10k`: 10,000 real servers with TCP_CHECK, delay_loop 1, against
//! loopback listeners in a child process (this binary run as
//! `bench --listen N`), on a current-thread runtime like the daemon's.
//!
//! `vrrp_failover`: two directors in DR mode, the master killed under live
//! traffic, and two keepalived nodes the same way for comparison (see
//! `director_tests::vrrp_lab::failover_under_traffic`); needs the director
//! binary built next to this one and root.
//!
//! `apply_10k_reals`: the reload and `rs disable` path (parse, desired
//! state, capacity check, diff onto the maps) with 10,000 real servers.
//!
//! `vrrp_advert_gap`: the longest gap between a director master's adverts
//! as a peer receives them while its daemon, with 10,000 real servers and
//! a full connection table, serves 64 `/metrics` scrapers, `list -c`,
//! `status` and reloads (see `director_tests::stall`; the `vrrp_stall`
//! test asserts on the same run); needs root and the director binary.
//!
//! `BENCH_ONLY=checks_10k` (a comma-separated list of config_parse,
//! maglev_build, checks_10k, vrrp_failover, vrrp_advert_gap,
//! apply_10k_reals, xdp) runs only those; by default all run.

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write as _},
    net::{IpAddr, Ipv4Addr},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{TestRun, TestRunOptions, Xdp},
};
use director::{
    check::{self, Change, Checks, LatenessStats},
    config::{self, LoadOptions as ConfigOptions},
    dataplane::{
        Dataplane, maglev,
        xdp::{Family, LoadOptions, PROGRAM_OBJECT, TrafficOf, VrrpWatch, XdpProgram, flow_key},
    },
    vrrp::{Advert, Auth, Version},
    state::{DesiredState, Method, NextHop, Proto, RealSpec, ServiceAddr, ServiceSpec},
};
use director_common::lb::{CONN_NAT_REPLY, Conn, FlowKey};
use director_tests::{
    frames::{self, Seg},
    stall::advert_gap_under_load,
    vrrp_lab::{Kind, failover_under_traffic},
};

/// Packets per round.
const CALLS: u32 = 20_000;
const ROUNDS: usize = 5;
const PREFILL: u32 = 1_000_000;
const OUR_MAC: [u8; 6] = [0x02, 0xdd, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--listen") {
        let n = args.get(2).context("--listen N")?.parse().context("--listen N")?;
        return listen(n);
    }
    let only = std::env::var("BENCH_ONLY").ok();
    let run = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|s| s.trim() == name));
    if run("config_parse") {
        config_parse()?;
    }
    if run("maglev_build") {
        maglev_build()?;
    }
    // Before xdp, which pins the process to one CPU.
    if run("checks_10k") {
        checks_10k()?;
    }
    if run("vrrp_failover") {
        vrrp_failover()?;
    }
    if run("vrrp_advert_gap") {
        println!("{}", advert_gap_under_load("bench-stall")?.line());
    }
    if run("apply_10k_reals") {
        apply_10k_reals()?;
    }
    if run("xdp") {
        xdp()?;
    }
    Ok(())
}

/// The daemon's reload and `rs disable` path at scale: 100 services of 100
/// real servers, the configuration through `desired::build` into the XDP
/// maps. A reload that changes one weight and an `rs disable` must cost a
/// diff, not a rebuild.
fn apply_10k_reals() -> Result<()> {
    use director::{
        daemon::desired::{AdminOverrides, HealthMap, build, service_addr},
        status::AdminState,
    };
    let text = |first_weight: u32| -> String {
        let mut t = String::new();
        for s in 0..100 {
            let _ = writeln!(t, "virtual_server 10.50.0.{} 80 {{\n protocol TCP\n lvs_sched wrr\n lvs_method DR", s + 1);
            for r in 0..100 {
                let w = if s == 0 && r == 0 { first_weight } else { 1 };
                let _ = writeln!(t, " real_server 10.60.{s}.{} 80 {{ weight {w} }}", r + 1);
            }
            t.push_str("}\n");
        }
        t
    };
    let hop = |_| Some(NextHop { mac: [2, 0xee, 0, 0, 0, 1], src_mac: OUR_MAC, ifindex: 1, tun_src: None });
    let mut prog = XdpProgram::load()?;
    let parse = |conf: &str| config::load_str(conf, "bench.conf", &ConfigOptions::default()).config;
    let step = |prog: &mut XdpProgram, config: &config::Config, admin: &AdminOverrides| -> Result<()> {
        let (state, _, _) = build(config.virtual_servers.iter(), admin, &HealthMap::new(), None, &hop);
        prog.check(&state)?;
        prog.apply(&state)?;
        Ok(())
    };
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    let none = AdminOverrides::new();
    let t = Instant::now();
    step(&mut prog, &parse(&text(1)), &none)?;
    let first = ms(t);
    let t = Instant::now();
    let config = parse(&text(3));
    step(&mut prog, &config, &none)?;
    let reload = ms(t);
    let svc = service_addr(&config.virtual_servers[0]).context("service")?;
    let mut admin = AdminOverrides::new();
    admin.insert((svc, (ip("10.60.0.2"), 80)), AdminState::Disabled);
    let t = Instant::now();
    step(&mut prog, &config, &admin)?;
    let disable = ms(t);
    println!("bench apply_10k_reals first_apply_ms={first:.0} reload_one_weight_ms={reload:.0} rs_disable_ms={disable:.0}");
    Ok(())
}

fn vrrp_failover() -> Result<()> {
    let k = failover_under_traffic("bench-fo-k", Kind::Keepalived)?;
    println!("bench vrrp_failover_keepalived failover_ms={}", k.failover_ms);
    let d = failover_under_traffic("bench-fo-d", Kind::Director)?;
    println!("bench vrrp_failover failover_ms={} conns_lost={}", d.failover_ms, d.conns_lost);
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
    let table = maglev::build(&backends, maglev::DEFAULT_RING_SIZE)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(table.len() == maglev::DEFAULT_RING_SIZE as usize);
    println!("bench maglev_build_1000_servers ms={ms:.1}");
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit.
fn raise_nofile() -> Result<()> {
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        anyhow::ensure!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0, "getrlimit");
        r.rlim_cur = r.rlim_max;
        anyhow::ensure!(libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0, "setrlimit");
    }
    Ok(())
}

/// User and system CPU time of this process (every thread).
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The child of `checks_10k`: `n` listeners on 127.0.0.1 (ephemeral
/// ports, printed on one stdout line), accepting and closing every
/// connection until stdin closes.
fn listen(n: usize) -> Result<()> {
    raise_nofile()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let mut ports = String::new();
        for _ in 0..n {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind("127.0.0.1:0".parse()?)?;
            let l = s.listen(4096)?;
            write!(ports, "{} ", l.local_addr()?.port())?;
            tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((s, _)) => drop(s),
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await, // EMFILE and such
                    }
                }
            });
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ports.trim_end())?;
        out.flush()?;
        drop(out);
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        Ok(())
    })
}

/// 10,000 real servers, TCP_CHECK, delay_loop 1 s, connect_timeout 2 s,
/// loaded from keepalived.conf text through `check::targets_from_config`
/// as the daemon does. The real servers are distinct addresses (10.0.0.0/8,
/// never contacted); every TCP_CHECK has `connect_ip 127.0.0.1` and the
/// `connect_port` of one of 100 listeners of a child process (round-robin),
/// so the accepting side's CPU is not ours, and 100 destination ports keep
/// the loopback 4-tuples (10,000 connects a second) far from the
/// ephemeral-port limit, should a checker leave TIME_WAITs (TCP_CHECK
/// resets its connections, so it leaves none).
///
/// 2 s warm-up (the warmup spread is 1 s), then 5 s measured:
/// - cpu_pct: getrusage(RUSAGE_SELF) user+sys over the window / wall time,
///   in percent of one core. Our connects' kernel loopback TCP work
///   (handshake, RST, also part of the listener side's softirq work that
///   runs in our context) counts as our sys time.
/// - p99_late_ms: p99 of `check start - due time` over the window, from
///   the scheduler's `LatenessStats` (0.1 ms buckets).
fn checks_10k() -> Result<()> {
    const N: usize = 10_000;
    const PORTS: usize = 100;
    const WARMUP: Duration = Duration::from_secs(2);
    const WINDOW: Duration = Duration::from_secs(5);
    raise_nofile()?;

    let mut child = Command::new(std::env::current_exe()?)
        .args(["--listen", &PORTS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning the listener child")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let ports: Vec<u16> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(ports.len() == PORTS, "child listens on {} ports", ports.len());

    let mut text = String::with_capacity(250 * N + 256);
    text.push_str("virtual_server 192.0.2.100 80 {\n    delay_loop 1\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n");
    for i in 0..N {
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        let port = ports[i % PORTS];
        write!(
            text,
            "    real_server 10.{a}.{b}.{c} 80 {{\n        weight 1\n        TCP_CHECK {{\n            connect_ip 127.0.0.1\n            connect_port {port}\n            connect_timeout 2\n            delay_loop 1\n            retry 3\n            delay_before_retry 1\n        }}\n    }}\n"
        )?;
    }
    text.push_str("}\n");
    let loaded = config::load_str(&text, "checks_10k.conf", &ConfigOptions::default());
    anyhow::ensure!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let targets = check::targets_from_config(&loaded.config);
    anyhow::ensure!(targets.len() == N, "{} targets", targets.len());
    anyhow::ensure!(
        targets.iter().all(|t| t.checkers.len() == 1 && t.checkers[0].common.delay_loop == Duration::from_secs(1)),
        "one TCP_CHECK with delay_loop 1 per real server"
    );

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (cpu, wall, late, downs) = rt.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<check::Transition>(1024);
        let downs = tokio::spawn(async move {
            let mut downs = 0u64;
            while let Some(t) = rx.recv().await {
                downs += u64::from(t.change == Change::Down);
            }
            downs
        });
        let stats = Arc::new(LatenessStats::new());
        let mut checks = Checks::new(tx, 1).with_lateness(Arc::clone(&stats));
        checks.set_targets(targets);
        tokio::time::sleep(WARMUP).await;
        let (c0, t0, s0) = (cpu_time(), Instant::now(), stats.snapshot());
        tokio::time::sleep(WINDOW).await;
        let (c1, t1, s1) = (cpu_time(), Instant::now(), stats.snapshot());
        checks.shutdown().await;
        let downs = downs.await?;
        anyhow::Ok(((c1.0 - c0.0, c1.1 - c0.1), t1 - t0, s1.since(&s0), downs))
    })?;
    drop(child.stdin.take()); // the child exits on EOF
    child.wait()?;

    let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let checks = late.count();
    eprintln!(
        "checks_10k: {checks} checks in {:.2} s, {downs} down transitions, user {:.1}% sys {:.1}%, lateness p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        wall.as_secs_f64(),
        cpu.0.as_secs_f64() / wall.as_secs_f64() * 100.0,
        cpu.1.as_secs_f64() / wall.as_secs_f64() * 100.0,
        ms(late.quantile(0.5)),
        ms(late.quantile(0.99)),
        ms(late.quantile(1.0)),
    );
    // About one check per real server a second: fewer means the scheduler fell behind.
    anyhow::ensure!(checks as f64 >= 0.8 * N as f64 * wall.as_secs_f64(), "only {checks} checks in the window");
    let cpu_pct = (cpu.0 + cpu.1).as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!("bench checks_10k cpu_pct={cpu_pct:.1} p99_late_ms={:.1}", ms(late.quantile(0.99)));
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
        ring_size: 1021,
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

    let mut prog = XdpProgram::load_with(LoadOptions { ring_size: Some(maglev::DEFAULT_RING_SIZE), max_conns: 2 * PREFILL, ..Default::default() })?;
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

    // A valid VRRPv2 advert for an instance we run: judged, counted,
    // recorded, passed. A source per call, so that none reaches the rate
    // limit (and each pays for its count's insert).
    let watch = VrrpWatch::multicast(1, Family::V4, 51, Version::V2, Auth::simple("secret"));
    prog.set_vrrp_instances(std::slice::from_ref(&watch))?;
    let advert = Advert { version: Version::V2, vrid: 51, priority: 150, advert_int: 1, auth: watch.auth, addrs: vec![ip("10.0.0.100")] };
    let group = ip("224.0.0.18");
    let adverts = (0..CALLS)
        .map(|i| {
            let src = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i));
            Ok(frames::vrrp([0, 0, 0x5e, 0, 1, 51], [1, 0, 0x5e, 0, 0, 0x12], src, group, 255, &advert.encode(src, group)?))
        })
        .collect::<Result<Vec<_>>>()?;
    println!("bench vrrp_advert_xdp ns_per_pkt={:.0}", time(prog.program()?, &[adverts.as_slice(); ROUNDS], 2)?);
    let seen = prog.vrrp_last_advert(1, Family::V4, 51)?.context("the advert was recorded")?;
    anyhow::ensure!(seen.count == u64::from(CALLS) * ROUNDS as u64, "{} adverts recorded", seen.count);
    Ok(())
}
