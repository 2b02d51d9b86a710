//! DNS_CHECK: one query (`type`, `name`) over UDP; the reply must carry our
//! id, be a response with RCODE 0 and at least one answer, within
//! `connect_timeout`.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;

use super::state::CheckResult;
use super::tcp::target_addr;
use crate::config::{Checker, DnsCheck};

/// The numeric RR type of keepalived's DNS_CHECK `type` names.
pub fn qtype(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        _ => return None,
    })
}

/// A query packet: header (RD set), one question of class IN.
pub fn build_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut p = Vec::with_capacity(32 + name.len());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    p.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    p.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        if label.len() > 63 {
            return Err(format!("label too long in {name:?}"));
        }
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes()); // IN
    Ok(p)
}

/// Judges a reply to query `id`.
pub fn judge_reply(id: u16, r: &[u8]) -> Result<(), String> {
    if r.len() < 12 {
        return Err("short reply".into());
    }
    if u16::from_be_bytes([r[0], r[1]]) != id {
        return Err("reply id mismatch".into());
    }
    let flags = u16::from_be_bytes([r[2], r[3]]);
    if flags & 0x8000 == 0 {
        return Err("reply is not a response".into());
    }
    let rcode = flags & 0xf;
    if rcode != 0 {
        return Err(format!("rcode {rcode}"));
    }
    if u16::from_be_bytes([r[6], r[7]]) == 0 {
        return Err("no answer".into());
    }
    Ok(())
}

/// Runs one DNS_CHECK against real server `rs`.
pub async fn check(c: &Checker, d: &DnsCheck, rs: SocketAddr) -> CheckResult {
    let addr = target_addr(&c.common, rs);
    let Some(t) = qtype(&d.query_type) else {
        return CheckResult::fail(format!("unknown type {}", d.query_type));
    };
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id()) as u16;
    let q = match build_query(id, &d.name, t) {
        Ok(q) => q,
        Err(e) => return CheckResult::fail(e),
    };
    let bind_ip = c.common.bindto.unwrap_or(match addr {
        SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
        SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
    });
    let run = async {
        let sock = UdpSocket::bind(SocketAddr::new(bind_ip, c.common.bind_port.unwrap_or(0)))
            .await
            .map_err(|e| e.to_string())?;
        sock.connect(addr).await.map_err(|e| e.to_string())?;
        sock.send(&q).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await.map_err(|e| {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    "port unreachable".to_string()
                } else {
                    e.to_string()
                }
            })?;
            // A stray datagram with another id is skipped.
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) != id {
                continue;
            }
            return judge_reply(id, &buf[..n]);
        }
    };
    match tokio::time::timeout(c.common.connect_timeout, run).await {
        Ok(Ok(())) => CheckResult::ok(),
        Ok(Err(e)) => CheckResult::fail(e),
        Err(_) => CheckResult::fail(format!("timed out after {:?}", c.common.connect_timeout)),
    }
}
