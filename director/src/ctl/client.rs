//! directorctl's end of the control socket: blocking, one JSON line out,
//! one JSON line back, with errors worded for the operator who ran it.

use std::{
    io::{self, BufRead, BufReader, ErrorKind, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use super::protocol::{Command, Request, Response, VERSION};

/// How long the daemon has to answer one request.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply accepted: a snapshot of thousands of real servers is a few
/// MiB; this only guards against a runaway peer.
const MAX_REPLY: u64 = 256 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum CtlError {
    #[error("director is not running: no control socket at {} (start it, or pass --socket)", .0.display())]
    NoSocket(PathBuf),
    #[error("director is not running: nothing listens on {} (stale socket?)", .0.display())]
    NotListening(PathBuf),
    #[error(
        "permission denied opening {}: directorctl must run as root (or as the socket's owner)",
        .0.display()
    )]
    PermissionDenied(PathBuf),
    #[error("director did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("unexpected reply from director: {0}")]
    BadReply(String),
    #[error("cannot talk to director on {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// One connection, for several requests in turn (`list --rate` takes two
/// snapshots on one).
pub struct Client {
    stream: BufReader<UnixStream>,
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    pub fn connect(path: &Path) -> Result<Self, CtlError> {
        Self::connect_timeout(path, TIMEOUT)
    }

    /// As [`Client::connect`], with `timeout` for every later request.
    pub fn connect_timeout(path: &Path, timeout: Duration) -> Result<Self, CtlError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => CtlError::NoSocket(path.to_owned()),
            ErrorKind::ConnectionRefused => CtlError::NotListening(path.to_owned()),
            ErrorKind::PermissionDenied => CtlError::PermissionDenied(path.to_owned()),
            _ => CtlError::Io { path: path.to_owned(), source: e },
        })?;
        let io = |e| CtlError::Io { path: path.to_owned(), source: e };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        Ok(Self { stream: BufReader::new(stream), path: path.to_owned(), timeout })
    }

    /// Send `command`, wait for the reply. A `Response::Error` is a reply
    /// like any other: the caller decides what it means.
    pub fn call(&mut self, command: Command) -> Result<Response, CtlError> {
        let mut line = serde_json::to_vec(&Request { version: VERSION, command })
            .map_err(|e| CtlError::Io { path: self.path.clone(), source: e.into() })?;
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).map_err(|e| self.io_error(e))?;

        let mut reply = String::new();
        let read = self.stream.by_ref().take(MAX_REPLY).read_line(&mut reply);
        let read = read.map_err(|e| match e.kind() {
            ErrorKind::InvalidData => CtlError::BadReply("not UTF-8".into()),
            _ => self.io_error(e),
        })?;
        if read == 0 {
            return Err(CtlError::BadReply("it closed the connection without answering".into()));
        }
        if !reply.ends_with('\n') {
            return Err(CtlError::BadReply(format!("the reply was cut off after {} bytes", reply.len())));
        }
        serde_json::from_str(&reply).map_err(|e| CtlError::BadReply(format!("{e}: {}", excerpt(&reply))))
    }

    fn io_error(&self, e: io::Error) -> CtlError {
        match e.kind() {
            // SO_RCVTIMEO/SO_SNDTIMEO expiring shows as EAGAIN.
            ErrorKind::WouldBlock | ErrorKind::TimedOut => CtlError::Timeout(self.timeout),
            _ => CtlError::Io { path: self.path.clone(), source: e },
        }
    }
}

/// Connect, send one command, return the reply.
pub fn request(path: &Path, command: Command) -> Result<Response, CtlError> {
    Client::connect(path)?.call(command)
}

/// The start of an unexpected reply, enough to recognise it.
fn excerpt(reply: &str) -> String {
    const MAX: usize = 120;
    let reply = reply.trim_end();
    match reply.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &reply[..cut]),
        None => reply.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_the_operator_needs() {
        let path = PathBuf::from("/run/director/director.sock");
        assert_eq!(
            CtlError::NoSocket(path.clone()).to_string(),
            "director is not running: no control socket at /run/director/director.sock (start it, or pass --socket)"
        );
        assert_eq!(
            CtlError::NotListening(path.clone()).to_string(),
            "director is not running: nothing listens on /run/director/director.sock (stale socket?)"
        );
        assert_eq!(
            CtlError::PermissionDenied(path).to_string(),
            "permission denied opening /run/director/director.sock: directorctl must run as root (or as the socket's owner)"
        );
        assert_eq!(CtlError::Timeout(TIMEOUT).to_string(), "director did not answer within 10 s");
    }

    #[test]
    fn excerpt_is_bounded() {
        assert_eq!(excerpt("short\n"), "short");
        let long = "é".repeat(200);
        assert_eq!(excerpt(&long).chars().count(), 123);
    }
}
