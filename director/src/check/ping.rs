//! PING_CHECK: one ICMP echo to the real server within `connect_timeout`.
//!
//! Uses an unprivileged ICMP datagram socket ("ping socket") when
//! `net.ipv4.ping_group_range` allows it, else a raw socket (root /
//! CAP_NET_RAW).

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::state::CheckResult;
use crate::config::Checker;

static SEQ: AtomicU16 = AtomicU16::new(1);

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += w as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one echo request to `ip` and waits for its reply.
pub async fn ping(
    ip: IpAddr,
    bind: Option<IpAddr>,
    timeout: std::time::Duration,
) -> io::Result<()> {
    let v6 = ip.is_ipv6();
    let (domain, proto) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (sock, raw) = match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => (s, false),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            (Socket::new(domain, Type::RAW, Some(proto))?, true)
        }
        Err(e) => return Err(e),
    };
    sock.set_nonblocking(true)?;
    if let Some(b) = bind {
        sock.bind(&SockAddr::from(SocketAddr::new(b, 0)))?;
    }
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"director-ping\0\0\0");
    if !v6 {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    // SAFETY: `sock` owns its descriptor; AsyncFd keeps it until dropped.
    let fd = unsafe { AsyncFd::register(sock)? };
    let dst = SockAddr::from(SocketAddr::new(ip, 0));
    let run = async {
        loop {
            let mut g = fd.writable().await?;
            match g.try_io(|s| s.get_ref().send_to(&pkt, &dst)) {
                Ok(r) => {
                    r?;
                    break;
                }
                Err(_would_block) => continue,
            }
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        loop {
            let mut g = fd.readable().await?;
            let (n, from) = match g.try_io(|s| s.get_ref().recv_from(&mut buf)) {
                Ok(r) => r?,
                Err(_would_block) => continue,
            };
            // SAFETY: recv_from initialised the first n bytes.
            let data: &[u8] = unsafe { std::slice::from_raw_parts(buf.as_ptr() as *const u8, n) };
            if from.as_socket().map(|a| a.ip()) != Some(ip) {
                continue;
            }
            // Raw IPv4 sockets deliver the IP header too.
            let icmp = if raw && !v6 {
                let ihl = ((data.first().copied().unwrap_or(0) & 0xf) as usize) * 4;
                data.get(ihl..).unwrap_or(&[])
            } else {
                data
            };
            if icmp.len() < 8 || icmp[0] != if v6 { 129 } else { 0 } {
                continue;
            }
            // Ping sockets rewrite the id; raw sockets see everyone's replies.
            if raw && u16::from_be_bytes([icmp[4], icmp[5]]) != id {
                continue;
            }
            if u16::from_be_bytes([icmp[6], icmp[7]]) == seq {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

/// Runs one PING_CHECK against real server `rs`.
pub async fn check(c: &Checker, rs: SocketAddr) -> CheckResult {
    let ip = c.common.connect_ip.unwrap_or(rs.ip());
    match ping(ip, c.common.bindto, c.common.connect_timeout).await {
        Ok(()) => CheckResult::ok(),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => CheckResult::fail(format!(
            "no echo reply within {:?}",
            c.common.connect_timeout
        )),
        Err(e) => CheckResult::fail(format!("echo failed: {e}")),
    }
}
