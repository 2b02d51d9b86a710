//! Checkers against real servers on 127.0.0.1, started by the tests and
//! killed on drop: nginx (HTTP_GET, SSL_GET, genhash), dnsmasq
//! (DNS_CHECK), a full listen backlog (connect_timeout) and a server that
//! accepts and then says nothing.

mod check_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use check_support::real::{Dnsmasq, Nginx};
use check_support::*;
use director::check::{CheckResult, genhash, http::md5_hex, run_check};
use director::config::{Check, DnsCheck, SmtpCheck};

const BODY: &[u8] = b"hello from nginx\n";

fn fail_reason(r: CheckResult) -> String {
    match r {
        CheckResult::Fail { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn get(ssl: bool, u: director::config::Url) -> director::config::Checker {
    let h = http(vec![u]);
    let mut c = checker(if ssl { Check::Ssl(h) } else { Check::Http(h) });
    c.common.connect_timeout = Duration::from_secs(3);
    c
}

fn with_digest(path: &str, digest: &str) -> director::config::Url {
    let mut u = url(path);
    u.digest = Some(digest.to_string());
    u
}

/// HTTP_GET and SSL_GET answer the same way over both of nginx's servers.
async fn status_and_digest(ssl: bool, nginx: &Nginx) {
    let at = if ssl { nginx.https } else { nginx.http };
    let good = md5_hex(BODY);
    assert_eq!(run_check(&get(ssl, with_digest("/index.html", &good)), at).await, CheckResult::ok());
    // `return 500;`
    let r = fail_reason(run_check(&get(ssl, url("/fail")), at).await);
    assert_eq!(r, "/fail status 500, expected 200-299");
    // Custom ranges are named as configured; accepting 500 passes.
    let mut u = url("/fail");
    u.status_code = vec![(200, 200), (301, 302)];
    let r = fail_reason(run_check(&get(ssl, u.clone()), at).await);
    assert_eq!(r, "/fail status 500, expected 200,301-302");
    u.status_code = vec![(500, 500)];
    assert_eq!(run_check(&get(ssl, u), at).await, CheckResult::ok());
    // A file that is not there.
    let r = fail_reason(run_check(&get(ssl, url("/missing.html")), at).await);
    assert_eq!(r, "/missing.html status 404, expected 200-299");
    // The served body's digest differs from the configured one: both named.
    let want = "0123456789abcdef0123456789abcdef";
    let r = fail_reason(run_check(&get(ssl, with_digest("/index.html", want)), at).await);
    assert!(r.contains(want) && r.contains(&good), "{r}");
    // The file changes on disk: the configured digest no longer matches.
    let other = nginx.root().join("other.html");
    std::fs::write(&other, BODY).unwrap();
    assert_eq!(run_check(&get(ssl, with_digest("/other.html", &good)), at).await, CheckResult::ok());
    std::fs::write(&other, b"changed\n").unwrap();
    let r = fail_reason(run_check(&get(ssl, with_digest("/other.html", &good)), at).await);
    assert!(r.contains(&md5_hex(b"changed\n")), "{r}");
}

#[tokio::test]
async fn nginx_http_get_status_500_and_digests() {
    let nginx = Nginx::start(&[("index.html", BODY)]);
    status_and_digest(false, &nginx).await;
}

#[tokio::test]
async fn nginx_ssl_get_self_signed_sni_status_500_and_digests() {
    let nginx = Nginx::start(&[("index.html", BODY)]);
    status_and_digest(true, &nginx).await;
    let u = with_digest("/index.html", &md5_hex(BODY));
    // SNI.
    let mut h = http(vec![u.clone()]);
    h.enable_sni = true;
    h.sni_name = Some("localhost".into());
    let mut c = get(true, u.clone());
    c.check = Check::Ssl(h.clone());
    assert_eq!(run_check(&c, nginx.https).await, CheckResult::ok());
    // verify_cert refuses the self-signed certificate.
    h.verify_cert = true;
    c.check = Check::Ssl(h);
    let r = fail_reason(run_check(&c, nginx.https).await);
    assert!(r.contains("TLS"), "{r}");
    // SSL_GET against the plain HTTP port fails the handshake.
    let r = fail_reason(run_check(&get(true, u), nginx.http).await);
    assert!(r.contains("TLS"), "{r}");
}

#[tokio::test]
async fn genhash_of_nginx_equals_md5sum_of_the_file() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let nginx = Nginx::start(&[("big.bin", &body)]);
    let out = std::process::Command::new("md5sum")
        .arg(nginx.root().join("big.bin"))
        .output()
        .unwrap();
    let sum = String::from_utf8(out.stdout).unwrap();
    let sum = sum.split_whitespace().next().unwrap().to_string();
    assert_eq!(genhash(nginx.http, "/big.bin", false, None).await.unwrap(), sum);
    assert_eq!(genhash(nginx.https, "/big.bin", true, Some("localhost")).await.unwrap(), sum);
}

fn dns(t: &str, name: &str) -> director::config::Checker {
    let mut c = checker(Check::Dns(DnsCheck {
        query_type: t.into(),
        name: name.into(),
    }));
    c.common.connect_timeout = Duration::from_secs(2);
    c
}

#[tokio::test]
async fn dnsmasq_dns_check_type_and_name() {
    let mut d = Dnsmasq::start(
        "test",
        &["--address=/svc.test/10.1.2.3", "--txt-record=svc.test,\"ok\""],
    );
    // dnsmasq binds within a moment: poll for its first answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run_check(&dns("A", "svc.test"), d.addr).await.is_ok() {
        d.assert_running();
        assert!(Instant::now() < deadline, "dnsmasq never answered on {}", d.addr);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(run_check(&dns("TXT", "svc.test"), d.addr).await, CheckResult::ok());
    // The name exists, but not with that type: NOERROR without an answer.
    assert_eq!(
        run_check(&dns("AAAA", "svc.test"), d.addr).await,
        CheckResult::fail("no answer")
    );
    // A name that does not resolve.
    assert_eq!(
        run_check(&dns("A", "nope.test"), d.addr).await,
        CheckResult::fail("rcode 3")
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs,
/// so a connect hangs until the checker's connect_timeout.
fn full_backlog() -> (socket2::Socket, Vec<std::net::TcpStream>, SocketAddr) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (backlog 0 holds one); stop at the first that hangs.
    let mut held = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        held.push(s);
        assert!(held.len() < 8, "the backlog never filled");
    }
    (l, held, addr)
}

#[tokio::test]
async fn tcp_check_honours_connect_timeout_when_syns_are_dropped() {
    let (_l, _held, addr) = full_backlog();
    let mut c = tcp();
    c.common.connect_timeout = Duration::from_millis(700);
    let t = Instant::now();
    let r = fail_reason(run_check(&c, addr).await);
    let took = t.elapsed();
    assert_eq!(r, "connect failed: timed out");
    assert!(took >= Duration::from_millis(690) && took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn silent_server_times_out_ssl_get_and_smtp_check() {
    // Accepts (the kernel completes the handshake), never says a word.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut smtp = checker(Check::Smtp(SmtpCheck { helo_name: None }));
    let mut ssl = get(true, url("/"));
    for c in [&mut smtp, &mut ssl] {
        c.common.connect_timeout = Duration::from_millis(500);
        let t = Instant::now();
        let r = fail_reason(run_check(c, addr).await);
        let took = t.elapsed();
        assert!(r.contains("timed out"), "{r}");
        assert!(took >= Duration::from_millis(490) && took < Duration::from_secs(3), "{took:?}");
    }
    drop(l);
}
