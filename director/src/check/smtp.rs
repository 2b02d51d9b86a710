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
