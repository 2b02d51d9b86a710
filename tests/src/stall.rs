//! Nothing the daemon's main loop does delays VRRP (issue 11), at the
//! issue's scale (root). A director master runs 10,000 real servers
//! (`SERVICES` DR services of `REALS`, each with a permanent neighbour
//! entry, so every one is programmed) and a connection table filled to its
//! `max_entries` (1M) through the pinned CONNS map. Then, all at once and
//! in loops for `LOAD`: `SCRAPERS` parallel `/metrics` scrapers,
//! `directorctl list -c` over that table, `status` and `list`, and reloads
//! that swap between two 10,000-server configurations (every other
//! server's weight doubled, so every ring is rewritten). Meanwhile the
//! client, a peer on the LAN, records when each of the master's adverts
//! reached it, by the kernel's receive timestamp (so the test's own busy
//! threads cannot widen a gap). The `vrrp_stall` test asserts on the
//! result; `cargo xtask bench` prints it (`bench vrrp_advert_gap ...`).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, ensure};
use aya::maps::MapData;
use director::{dataplane::xdp::flow_key, state::Proto};
use director_common::lb::{CONN_FORWARD, Conn, FlowKey, maps};
use crate::{
    map_batch,
    topo::{Mac, permanent_neighbours},
    vrrp_lab::{Cast, Instance, Kind, Lan, Node, VIP, Version, adverts_from, node_ip},
};

pub const ADVERT_INT: Duration = Duration::from_secs(1);
/// How long the daemon is kept busy.
const LOAD: Duration = Duration::from_secs(20);
const SERVICES: u8 = 100;
/// Real servers per service.
const REALS: u8 = 100;
pub const SCRAPERS: usize = 64;
/// Rows `directorctl list -c` shows at most: the daemon stops its walk of
/// the connection table there (`daemon::snapshot::MAX_LISTED`).
pub const LISTED_AT_MOST: u64 = 100_000;
/// The services' first port.
const PORT: u16 = 1000;

/// What the load did to the master's adverts, and what the load was.
#[derive(Debug)]
pub struct Stall {
    /// The longest gap between two adverts, from the last one before the
    /// load to the first one after it.
    pub gap: Duration,
    pub adverts: usize,
    /// Times the keepalived backup entered MASTER.
    pub takeovers: usize,
    pub reals: usize,
    /// Entries in the connection table once filled, and its max_entries.
    pub conns: u64,
    pub conns_max: u32,
    pub fill: Duration,
    pub reloads: u64,
    pub scrapes: u64,
    /// Scrapes that failed: refused (the endpoint serves 64 connections at
    /// once, and a scraper's next connection may come before its last one
    /// is let go) or not answered within 5 s.
    pub scrape_errors: u64,
    /// `list -c` answered; the most rows one showed; the longest one took.
    pub lists: u64,
    pub list_rows: u64,
    pub list_max: Duration,
    /// `status` and `list` answered.
    pub requests: u64,
    /// directorctl requests not answered (it gives up after 10 s).
    pub unanswered: u64,
}

impl Stall {
    /// The `bench vrrp_advert_gap ...` line.
    pub fn line(&self) -> String {
        format!(
            "bench vrrp_advert_gap max_ms={} adverts={} takeovers={} reals={} conns={} fill_ms={} reloads={} \
             scrapers={SCRAPERS} scrapes={} scrape_errors={} lists={} list_rows={} list_max_ms={} requests={} unanswered={}",
            self.gap.as_millis(),
            self.adverts,
            self.takeovers,
            self.reals,
            self.conns,
            self.fill.as_millis(),
            self.reloads,
            self.scrapes,
            self.scrape_errors,
            self.lists,
            self.list_rows,
            self.list_max.as_millis(),
            self.requests,
            self.unanswered
        )
    }
}

/// Sets the lab up (namespaces named after `tag`), loads the master and
/// measures. Fails when the scenario cannot be set up or the load did not
/// happen; the verdict on the gap is the caller's.
pub fn advert_gap_under_load(tag: &str) -> Result<Stall> {
    let lan = Lan::new(tag, &[Kind::Director, Kind::Keepalived])?;
    lan.explain(run(&lan))
}

fn run(lan: &Lan) -> Result<Stall> {
    let master = Instance::new(Version::V2, Cast::Multicast, true, 150);
    let backup = Instance { master: false, priority: 100, ..master.clone() };
    let (d, k) = (&lan.nodes[0], &lan.nodes[1]);
    // The real servers' subnet on the LAN, and their next hops.
    d.ns.ip(&["addr", "add", "10.91.255.254/16", "dev", "eth0"])?;
    let hops: Vec<(IpAddr, Mac)> = reals().map(|(s, r)| (real(s, r).into(), [0x02, 0, 0, 0x5b, s, r])).collect();
    permanent_neighbours(&d.ns, "eth0", &hops)?;
    let confs = [services(|_| 1), services(|r| 1 + u32::from(r % 2))].map(|s| master.conf(node_ip(0), &[node_ip(1)]) + &s);
    d.write_conf(&confs[0])?;
    lan.configure(1, &backup, "")?;
    d.start()?;
    k.start()?;
    lan.wait_holder(&d.name, Duration::from_secs(15))?;
    let status = ctl_stdout(d, &["status"])?;
    let programmed = format!("real_servers {}/", hops.len());
    ensure!(status.contains(&programmed), "all {} real servers should be programmed: {status}", hops.len());

    let (conns, conns_max, fill) = fill_conns(d)?;

    let stop = AtomicBool::new(false);
    let stamps = Arc::new(Mutex::new(Vec::new()));
    let stop_capture = Arc::new(AtomicBool::new(false));
    let capture = {
        let (stop, stamps) = (Arc::clone(&stop_capture), Arc::clone(&stamps));
        let from = node_ip(0);
        lan.client.spawn("adverts", move || adverts_from(from, &stop, &stamps, 5 * ADVERT_INT))?
    };
    let heard = Instant::now() + 3 * ADVERT_INT;
    while stamps.lock().unwrap().is_empty() {
        ensure!(Instant::now() < heard, "the client hears no advert from the master");
        std::thread::sleep(Duration::from_millis(20));
    }
    let counters: [AtomicU64; 8] = Default::default();
    let [reloads, scrapes, scrape_errors, lists, list_rows, list_max_ms, requests, unanswered] = &counters;
    let served = |args: &[&str]| d.ctl(args).ok().filter(|o| o.status.success());
    let count = |answered: bool, kind: &AtomicU64| {
        if answered { kind } else { unanswered }.fetch_add(1, Ordering::Relaxed);
    };
    let scraped = |ok: bool| if ok { scrapes } else { scrape_errors }.fetch_add(1, Ordering::Relaxed);
    let busy = || !stop.load(Ordering::Relaxed);
    let (start, end) = std::thread::scope(|s| -> Result<(Instant, Instant)> {
        let mut load = Vec::new();
        load.push(s.spawn(|| -> Result<()> {
            for conf in confs.iter().cycle().take_while(|_| busy()) {
                d.write_conf(conf)?;
                count(served(&["reload"]).is_some(), reloads);
            }
            Ok(())
        }));
        load.push(s.spawn(|| -> Result<()> {
            while busy() {
                let t = Instant::now();
                let out = served(&["list", "-c"]);
                count(out.is_some(), lists);
                if let Some(out) = out {
                    // Two header lines, then one line per entry.
                    let lines = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
                    list_rows.fetch_max(lines.saturating_sub(2) as u64, Ordering::Relaxed);
                    list_max_ms.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
            }
            Ok(())
        }));
        load.push(s.spawn(|| -> Result<()> {
            while busy() {
                count(served(&["status"]).is_some(), requests);
                count(served(&["list"]).is_some(), requests);
            }
            Ok(())
        }));
        for _ in 0..SCRAPERS {
            load.push(s.spawn(|| -> Result<()> {
                while busy() {
                    scraped(d.metrics().is_ok());
                }
                Ok(())
            }));
        }
        let start = Instant::now();
        std::thread::sleep(LOAD);
        let end = Instant::now();
        stop.store(true, Ordering::Relaxed);
        stop_capture.store(true, Ordering::Relaxed);
        for l in load {
            l.join().map_err(|_| anyhow!("a load thread panicked"))??;
        }
        Ok((start, end))
    })?;
    capture.join().map_err(|_| anyhow!("the capture panicked"))??;
    let stamps = std::mem::take(&mut *stamps.lock().unwrap());
    let [reloads, scrapes, scrape_errors, lists, list_rows, list_max_ms, requests, unanswered] =
        counters.map(AtomicU64::into_inner);
    // The window, widened to the adverts around it; a stall at either end counts.
    let first = stamps.iter().rposition(|t| *t <= start).context("no advert before the load")?;
    let last = stamps.iter().position(|t| *t >= end).context("no advert after the load")?;
    let window = &stamps[first..=last];
    let stall = Stall {
        gap: window.windows(2).map(|w| w[1].saturating_duration_since(w[0])).max().unwrap_or_default(),
        adverts: window.len(),
        takeovers: k.log_lines("Entering MASTER STATE").len(),
        reals: hops.len(),
        conns,
        conns_max,
        fill,
        reloads,
        scrapes,
        scrape_errors,
        lists,
        list_rows,
        list_max: Duration::from_millis(list_max_ms),
        requests,
        unanswered,
    };
    // The load must have happened, or the gap says nothing.
    // (The scrapers' count of answers depends on the CPU the test's own
    // threads get: 66 to 1,222 here; each keeps the endpoint busy anyway.)
    ensure!(
        stall.reloads >= 2 && stall.scrapes > 0 && stall.list_rows >= LISTED_AT_MOST,
        "the load did not happen in {LOAD:?} (at least 2 reloads, a scrape and a `list -c` of \
         {LISTED_AT_MOST} rows wanted): {}",
        stall.line()
    );
    Ok(stall)
}

/// Fills the director's connection table to its max_entries with flows to
/// the services (pinned to their real servers), in batches. Returns the
/// entries it then holds, max_entries and how long the fill took.
fn fill_conns(d: &Node) -> Result<(u64, u32, Duration)> {
    let path = d.pinned_map(maps::CONNS);
    let map = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let max = map.info()?.max_entries();
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    let reals = u32::from(SERVICES) * u32::from(REALS);
    let flows = (0..max).map(|i| {
        let service = i % u32::from(SERVICES);
        let key = flow_key(Ipv4Addr::from(base + i).into(), 40000, VIP.into(), PORT + service as u16, Proto::Tcp);
        (key, Conn { real: i % reals, service, kind: CONN_FORWARD, ..Default::default() })
    });
    let t = Instant::now();
    let written = map_batch::update(&map, flows)?;
    let fill = t.elapsed();
    let held = map_batch::count::<FlowKey, Conn>(&map)?;
    // An LRU map evicts a little before it is full: each CPU keeps a few
    // free entries of its own.
    ensure!(
        written == u64::from(max) && held >= u64::from(max) * 99 / 100,
        "the connection table is not full: {written} written, {held} held, max_entries {max}"
    );
    Ok((held, max, fill))
}

fn ctl_stdout(d: &Node, args: &[&str]) -> Result<String> {
    let out = d.ctl(args)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "directorctl {}: {text}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(text)
}

/// (service, real) of every real server.
fn reals() -> impl Iterator<Item = (u8, u8)> {
    (0..SERVICES).flat_map(|s| (0..REALS).map(move |r| (s, r)))
}

/// A real server's address: 10.91.<service>.<real + 1>, on the LAN.
fn real(service: u8, r: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 91, service, r + 1)
}

/// `SERVICES` DR services on the VIP, `REALS` real servers each, weighted
/// by `weight(real)`.
fn services(weight: impl Fn(u8) -> u32) -> String {
    let mut s = String::new();
    for svc in 0..SERVICES {
        let port = PORT + u16::from(svc);
        s.push_str(&format!("\nvirtual_server {VIP} {port} {{\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n"));
        for r in 0..REALS {
            let w = weight(r);
            s.push_str(&format!("    real_server {} {port} {{\n        weight {w}\n    }}\n", real(svc, r)));
        }
        s.push_str("}\n");
    }
    s
}
