//! UDP_CHECK: send `payload` to the port; with `require_reply`, a reply
//! (of `min_reply_length..=max_reply_length` bytes, matching
//! `reply_pattern`) must arrive within `connect_timeout`; without it, the
//! check fails only when the port is unreachable (ICMP, seen as
//! ECONNREFUSED on the connected socket).

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use super::state::CheckResult;
use super::tcp::target_addr;
use crate::config::{Checker, UdpCheck};

/// Parses keepalived's free-form hex (whitespace ignored) into bytes.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    digits
        .chunks(2)
        .map(|p| {
            u8::from_str_radix(std::str::from_utf8(p).unwrap_or("zz"), 16)
                .map_err(|_| format!("bad hex {s:?}"))
        })
        .collect()
}

/// Whether `data` starts with `pattern` (hex nibbles, `X`/`x` = any nibble).
pub fn matches_pattern(pattern: &str, data: &[u8]) -> bool {
    let nibbles: Vec<u8> = pattern
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    for (i, p) in nibbles.iter().enumerate() {
        let Some(byte) = data.get(i / 2) else {
            return false;
        };
        let n = if i % 2 == 0 { byte >> 4 } else { byte & 0xf };
        if *p == b'X' || *p == b'x' {
            continue;
        }
        match (*p as char).to_digit(16) {
            Some(d) if d as u8 == n => {}
            _ => return false,
        }
    }
    true
}

/// Runs one UDP_CHECK against real server `rs`.
pub async fn check(c: &Checker, u: &UdpCheck, rs: SocketAddr) -> CheckResult {
    let addr = target_addr(&c.common, rs);
    let payload = match u.payload.as_deref().map(parse_hex).transpose() {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return CheckResult::fail(e),
    };
    let bind_ip = c.common.bindto.unwrap_or(match addr {
        SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
        SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
    });
    let run = async {
        let sock =
            UdpSocket::bind(SocketAddr::new(bind_ip, c.common.bind_port.unwrap_or(0))).await?;
        if let Some(dev) = &c.common.bind_if {
            socket2::SockRef::from(&sock).bind_device(Some(dev.as_bytes()))?;
        }
        if let Some(mark) = c.common.fwmark {
            socket2::SockRef::from(&sock).set_mark(mark)?;
        }
        sock.connect(addr).await?;
        sock.send(&payload).await?;
        let mut buf = vec![0u8; 65536];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, io::Error>(buf)
    };
    match tokio::time::timeout(c.common.connect_timeout, run).await {
        Err(_) if u.require_reply => {
            CheckResult::fail(format!("no reply within {:?}", c.common.connect_timeout))
        }
        Err(_) => CheckResult::ok(),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            CheckResult::fail("port unreachable")
        }
        Ok(Err(e)) => CheckResult::fail(e.to_string()),
        Ok(Ok(reply)) => {
            if !u.require_reply {
                return CheckResult::ok();
            }
            let len = reply.len() as u32;
            if len < u.min_reply_length || (u.max_reply_length > 0 && len > u.max_reply_length) {
                return CheckResult::fail(format!(
                    "reply of {len} bytes, expected {}..={}",
                    u.min_reply_length, u.max_reply_length
                ));
            }
            match &u.reply_pattern {
                Some(p) if !matches_pattern(p, &reply) => {
                    CheckResult::fail(format!("reply does not match {p}"))
                }
                _ => CheckResult::ok(),
            }
        }
    }
}
