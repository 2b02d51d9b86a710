//! UDP_CHECK, DNS_CHECK, PING_CHECK and SMTP_CHECK against 127.0.0.1.

mod check_support;

use std::net::SocketAddr;
use std::time::Duration;

use check_support::*;
use director::check::{CheckResult, run_check};
use director::config::{Check, DnsCheck, SmtpCheck, UdpCheck};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

fn udp_check(
    payload: Option<&str>,
    require_reply: bool,
    pattern: Option<&str>,
) -> director::config::Checker {
    let mut c = checker(Check::Udp(UdpCheck {
        payload: payload.map(str::to_string),
        require_reply,
        reply_pattern: pattern.map(str::to_string),
        min_reply_length: 0,
        max_reply_length: 0,
    }));
    c.common.connect_timeout = Duration::from_millis(300);
    c
}

async fn free_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn udp_echo_with_pattern() {
    let addr = udp_server(|d| vec![d.to_vec()]).await;
    let c = udp_check(Some("de ad be ef"), true, Some("deXdb"));
    assert_eq!(run_check(&c, addr).await, CheckResult::ok());
    let c = udp_check(Some("deadbeef"), true, Some("00"));
    assert!(
        matches!(run_check(&c, addr).await, CheckResult::Fail { reason } if reason.contains("does not match"))
    );
}

#[tokio::test]
async fn udp_unreachable_and_silent() {
    let closed = free_udp_port().await;
    let r = run_check(&udp_check(Some("00"), false, None), closed).await;
    assert_eq!(r, CheckResult::fail("port unreachable"));
    // A silent server: fine without require_reply, a failure with it.
    let silent = udp_server(|_| vec![]).await;
    assert_eq!(
        run_check(&udp_check(Some("00"), false, None), silent).await,
        CheckResult::ok()
    );
    let r = run_check(&udp_check(Some("00"), true, None), silent).await;
    assert!(
        matches!(r, CheckResult::Fail { ref reason } if reason.contains("no reply")),
        "{r:?}"
    );
}

fn dns_check(t: &str) -> director::config::Checker {
    let mut c = checker(Check::Dns(DnsCheck {
        query_type: t.into(),
        name: "example.com".into(),
    }));
    c.common.connect_timeout = Duration::from_millis(500);
    c
}

/// Answers, types and names are checked against dnsmasq in check_real.
#[tokio::test]
async fn dns_silent_server_times_out() {
    let silent = udp_server(|_| vec![]).await;
    let r = run_check(&dns_check("A"), silent).await;
    assert!(
        matches!(r, CheckResult::Fail { ref reason } if reason.contains("timed out")),
        "{r:?}"
    );
}

#[tokio::test]
async fn ping_loopback() {
    let mut c = checker(Check::Ping);
    c.common.connect_timeout = Duration::from_secs(2);
    let r = run_check(&c, "127.0.0.1:0".parse().unwrap()).await;
    if let CheckResult::Fail { reason } = &r
        && (reason.contains("Operation not permitted") || reason.contains("Permission denied"))
    {
        eprintln!("no ICMP socket allowed here: skipped ({reason})");
        return;
    }
    assert_eq!(r, CheckResult::ok());
}

async fn smtp_server(
    greeting: &'static str,
    helo_reply: &'static str,
) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let mut got = Vec::new();
        w.write_all(greeting.as_bytes()).await.unwrap();
        let mut line = String::new();
        while r.read_line(&mut line).await.unwrap_or(0) > 0 {
            got.push(line.clone());
            if line.starts_with("HELO") {
                let _ = w.write_all(helo_reply.as_bytes()).await;
            } else if line.starts_with("QUIT") {
                let _ = w.write_all(b"221 bye\r\n").await;
                break;
            }
            line.clear();
        }
        got
    });
    (addr, h)
}

#[tokio::test]
async fn smtp_helo() {
    let (addr, h) = smtp_server("220-mx ready\r\n220 ESMTP\r\n", "250 hello\r\n").await;
    let mut c = checker(Check::Smtp(SmtpCheck {
        helo_name: Some("lb.example.com".into()),
    }));
    c.common.connect_timeout = Duration::from_secs(2);
    assert_eq!(run_check(&c, addr).await, CheckResult::ok());
    let got = tokio::time::timeout(Duration::from_secs(2), h)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        vec![
            "HELO lb.example.com\r\n".to_string(),
            "QUIT\r\n".to_string()
        ]
    );

    let (addr, _h) = smtp_server("554 go away\r\n", "").await;
    assert_eq!(
        run_check(&c, addr).await,
        CheckResult::fail("greeting 554, expected 220")
    );
}
