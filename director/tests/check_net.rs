//! TCP_CHECK, HTTP_GET and genhash against hand-written servers on
//! 127.0.0.1 that record the requests they get (their exact bytes); the
//! same checkers against nginx are in check_real.

mod check_support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use check_support::*;
use director::check::{CheckResult, genhash, http::md5_hex, run_check};
use director::config::Check;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Reply {
    Respond(u16, Vec<u8>),
    Hang,
}

/// A tiny HTTP server: answers every connection with `reply`, records requests.
struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn serve_conn<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    reply: Reply,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    requests
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf).into_owned());
    match reply {
        Reply::Respond(status, body) => {
            let head = format!(
                "HTTP/1.0 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        }
        Reply::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
    }
}

async fn server(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let r2 = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (reply, reqs, tls) = (reply.clone(), r2.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            serve_conn(s, reply, reqs).await
                        }
                    }
                    None => serve_conn(s, reply, reqs).await,
                }
            });
        }
    });
    Server { addr, requests }
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.signing_key.serialize_der(),
    ));
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// A port with nothing listening: bind, then drop the listener.
async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

fn fail_reason(r: CheckResult) -> String {
    match r {
        CheckResult::Fail { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

const BODY: &[u8] = b"hello from the real server\n";

// ---- TCP_CHECK ----

#[tokio::test]
async fn tcp_listening_port_is_up() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // Never accepted: a connect-only check still succeeds (backlog).
    assert_eq!(run_check(&tcp(), addr).await, CheckResult::ok());
    // connect_port overrides the real server's port.
    let mut c = tcp();
    c.common.connect_port = Some(addr.port());
    assert_eq!(
        run_check(&c, "127.0.0.1:1".parse().unwrap()).await,
        CheckResult::ok()
    );
    drop(l);
}

#[tokio::test]
async fn tcp_accepting_port_is_up() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    let mut c = tcp();
    c.common.bindto = Some("127.0.0.1".parse().unwrap());
    assert_eq!(run_check(&c, addr).await, CheckResult::ok());
}

#[tokio::test]
async fn tcp_refused_port_is_down() {
    let addr = free_port().await;
    let r = fail_reason(run_check(&tcp(), addr).await);
    assert!(r.contains("refused"), "{r}");
}

// ---- HTTP_GET ----

fn http_checker(u: director::config::Url) -> director::config::Checker {
    let mut c = checker(Check::Http(http(vec![u])));
    c.common.connect_timeout = Duration::from_secs(2);
    c
}

#[tokio::test]
async fn http_200_digest_matches() {
    let srv = server(Reply::Respond(200, BODY.to_vec()), None).await;
    let mut u = url("/index.html");
    u.digest = Some(md5_hex(BODY));
    assert_eq!(
        run_check(&http_checker(u), srv.addr).await,
        CheckResult::ok()
    );
    let req = srv.requests.lock().unwrap()[0].clone();
    assert_eq!(
        req,
        format!(
            "GET /index.html HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{}\r\n\r\n",
            srv.addr.port()
        )
    );
}

#[tokio::test]
async fn http_regex() {
    let srv = server(Reply::Respond(200, BODY.to_vec()), None).await;
    let mut u = url("/");
    u.regex = Some("real\\s+server".into());
    assert_eq!(
        run_check(&http_checker(u.clone()), srv.addr).await,
        CheckResult::ok()
    );
    u.regex_no_match = true;
    let r = fail_reason(run_check(&http_checker(u.clone()), srv.addr).await);
    assert!(r.contains("regex_no_match"), "{r}");
    u.regex = Some("^maintenance".into());
    assert_eq!(
        run_check(&http_checker(u.clone()), srv.addr).await,
        CheckResult::ok()
    );
    u.regex_no_match = false;
    let r = fail_reason(run_check(&http_checker(u), srv.addr).await);
    assert!(r.contains("does not match"), "{r}");
}

#[tokio::test]
async fn http_hanging_server_times_out() {
    let srv = server(Reply::Hang, None).await;
    let mut c = http_checker(url("/"));
    c.common.connect_timeout = Duration::from_millis(300);
    let t = Instant::now();
    let r = fail_reason(run_check(&c, srv.addr).await);
    let took = t.elapsed();
    assert!(r.contains("timed out"), "{r}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn http_virtualhost_and_protocols() {
    let srv = server(Reply::Respond(200, BODY.to_vec()), None).await;
    let mut h = http(vec![url("/a")]);
    h.virtualhost = Some("www.example.com".into());
    h.http_protocol = Some("1.1".into());
    let mut c = checker(Check::Http(h.clone()));
    assert_eq!(run_check(&c, srv.addr).await, CheckResult::ok());
    // A url's own virtualhost wins; 1.0C adds Connection: close.
    let mut u = url("/b");
    u.virtualhost = Some("b.example.com".into());
    h.urls = vec![u];
    h.http_protocol = Some("1.0C".into());
    c.check = Check::Http(h);
    assert_eq!(run_check(&c, srv.addr).await, CheckResult::ok());
    let reqs = srv.requests.lock().unwrap().clone();
    assert_eq!(
        reqs[0],
        "GET /a HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: www.example.com\r\n\r\n"
    );
    assert_eq!(
        reqs[1],
        "GET /b HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\nHost: b.example.com\r\n\r\n"
    );
}

#[tokio::test]
async fn http_refused_is_down() {
    let addr = free_port().await;
    let r = fail_reason(run_check(&http_checker(url("/")), addr).await);
    assert!(r.contains("refused"), "{r}");
}

// ---- genhash ----

/// The request genhash sends (the digest itself is checked against nginx
/// and md5sum in check_real).
#[tokio::test]
async fn genhash_requests() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let srv = server(Reply::Respond(200, body.clone()), None).await;
    let h = genhash(srv.addr, "/big", false, None).await.unwrap();
    assert_eq!(h, md5_hex(&body));
    assert_eq!(
        srv.requests.lock().unwrap()[0],
        format!(
            "GET /big HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{}\r\n\r\n",
            srv.addr.port()
        )
    );
    // Over TLS, with a virtual host.
    let tsrv = server(Reply::Respond(200, body.clone()), Some(tls_acceptor())).await;
    let h = genhash(tsrv.addr, "/big", true, Some("localhost"))
        .await
        .unwrap();
    assert_eq!(h, md5_hex(&body));
    assert!(tsrv.requests.lock().unwrap()[0].contains("Host: localhost\r\n"));
}
