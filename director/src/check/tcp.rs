//! TCP_CHECK: a connect within `connect_timeout`; the connection is reset
//! at once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use super::state::CheckResult;
use crate::config::{CheckCommon, Checker};

/// Where a checker connects: `connect_ip`/`connect_port`, else the real server's.
pub fn target_addr(common: &CheckCommon, rs: SocketAddr) -> SocketAddr {
    SocketAddr::new(
        common.connect_ip.unwrap_or(rs.ip()),
        common.connect_port.unwrap_or(rs.port()),
    )
}

/// Connects to `addr` honouring bindto / bind_port / bind_if / fwmark, within `timeout`.
pub async fn connect(
    common: &CheckCommon,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(dev) = &common.bind_if {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = common.fwmark {
        socket2::SockRef::from(&sock).set_mark(mark)?;
    }
    if common.bindto.is_some() || common.bind_port.is_some() {
        let ip = common.bindto.unwrap_or(match addr {
            SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        if common.bind_port.is_some() {
            sock.set_reuseaddr(true)?;
        }
        sock.bind(SocketAddr::new(ip, common.bind_port.unwrap_or(0)))?;
    }
    match tokio::time::timeout(timeout, sock.connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
    }
}

/// Describes a connect error the way the reasons read ("connection refused", "timed out").
pub fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::TimedOut => "timed out".to_string(),
        _ => e.to_string(),
    }
}

/// Runs one TCP_CHECK against real server `rs`.
pub async fn check(c: &Checker, rs: SocketAddr) -> CheckResult {
    let addr = target_addr(&c.common, rs);
    match connect(&c.common, addr, c.common.connect_timeout).await {
        Ok(s) => {
            // Close with RST (SO_LINGER 0), as HAProxy's checks do: the
            // verdict is the connect alone, and a reset spares both ends
            // the FIN exchange and us a TIME_WAIT per check.
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
            CheckResult::ok()
        }
        Err(e) => CheckResult::fail(format!("connect failed: {}", io_reason(&e))),
    }
}
