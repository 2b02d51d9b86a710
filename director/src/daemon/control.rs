//! The daemon's end of the control socket.
//!
//! [`bind`] creates the socket safely; [`serve`] accepts connections and
//! hands each parsed [`Command`] to the daemon over a channel, with a
//! oneshot for the [`Response`]. The daemon's state is only ever touched by
//! the daemon's own task: this module only frames, parses and forwards.
//!
//! Every connection runs in its own task with a read deadline, a line-size
//! limit and a cap on concurrent connections, so a client that hangs,
//! floods or disconnects mid-request costs the daemon nothing but a task.

use std::{
    fs::{self, DirBuilder, Permissions},
    io::{self, ErrorKind},
    os::unix::{
        fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
        net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream},
    },
    path::Path,
    sync::Arc,
    time::Duration,
};

use serde::Deserialize;
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
    time::timeout,
};
use tracing::{debug, warn};

use crate::ctl::protocol::{Command, Request, Response, VERSION};

/// The socket's mode unless the daemon asks otherwise: root only.
pub const DEFAULT_MODE: u32 = 0o600;
/// Longest request line accepted; requests are tiny, so this only stops abuse.
pub const MAX_LINE: usize = 64 * 1024;
/// How long a client may take to send a request (or to read its reply)
/// before its connection is dropped.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are told so and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// Where commands go: the daemon answers each on the oneshot.
pub type Requests = mpsc::Sender<(Command, oneshot::Sender<Response>)>;

/// Create the control socket at `path` with permissions `mode`.
///
/// Creates the parent directory (0755) if needed. An existing socket file
/// is removed only when nothing answers on it (a daemon that crashed); if
/// a daemon answers, this fails with `AddrInUse`. Anything that is not a
/// socket is left alone (`AlreadyExists`). The socket is bound under a
/// temporary name and renamed into place after the chmod, so it is never
/// reachable with the umask's permissions.
///
/// Must be called from within a tokio runtime.
pub fn bind(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(ErrorKind::InvalidInput, format!("{} is not a file path", path.display())));
    };
    if !parent.as_os_str().is_empty() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| context(&format!("creating {}", parent.display()), e))?;
    }
    remove_stale(path)?;

    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    // A leftover from an earlier process with our pid; ours to replace.
    let _ = fs::remove_file(&tmp);
    let listener = StdUnixListener::bind(&tmp).map_err(|e| context(&format!("binding {}", tmp.display()), e))?;
    let placed = fs::set_permissions(&tmp, Permissions::from_mode(mode)).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = fs::remove_file(&tmp);
        return Err(context(&format!("installing {}", path.display()), e));
    }
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Remove `path` if it is a socket nobody answers on.
fn remove_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket; not replacing it", path.display()),
        ));
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            ErrorKind::AddrInUse,
            format!("another director is running: it answers on {}", path.display()),
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            debug!(path = %path.display(), "removing stale control socket");
            fs::remove_file(path)
                .map_err(|e| io::Error::new(e.kind(), format!("removing stale {}: {e}", path.display())))
        }
        Err(e) => Err(io::Error::new(e.kind(), format!("probing {}: {e}", path.display()))),
    }
}

/// Accept connections until the daemon drops its receiving end.
pub async fn serve(listener: UnixListener, tx: Requests) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    connection(stream, tx).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tokio::spawn(async move {
                    let (_, mut write) = stream.into_split();
                    let message = format!("busy: {MAX_CONNECTIONS} control connections are open; try again");
                    let _ = reply(&mut write, &Response::Error { message }).await;
                });
            }
        }
    }
}

/// One client: requests and replies in turn until it closes, goes quiet for
/// [`IO_TIMEOUT`], or breaks the framing.
async fn connection(stream: UnixStream, tx: Requests) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let response = match timeout(IO_TIMEOUT, read_line(&mut read, &mut line)).await {
            Err(_) => {
                debug!("control client idle for {IO_TIMEOUT:?}: closing");
                return;
            }
            Ok(Err(e)) => {
                debug!("control client read: {e}");
                return;
            }
            Ok(Ok(Line::Eof)) => return,
            Ok(Ok(Line::TooLong)) => {
                // The rest of the line is unread, so the framing is lost: close.
                let message = format!("request line longer than {MAX_LINE} bytes");
                let _ = reply(&mut write, &Response::Error { message }).await;
                return;
            }
            Ok(Ok(Line::Complete)) => {
                if line.trim_ascii().is_empty() {
                    continue;
                }
                match parse(&line) {
                    Ok(command) => dispatch(&tx, command).await,
                    Err(message) => Response::Error { message },
                }
            }
        };
        if let Err(e) = reply(&mut write, &response).await {
            debug!("control client write: {e}");
            return;
        }
    }
}

enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Read one `\n`-terminated line (or a final unterminated one) into `buf`,
/// never buffering more than [`MAX_LINE`] bytes.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Complete });
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let content = if done { take - 1 } else { take };
        if buf.len() + content > MAX_LINE {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(&available[..content]);
        r.consume(take);
        if done {
            return Ok(Line::Complete);
        }
    }
}

/// The version is checked before the command, so that a newer client's
/// unknown command is reported as a version mismatch, not as garbage.
fn parse(line: &[u8]) -> Result<Command, String> {
    #[derive(Deserialize)]
    struct Envelope {
        version: u32,
    }
    let envelope: Envelope = serde_json::from_slice(line).map_err(bad_request)?;
    if envelope.version != VERSION {
        return Err(format!(
            "protocol version mismatch: the client speaks version {}, this director speaks version {VERSION} \
             (use the directorctl that came with this director)",
            envelope.version
        ));
    }
    let request: Request = serde_json::from_slice(line).map_err(bad_request)?;
    Ok(request.command)
}

/// "bad request at line 1 column 7: expected value".
fn bad_request(e: serde_json::Error) -> String {
    // serde_json's Display ends in " at line L column C"; lead with it instead.
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let detail = text.strip_suffix(&position).unwrap_or(&text);
    format!("bad request at line {} column {}: {detail}", e.line(), e.column())
}

async fn dispatch(tx: &Requests, command: Command) -> Response {
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send((command, reply_tx)).await.is_err() {
        return Response::Error { message: "director is shutting down".into() };
    }
    reply_rx.await.unwrap_or_else(|_| Response::Error {
        message: "director dropped the request without answering (shutting down?)".into(),
    })
}

/// One JSON line, within [`IO_TIMEOUT`] so a client that never reads
/// cannot hold the task forever.
async fn reply<W: AsyncWrite + Unpin>(w: &mut W, response: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    match timeout(IO_TIMEOUT, w.write_all(&bytes)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(ErrorKind::TimedOut, "client did not read its reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_a_request() {
        let cmd = parse(br#"{"version":1,"command":"status"}"#);
        assert_eq!(cmd, Ok(Command::Status));
    }

    #[test]
    fn parse_names_the_position() {
        assert_eq!(parse(b"{\"versi").unwrap_err(), "bad request at line 1 column 7: EOF while parsing a string");
        assert_eq!(parse(b"garbage").unwrap_err(), "bad request at line 1 column 1: expected value");
        let unknown = parse(br#"{"version":1,"command":"explode"}"#).unwrap_err();
        assert!(unknown.starts_with("bad request at line 1 column 33: unknown variant `explode`"), "{unknown}");
        let missing = parse(br#"{"command":"status"}"#).unwrap_err();
        assert!(missing.contains("missing field `version`"), "{missing}");
    }

    #[test]
    fn parse_checks_the_version_first() {
        assert_eq!(
            parse(br#"{"version":2,"command":"something_new"}"#).unwrap_err(),
            "protocol version mismatch: the client speaks version 2, this director speaks version 1 \
             (use the directorctl that came with this director)"
        );
    }

    #[tokio::test]
    async fn read_line_limits_and_frames() {
        let data = [b"one\ntwo".as_slice(), &[b'x'; MAX_LINE + 1], b"\n"].concat();
        let mut r = BufReader::new(data.as_slice());
        let mut buf = Vec::new();
        assert!(matches!(read_line(&mut r, &mut buf).await.unwrap(), Line::Complete));
        assert_eq!(buf, b"one");
        buf.clear();
        assert!(matches!(read_line(&mut r, &mut buf).await.unwrap(), Line::TooLong));

        let mut r = BufReader::new(b"last".as_slice());
        buf.clear();
        assert!(matches!(read_line(&mut r, &mut buf).await.unwrap(), Line::Complete));
        assert_eq!(buf, b"last");
        buf.clear();
        assert!(matches!(read_line(&mut r, &mut buf).await.unwrap(), Line::Eof));
    }
}
