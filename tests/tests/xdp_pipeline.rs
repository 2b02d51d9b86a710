//! The build-to-kernel pipeline: the embedded program loads, attaches to a
//! veth in a namespace (native, falling back to SKB), sees real traffic,
//! and userspace reads its counters and the VRRP adverts it recorded.
//! Runs as root.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{fs::MetadataExt, process::CommandExt},
    },
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode, links::FdLink},
};
use director::{
    dataplane::xdp::{AttachMode, Family, LoadOptions, PROGRAM_OBJECT, VrrpWatch, XdpProgram},
    vrrp::{Advert, Auth, Version},
};
use director_common::{lb::MAP_LAYOUT_VERSION, stats::Reason, vrrp::IPPROTO_VRRP};
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

/// Two namespaces joined by a veth pair `eth0`, 10.99.`net`.1 and .2/24.
fn pair(tag: &str, net: u8) -> Result<(Netns, Netns)> {
    let dir = Netns::new(tag)?;
    let peer = Netns::new(&format!("{tag}peer"))?;
    veth(&dir, "eth0", &peer, "eth0")?;
    dir.ip(&["addr", "add", &format!("10.99.{net}.1/24"), "dev", "eth0"])?;
    peer.ip(&["addr", "add", &format!("10.99.{net}.2/24"), "dev", "eth0"])?;
    Ok((dir, peer))
}

/// The program attached to `ns`'s eth0, and that interface's index.
fn attached(ns: &Netns) -> Result<(XdpProgram, u32)> {
    ns.enter(|| -> Result<_> {
        let mut prog = XdpProgram::load()?;
        prog.attach("eth0")?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        anyhow::ensure!(ifindex != 0, "eth0 has no index");
        Ok((prog, ifindex))
    })?
}

/// A raw IPv4 socket for protocol 112 (the kernel writes the IP header).
fn vrrp_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, i32::from(IPPROTO_VRRP)) };
    anyhow::ensure!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh, valid fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn send_advert(sock: &OwnedFd, ttl: u8, msg: &[u8]) -> Result<()> {
    let ttl = libc::c_int::from(ttl);
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes([224, 0, 0, 18]) },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd, option value and address of the sizes passed.
    unsafe {
        let len = size_of::<libc::c_int>() as libc::socklen_t;
        let opt = (&ttl as *const libc::c_int).cast();
        anyhow::ensure!(libc::setsockopt(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, opt, len) == 0);
        let sent = libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        anyhow::ensure!(sent == msg.len() as isize, "sendto: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// The next VRRP message the raw socket receives (its IP header stripped).
fn recv_advert(sock: &OwnedFd) -> Result<Vec<u8>> {
    let mut buf = [0u8; 1500];
    // SAFETY: valid fd and buffer; SO_RCVTIMEO bounds the wait.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    anyhow::ensure!(n > 0, "recv: {}", std::io::Error::last_os_error());
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    Ok(buf[ihl..n as usize].to_vec())
}

#[test]
fn a_real_vrrp_advert_is_recorded_for_userspace_and_still_reaches_the_socket() -> Result<()> {
    let (dir, peer) = pair("vrrp", 1)?;
    peer.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"])?;
    let (mut prog, ifindex) = attached(&dir)?;
    let (rx, _group) = dir.enter(|| -> Result<_> {
        // Joining the group on eth0 lets the kernel deliver 224.0.0.18 locally.
        let group = UdpSocket::bind("0.0.0.0:0")?;
        group.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &Ipv4Addr::new(10, 99, 1, 1))?;
        let rx = vrrp_socket()?;
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: valid fd and option.
        let rc = unsafe {
            libc::setsockopt(
                rx.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        anyhow::ensure!(rc == 0, "SO_RCVTIMEO");
        Ok((rx, group))
    })??;
    prog.set_vrrp_instances(&[VrrpWatch::multicast(ifindex, Family::V4, 51, Version::V3, Auth::None)])?;

    let (src, group) = ("10.99.1.2".parse()?, "224.0.0.18".parse()?);
    let advert = |priority| Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        advert_int: 100,
        auth: Auth::None,
        addrs: vec!["10.99.1.100".parse().unwrap()],
    };
    let tx = peer.enter(vrrp_socket)??;
    // A TTL-1 advert first: dropped in XDP, so the socket's first message
    // is the valid one sent after it.
    send_advert(&tx, 1, &advert(99).encode(src, group)?)?;
    let good = advert(200).encode(src, group)?;
    send_advert(&tx, 255, &good)?;
    assert_eq!(recv_advert(&rx)?, good, "the valid advert reached the socket, the TTL-1 one did not");

    let deadline = Instant::now() + Duration::from_secs(5);
    let seen = loop {
        if let Some(s) = prog.vrrp_last_advert(ifindex, Family::V4, 51)? {
            break s;
        }
        anyhow::ensure!(Instant::now() < deadline, "no advert recorded");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((seen.priority, seen.src, seen.interval, seen.count), (200, src, Duration::from_secs(1), 1));
    assert!(seen.age < Duration::from_secs(5), "age {:?}", seen.age);
    assert_eq!(count(&prog, Reason::DropVrrpTtl), 1);
    assert_eq!(count(&prog, Reason::PassVrrp), 1);
    Ok(())
}

/// Removes a test's pins (and detaches their links) even when it fails.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = XdpProgram::cleanup(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_daemon_of_a_newer_map_layout_takes_over_the_link_an_older_one_pinned() -> Result<()> {
    let (dir, peer) = pair("layout", 2)?;
    let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/director-test-layout-{}", std::process::id())));
    let old = pins.0.join("v1");
    std::fs::create_dir_all(&old)?;
    // The link name carries the namespace as the library reads it.
    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    let old_link = old.join(format!("link-native-{netns}-eth0"));

    // An "older daemon": the program attached natively, its link and one
    // map pinned under layout v1, then the process's handles gone.
    dir.enter(|| -> Result<()> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT)?;
        ebpf.map("STATS").context("STATS")?.pin(old.join("STATS"))?;
        let prog: &mut Xdp = ebpf.program_mut("director_xdp").context("program")?.try_into()?;
        prog.load()?;
        let id = prog.attach("eth0", XdpMode::Driver)?;
        FdLink::try_from(prog.take_link(id)?)?.pin(&old_link)?;
        Ok(())
    })??;

    let (prog, mode) = dir.enter(|| -> Result<_> {
        let mut prog = XdpProgram::load_with(LoadOptions { pin_dir: Some(pins.0.clone()), ..Default::default() })?;
        let mode = prog.attach("eth0")?;
        Ok((prog, mode))
    })??;
    assert_eq!(mode, AttachMode::Native, "the native link was taken over, not a new one attached beside it");
    assert!(!prog.adopted(), "maps of another layout are never adopted");
    assert!(!old.exists(), "the older layout's pins are retired");
    let new_link = pins.0.join(format!("v{MAP_LAYOUT_VERSION}")).join(format!("link-native-{netns}-eth0"));
    assert!(new_link.exists(), "{} pinned", new_link.display());

    // The new program is the one that sees traffic now.
    let tx = peer.enter(|| UdpSocket::bind("10.99.2.2:0"))??;
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&prog, Reason::PassNotService) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "no datagram counted by the new program");
        tx.send_to(b"hello", "10.99.2.1:9")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// An older layout's link on an interface the new daemon does not attach
/// to would go on forwarding from maps no daemon updates: the daemon's
/// start-up finds it among the pinned interfaces and detaches it, and the
/// older layout's pins go with its last link.
#[test]
fn a_link_an_older_layout_left_on_an_unnamed_interface_is_detached() -> Result<()> {
    let (dir, _peer) = pair("stale", 4)?;
    dir.ip(&["link", "add", "eth1", "type", "veth", "peer", "name", "eth1p"])?;
    for dev in ["eth1", "eth1p"] {
        dir.ip(&["link", "set", dev, "up"])?;
    }
    let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/director-test-stale-{}", std::process::id())));
    let old = pins.0.join("v1");
    std::fs::create_dir_all(&old)?;
    let netns = std::fs::metadata("/proc/self/ns/net")?.ino();
    dir.enter(|| -> Result<()> {
        let mut ebpf = Ebpf::load(PROGRAM_OBJECT)?;
        ebpf.map("STATS").context("STATS")?.pin(old.join("STATS"))?;
        let prog: &mut Xdp = ebpf.program_mut("director_xdp").context("program")?.try_into()?;
        prog.load()?;
        for iface in ["eth0", "eth1"] {
            let id = prog.attach(iface, XdpMode::Driver)?;
            FdLink::try_from(prog.take_link(id)?)?.pin(old.join(format!("link-native-{netns}-{iface}")))?;
        }
        Ok(())
    })??;
    let xdp_on = |dev: &str| -> Result<bool> { Ok(dir.ip(&["link", "show", "dev", dev])?.contains("prog/xdp")) };
    assert!(xdp_on("eth1")?, "the older daemon's program is on eth1");

    let (prog, stale) = dir.enter(|| -> Result<_> {
        let mut prog = XdpProgram::load_with(LoadOptions { pin_dir: Some(pins.0.clone()), ..Default::default() })?;
        prog.attach("eth0")?;
        let stale = prog.pinned_interfaces().into_iter().filter(|i| i != "eth0").collect::<Vec<_>>();
        for iface in &stale {
            prog.detach(iface)?;
        }
        Ok((prog, stale))
    })??;
    assert_eq!(stale, ["eth1"], "eth1's link is found under the older layout");
    assert!(!xdp_on("eth1")?, "the older layout's program still forwards on eth1");
    assert!(xdp_on("eth0")?, "eth0 keeps the new program");
    assert!(!old.exists(), "the older layout's pins are retired with its last link");
    drop(prog);
    Ok(())
}

/// keepalived (VRRP only, in the foreground) in a namespace, with its
/// files in `dir`; killed with its VRRP child, and `dir` removed, on drop.
struct Keepalived(std::process::Child, PathBuf);

impl Keepalived {
    fn start(ns: &Netns, dir: PathBuf, conf: &str) -> Result<Keepalived> {
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("keepalived.conf");
        std::fs::write(&file, conf)?;
        let mut cmd = std::process::Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", ns.name()));
        // Own pid files, or a keepalived already on the host makes it exit.
        cmd.args(["keepalived", "-P", "-n", "-l", "-f"]).arg(&file);
        for (flag, name) in [("-p", "k.pid"), ("-r", "v.pid"), ("-c", "c.pid")] {
            cmd.arg(flag).arg(dir.join(name));
        }
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).process_group(0);
        let child = cmd.spawn();
        if child.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Keepalived(child.context("starting keepalived")?, dir))
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // SAFETY: signalling the process group we created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[test]
fn keepalived_adverts_v2_and_v3_are_recorded_as_sent_and_other_vrids_dropped() -> Result<()> {
    let (dir, peer) = pair("kadv", 3)?;
    let (mut prog, ifindex) = attached(&dir)?;
    let watch = |vrid, version, auth| VrrpWatch::multicast(ifindex, Family::V4, vrid, version, auth);
    prog.set_vrrp_instances(&[watch(51, Version::V2, Auth::simple("secret12")), watch(52, Version::V3, Auth::None)])?;

    let instance = |name: &str, vrid: u8, priority: u8, extra: &str| {
        format!(
            "vrrp_instance {name} {{\n state MASTER\n interface eth0\n virtual_router_id {vrid}\n priority {priority}\n \
             advert_int 1\n {extra}\n virtual_ipaddress {{\n  10.99.3.{vrid}/32\n }}\n}}\n"
        )
    };
    let conf = [
        instance("V2", 51, 150, "version 2\n authentication {\n  auth_type PASS\n  auth_pass secret12\n }"),
        instance("V3", 52, 120, "version 3"),
        instance("OTHER", 60, 100, "version 3"),
    ]
    .concat();
    let tmp = PathBuf::from(format!("/tmp/director-test-kadv-{}", std::process::id()));
    let _keepalived = Keepalived::start(&peer, tmp, &conf)?;

    // keepalived starts as backup and becomes master after Master_Down_Interval.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (v2, v3) = loop {
        let v2 = prog.vrrp_last_advert(ifindex, Family::V4, 51)?;
        let v3 = prog.vrrp_last_advert(ifindex, Family::V4, 52)?;
        if let (Some(a), Some(b)) = (v2, v3) {
            break (a, b);
        }
        anyhow::ensure!(Instant::now() < deadline, "keepalived's adverts not recorded: v2 {v2:?} v3 {v3:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let peer_ip: std::net::IpAddr = "10.99.3.2".parse()?;
    assert_eq!((v2.priority, v2.src, v2.interval), (150, peer_ip, Duration::from_secs(1)));
    assert_eq!((v3.priority, v3.src, v3.interval), (120, peer_ip, Duration::from_secs(1)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&prog, Reason::DropVrrpUnknownVrid) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "VRID 60's adverts were not dropped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let malformed = [Reason::DropVrrpTtl, Reason::DropVrrpVersion, Reason::DropVrrpLength, Reason::PassVrrpUnmatched];
    for r in malformed {
        assert_eq!(count(&prog, r), 0, "{}: keepalived's adverts are well formed", r.name());
    }
    Ok(())
}
