//! VRRP under hostile packets (root, netns): a client on the LAN spoofs and
//! floods adverts for the instance the directors run.
//!
//! - A spoofed TTL-64 unicast advert at priority 255 every 0.5 s, from a
//!   host that is no VRRP router, must not keep a director backup from
//!   taking over when the master dies. The VRRP socket refuses it (a
//!   multicast instance hears TTL 255 only); the XDP advert record used to
//!   keep it, and a backup trusted that record over its own timer.
//! - A flood of same-VRID adverts, with a bad checksum and valid at a low
//!   priority, as fast as the client sends them, must not delay the
//!   master's adverts beyond 1.5 × advert_int nor move the VIP. Prints
//!   `bench vrrp_flood kind=<k> pps=<n> max_gap_ms=<n> takeovers=<n>`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, ensure};
use director::vrrp::{Advert, Auth, Version as WireVersion};
use director_tests::vrrp_lab::{CLIENT_IP, Cast, Instance, Kind, Lan, VIP, Version, adverts_from, metric_sum, node_ip};
use socket2::{Domain, Protocol, Socket, Type};

const ADVERT_INT: Duration = Duration::from_secs(1);
const SPOOF_EVERY: Duration = Duration::from_millis(500);
/// How long each flood lasts.
const FLOOD: Duration = Duration::from_secs(8);

/// An advert for the lab's instance (VRID 51, v2, PASS "1111", the VIP) as
/// `src` would send it to `dst`.
fn advert(priority: u8, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>> {
    let a = Advert {
        version: WireVersion::V2,
        vrid: 51,
        priority,
        advert_int: 1,
        auth: Auth::simple("1111"),
        addrs: vec![IpAddr::V4(VIP)],
    };
    Ok(a.encode(IpAddr::V4(src), IpAddr::V4(dst))?)
}

fn vrrp_socket() -> Result<Socket> {
    Ok(Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?)
}

#[test]
fn a_spoofed_unicast_advert_does_not_keep_the_backup_from_taking_over() -> Result<()> {
    let lan = Lan::new("hs", &[Kind::Keepalived, Kind::Director])?;
    lan.explain(spoofed(&lan))
}

fn spoofed(lan: &Lan) -> Result<()> {
    let master = Instance::new(Version::V2, Cast::Multicast, true, 150);
    let backup = Instance { master: false, priority: 100, ..master.clone() };
    lan.configure(0, &master, "")?;
    lan.configure(1, &backup, "")?;
    let (m, b) = (lan.nodes[0].name.clone(), lan.nodes[1].name.clone());
    lan.node(&m).start()?;
    lan.node(&b).start()?;
    lan.wait_holder(&m, Duration::from_secs(15))?;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let spoofer = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let to = node_ip(1);
        let bytes = advert(255, CLIENT_IP, to)?;
        lan.client.spawn("spoofer", move || -> Result<()> {
            let sock = vrrp_socket()?;
            sock.set_ttl_v4(64)?;
            let to = SocketAddr::from((to, 0)).into();
            while !stop.load(Ordering::Relaxed) {
                sock.send_to(&bytes, &to)?;
                sent.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(SPOOF_EVERY);
            }
            Ok(())
        })?
    };
    // Spoofs interleaved with the master's adverts before it dies.
    while sent.load(Ordering::Relaxed) < 4 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let t0 = lan.crash(&m)?;
    let took = lan.wait_holder(&b, Duration::from_secs(12)).map(|_| t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    spoofer.join().map_err(|_| anyhow!("the spoofer panicked"))??;
    let took = took.context("the backup never took over while the spoofed adverts came")?;
    let limit = backup.master_down() + SPOOF_EVERY;
    println!("spoofed: {b} took over {took:?} after the master died (limit {limit:?})");
    ensure!(took <= limit, "the backup took over after {took:?}, later than Master_Down_Interval + 0.5 s = {limit:?}");
    // Every spoof died in XDP: the socket would have refused it.
    let dropped = metric_sum(&lan.node(&b).metrics()?, "director_packets_total{", "drop_vrrp_ttl");
    let sent = sent.load(Ordering::Relaxed) as f64;
    ensure!(dropped >= sent, "XDP dropped {dropped} spoofed adverts of {sent} sent");
    Ok(())
}

#[test]
fn a_flood_of_adverts_neither_delays_the_master_nor_moves_the_vip() -> Result<()> {
    let lan = Lan::new("hf", &[Kind::Director, Kind::Director])?;
    lan.explain(flooded(&lan))
}

fn flooded(lan: &Lan) -> Result<()> {
    let master = Instance::new(Version::V2, Cast::Multicast, true, 150);
    let backup = Instance { master: false, priority: 100, ..master.clone() };
    lan.configure(0, &master, "")?;
    lan.configure(1, &backup, "")?;
    let (m, b) = (lan.nodes[0].name.clone(), lan.nodes[1].name.clone());
    lan.node(&m).start()?;
    lan.node(&b).start()?;
    lan.wait_holder(&m, Duration::from_secs(15))?;

    let stop = Arc::new(AtomicBool::new(false));
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let capture = {
        let (stop, stamps) = (Arc::clone(&stop), Arc::clone(&stamps));
        lan.client.spawn("adverts", move || adverts_from(node_ip(0), &stop, &stamps, 5 * ADVERT_INT))?
    };
    let heard = Instant::now() + 3 * ADVERT_INT;
    while stamps.lock().unwrap().is_empty() {
        ensure!(Instant::now() < heard, "the client hears no advert from the master");
        std::thread::sleep(Duration::from_millis(20));
    }
    let group = Ipv4Addr::new(224, 0, 0, 18);
    let mut bad = advert(100, CLIENT_IP, group)?;
    bad[6] ^= 0xff;
    let kinds = [("bad_checksum", bad), ("valid_low_priority", advert(1, CLIENT_IP, group)?)];
    let result = kinds.into_iter().try_for_each(|(kind, bytes)| -> Result<()> {
        let taken = || lan.node(&b).log_lines("Entering MASTER STATE").len();
        let before = taken();
        let (start, pps) = flood(lan, group, &bytes)?;
        let end = Instant::now();
        // The master's first advert after the flood closes the window.
        let deadline = end + 2 * ADVERT_INT;
        while !stamps.lock().unwrap().iter().any(|t| *t >= end) {
            ensure!(Instant::now() < deadline, "{kind}: no advert from the master after the flood");
            std::thread::sleep(Duration::from_millis(20));
        }
        let stamps = stamps.lock().unwrap().clone();
        let first = stamps.iter().rposition(|t| *t <= start).context("no advert before the flood")?;
        let last = stamps.iter().position(|t| *t >= end).context("no advert after the flood")?;
        let window = &stamps[first..=last];
        let gap = window.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap_or_default();
        let takeovers = taken() - before;
        println!("bench vrrp_flood kind={kind} pps={pps:.0} max_gap_ms={} takeovers={takeovers}", gap.as_millis());
        ensure!(gap <= ADVERT_INT * 3 / 2, "{kind}: the master's adverts paused for {gap:?} during the flood");
        ensure!(takeovers == 0, "{kind}: the backup took over {takeovers} time(s) during the flood");
        lan.wait_holder(&m, Duration::from_secs(3)).with_context(|| format!("{kind}: the master keeps the VIP"))?;
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    capture.join().map_err(|_| anyhow!("the capture panicked"))??;
    result?;
    // The floods were cut in XDP, on both directors.
    for n in [&m, &b] {
        let cut = metric_sum(&lan.node(n).metrics()?, "director_packets_total{", "drop_vrrp_rate");
        ensure!(cut > 0.0, "{n}: XDP rate-limited no advert");
    }
    Ok(())
}

/// `bytes` to the VRRP group from the client, as fast as it sends, for
/// FLOOD; returns when it began and the rate reached (packets/s). The
/// client's own sockets do not see it (no multicast loop).
fn flood(lan: &Lan, group: Ipv4Addr, bytes: &[u8]) -> Result<(Instant, f64)> {
    lan.client.enter(|| -> Result<(Instant, f64)> {
        let sock = vrrp_socket()?;
        sock.set_multicast_ttl_v4(255)?;
        sock.set_multicast_loop_v4(false)?;
        sock.set_multicast_if_v4(&CLIENT_IP)?;
        let to = SocketAddr::from((group, 0)).into();
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < FLOOD {
            for _ in 0..256 {
                // A full queue is part of a flood: count what left.
                if sock.send_to(bytes, &to).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok((start, sent as f64 / start.elapsed().as_secs_f64()))
    })?
}
