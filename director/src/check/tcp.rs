//! TCP_CHECK: a connect within `connect_timeout`; the connection is reset
//! at once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;

use super::state::CheckResult;
use crate::config::{CheckCommon, Checker};

/// Where a checker connects: `connect_ip`/`connect_port`, else the real server's.
pub fn target_addr(common: &CheckCommon, rs: SocketAddr) -> SocketAddr {
    SocketAddr::new(
        common.connect_ip.unwrap_or(rs.ip()),
        common.connect_port.unwrap_or(rs.port()),
    )
}

/// Starts a non-blocking connect to `addr` honouring bindto / bind_port /
/// bind_if / fwmark. Returns the socket and whether it is already
/// connected: towards loopback or a local server the kernel completes the
/// handshake inside connect(2), and then no poller is needed.
fn start_connect(common: &CheckCommon, addr: SocketAddr) -> io::Result<(Socket, bool)> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if let Some(dev) = &common.bind_if {
        sock.bind_device(Some(dev.as_bytes()))?;
    }
    if let Some(mark) = common.fwmark {
        sock.set_mark(mark)?;
    }
    if common.bindto.is_some() || common.bind_port.is_some() {
        let ip = common.bindto.unwrap_or(match addr {
            SocketAddr::V4(_) => IpAddr::from([0u8; 4]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        });
        if common.bind_port.is_some() {
            sock.set_reuse_address(true)?;
        }
        sock.bind(&SocketAddr::new(ip, common.bind_port.unwrap_or(0)).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => Ok((sock, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let done = sock.peer_addr().is_ok();
            Ok((sock, done))
        }
        Err(e) => Err(e),
    }
}

/// Waits for a connect in progress: writable, then its error if any.
async fn finish_connect(sock: Socket) -> io::Result<TcpStream> {
    let s = TcpStream::from_std(sock.into())?;
    s.writable().await?;
    match s.take_error()? {
        Some(e) => Err(e),
        None => Ok(s),
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out")
}

/// Connects to `addr` honouring bindto / bind_port / bind_if / fwmark, within `timeout`.
pub async fn connect(
    common: &CheckCommon,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let (sock, _) = start_connect(common, addr)?;
    match tokio::time::timeout(timeout, finish_connect(sock)).await {
        Ok(r) => r,
        Err(_) => Err(timed_out()),
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
    let connected = match start_connect(&c.common, addr) {
        Ok((sock, true)) => {
            reset(&sock);
            Ok(())
        }
        Ok((sock, false)) => {
            match tokio::time::timeout(c.common.connect_timeout, finish_connect(sock)).await {
                Ok(Ok(s)) => {
                    reset(&s);
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(timed_out()),
            }
        }
        Err(e) => Err(e),
    };
    match connected {
        Ok(()) => CheckResult::ok(),
        Err(e) => CheckResult::fail(format!("connect failed: {}", io_reason(&e))),
    }
}

/// Makes the coming close send RST (SO_LINGER 0), as HAProxy's checks do:
/// the verdict is the connect alone, and a reset spares both ends the FIN
/// exchange and us a TIME_WAIT per check.
fn reset(s: &impl std::os::fd::AsFd) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}
