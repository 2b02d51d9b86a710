//! systemd's notification protocol (Type=notify): READY=1 once serving,
//! WATCHDOG=1 from the main loop. A datagram to $NOTIFY_SOCKET; nothing to
//! do when systemd did not ask.

use std::os::unix::net::{SocketAddr, UnixDatagram};

pub fn ready() {
    send("READY=1");
}

pub fn watchdog() {
    if std::env::var_os("WATCHDOG_USEC").is_some() {
        send("WATCHDOG=1");
    }
}

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let path = path.to_string_lossy().into_owned();
    // '@' names a socket in the abstract namespace.
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(&path),
    };
    if let (Ok(sock), Ok(addr)) = (UnixDatagram::unbound(), addr) {
        let _ = sock.send_to_addr(state.as_bytes(), &addr);
    }
}
