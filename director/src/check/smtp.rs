//! SMTP_CHECK: connect, read the 220 greeting, `HELO name` → 250, `QUIT`.
//! `connect_timeout` bounds the connect and, separately, the dialogue. A
//! reply line is read up to [`MAX_LINE`] bytes and a reply up to
//! [`MAX_LINES`] lines: a server that never ends its line (or its reply)
//! fails the check instead of growing our memory until the timeout.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::state::CheckResult;
use super::tcp::{connect, io_reason, target_addr};
use crate::config::{Checker, SmtpCheck};

/// keepalived's default HELO name.
pub const DEFAULT_HELO: &str = "smtpchecker.keepalived.org";

/// The longest reply line read, CRLF included: 8 × RFC 5321's 512.
pub const MAX_LINE: usize = 4096;
/// The most lines of one multi-line reply.
pub const MAX_LINES: usize = 100;

/// Reads one (possibly multi-line) SMTP reply and returns its code.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    line: &mut String,
) -> Result<u16, String> {
    for _ in 0..MAX_LINES {
        line.clear();
        let n = (&mut *r)
            .take(MAX_LINE as u64)
            .read_line(line)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if !line.ends_with('\n') && n == MAX_LINE {
            return Err(format!("reply line longer than {MAX_LINE} bytes"));
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad reply {:?}", line.trim_end()))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
    Err(format!("reply longer than {MAX_LINES} lines"))
}

/// Runs one SMTP_CHECK against real server `rs`.
pub async fn check(c: &Checker, s: &SmtpCheck, rs: SocketAddr) -> CheckResult {
    let addr = target_addr(&c.common, rs);
    let timeout = c.common.connect_timeout;
    let stream = match connect(&c.common, addr, timeout).await {
        Ok(s) => s,
        Err(e) => return CheckResult::fail(format!("connect failed: {}", io_reason(&e))),
    };
    let helo = s.helo_name.as_deref().unwrap_or(DEFAULT_HELO);
    let dialogue = async {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        let code = reply(&mut r, &mut line).await?;
        if code != 220 {
            return Err(format!("greeting {code}, expected 220"));
        }
        w.write_all(format!("HELO {helo}\r\n").as_bytes())
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        let code = reply(&mut r, &mut line).await?;
        if code != 250 {
            return Err(format!("HELO answered {code}, expected 250"));
        }
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(())
    };
    match tokio::time::timeout(timeout, dialogue).await {
        Ok(Ok(())) => CheckResult::ok(),
        Ok(Err(e)) => CheckResult::fail(e),
        Err(_) => CheckResult::fail(format!("timed out after {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::check::test_checker;
    use crate::config::Check;

    /// A server that answers every connection with `prefix` and then
    /// `filler` for ever (until `cap` bytes or the peer goes); returns its
    /// address and the bytes it got written.
    async fn flood(prefix: &'static [u8], filler: &'static [u8], cap: usize) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut sent = 0;
            if s.write_all(prefix).await.is_err() {
                return sent;
            }
            sent += prefix.len();
            let block = filler.repeat(65536 / filler.len());
            while sent < cap && s.write_all(&block).await.is_ok() {
                sent += block.len();
            }
            // Hold the connection open: only our bound ends the read.
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut [0u8; 1]).await;
            sent
        });
        (addr, srv)
    }

    async fn run(addr: SocketAddr) -> (CheckResult, Duration) {
        let s = SmtpCheck { helo_name: None };
        let c = test_checker(Duration::from_secs(5), Check::Smtp(s.clone()));
        let t = Instant::now();
        let r = check(&c, &s, addr).await;
        (r, t.elapsed())
    }

    #[tokio::test]
    async fn an_endless_greeting_line_fails_at_the_line_bound() {
        // 64 MiB of greeting without a line end.
        let (addr, srv) = flood(b"220 ", b"x", 64 << 20).await;
        let (r, took) = run(addr).await;
        let sent = srv.await.unwrap();
        assert_eq!(r, CheckResult::fail("reply line longer than 4096 bytes"));
        // Well within the 5 s timeout; what was written is what the
        // loopback buffers took, not 64 MiB read into a String.
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(sent < 32 << 20, "the server got {sent} bytes out");
    }

    #[tokio::test]
    async fn an_endless_multi_line_reply_fails_at_the_line_count() {
        let (addr, srv) = flood(b"", b"220-more\r\n", 64 << 20).await;
        let (r, took) = run(addr).await;
        srv.abort();
        assert_eq!(r, CheckResult::fail("reply longer than 100 lines"));
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}
