//! The VRRP driver's I/O in network namespaces (root): VIPs through
//! rtnetlink, gratuitous ARP / unsolicited NA captured on the peer and seen
//! in a client's neighbour cache, the use_vmac macvlan, and interface
//! tracking.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use director::config::{Broadcast, Config, VirtualAddress, Vmac, load_str};
use director::vrrp::addr::{AddrError, Addrs, Vip};
use director::vrrp::announce::{self, garp_frame, na_frame};
use director::vrrp::track::{InitFiles, TrackUpdate, Tracker, Tracking};
use director::vrrp::vmac::{VmacError, VmacSpec};
use director_tests::netns::{Netns, veth};

/// Runs `f` on a single-threaded runtime inside `ns`, so netlink and
/// sockets belong to the namespace.
fn in_ns<T: Send>(ns: &Netns, f: impl AsyncFnOnce() -> T + Send) -> Result<T> {
    ns.enter(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f())
    })
}

/// A netlink handle whose connection runs on the current runtime.
fn netlink() -> rtnetlink::Handle {
    let (conn, handle, _) = rtnetlink::new_connection().unwrap();
    tokio::spawn(conn);
    handle
}

fn va(addr: &str, prefix: u8) -> VirtualAddress {
    VirtualAddress::new(addr.parse().unwrap(), prefix)
}

fn pair(tag: &str) -> Result<(Netns, Netns)> {
    let a = Netns::new(tag)?;
    let b = Netns::new(tag)?;
    veth(&a, "v0", &b, "v1")?;
    Ok((a, b))
}

#[test]
fn vips_added_with_label_scope_brd_flags_and_removed() -> Result<()> {
    let (ns, _peer) = pair("vipaddr")?;
    let mut v4 = va("10.61.0.10", 24);
    v4.label = Some("v0:vip".into());
    v4.scope = Some("link".into());
    v4.brd = Some(Broadcast::SetHostBits);
    let v4 = Vip::resolve(&v4, "v0")?;
    let mut v6 = va("2001:db8:61::10", 64);
    v6.flags = vec!["-nodad".into(), "noprefixroute".into()];
    let v6 = Vip::resolve(&v6, "v0")?;
    let (added, again) = in_ns(&ns, async || {
        let a = Addrs::new().unwrap();
        let added = (a.add(&v4).await.unwrap(), a.add(&v6).await.unwrap());
        let again = (a.add(&v4).await.unwrap(), a.add(&v6).await.unwrap());
        (added, again)
    })?;
    ensure!(
        added == (true, true) && again == (false, false),
        "add {added:?}, again {again:?}"
    );
    let four = ns.ip(&["-o", "-4", "addr", "show", "dev", "v0"])?;
    ensure!(
        four.contains("inet 10.61.0.10/24 brd 10.61.0.255 scope link v0:vip"),
        "ip addr shows: {four}"
    );
    let six = ns.ip(&["-o", "-6", "addr", "show", "dev", "v0"])?;
    ensure!(
        six.contains("inet6 2001:db8:61::10/64 scope global nodad noprefixroute"),
        "ip addr shows: {six}"
    );
    let routes = ns.ip(&["-6", "route", "show", "dev", "v0"])?;
    ensure!(
        !routes.contains("2001:db8:61::/64"),
        "noprefixroute still added a route: {routes}"
    );

    let (removed, again, present) = in_ns(&ns, async || {
        let a = Addrs::new().unwrap();
        let removed = (a.remove(&v4).await.unwrap(), a.remove(&v6).await.unwrap());
        let again = (a.remove(&v4).await.unwrap(), a.remove(&v6).await.unwrap());
        (removed, again, a.is_present(&v4).await.unwrap())
    })?;
    ensure!(
        removed == (true, true) && again == (false, false) && !present,
        "remove {removed:?}, again {again:?}"
    );
    let left = ns.ip(&["-o", "addr", "show", "dev", "v0"])?;
    ensure!(
        !left.contains("10.61.0.10") && !left.contains("2001:db8:61::10"),
        "left: {left}"
    );

    // A missing interface is a typed error naming the address and device.
    let ghost = Vip::resolve(&va("10.61.0.11", 32), "nosuchdev")?;
    let err = in_ns(&ns, async || Addrs::new().unwrap().add(&ghost).await)?.unwrap_err();
    ensure!(matches!(err, AddrError::NoDevice { .. }), "{err}");
    ensure!(
        err.to_string().contains("10.61.0.11") && err.to_string().contains("nosuchdev"),
        "{err}"
    );
    Ok(())
}

/// An AF_PACKET socket receiving every frame on one interface.
fn capture(ifname: &str) -> Result<OwnedFd> {
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname)?;
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    ensure!(index != 0, "no interface {ifname}");
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = index as i32;
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    Ok(fd)
}

/// Frames received until `want` is among them or the deadline passes.
fn wait_for_frame(fd: &OwnedFd, want: &[u8], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 2048];
    let mut seen = 0;
    while Instant::now() < deadline {
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        seen += 1;
        // veth pads short frames to 60 bytes.
        let got = &buf[..n as usize];
        if got.len() >= want.len()
            && &got[..want.len()] == want
            && got[want.len()..].iter().all(|&b| b == 0)
        {
            return Ok(());
        }
    }
    bail!("frame not captured ({seen} others seen): {want:02x?}")
}

/// The client's entry for `ip` at an old MAC, as a cache before failover.
fn stale_neigh(client: &Netns, ip: &str) -> Result<()> {
    let old = "02:00:00:00:00:99";
    client.ip(&[
        "neigh", "replace", ip, "lladdr", old, "dev", "v1", "nud", "stale",
    ])?;
    Ok(())
}

fn neigh_has(ns: &Netns, ip: &str, mac: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let out = ns.ip(&["neigh", "show", ip, "dev", "v1"])?;
        if out.contains(mac) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("neighbour {ip} is {out:?}, not {mac}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn garp_and_unsolicited_na_reach_the_wire_and_the_client_cache() -> Result<()> {
    let (sender, client) = pair("garp")?;
    client.ip(&["addr", "add", "10.62.0.2/24", "dev", "v1"])?;
    client.ip(&["addr", "add", "2001:db8:62::2/64", "dev", "v1", "nodad"])?;
    // The client knows the VIPs at an old MAC; the announcements must move them.
    for ip in ["10.62.0.10", "2001:db8:62::10"] {
        stale_neigh(&client, ip)?;
    }
    let mac = [0x02, 0x62, 0, 0, 0, 0x01];
    let v4 = Ipv4Addr::new(10, 62, 0, 10);
    let v6: Ipv6Addr = "2001:db8:62::10".parse()?;
    let index = sender.ip(&["-o", "link", "show", "v0"])?;
    let index: u32 = index.split(':').next().context("ifindex")?.trim().parse()?;
    // Capture on the client's end while the sender announces.
    client.enter(|| -> Result<()> {
        let fd = capture("v1")?;
        sender.enter(|| announce::send(index, mac, &[IpAddr::V4(v4), IpAddr::V6(v6)]))??;
        wait_for_frame(&fd, &garp_frame(mac, v4), Duration::from_secs(2))?;
        wait_for_frame(&fd, &na_frame(mac, v6, false), Duration::from_secs(2))?;
        Ok(())
    })??;
    neigh_has(
        &client,
        "10.62.0.10",
        "02:62:00:00:00:01",
        Duration::from_secs(2),
    )?;
    neigh_has(
        &client,
        "2001:db8:62::10",
        "02:62:00:00:00:01",
        Duration::from_secs(2),
    )?;

    // A burst of 3 rounds: 3 frames per address.
    stale_neigh(&client, "10.62.0.10")?;
    let mac2 = [0x02, 0x62, 0, 0, 0, 0x02];
    let count = client.enter(|| -> Result<usize> {
        let fd = capture("v1")?;
        sender.enter(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(announce::send_burst(
                    index,
                    mac2,
                    &[IpAddr::V4(v4)],
                    3,
                    Duration::from_millis(10),
                ))
        })??;
        let want = garp_frame(mac2, v4);
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && n < 3 {
            if wait_for_frame(&fd, &want, deadline - Instant::now()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    })??;
    ensure!(count == 3, "{count} GARPs captured, want 3");
    neigh_has(
        &client,
        "10.62.0.10",
        "02:62:00:00:00:02",
        Duration::from_secs(2),
    )?;
    Ok(())
}

#[test]
fn use_vmac_macvlan_is_private_idempotent_and_removed() -> Result<()> {
    let (ns, _peer) = pair("vmac")?;
    let mut inst = load_str(
        "vrrp_instance VI {\n interface v0\n virtual_router_id 7\n use_vmac\n virtual_ipaddress {\n  10.63.0.1\n }\n}\n",
        "t.conf",
        &Default::default(),
    )
    .config
    .instances
    .remove(0);
    let spec = VmacSpec::from_config(&inst, false)?.context("use_vmac parsed")?;
    let (first, second) = in_ns(&ns, async || {
        let handle = netlink();
        (
            spec.ensure(&handle).await.unwrap(),
            spec.ensure(&handle).await.unwrap(),
        )
    })?;
    ensure!(
        first == second,
        "ensure twice gave ifindex {first} then {second}"
    );
    let link = ns.ip(&["-d", "-o", "link", "show", "vrrp.7"])?;
    ensure!(link.contains("link/ether 00:00:5e:00:01:07"), "{link}");
    ensure!(link.contains("macvlan mode private"), "{link}");
    ensure!(link.contains("vrrp.7@v0") && link.contains(",UP"), "{link}");
    let arp_ignore = ns.exec("cat", &["/proc/sys/net/ipv4/conf/v0/arp_ignore"])?;
    ensure!(
        String::from_utf8_lossy(&arp_ignore.stdout).trim() == "1",
        "parent arp_ignore not set"
    );

    // A VIP can go on it (what the driver does with use_vmac).
    let vip = Vip::resolve(&va("10.63.0.1", 24), &spec.name)?;
    ensure!(
        in_ns(&ns, async || Addrs::new().unwrap().add(&vip).await)??,
        "VIP not added on the VMAC"
    );

    let (removed, again) = in_ns(&ns, async || {
        let handle = netlink();
        (
            spec.remove(&handle).await.unwrap(),
            spec.remove(&handle).await.unwrap(),
        )
    })?;
    ensure!(removed && !again, "remove {removed}, again {again}");
    ensure!(
        ns.ip(&["link", "show", "vrrp.7"]).is_err(),
        "vrrp.7 still there"
    );

    // Someone else's interface of that name is left alone, with an error.
    ns.ip(&[
        "link", "add", "vrrp.8", "type", "veth", "peer", "name", "vrrp8p",
    ])?;
    inst.virtual_router_id = 8;
    inst.use_vmac = Some(Vmac {
        name: None,
        mac: None,
    });
    let other = VmacSpec::from_config(&inst, false)?.context("use_vmac")?;
    let err = in_ns(&ns, async || {
        let handle = netlink();
        other.ensure(&handle).await
    })?
    .unwrap_err();
    ensure!(matches!(err, VmacError::NameInUse { .. }), "{err}");
    ensure!(
        ns.ip(&["link", "show", "vrrp.8"]).is_ok(),
        "the other interface was touched"
    );
    Ok(())
}

/// Reads updates until every instance's latest one is as wanted.
async fn settle(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<TrackUpdate>,
    latest: &mut BTreeMap<String, Option<u8>>,
    want: &[(&str, Option<u8>)],
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !want.iter().all(|(i, p)| latest.get(*i) == Some(p)) {
        let u = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .with_context(|| format!("want {want:?}, have {latest:?}"))?
            .context("tracker ended")?;
        latest.insert(u.instance, u.priority);
    }
    Ok(())
}

fn config(text: &str) -> Config {
    let l = load_str(text, "t.conf", &Default::default());
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    l.config
}

#[test]
fn tracked_interfaces_fault_and_weight() -> Result<()> {
    let (ns, peer) = pair("trackif")?;
    // A tracks its own v0 (weight 0: FAULT when down); B tracks v0 with
    // weight -30 and not its primary interface.
    let cfg = config(
        "vrrp_instance A {\n interface v0\n virtual_router_id 1\n priority 100\n virtual_ipaddress {\n  10.64.0.1\n }\n}\n\
         vrrp_instance B {\n interface lo\n dont_track_primary\n virtual_router_id 2\n priority 100\n track_interface {\n  v0 weight -30\n }\n virtual_ipaddress {\n  10.64.0.2\n }\n}\n",
    );
    in_ns(&ns, async || -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tracking = Tracking::spawn(tx);
        tracking.set(Tracker::new(&cfg, InitFiles::Start)?).await;
        let mut latest = BTreeMap::new();
        settle(&mut rx, &mut latest, &[("A", Some(100)), ("B", Some(100))]).await?;
        // Carrier goes when the peer end goes down (the kernel's linkwatch
        // reports that up to 1 s later, to us as to keepalived).
        peer.ip(&["link", "set", "v1", "down"])?;
        settle(&mut rx, &mut latest, &[("A", None), ("B", Some(70))]).await?;
        peer.ip(&["link", "set", "v1", "up"])?;
        settle(&mut rx, &mut latest, &[("A", Some(100)), ("B", Some(100))]).await?;
        // Administratively down: the link event, not the 1 s poll, carries it.
        let t = Instant::now();
        ns.ip(&["link", "set", "v0", "down"])?;
        settle(&mut rx, &mut latest, &[("A", None), ("B", Some(70))]).await?;
        let took = t.elapsed();
        eprintln!("bench vrrp_track_link_down_ms={}", took.as_millis());
        ensure!(
            took < Duration::from_millis(500),
            "link down seen after {took:?}"
        );
        drop(tracking);
        Ok(())
    })??;
    Ok(())
}
