//! The build-to-kernel pipeline: the embedded program loads, attaches to a
//! veth in a namespace (native, falling back to SKB), sees real traffic,
//! and userspace reads its counters. Runs as root.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    time::Duration,
};

use anyhow::Result;
use director::dataplane::xdp::{AttachMode, XdpProgram};
use director_common::stats::Reason;
use director_tests::{
    fixture::{self, Fixture, XDP_PASS},
    netns::{Netns, veth},
};
use etherparse::PacketBuilder;

fn count(p: &XdpProgram, reason: Reason) -> u64 {
    p.stats().unwrap().into_iter().find(|(r, _)| *r == reason).unwrap().1.packets
}

#[test]
fn attaches_native_on_veth_and_counts_real_traffic() -> Result<()> {
    let dir = Netns::new("dir")?;
    let client = Netns::new("cli")?;
    veth(&dir, "eth0", &client, "eth0")?;
    dir.ip(&["addr", "add", "10.99.0.1/24", "dev", "eth0"])?;
    client.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"])?;

    let (prog, mode) = dir.enter(|| -> Result<_> {
        let mut prog = XdpProgram::load()?;
        let mode = prog.attach("eth0")?;
        Ok((prog, mode))
    })??;
    assert_eq!(mode, AttachMode::Native, "veth supports native XDP");

    // A real TCP exchange through the attached program.
    let listener = dir.enter(|| TcpListener::bind("10.99.0.1:0"))??;
    let addr = listener.local_addr()?;
    let mut conn = client.enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))??;
    let (mut server, _) = listener.accept()?;
    conn.write_all(b"ping")?;
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf)?;
    assert_eq!(&buf, b"ping");
    drop((conn, server));

    // SYN, ACK and the data segment at least.
    assert!(count(&prog, Reason::PassNotService) >= 3, "TCP segments seen");
    // The client resolved 10.99.0.1 first, and ARP is not IP.
    assert!(count(&prog, Reason::PassNotIp) >= 1, "ARP seen");
    Ok(())
}

#[test]
fn falls_back_to_skb_mode_where_the_driver_has_no_xdp() -> Result<()> {
    let ns = Netns::new("skb")?;
    // A bridge has no driver-level XDP hook.
    ns.ip(&["link", "add", "br0", "type", "bridge"])?;
    ns.ip(&["link", "set", "br0", "up"])?;
    let mode = ns.enter(|| -> Result<_> {
        let mut prog = XdpProgram::load()?;
        Ok(prog.attach("br0")?)
    })??;
    assert_eq!(mode, AttachMode::Skb);
    Ok(())
}

#[test]
fn attaching_to_a_missing_interface_names_it() -> Result<()> {
    let ns = Netns::new("noif")?;
    let err = ns
        .enter(|| XdpProgram::load().and_then(|mut p| p.attach("nosuch0").map(|_| ())))?
        .unwrap_err();
    assert!(err.to_string().contains("nosuch0"), "{err}");
    Ok(())
}

fn udp4(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 53);
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn test_run_fixtures_pass_unchanged_and_count() -> Result<()> {
    let mut prog = XdpProgram::load()?;
    let before = count(&prog, Reason::PassNotService);
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
        f.extend_from_slice(&[0; 28]);
        f
    };
    let table = [
        Fixture { name: "udp over ipv4 passes", input: udp4(b"hello"), verdict: XDP_PASS, output: None },
        Fixture { name: "arp passes", input: arp, verdict: XDP_PASS, output: None },
    ];
    for f in &table {
        fixture::check(prog.program()?, f)?;
    }
    assert_eq!(count(&prog, Reason::PassNotService), before + 1);
    Ok(())
}
