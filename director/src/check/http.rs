//! HTTP_GET and SSL_GET, and `genhash`.
//!
//! The request is keepalived's:
//! `GET PATH HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: HOST\r\n\r\n`,
//! with `Connection: close` (before Host) for `http_protocol 1.0C` and `1.1`
//! (which also says `HTTP/1.1`). HOST is the url's / checker's virtualhost,
//! else `IP:PORT`. As keepalived, the body is digested as received (a
//! chunked body is not decoded), up to Content-Length when there is one.
//! Each `url` must answer with a status in its `status_code` ranges
//! (default 200-299), when `regex` is set a body matching it (or not, with
//! `regex_no_match`; Rust `regex` syntax, not PCRE), and when `digest` is
//! set a body whose MD5 matches.
//! `connect_timeout` bounds the connect and, separately, the whole response.
//!
//! What is read is bounded: the status line and headers up to [`MAX_HEAD`]
//! bytes, the body up to [`MAX_BODY`] (a Content-Length above it fails at
//! once, a body that runs past it fails when it does). The body is digested
//! chunk by chunk as it arrives, never buffered for the digest; it is kept
//! in memory only for a `regex`, which is then matched off the daemon's
//! thread.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::state::CheckResult;
use super::tcp::{connect, io_reason, target_addr};
use crate::config::{CheckCommon, Checker, HttpCheck, Url};

/// The longest status line and headers read (`\r\n\r\n` included).
pub const MAX_HEAD: usize = 64 << 10;
/// The longest body read; past it the check fails. keepalived reads (and
/// digests) any length; a health page is a few KiB, and 4 MiB leaves room
/// for a real page while capping what one check costs.
pub const MAX_BODY: u64 = 4 << 20;
/// One socket read, digested before the next.
const CHUNK: usize = 8192;

/// Errors of one HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("bad response: {0}")]
    BadResponse(String),
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// MD5 hex (lower case) of the body, computed as it arrived.
    pub digest: String,
    /// The body, when [`Get::keep_body`] asked for it; else empty.
    pub body: Vec<u8>,
}

/// What the status line and headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
}

/// Options of one GET.
#[derive(Debug, Clone)]
pub struct Get<'a> {
    pub addr: SocketAddr,
    pub path: &'a str,
    pub tls: bool,
    pub vhost: Option<&'a str>,
    /// `1.0` (default), `1.0C`, `1.1`.
    pub protocol: Option<&'a str>,
    /// SNI name; `None` = no SNI.
    pub sni: Option<&'a str>,
    pub verify_cert: bool,
    pub timeout: Duration,
    /// Keep the body (up to [`MAX_BODY`]) for a regex; else only its digest.
    pub keep_body: bool,
}

/// The Host header value keepalived sends: the virtualhost as written,
/// else `IP:PORT` (`[IPv6]:PORT`) — keepalived always adds the port then.
pub fn host_header(addr: SocketAddr, vhost: Option<&str>) -> String {
    if let Some(v) = vhost {
        return v.to_string();
    }
    match addr.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        ip => format!("{ip}:{}", addr.port()),
    }
}

/// The request bytes keepalived (and genhash) send (check_http.c's
/// `request_template`): `Connection: close` for 1.0C and 1.1, before Host.
pub fn request(path: &str, host: &str, protocol: Option<&str>) -> String {
    let (minor, close) = match protocol {
        Some("1.1") => (1, true),
        Some("1.0C") | Some("1.0c") => (0, true),
        _ => (0, false),
    };
    let conn = if close { "Connection: close\r\n" } else { "" };
    format!(
        "GET {path} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{conn}Host: {host}\r\n\r\n"
    )
}

/// MD5 hex (lower case) of `data`.
pub fn md5_hex(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

/// Lower-case hex of a digest.
fn hex(d: &[u8]) -> String {
    let mut s = String::with_capacity(2 * d.len());
    for b in d {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One GET: connect (TLS when asked), send keepalived's request, read the response.
pub async fn get(common: Option<&CheckCommon>, g: &Get<'_>) -> Result<Response, HttpError> {
    let tcp = match common {
        Some(c) => connect(c, g.addr, g.timeout).await,
        None => match tokio::time::timeout(g.timeout, tokio::net::TcpStream::connect(g.addr)).await
        {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        },
    }
    .map_err(|e| HttpError::Connect(io_reason(&e)))?;
    let _ = tcp.set_nodelay(true);
    let host = host_header(g.addr, g.vhost);
    let req = request(g.path, &host, g.protocol);
    let exchange = async {
        if g.tls {
            let connector =
                tokio_rustls::TlsConnector::from(client_config(g.sni.is_some(), g.verify_cert));
            let name = match g.sni {
                Some(n) => rustls::pki_types::ServerName::try_from(n.to_string())
                    .map_err(|e| HttpError::Tls(format!("bad SNI name {n:?}: {e}")))?,
                None => rustls::pki_types::ServerName::IpAddress(g.addr.ip().into()),
            };
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(e.to_string()))?;
            exchange(tls, req.as_bytes(), g.keep_body).await
        } else {
            exchange(tcp, req.as_bytes(), g.keep_body).await
        }
    };
    match tokio::time::timeout(g.timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(g.timeout)),
    }
}

/// Parses the status line and headers (`head` ends at its blank line).
pub fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| HttpError::BadResponse(format!("status line {status_line:?}")))?;
    let mut content_length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = v.trim().parse::<u64>().ok();
        }
    }
    Ok(Head {
        status,
        content_length,
    })
}

/// The body as it arrives: digested per chunk, kept only when asked, and
/// never longer than [`MAX_BODY`].
struct Body {
    md5: Md5,
    len: u64,
    kept: Option<Vec<u8>>,
}

impl Body {
    fn push(&mut self, data: &[u8]) -> Result<(), HttpError> {
        self.len += data.len() as u64;
        if self.len > MAX_BODY {
            return Err(HttpError::BadResponse(format!(
                "body longer than {MAX_BODY} bytes"
            )));
        }
        self.md5.update(data);
        if let Some(k) = &mut self.kept {
            k.extend_from_slice(data);
        }
        Ok(())
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    req: &[u8],
    keep_body: bool,
) -> Result<Response, HttpError> {
    s.write_all(req)
        .await
        .map_err(|e| HttpError::Io(format!("write failed: {e}")))?;
    s.flush()
        .await
        .map_err(|e| HttpError::Io(format!("write failed: {e}")))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; CHUNK];
    let head_end = loop {
        let room = MAX_HEAD - buf.len();
        if room == 0 {
            return Err(HttpError::BadResponse(format!(
                "headers longer than {MAX_HEAD} bytes"
            )));
        }
        let n = read_some(&mut s, &mut chunk[..room.min(CHUNK)]).await?;
        if n == 0 {
            return Err(HttpError::BadResponse(if buf.is_empty() {
                "connection closed without a response".into()
            } else {
                "connection closed inside the headers".into()
            }));
        }
        // The blank line may straddle two reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = find(&buf[from..], b"\r\n\r\n") {
            break from + p + 4;
        }
    };
    let head = parse_head(&buf[..head_end])?;
    let mut body = Body {
        md5: Md5::new(),
        len: 0,
        kept: keep_body.then(Vec::new),
    };
    let rest = &buf[head_end..];
    match head.content_length {
        Some(len) if len > MAX_BODY => {
            return Err(HttpError::BadResponse(format!(
                "Content-Length {len} is over the {MAX_BODY}-byte limit"
            )));
        }
        Some(len) => {
            body.push(&rest[..rest.len().min(len as usize)])?;
            while body.len < len {
                let want = (len - body.len).min(CHUNK as u64) as usize;
                let n = read_some(&mut s, &mut chunk[..want]).await?;
                if n == 0 {
                    return Err(HttpError::BadResponse(format!(
                        "connection closed after {} of {len} body bytes",
                        body.len
                    )));
                }
                body.push(&chunk[..n])?;
            }
        }
        None => {
            body.push(rest)?;
            loop {
                let n = read_some(&mut s, &mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.push(&chunk[..n])?;
            }
        }
    }
    Ok(Response {
        status: head.status,
        digest: hex(&body.md5.finalize()),
        body: body.kept.unwrap_or_default(),
    })
}

/// A read where a TLS peer closing without close_notify counts as the end.
async fn read_some<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<usize, HttpError> {
    match s.read(buf).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        Err(e) => Err(HttpError::Io(format!("read failed: {e}"))),
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Compiled url regexes, shared by every checker.
fn regex_cached(re: &str) -> Result<regex::bytes::Regex, regex::Error> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CACHE: OnceLock<Mutex<HashMap<String, regex::bytes::Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = c.get(re) {
        return Ok(r.clone());
    }
    let r = regex::bytes::Regex::new(re)?;
    c.insert(re.to_string(), r.clone());
    Ok(r)
}

fn fmt_ranges(r: &[(u16, u16)]) -> String {
    let v: Vec<String> = r
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    v.join(",")
}

/// Checks one response against a `url` block; `Err(reason)` on mismatch.
pub fn judge(url: &Url, resp: &Response) -> Result<(), String> {
    let ranges: &[(u16, u16)] = if url.status_code.is_empty() {
        &[(200, 299)]
    } else {
        &url.status_code
    };
    if !ranges.iter().any(|&(a, b)| (a..=b).contains(&resp.status)) {
        return Err(format!(
            "status {}, expected {}",
            resp.status,
            fmt_ranges(ranges)
        ));
    }
    if let Some(re) = &url.regex {
        let rx = regex_cached(re).map_err(|e| format!("bad regex {re:?}: {e}"))?;
        let found = rx.is_match(&resp.body);
        if found == url.regex_no_match {
            return Err(if found {
                format!("body matches regex {re:?} (regex_no_match)")
            } else {
                format!("body does not match regex {re:?}")
            });
        }
    }
    if let Some(want) = &url.digest {
        let got = &resp.digest;
        if !got.eq_ignore_ascii_case(want) {
            return Err(format!(
                "digest {got}, expected {}",
                want.to_ascii_lowercase()
            ));
        }
    }
    Ok(())
}

/// Runs one HTTP_GET / SSL_GET (`tls`) against real server `rs`: every url must pass.
pub async fn check(c: &Checker, h: &HttpCheck, tls: bool, rs: SocketAddr) -> CheckResult {
    let addr = target_addr(&c.common, rs);
    for url in &h.urls {
        let vhost = url.virtualhost.as_deref().or(h.virtualhost.as_deref());
        let sni = if h.enable_sni {
            h.sni_name.as_deref().or(vhost)
        } else {
            None
        };
        let g = Get {
            addr,
            path: &url.path,
            tls,
            vhost,
            protocol: h.http_protocol.as_deref(),
            sni,
            verify_cert: h.verify_cert,
            timeout: c.common.connect_timeout,
            keep_body: url.regex.is_some(),
        };
        let judged = match get(Some(&c.common), &g).await {
            // A regex over up to MAX_BODY bytes runs off the daemon's thread.
            Ok(resp) if url.regex.is_some() => {
                let url = url.clone();
                tokio::task::spawn_blocking(move || judge(&url, &resp))
                    .await
                    .unwrap_or_else(|e| Err(format!("the regex match failed: {e}")))
            }
            Ok(resp) => judge(url, &resp),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = judged {
            return CheckResult::fail(format!("{} {why}", url.path));
        }
    }
    if h.urls.is_empty() {
        return CheckResult::fail("has no url to check");
    }
    CheckResult::ok()
}

/// keepalived's `genhash`: GET `path` from `addr` (over TLS when `tls`,
/// without SNI unless `vhost` is a name, no certificate check) and return
/// the MD5 hex of the body.
pub async fn genhash(
    addr: SocketAddr,
    path: &str,
    tls: bool,
    vhost: Option<&str>,
) -> Result<String, HttpError> {
    let sni = vhost.filter(|v| v.parse::<IpAddr>().is_err() && !v.contains(':'));
    let g = Get {
        addr,
        path,
        tls,
        vhost,
        protocol: None,
        sni,
        verify_cert: false,
        timeout: Duration::from_secs(5),
        keep_body: false,
    };
    Ok(get(None, &g).await?.digest)
}

// ---- TLS ----

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The client configurations, built once: (sni, verify).
fn client_config(sni: bool, verify: bool) -> Arc<rustls::ClientConfig> {
    static C: OnceLock<[Arc<rustls::ClientConfig>; 4]> = OnceLock::new();
    let all = C.get_or_init(|| {
        let mk = |sni: bool, verify: bool| {
            let b = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions");
            let mut cfg = if verify {
                b.with_root_certificates(system_roots())
                    .with_no_client_auth()
            } else {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
                    .with_no_client_auth()
            };
            cfg.enable_sni = sni;
            Arc::new(cfg)
        };
        [
            mk(false, false),
            mk(true, false),
            mk(false, true),
            mk(true, true),
        ]
    });
    all[(sni as usize) + 2 * (verify as usize)].clone()
}

/// The system's CA bundle (Debian / RHEL locations), for `verify_cert`.
fn system_roots() -> rustls::RootCertStore {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    for f in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(iter) = rustls::pki_types::CertificateDer::pem_file_iter(f) {
            for c in iter.flatten() {
                let _ = store.add(c);
            }
            break;
        }
    }
    store
}

/// keepalived does not verify the server's certificate.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_or_say_why() {
        let h = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length:  12 \r\n\r\n").unwrap();
        assert_eq!(h, Head { status: 404, content_length: Some(12) });
        let h = parse_head(b"HTTP/1.0 200\r\nContent-Length: x\r\n\r\n").unwrap();
        assert_eq!(h.content_length, None);
        for bad in [&b"SSH-2.0 200\r\n\r\n"[..], b"HTTP/1.0 OK\r\n\r\n", b"\r\n\r\n"] {
            assert!(matches!(parse_head(bad), Err(HttpError::BadResponse(_))), "{bad:?}");
        }
    }
}
