//! Every read a checker makes from a real server is bounded: hostile
//! servers on 127.0.0.1 that never end a line, a reply, the headers or the
//! body. Each check fails at its bound, saying which, well within its
//! timeout, having read little, and without holding back the timers of the
//! thread it runs on (the daemon's runtime is single-threaded, as the test's
//! is). DNS_CHECK reads one datagram into 4096 bytes and skips strays only
//! until its timeout. FILE_CHECK's hostile files are in check::file's unit
//! tests.

mod check_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use check_support::*;
use director::check::{CheckResult, http::md5_hex, run_check};
use director::config::{Check, Checker, DnsCheck, SmtpCheck, Url};

/// Runs `c` against `addr` while a task on the same thread ticks every
/// millisecond, as the daemon's timers do; returns the result, how long it
/// took and the longest gap between ticks.
async fn run(c: &Checker, addr: std::net::SocketAddr) -> (CheckResult, Duration, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                gap = gap.max(last.elapsed());
                last = Instant::now();
            }
            gap
        }
    });
    let t = Instant::now();
    let r = run_check(c, addr).await;
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    (r, took, ticker.await.unwrap())
}

/// Well under the checkers' 5 s timeout.
const QUICK: Duration = Duration::from_secs(2);
/// What one check may read plus what loopback socket buffers hold.
const FEW_MIB: usize = 32 << 20;
/// Timers late by more than this were held back by the check.
const TIMER_SLACK: Duration = Duration::from_millis(100);

fn smtp() -> Checker {
    checker(Check::Smtp(SmtpCheck { helo_name: None }))
}

#[tokio::test]
async fn smtp_an_endless_greeting_line_fails_at_the_line_bound() {
    let (addr, sent) = flood(b"220 ", b"x", 64 << 20).await;
    let (r, took, gap) = run(&smtp(), addr).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < FEW_MIB, "the server got {sent} bytes out");
    assert_eq!(r, CheckResult::fail("reply line longer than 4096 bytes"));
    assert!(took < QUICK, "took {took:?}");
    assert!(gap < TIMER_SLACK, "timers held back {gap:?}");
}

#[tokio::test]
async fn smtp_an_endless_multi_line_reply_fails_at_the_line_count() {
    let (addr, _) = flood(b"", b"220-more\r\n", 64 << 20).await;
    let (r, took, _) = run(&smtp(), addr).await;
    assert_eq!(r, CheckResult::fail("reply longer than 100 lines"));
    assert!(took < QUICK, "took {took:?}");
}

fn http_get(digest: Option<String>, regex: Option<&str>) -> Checker {
    let u = Url {
        digest,
        regex: regex.map(Into::into),
        ..url("/")
    };
    checker(Check::Http(http(vec![u])))
}

const ANY_DIGEST: &str = "00000000000000000000000000000000";

#[tokio::test]
async fn http_an_endless_body_stops_at_the_body_bound() {
    let (addr, sent) = flood(b"HTTP/1.0 200 OK\r\n\r\n", b"x", 256 << 20).await;
    let (r, took, gap) = run(&http_get(Some(ANY_DIGEST.into()), None), addr).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < FEW_MIB, "the server got {sent} bytes out");
    assert_eq!(r, CheckResult::fail("/ bad response: body longer than 4194304 bytes"));
    assert!(took < QUICK, "took {took:?}");
    assert!(gap < TIMER_SLACK, "timers held back {gap:?}");
}

#[tokio::test]
async fn http_an_oversized_content_length_fails_before_the_body_is_read() {
    let (addr, sent) =
        flood(b"HTTP/1.0 200 OK\r\nContent-Length: 62914560\r\n\r\n", b"x", 60 << 20).await;
    let (r, _, gap) = run(&http_get(Some(ANY_DIGEST.into()), None), addr).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(gap < TIMER_SLACK, "timers held back {gap:?}");
    assert!(sent < FEW_MIB, "the server got {sent} bytes out");
    assert_eq!(
        r,
        CheckResult::fail("/ bad response: Content-Length 62914560 is over the 4194304-byte limit")
    );
}

#[tokio::test]
async fn http_endless_headers_stop_at_the_head_bound() {
    let (addr, sent) = flood(b"HTTP/1.0 200 OK\r\n", b"X-Filler: y\r\n", 256 << 20).await;
    let (r, took, _) = run(&http_get(None, None), addr).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < FEW_MIB, "the server got {sent} bytes out");
    assert_eq!(r, CheckResult::fail("/ bad response: headers longer than 65536 bytes"));
    assert!(took < QUICK, "took {took:?}");
}

#[tokio::test]
async fn http_a_body_at_the_bound_is_digested_as_it_arrives_and_matched_off_thread() {
    let (addr, _) =
        flood(b"HTTP/1.0 200 OK\r\nContent-Length: 4194304\r\n\r\n", b"x", 4 << 20).await;
    let want = md5_hex(&vec![b'x'; 4 << 20]);
    let (r, _, gap) = run(&http_get(Some(want), Some("x{64}$")), addr).await;
    assert_eq!(r, CheckResult::ok());
    assert!(gap < TIMER_SLACK, "timers held back {gap:?}");
}

fn dns() -> Checker {
    let mut c = checker(Check::Dns(DnsCheck {
        query_type: "A".into(),
        name: "example.com".into(),
    }));
    c.common.connect_timeout = Duration::from_millis(500);
    c
}

/// A reply to `query` with `id`: a response, RCODE 0, one answer, padded
/// to `len` bytes.
fn dns_reply(query: &[u8], id: u16, len: usize) -> Vec<u8> {
    let mut r = query.to_vec();
    r[..2].copy_from_slice(&id.to_be_bytes());
    r[2..4].copy_from_slice(&0x8180u16.to_be_bytes());
    r[6..8].copy_from_slice(&1u16.to_be_bytes());
    r.resize(len, 0);
    r
}

#[tokio::test]
async fn dns_an_oversized_reply_is_judged_from_its_head() {
    // 60000 bytes, of which the checker reads 4096.
    let addr = udp_server(|q| vec![dns_reply(q, u16::from_be_bytes([q[0], q[1]]), 60000)]).await;
    assert_eq!(run_check(&dns(), addr).await, CheckResult::ok());
}

#[tokio::test]
async fn dns_a_flood_of_stray_replies_ends_at_the_timeout() {
    let addr = udp_server(|q| {
        let stray = u16::from_be_bytes([q[0], q[1]]) ^ 1;
        vec![dns_reply(q, stray, 512); 2000]
    })
    .await;
    let (r, took, gap) = run(&dns(), addr).await;
    assert_eq!(r, CheckResult::fail("timed out after 500ms"));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert!(gap < TIMER_SLACK, "timers held back {gap:?}");
}
