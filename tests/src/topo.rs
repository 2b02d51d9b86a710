//! Building blocks for end-to-end topologies in namespaces: bridges in a
//! "switch" namespace, interface facts read from inside a namespace (MAC,
//! ifindex), sysctls, TX checksum offload through the SIOCETHTOOL ioctl (no
//! `ethtool` binary here), and a tiny HTTP server that answers with its own
//! name. Everything is bounded and stops on drop, pass or fail.

use std::{
    ffi::CString,
    io::{ErrorKind, Read, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use crate::netns::{Netns, veth};

/// A MAC address.
pub type Mac = [u8; 6];

/// A Linux bridge `br` in `switch`, up, without STP (ports forward at once).
pub fn bridge(switch: &Netns, br: &str) -> Result<()> {
    switch.ip(&["link", "add", br, "type", "bridge", "stp_state", "0"])?;
    switch.ip(&["link", "set", br, "up"])?;
    Ok(())
}

/// A veth pair from `host`'s `host_if` to `switch`'s `port`, the latter
/// enslaved to bridge `br`; both ends up.
pub fn plug(switch: &Netns, br: &str, port: &str, host: &Netns, host_if: &str) -> Result<()> {
    veth(host, host_if, switch, port)?;
    switch.ip(&["link", "set", port, "master", br])?;
    Ok(())
}

/// The interface's index as seen inside `ns`.
pub fn ifindex(ns: &Netns, ifname: &str) -> Result<u32> {
    let name = CString::new(ifname)?;
    ns.enter(|| {
        // SAFETY: a valid NUL-terminated name; the call only reads it.
        let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
        // errno is per thread: read it on the thread that made the call.
        ensure!(idx != 0, "no interface {ifname} in {}: {}", ns.name(), std::io::Error::last_os_error());
        Ok(idx)
    })?
}

/// The interface's MAC address, read inside `ns` (SIOCGIFHWADDR).
pub fn mac(ns: &Netns, ifname: &str) -> Result<Mac> {
    ns.enter(|| -> Result<Mac> {
        let sock = ioctl_socket()?;
        let mut req = ifreq(ifname)?;
        // SAFETY: a valid socket and a zero-initialised ifreq naming the interface.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) } != 0 {
            bail!("SIOCGIFHWADDR {ifname}: {}", std::io::Error::last_os_error());
        }
        // SAFETY: the kernel filled the hwaddr member of the union.
        let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
        Ok(std::array::from_fn(|i| data[i] as u8))
    })?
    .with_context(|| format!("MAC of {ifname} in {}", ns.name()))
}

pub fn fmt_mac(m: &Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Permanent neighbour entries on `dev` inside `ns`, all through one
/// `ip -batch` (thousands take well under a second): next hops for real
/// servers that need not exist as hosts.
pub fn permanent_neighbours(ns: &Netns, dev: &str, entries: &[(IpAddr, Mac)]) -> Result<()> {
    let batch: String = entries
        .iter()
        .map(|(ip, m)| format!("neigh replace {ip} lladdr {} dev {dev} nud permanent\n", fmt_mac(m)))
        .collect();
    let mut child = Command::new("ip")
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ip -batch")?;
    child.stdin.take().context("ip's stdin")?.write_all(batch.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "ip -batch ({} neighbours on {dev} in {}): {}",
        entries.len(),
        ns.name(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Writes a sysctl (`net.ipv4.conf.all.arp_ignore`) inside `ns` and reads
/// it back. /proc/sys/net follows the network namespace of the thread that
/// opens it, so entering the namespace is enough.
pub fn sysctl(ns: &Netns, key: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let got = ns.enter(|| -> Result<String> {
        std::fs::write(&path, value).with_context(|| format!("writing {path}"))?;
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    })??;
    ensure!(got.trim() == value, "{key} in {} reads {:?} after writing {value:?}", ns.name(), got.trim());
    Ok(())
}

const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_STXCSUM: u32 = 0x17;

/// `struct ethtool_value` from linux/ethtool.h.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Turns TX checksum offload of `ifname` in `ns` on or off
/// (`ethtool -K IF tx on|off`) and checks that it took. With it off, the
/// kernel completes TCP/UDP checksums in software before the frame leaves
/// the interface, so what the peer receives carries a full checksum.
pub fn set_tx_csum(ns: &Netns, ifname: &str, on: bool) -> Result<()> {
    ns.enter(|| ethtool_value(ifname, ETHTOOL_STXCSUM, on as u32))??;
    let now = tx_csum(ns, ifname)?;
    ensure!(now == on, "tx checksumming of {ifname} in {} is still {now}", ns.name());
    Ok(())
}

/// Whether TX checksum offload of `ifname` in `ns` is on.
pub fn tx_csum(ns: &Netns, ifname: &str) -> Result<bool> {
    Ok(ns.enter(|| ethtool_value(ifname, ETHTOOL_GTXCSUM, 0))?? != 0)
}

fn ethtool_value(ifname: &str, cmd: u32, data: u32) -> Result<u32> {
    let sock = ioctl_socket()?;
    let mut value = EthtoolValue { cmd, data };
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: ifru_data points at a live ethtool_value for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) } != 0 {
        bail!("SIOCETHTOOL cmd {cmd:#x} on {ifname}: {}", std::io::Error::last_os_error());
    }
    Ok(value.data)
}

fn ifreq(ifname: &str) -> Result<libc::ifreq> {
    ensure!(ifname.len() < libc::IFNAMSIZ && !ifname.contains('\0'), "bad interface name {ifname:?}");
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn ioctl_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The longest a server thread lives, whatever happens to the test.
const SERVER_LIFETIME: Duration = Duration::from_secs(300);
/// Per-connection socket timeouts on the server side.
const SERVER_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// A tiny HTTP/1.0 server bound inside a namespace, answering every request
/// with `NAME PEER LOCAL\n` (its name, the client address it saw, the
/// address the client reached it on) and closing. One thread, serving
/// connections one at a time; it polls a stop flag, so it ends on drop.
pub struct NameServer {
    name: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl NameServer {
    /// Binds `bind` inside `ns` and starts serving.
    pub fn start(ns: &Netns, bind: SocketAddr, name: &str) -> Result<Self> {
        let listener = ns
            .enter(|| TcpListener::bind(bind))?
            .with_context(|| format!("binding {bind} in {}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, served, name) = (stop.clone(), served.clone(), name.to_string());
            std::thread::Builder::new()
                .name(format!("http-{name}"))
                .spawn(move || serve(listener, &name, &stop, &served))?
        };
        Ok(NameServer { name: name.to_string(), addr, stop, served, thread: Some(thread) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the thread and returns its result (an accept error, say).
    pub fn stop(mut self) -> Result<()> {
        self.halt()
    }

    fn halt(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| anyhow::anyhow!("server {} panicked", self.name))?,
            None => Ok(()),
        }
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

fn serve(listener: TcpListener, name: &str, stop: &AtomicBool, served: &AtomicU64) -> Result<()> {
    let deadline = Instant::now() + SERVER_LIFETIME;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; at most 50 ms.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e).context("poll");
        }
        if n == 0 {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => continue,
            // A connection reset before accept: the next one may be fine.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e).context("accept"),
        };
        // A client that misbehaves only costs its own connection.
        if answer(stream, name, peer).is_ok() {
            served.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn answer(mut s: TcpStream, name: &str, peer: SocketAddr) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(SERVER_IO_TIMEOUT))?;
    s.set_write_timeout(Some(SERVER_IO_TIMEOUT))?;
    let local = s.local_addr()?;
    // Read the request head: up to the blank line, 4 KiB at most.
    let mut req = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 || req.len() + n > 4096 {
            return Err(ErrorKind::InvalidData.into());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let body = format!("{name} {peer} {local}\n");
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    // The server closes first, as HTTP/1.0 does: TIME_WAIT stays here.
    Ok(())
}

/// One answered request, as the client saw it.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The client's own address (the kernel-chosen source port).
    pub local: SocketAddr,
    /// What the client is connected to.
    pub peer: SocketAddr,
    /// The answering server's name.
    pub server: String,
    /// The client address the server saw.
    pub seen_peer: SocketAddr,
    /// The address the server saw the connection arrive on.
    pub seen_local: SocketAddr,
}

/// `GET /` to `addr` with every step bounded by `timeout`; the body must be
/// a `NameServer` answer.
pub fn http_get(addr: SocketAddr, timeout: Duration) -> Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    let local = s.local_addr()?;
    let ctx = || format!("{local} -> {addr}");
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).with_context(ctx)?;
    let mut raw = Vec::new();
    (&mut s).take(64 * 1024).read_to_end(&mut raw).with_context(ctx)?;
    let peer = s.peer_addr()?;
    let text = String::from_utf8(raw).with_context(ctx)?;
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("{}: no header end in {text:?}", ctx()))?;
    ensure!(head.starts_with("HTTP/1.0 200 "), "{}: status {:?}", ctx(), head.lines().next());
    let mut words = body.split_whitespace();
    let (Some(server), Some(seen_peer), Some(seen_local), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        bail!("{}: unexpected body {body:?}", ctx());
    };
    Ok(Reply {
        local,
        peer,
        server: server.to_string(),
        seen_peer: seen_peer.parse().with_context(ctx)?,
        seen_local: seen_local.parse().with_context(ctx)?,
    })
}
