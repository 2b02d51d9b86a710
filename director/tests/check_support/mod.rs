//! Helpers shared by the check_* tests.
#![allow(dead_code)]

pub mod real;

use std::time::Duration;

use director::config::{Check, CheckCommon, Checker, HttpCheck, MiscCheck, Script, Url};

pub fn common() -> CheckCommon {
    CheckCommon {
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_if: None,
        bind_port: None,
        fwmark: None,
        connect_timeout: Duration::from_secs(5),
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        delay_loop: Duration::from_secs(6),
        warmup: None,
        alpha: false,
        log_all_failures: false,
    }
}

pub fn checker(check: Check) -> Checker {
    Checker {
        common: common(),
        check,
    }
}

pub fn tcp() -> Checker {
    checker(Check::Tcp)
}

pub fn url(path: &str) -> Url {
    Url {
        path: path.to_string(),
        digest: None,
        status_code: vec![(200, 299)],
        virtualhost: None,
        regex: None,
        regex_no_match: false,
    }
}

pub fn http(urls: Vec<Url>) -> HttpCheck {
    HttpCheck {
        urls,
        ..Default::default()
    }
}

pub fn misc(cmd: &str, dynamic: bool, timeout: Option<Duration>) -> Checker {
    let mut c = checker(Check::Misc(MiscCheck {
        misc_path: Some(Script {
            command: cmd.to_string(),
            argv: cmd.split(' ').map(str::to_string).collect(),
            run_as: None,
        }),
        misc_timeout: timeout,
        misc_dynamic: dynamic,
        script_security: false,
    }));
    c.common.retry = 0;
    c
}

/// A hostile server on 127.0.0.1: it answers one connection with `prefix`,
/// then `filler` over and over until `cap` bytes or the peer goes, and then
/// holds the connection until the peer closes it. Returns its address and
/// the bytes written so far (what the peer read plus what the socket
/// buffers took).
pub async fn flood(
    prefix: &'static [u8],
    filler: &'static [u8],
    cap: usize,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&sent);
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let block = filler.repeat(65536 / filler.len());
        let mut next: &[u8] = prefix;
        while counter.load(Ordering::Relaxed) < cap && s.write_all(next).await.is_ok() {
            counter.fetch_add(next.len(), Ordering::Relaxed);
            next = &block;
        }
        // Only the client may end the exchange: its bound, not our close.
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    (addr, sent)
}

/// A UDP server on 127.0.0.1 that answers each datagram with the
/// datagrams `f(datagram)` returns (none: silence).
pub async fn udp_server(f: impl Fn(&[u8]) -> Vec<Vec<u8>> + Send + 'static) -> std::net::SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            for r in f(&buf[..n]) {
                let _ = s.send_to(&r, from).await;
            }
        }
    });
    addr
}
