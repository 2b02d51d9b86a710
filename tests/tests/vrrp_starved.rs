//! A backup starved of CPU during a VRRP storm must not take over from a
//! live master. The storm is a burst of well-formed adverts for a VRID
//! nobody here runs, sent while the backup is frozen (SIGSTOP): a socket
//! that receives them fills up, the live master's adverts that follow are
//! dropped by the kernel, and when the backup runs again its
//! Master_Down_Timer has expired with no advert in sight. director's XDP
//! program drops adverts for VRIDs it does not run before any socket sees
//! them (and records the master's), so its socket keeps the master's
//! adverts. keepalived, measured the same way as the reference, has no
//! such filter. Prints
//! `bench vrrp_starved_storm kind=<k> false_takeovers=<n> cycles=<n>`.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use director::vrrp::{Advert, Auth, Version as WireVersion};
use director_tests::vrrp_lab::{CLIENT_IP, Cast, Instance, Kind, Lan, Version, metric_sum};
use socket2::{Domain, Protocol, Socket, Type};

const CYCLES: usize = 3;
/// Adverts in one storm: several times what a default socket buffer holds.
const STORM: usize = 3000;
const STORM_VRID: u8 = 200;
/// How long the backup stays frozen: past its Master_Down_Interval
/// (3.61 s at priority 100, advert_int 1).
const FROZEN: Duration = Duration::from_secs(5);
/// How long after the thaw a false takeover would show: the live master's
/// next advert ends one within an advert interval.
const AFTER: Duration = Duration::from_millis(2500);

#[test]
fn starved_director_backup_does_not_take_over_during_a_vrrp_storm() -> Result<()> {
    let lan = Lan::new("st-d", &[Kind::Keepalived, Kind::Director])?;
    let (false_takeovers, backup) = lan.explain(run(&lan))?;
    println!("bench vrrp_starved_storm kind=director false_takeovers={false_takeovers} cycles={CYCLES}");
    ensure!(false_takeovers == 0, "the starved director backup took over {false_takeovers} time(s) in {CYCLES} storms");
    // The storm died in XDP: the socket never saw it.
    let metrics = lan.node(&backup).metrics()?;
    let dropped = metric_sum(&metrics, "director_packets_total{", "drop_vrrp_unknown_vrid");
    ensure!(dropped >= (CYCLES * STORM) as f64, "XDP dropped {dropped} foreign adverts, expected {}", CYCLES * STORM);
    Ok(())
}

/// The same storm against a keepalived backup: the reference figure, not
/// asserted (it is keepalived's behaviour, not ours).
#[test]
fn starved_keepalived_backup_reference() -> Result<()> {
    let lan = Lan::new("st-k", &[Kind::Keepalived, Kind::Keepalived])?;
    let (false_takeovers, _) = lan.explain(run(&lan))?;
    println!("bench vrrp_starved_storm kind=keepalived false_takeovers={false_takeovers} cycles={CYCLES}");
    Ok(())
}

/// Node 0 is master at 150, node 1 backup at 100; returns how many storms
/// made the backup enter MASTER, and the backup's name.
fn run(lan: &Lan) -> Result<(usize, String)> {
    let master = Instance::new(Version::V2, Cast::Multicast, true, 150);
    let backup = Instance { master: false, priority: 100, ..master.clone() };
    lan.configure(0, &master, "")?;
    lan.configure(1, &backup, "")?;
    let (m, b) = (lan.nodes[0].name.clone(), lan.nodes[1].name.clone());
    lan.node(&m).start()?;
    lan.node(&b).start()?;
    lan.wait_holder(&m, Duration::from_secs(15))?;
    let entering = |name: &str| lan.node(name).log_lines("Entering MASTER STATE").len();
    let before = entering(&b);
    for cycle in 1..=CYCLES {
        lan.node(&b).freeze(true)?;
        storm(lan)?;
        // The stall itself, not a wait for a result.
        std::thread::sleep(FROZEN);
        lan.node(&b).freeze(false)?;
        std::thread::sleep(AFTER);
        println!("storm {cycle}: {b} entered MASTER {} time(s) so far", entering(&b) - before);
    }
    lan.wait_holder(&m, Duration::from_secs(5)).context("the live master holds the VIP after the storms")?;
    Ok((entering(&b) - before, b))
}

/// `STORM` VRRPv2 adverts for `STORM_VRID` from the client, as fast as
/// the socket takes them.
fn storm(lan: &Lan) -> Result<()> {
    let group = Ipv4Addr::new(224, 0, 0, 18);
    let advert = Advert {
        version: WireVersion::V2,
        vrid: STORM_VRID,
        priority: 100,
        advert_int: 1,
        auth: Auth::None,
        addrs: vec![IpAddr::V4(Ipv4Addr::new(10, 90, 0, 200))],
    };
    let bytes = advert.encode(IpAddr::V4(CLIENT_IP), IpAddr::V4(group))?;
    lan.client.enter(|| -> Result<()> {
        let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
        sock.set_multicast_ttl_v4(255)?;
        sock.set_multicast_if_v4(&CLIENT_IP)?;
        let to = SocketAddr::from((group, 0)).into();
        for _ in 0..STORM {
            sock.send_to(&bytes, &to)?;
        }
        Ok(())
    })?
}
