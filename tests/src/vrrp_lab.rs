//! VRRP labs in network namespaces: a bridge in a switch namespace, a
//! client namespace and VRRP nodes (the real keepalived or the `director`
//! daemon, each in its own namespace, started with `nsenter --net` on a
//! generated keepalived.conf), optionally three LVS-DR real servers.
//!
//! Who holds the VIP is observed twice: `ip addr` in every node namespace,
//! and the client's ARP (IPv6: neighbour) entry for the VIP (after a TCP
//! probe to the VIP)
//! compared with every node's MAC. Both must agree before a wait returns.
//!
//! A node is *crashed* by SIGKILL to its whole process group and, at the
//! same instant, by taking its switch port down. SIGKILL alone is not a
//! failure on this LAN: the kernel keeps the VIP on the interface (and the
//! director's pinned XDP program keeps forwarding), so the dead node would
//! still answer ARP and traffic. A machine that dies takes all of that with
//! it; the port going down is that part.
//!
//! Everything is torn down on drop, pass or fail: processes killed (their
//! process group), `director --cleanup` for the pins, namespaces deleted.

use std::{
    fs,
    io::{ErrorKind, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use socket2::{Domain, Protocol, Socket, Type};
use director::dataplane::xdp::{LoadOptions, XdpProgram};
use director_common::lb::MAP_LAYOUT_VERSION;

pub use crate::files::workspace_bin;
use crate::{
    files::{TempDir, unique},
    netns::Netns,
    topo::{Mac, bridge, fmt_mac, mac, plug, set_tx_csum, sysctl},
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 100);
/// The VIP of IPv6 labs (`Lan::with_ipv6`, `Instance::ipv6`).
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd90, 0, 0, 0, 0, 0, 0, 0x100);
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 90, 0, 1);
pub const RS_IPS: [Ipv4Addr; 3] = [Ipv4Addr::new(10, 90, 0, 10), Ipv4Addr::new(10, 90, 0, 20), Ipv4Addr::new(10, 90, 0, 30)];
/// The service port: the real servers' (DR) or the keepalived nodes' own
/// echo listeners.
pub const SERVICE_PORT: u16 = 80;
/// The director's metrics endpoint, on each node's own loopback.
const METRICS_PORT: u16 = 19613;
/// The largest exposition `Node::metrics` reads.
const MAX_METRICS: u64 = 256 << 20;
/// Probing ARP: a port nobody listens on (the node's kernel resets).
const PROBE_PORT: u16 = 9;

const POLL: Duration = Duration::from_millis(50);
/// From spawning a node to its control socket (director) or its VRRP
/// child (keepalived) being there.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const TOOL_TIMEOUT: Duration = Duration::from_secs(15);

/// Node address on the LAN: .2, .3, …
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 90, 0, 2 + i as u8)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Keepalived,
    Director,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Keepalived => "k",
            Kind::Director => "d",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    Multicast,
    /// `unicast_src_ip` and `unicast_peer` with every other node.
    Unicast,
}

/// One node's `vrrp_instance`.
#[derive(Clone, Debug)]
pub struct Instance {
    pub version: Version,
    pub cast: Cast,
    pub vrid: u8,
    /// Seconds.
    pub advert_int: u32,
    /// `state MASTER` (else BACKUP).
    pub master: bool,
    pub priority: u8,
    pub nopreempt: bool,
    /// `auth_type PASS` with this password (v2 only: v3 has no auth).
    pub auth_pass: Option<String>,
    /// VIP6 instead of VIP (v3 only): adverts to ff02::12 from the
    /// link-local address.
    pub ipv6: bool,
}

impl Instance {
    /// advert_int 1, VRID 51; v2 gets PASS auth "1111" as in the seeds.
    pub fn new(version: Version, cast: Cast, master: bool, priority: u8) -> Instance {
        Instance {
            version,
            cast,
            vrid: 51,
            advert_int: 1,
            master,
            priority,
            nopreempt: false,
            auth_pass: (version == Version::V2).then(|| "1111".to_string()),
            ipv6: false,
        }
    }

    /// The keepalived.conf text both implementations read; `me` and
    /// `peers` fill unicast_src_ip / unicast_peer.
    pub fn conf(&self, me: Ipv4Addr, peers: &[Ipv4Addr]) -> String {
        let mut s = String::from("vrrp_instance VI_1 {\n");
        let mut line = |l: String| {
            s.push_str("    ");
            s.push_str(&l);
            s.push('\n');
        };
        line(format!("state {}", if self.master { "MASTER" } else { "BACKUP" }));
        line("interface eth0".into());
        line(format!("virtual_router_id {}", self.vrid));
        line(format!("priority {}", self.priority));
        line(format!("advert_int {}", self.advert_int));
        if self.version == Version::V3 {
            line("version 3".into());
        }
        if self.nopreempt {
            line("nopreempt".into());
        }
        if self.cast == Cast::Unicast {
            line(format!("unicast_src_ip {me}"));
            let list: String = peers.iter().map(|p| format!("        {p}\n")).collect();
            line(format!("unicast_peer {{\n{list}    }}"));
        }
        if let Some(pass) = &self.auth_pass {
            line(format!("authentication {{\n        auth_type PASS\n        auth_pass {pass}\n    }}"));
        }
        let vip: IpAddr = if self.ipv6 { VIP6.into() } else { VIP.into() };
        line(format!("virtual_ipaddress {{\n        {vip}\n    }}"));
        s.push_str("}\n");
        s
    }

    /// Master_Down_Interval (RFC 3768 §6.1, RFC 5798 §6.1 with the
    /// master's interval): 3 × advert_int + skew, where the skew is
    /// (256 − priority) / 256 × advert_int.
    pub fn master_down(&self) -> Duration {
        let int = Duration::from_secs(self.advert_int.into());
        3 * int + int * (256 - u32::from(self.priority)) / 256
    }
}

/// An LVS-DR service on the VIP with the three real servers, wrr (a
/// consistent hash per flow: two directors with the same configuration
/// send a flow to the same server).
pub fn dr_service() -> String {
    let mut s = format!("\nvirtual_server {VIP} {SERVICE_PORT} {{\n    lvs_sched wrr\n    lvs_method DR\n    protocol TCP\n");
    for ip in RS_IPS {
        s.push_str(&format!("    real_server {ip} {SERVICE_PORT} {{\n        weight 1\n    }}\n"));
    }
    s.push_str("}\n");
    s
}

// ---------------------------------------------------------------------------
// Processes

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    // Read while it runs: a child blocked on a full pipe (`list -c` prints
    // megabytes) would never exit.
    fn drain(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<Vec<u8>>> {
        pipe.map(|mut p| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = p.read_to_end(&mut buf);
                buf
            })
        })
    }
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let collect = |h: Option<JoinHandle<Vec<u8>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output { status, stdout: collect(stdout), stderr: collect(stderr) })
}

fn signal(pid: i32, sig: libc::c_int) -> Result<()> {
    // SAFETY: plain kill(2); a negative pid names our child's process group.
    ensure!(unsafe { libc::kill(pid, sig) } == 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
    Ok(())
}

// ---------------------------------------------------------------------------
// Nodes

/// A VRRP node: a namespace with eth0 on the LAN and keepalived or director
/// running in it (or not, between a stop and a start).
pub struct Node {
    pub name: String,
    pub kind: Kind,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    /// Its port on the switch's bridge.
    port: String,
    child: Mutex<Option<Child>>,
    conf: PathBuf,
    log: PathBuf,
    /// The director's pin directory (removed by `director --cleanup`).
    bpffs: PathBuf,
    dir: TempDir,
    pub ns: Netns,
}

impl Node {
    pub fn ns_name(&self) -> &str {
        self.ns.name()
    }

    /// Writes the node's configuration (read at the next start).
    pub fn write_conf(&self, text: &str) -> Result<()> {
        fs::write(&self.conf, text).with_context(|| format!("writing {}", self.conf.display()))
    }

    /// Starts the node and waits until it is up: director's control socket
    /// answers, keepalived's VRRP child wrote its pid file.
    pub fn start(&self) -> Result<()> {
        let mut slot = self.child.lock().unwrap();
        ensure!(slot.is_none(), "{} is already running", self.name);
        let mut log = fs::File::options().create(true).append(true).open(&self.log)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns.name()));
        let vrrp_pid = self.dir.0.join("vrrp.pid");
        let _ = fs::remove_file(&vrrp_pid);
        match self.kind {
            Kind::Keepalived => {
                // -P VRRP only, -n no fork into the background, -l -D log
                // to the console in detail; own pid files, or a second
                // keepalived on the host exits 0 at once.
                cmd.arg("keepalived").args(["-P", "-n", "-l", "-D", "-f"]).arg(&self.conf);
                cmd.arg("-p").arg(self.dir.0.join("keepalived.pid"));
                cmd.arg("-r").arg(&vrrp_pid);
                cmd.arg("-c").arg(self.dir.0.join("checkers.pid"));
            }
            Kind::Director => {
                cmd.arg(workspace_bin("director")?).arg("-f").arg(&self.conf);
                cmd.args(["--iface", "eth0", "--socket"]).arg(self.socket());
                cmd.arg("--bpffs-dir").arg(&self.bpffs);
                cmd.args(["--metrics-listen", &format!("127.0.0.1:{METRICS_PORT}")]);
                cmd.env("RUST_LOG", std::env::var("DIRECTOR_TEST_LOG").unwrap_or_else(|_| "info".into()));
            }
        }
        writeln!(log, "==== {cmd:?} ====")?;
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        // Should the test process die without running Drop, the node dies
        // with the thread that started it.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        *slot = Some(cmd.spawn().with_context(|| format!("starting {}", self.name))?);
        drop(slot);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.lock().unwrap().as_mut().context("not started")?.try_wait()? {
                bail!("{} exited with {status} before it was up", self.name);
            }
            let ready = match self.kind {
                Kind::Keepalived => vrrp_pid.exists(),
                Kind::Director => self.ctl(&["status"]).is_ok_and(|o| o.status.success()),
            };
            if ready {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "{} not up within {READY_TIMEOUT:?}", self.name);
            std::thread::sleep(POLL);
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.0.join("d.sock")
    }

    /// Where the director pins the XDP map `name` (`lb::maps`), for a test
    /// to open with `MapData::from_pin` while the daemon runs.
    pub fn pinned_map(&self, name: &str) -> PathBuf {
        self.bpffs.join(format!("v{MAP_LAYOUT_VERSION}")).join(name)
    }

    fn pid(&self) -> Option<i32> {
        self.child.lock().unwrap().as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// SIGTERM (keepalived and director send priority 0, release the VIP
    /// and exit) and wait; SIGKILL after STOP_TIMEOUT.
    pub fn stop(&self) -> Result<()> {
        let Some(pid) = self.pid() else { return Ok(()) };
        signal(pid, libc::SIGTERM)?;
        let mut slot = self.child.lock().unwrap();
        let child = slot.as_mut().context("not running")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                *slot = None;
                ensure!(status.success(), "{} exited with {status} on SIGTERM", self.name);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = signal(-pid, libc::SIGKILL);
                let _ = child.wait();
                *slot = None;
                bail!("{} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL to the node's process group (keepalived's VRRP child too:
    /// killing only its parent would let the child exit gracefully).
    pub fn kill(&self) -> Result<()> {
        let mut slot = self.child.lock().unwrap();
        let Some(child) = slot.as_mut() else { return Ok(()) };
        signal(-(child.id() as i32), libc::SIGKILL)?;
        child.wait()?;
        *slot = None;
        Ok(())
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the node's whole process group:
    /// a daemon starved of CPU, to the extreme.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        let pid = self.pid().context("not running")?;
        signal(-pid, if frozen { libc::SIGSTOP } else { libc::SIGCONT })
    }

    /// `directorctl --socket SOCK ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Result<Output> {
        ensure!(self.kind == Kind::Director, "{} is not a director", self.name);
        run_bounded(Command::new(workspace_bin("directorctl")?).arg("--socket").arg(self.socket()).args(args), TOOL_TIMEOUT)
    }

    /// The state word of `vrrp VI_1 …` in `directorctl status`.
    pub fn vrrp_state(&self) -> Result<String> {
        let out = self.ctl(&["status"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(out.status.success(), "{}: directorctl status: {text}{}", self.name, String::from_utf8_lossy(&out.stderr));
        vrrp_state_of(&text).with_context(|| format!("{}: no `vrrp VI_1` line in directorctl status:\n{text}", self.name))
    }

    /// The director's Prometheus exposition, fetched inside its namespace.
    pub fn metrics(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{METRICS_PORT}/metrics");
        self.ns.enter(|| -> Result<String> {
            let agent: ureq::Agent =
                ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().into();
            let mut resp = agent.get(&url).call().with_context(|| format!("GET {url}"))?;
            // Past ureq's default 10 MB: 10,000 real servers are ~11 MB.
            Ok(resp.body_mut().with_config().limit(MAX_METRICS).read_to_string()?)
        })?
    }

    /// Whether eth0 carries `vip` (`ip addr`).
    pub fn holds(&self, vip: IpAddr) -> Result<bool> {
        let out = self.ns.ip(&["-o", "addr", "show", "dev", "eth0"])?;
        Ok(out.lines().any(|l| l.contains(&format!(" {vip}/"))))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(cannot read the log: {e})"));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every log line containing `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        fs::read_to_string(&self.log).unwrap_or_default().lines().filter(|l| l.contains(needle)).map(String::from).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.stop().is_err() {
            let _ = self.kill();
        }
        if self.kind == Kind::Director && self.bpffs.exists() {
            let cleaned = workspace_bin("director").and_then(|d| {
                run_bounded(Command::new(d).arg("--cleanup").arg("--bpffs-dir").arg(&self.bpffs), TOOL_TIMEOUT)
            });
            if !cleaned.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("director --cleanup --bpffs-dir {}: {cleaned:?}; removing it by hand", self.bpffs.display());
            }
            // Unlinking what is left drops the last reference to the pins.
            let _ = fs::remove_dir_all(&self.bpffs);
        }
    }
}

// ---------------------------------------------------------------------------
// The LAN

/// A bridge with a client and VRRP nodes plugged in (and, with
/// `with_real_servers`, three LVS-DR real servers).
pub struct Lan {
    // Drop order: nodes (daemons stopped, pins removed) before the XDP
    // passer, the servers and the namespaces.
    pub nodes: Vec<Node>,
    _passer: Option<XdpProgram>,
    servers: Vec<EchoServer>,
    _rs: Vec<Netns>,
    pub client: Netns,
    pub switch: Netns,
    /// The VIP observed is VIP6.
    v6: bool,
}

impl Lan {
    /// The LAN with one node per kind, named k1/d1, k2/d2, … by position;
    /// nothing started.
    pub fn new(tag: &str, kinds: &[Kind]) -> Result<Lan> {
        let switch = Netns::new(&format!("{tag}-sw"))?;
        let client = Netns::new(&format!("{tag}-cli"))?;
        bridge(&switch, "br0")?;
        plug(&switch, "br0", "c0", &client, "eth0")?;
        client.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"])?;
        let mut nodes = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let name = format!("{}{}", kind.tag(), i + 1);
            let ns = Netns::new(&format!("{tag}-{name}"))?;
            let port = format!("p{}", i + 1);
            plug(&switch, "br0", &port, &ns, "eth0")?;
            let ip = node_ip(i);
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            let dir = TempDir::new(&format!("vrrp-{tag}-{name}"))?;
            nodes.push(Node {
                kind: *kind,
                ip,
                mac: mac(&ns, "eth0")?,
                port,
                child: Mutex::new(None),
                conf: dir.0.join("keepalived.conf"),
                log: dir.0.join("node.log"),
                bpffs: PathBuf::from(format!("/sys/fs/bpf/director-vrrp-{tag}-{name}-{}-{}", std::process::id(), unique())),
                dir,
                ns,
                name,
            });
        }
        Ok(Lan { nodes, _passer: None, servers: Vec::new(), _rs: Vec::new(), client, switch, v6: false })
    }

    /// Gives the client and the nodes addresses in fd90::/64 (without
    /// duplicate address detection, so they are usable at once) and
    /// observes VIP6 instead of VIP.
    pub fn with_ipv6(mut self) -> Result<Lan> {
        self.client.ip(&["addr", "add", "fd90::1/64", "dev", "eth0", "nodad"])?;
        for (i, n) in self.nodes.iter().enumerate() {
            n.ns.ip(&["addr", "add", &format!("fd90::{}/64", i + 2), "dev", "eth0", "nodad"])?;
        }
        self.v6 = true;
        Ok(self)
    }

    /// The VIP this lab observes.
    pub fn vip(&self) -> IpAddr {
        if self.v6 { VIP6.into() } else { VIP.into() }
    }

    /// Adds three real servers holding the VIP on lo (arp_ignore 1,
    /// arp_announce 2, as seed 002 sets them up), each with an echo
    /// listener; and what XDP_TX on veth needs from the directors' switch
    /// ports: a passing XDP program and no TX checksum offload (see
    /// TOOLCHAIN.md), the latter on the client too.
    pub fn with_real_servers(mut self, tag: &str) -> Result<Lan> {
        for (i, ip) in RS_IPS.iter().enumerate() {
            let ns = Netns::new(&format!("{tag}-rs{}", i + 1))?;
            plug(&self.switch, "br0", &format!("r{}", i + 1), &ns, "eth0")?;
            sysctl(&ns, "net.ipv4.conf.all.arp_ignore", "1")?;
            sysctl(&ns, "net.ipv4.conf.all.arp_announce", "2")?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            self.servers.push(EchoServer::start(&ns, SocketAddr::from(([0, 0, 0, 0], SERVICE_PORT)))?);
            self._rs.push(ns);
        }
        set_tx_csum(&self.client, "eth0", false)?;
        let ports: Vec<String> =
            self.nodes.iter().filter(|n| n.kind == Kind::Director).map(|n| n.port.clone()).collect();
        for p in &ports {
            // The bridge floods frames for a MAC it no longer knows (the
            // dead master's) to every port, the backup's too: its XDP
            // program must leave them alone (they are not addressed to it).
            set_tx_csum(&self.switch, p, false)?;
        }
        let passer = self.switch.enter(|| -> Result<XdpProgram> {
            let mut prog = XdpProgram::load_with(LoadOptions { ring_size: Some(3), max_conns: 16, ..Default::default() })?;
            for p in &ports {
                prog.attach(p)?;
            }
            Ok(prog)
        })??;
        self._passer = Some(passer);
        Ok(self)
    }

    /// An echo listener on every node itself (what answers on the VIP when
    /// the VRRP nodes are the servers, as with keepalived here: no IPVS).
    pub fn with_node_listeners(mut self) -> Result<Lan> {
        for n in &self.nodes {
            self.servers.push(EchoServer::start(&n.ns, SocketAddr::from(([0, 0, 0, 0], SERVICE_PORT)))?);
        }
        Ok(self)
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("no node {name} in this lab"))
    }

    /// Writes `inst` (plus `extra`) as node `i`'s configuration, the other
    /// nodes being its unicast peers.
    pub fn configure(&self, i: usize, inst: &Instance, extra: &str) -> Result<()> {
        ensure!(inst.ipv6 == self.v6, "an instance with ipv6={} in a lab with v6={}", inst.ipv6, self.v6);
        let peers: Vec<Ipv4Addr> = self.nodes.iter().filter(|n| n.ip != self.nodes[i].ip).map(|n| n.ip).collect();
        self.nodes[i].write_conf(&(inst.conf(self.nodes[i].ip, &peers) + extra))
    }

    /// The nodes whose eth0 carries the VIP, among those still on the LAN.
    pub fn addr_holders(&self) -> Result<Vec<&str>> {
        let mut out = Vec::new();
        for n in &self.nodes {
            if self.plugged(n)? && n.holds(self.vip())? {
                out.push(n.name.as_str());
            }
        }
        Ok(out)
    }

    fn plugged(&self, n: &Node) -> Result<bool> {
        Ok(!self.switch.ip(&["-o", "link", "show", "dev", &n.port])?.contains("state DOWN"))
    }

    /// Whose MAC the client's ARP entry for the VIP holds, after a TCP
    /// probe to the VIP (which resolves or refreshes it): a node's name,
    /// `None` when unresolved, or `unknown <mac>`.
    pub fn arp_owner(&self) -> Result<Option<String>> {
        self.client.enter(|| {
            let _ = TcpStream::connect_timeout(&SocketAddr::new(self.vip(), PROBE_PORT), Duration::from_millis(150));
        })?;
        let out = self.client.ip(&["neigh", "show", "to", &self.vip().to_string(), "dev", "eth0"])?;
        Ok(parse_neigh(&out).map(|m| {
            self.nodes.iter().find(|n| fmt_mac(&n.mac) == m).map_or_else(|| format!("unknown {m}"), |n| n.name.clone())
        }))
    }

    /// What the LAN shows now.
    pub fn observe(&self) -> Result<View<'_>> {
        let mut ctl = Vec::new();
        for n in self.nodes.iter().filter(|n| n.kind == Kind::Director && n.is_running()) {
            ctl.push((n.name.as_str(), n.vrrp_state()?));
        }
        Ok(View { addr: self.addr_holders()?, arp: self.arp_owner()?, ctl })
    }

    /// Polls until exactly `name` holds the VIP (see `View::shows`);
    /// returns how long that took.
    pub fn wait_holder(&self, name: &str, timeout: Duration) -> Result<Duration> {
        self.wait_holders(&[name], timeout)
    }

    /// Polls until `names`, and no other node, hold the VIP (see
    /// `View::shows`); returns how long that took.
    pub fn wait_holders(&self, names: &[&str], timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let view = self.observe()?;
            if view.shows(names) {
                return Ok(start.elapsed());
            }
            ensure!(start.elapsed() < timeout, "{} did not take the VIP within {timeout:?}: {view}", names.join(" and "));
            std::thread::sleep(POLL);
        }
    }

    /// Checks, for the whole `window`, that `name` alone holds the VIP.
    pub fn hold_steady(&self, name: &str, window: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < window {
            let view = self.observe()?;
            ensure!(
                view.shows(&[name]),
                "{:.2?} into a {window:?} window where {name} should keep the VIP: {view}",
                start.elapsed()
            );
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Takes node `name` off the LAN as a dying machine would: its switch
    /// port down, then SIGKILL. Returns the instant the port was down: from
    /// then on nothing reaches the node (listeners the test runs in its
    /// namespace live on in the test process, so a connection begun before
    /// the port went down may still be answered by it).
    pub fn crash(&self, name: &str) -> Result<Instant> {
        let n = self.node(name);
        self.switch.ip(&["link", "set", &n.port, "down"])?;
        let t0 = Instant::now();
        n.kill()?;
        Ok(t0)
    }

    /// On failure, every node's log tail goes with the error.
    pub fn explain<T>(&self, r: Result<T>) -> Result<T> {
        r.map_err(|e| {
            let logs: String = self
                .nodes
                .iter()
                .map(|n| format!("\n---- {} ({:?}) log ----\n{}", n.name, n.kind, n.log_tail(40)))
                .collect();
            e.context(format!("node logs:{logs}\n---- end of logs ----"))
        })
    }
}

/// Who holds the VIP, three ways.
pub struct View<'a> {
    /// Nodes on the LAN whose eth0 carries the VIP (`ip addr`).
    pub addr: Vec<&'a str>,
    /// Whose MAC the client's ARP entry for the VIP holds.
    pub arp: Option<String>,
    /// Running directors and their instance's state in `directorctl status`.
    pub ctl: Vec<(&'a str, String)>,
}

impl View<'_> {
    /// `holders` (and no other node) carry the VIP, the client resolves it
    /// to one of them, and every running director says MASTER if it is
    /// one of them, BACKUP if not.
    pub fn shows(&self, holders: &[&str]) -> bool {
        self.addr == holders
            && self.arp.as_deref().is_some_and(|a| holders.contains(&a))
            && self.ctl.iter().all(|(n, st)| st == if holders.contains(n) { "MASTER" } else { "BACKUP" })
    }
}

impl std::fmt::Display for View<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ip addr shows the VIP on {:?}, the client's ARP entry points to {:?}", self.addr, self.arp)?;
        if !self.ctl.is_empty() {
            write!(f, ", directorctl status says {:?}", self.ctl)?;
        }
        Ok(())
    }
}

/// The MAC of a usable `ip neigh show` entry (not FAILED / INCOMPLETE).
fn parse_neigh(out: &str) -> Option<String> {
    let line = out.lines().next()?;
    if line.contains("FAILED") || line.contains("INCOMPLETE") {
        return None;
    }
    let mut words = line.split_whitespace();
    words.by_ref().find(|w| *w == "lladdr")?;
    words.next().map(str::to_lowercase)
}

/// "vrrp VI_1     MASTER, priority 150, …" → "MASTER".
fn vrrp_state_of(status: &str) -> Option<String> {
    let rest = status.lines().find_map(|l| l.strip_prefix("vrrp VI_1 "))?;
    Some(rest.split_whitespace().next()?.trim_end_matches(',').to_string())
}

/// The sum of every sample whose name starts with `prefix` and whose
/// labels include the value `"label_value"` (the metric names are the
/// daemon's to choose; the reason label is keepalived's).
pub fn metric_sum(text: &str, prefix: &str, label_value: &str) -> f64 {
    let quoted = format!("=\"{label_value}\"");
    text.lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&quoted))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

// ---------------------------------------------------------------------------
// Traffic

/// The longest an echo server thread lives, whatever happens to the test.
const SERVER_LIFETIME: Duration = Duration::from_secs(300);

/// Echoes every byte of every connection back, a thread per connection;
/// stops (and joins) on drop.
struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    fn start(ns: &Netns, bind: SocketAddr) -> Result<EchoServer> {
        let listener = ns.enter(|| TcpListener::bind(bind))?.with_context(|| format!("binding {bind} in {}", ns.name()))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("echo".into()).spawn(move || accept_loop(&listener, &s))?;
        Ok(EchoServer { stop, thread: Some(thread) })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &Arc<AtomicBool>) {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; at most 50 ms.
        if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
            continue;
        }
        let Ok((stream, _)) = listener.accept() else { continue };
        let stop = stop.clone();
        if let Ok(h) = std::thread::Builder::new().name("echo-conn".into()).spawn(move || {
            let _ = echo(stream, &stop);
        }) {
            conns.push(h);
        }
        conns.retain(|h| !h.is_finished());
    }
    stop.store(true, Ordering::Relaxed);
    for h in conns {
        let _ = h.join();
    }
}

fn echo(mut s: TcpStream, stop: &AtomicBool) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_nodelay(true)?;
    // Short reads, so the stop flag is seen.
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => s.write_all(&buf[..n])?,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One byte out, the same byte back.
fn exchange(s: &mut TcpStream, b: u8) -> std::io::Result<()> {
    s.write_all(&[b])?;
    let mut got = [0u8; 1];
    s.read_exact(&mut got)?;
    if got[0] != b {
        return Err(std::io::Error::new(ErrorKind::InvalidData, format!("sent {b}, got {}", got[0])));
    }
    Ok(())
}

/// How often a long-lived connection exchanges a byte.
const CHAT_EVERY: Duration = Duration::from_millis(50);
/// A long-lived connection's read/write timeout: longer than any outage
/// TCP retransmission rides out here (the master's death plus
/// Master_Down_Interval plus the retransmission backoff, ~6 s).
const CHAT_IO_TIMEOUT: Duration = Duration::from_secs(20);
/// New connections: connect and echo timeouts, so a SYN lost to a dead
/// master costs one attempt, not the kernel's 1 s SYN retransmission.
const NEW_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
const NEW_IO_TIMEOUT: Duration = Duration::from_millis(300);
/// Parallel new-connection streams, each attempting every NEW_EVERY (plus
/// the attempt itself): the failover is seen within ~NEW_EVERY/STREAMS of
/// the VIP answering again.
const STREAMS: usize = 4;
const NEW_EVERY: Duration = Duration::from_millis(40);

#[derive(Default)]
struct ChatState {
    exchanges: u64,
    last_ok: Option<Instant>,
    /// The longest wait for an echo.
    max_gap: Duration,
    error: Option<String>,
}

/// Long-lived connections and a stream of new ones to the VIP, from the
/// client namespace, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    chats: Vec<Arc<Mutex<ChatState>>>,
    /// (start, end) of every successful new connection.
    news: Arc<Mutex<Vec<(Instant, Instant)>>>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Traffic {
    fn start(client: &Netns, long_lived: usize) -> Result<Traffic> {
        let vip = SocketAddr::from((VIP, SERVICE_PORT));
        let stop = Arc::new(AtomicBool::new(false));
        let mut t = Traffic { stop: stop.clone(), chats: Vec::new(), news: Arc::default(), threads: Vec::new() };
        for i in 0..long_lived {
            let mut s = client
                .enter(|| TcpStream::connect_timeout(&vip, Duration::from_secs(2)))?
                .with_context(|| format!("opening long-lived connection {i}"))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(CHAT_IO_TIMEOUT))?;
            s.set_write_timeout(Some(CHAT_IO_TIMEOUT))?;
            let state = Arc::new(Mutex::new(ChatState::default()));
            let (st, stop) = (state.clone(), stop.clone());
            t.threads.push(std::thread::Builder::new().name(format!("chat-{i}")).spawn(move || {
                let mut b = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    b = b.wrapping_add(1);
                    let sent = Instant::now();
                    if let Err(e) = exchange(&mut s, b) {
                        st.lock().unwrap().error = Some(format!("{e} after {:.2?}", sent.elapsed()));
                        return Ok(());
                    }
                    let mut g = st.lock().unwrap();
                    g.exchanges += 1;
                    g.last_ok = Some(Instant::now());
                    g.max_gap = g.max_gap.max(sent.elapsed());
                    drop(g);
                    std::thread::sleep(CHAT_EVERY);
                }
                Ok(())
            })?);
            t.chats.push(state);
        }
        for i in 0..STREAMS {
            let (news, stop) = (t.news.clone(), stop.clone());
            t.threads.push(client.spawn(&format!("new-{i}"), move || {
                // Staggered, so the streams' attempts interleave.
                std::thread::sleep(NEW_EVERY * i as u32 / STREAMS as u32);
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let ok = TcpStream::connect_timeout(&vip, NEW_CONNECT_TIMEOUT).and_then(|mut s| {
                        s.set_read_timeout(Some(NEW_IO_TIMEOUT))?;
                        s.set_write_timeout(Some(NEW_IO_TIMEOUT))?;
                        exchange(&mut s, 42)
                    });
                    if ok.is_ok() {
                        news.lock().unwrap().push((start, Instant::now()));
                    }
                    std::thread::sleep(NEW_EVERY);
                }
                Ok(())
            })?);
        }
        Ok(t)
    }

    /// Every long-lived connection has exchanged `n` bytes and `n` new
    /// connections succeeded.
    fn warmed_up(&self, n: u64) -> bool {
        self.chats.iter().all(|c| c.lock().unwrap().exchanges >= n) && self.news.lock().unwrap().len() as u64 >= n
    }

    /// The end of the first new connection begun after `t0`.
    fn first_new_after(&self, t0: Instant) -> Option<Instant> {
        self.news.lock().unwrap().iter().filter(|(s, _)| *s >= t0).map(|(_, e)| *e).min()
    }

    /// Long-lived connections that failed, and those that have not
    /// exchanged since `t0`.
    fn chat_counts(&self, t0: Instant) -> (usize, usize) {
        let mut failed = 0;
        let mut waiting = 0;
        for c in &self.chats {
            let g = c.lock().unwrap();
            if g.error.is_some() {
                failed += 1;
            } else if g.last_ok.is_none_or(|t| t <= t0) {
                waiting += 1;
            }
        }
        (failed, waiting)
    }

    fn errors(&self) -> Vec<String> {
        self.chats.iter().filter_map(|c| c.lock().unwrap().error.clone()).collect()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a failover under traffic measured.
#[derive(Debug)]
pub struct Failover {
    /// From the kill to the end of the first new connection (begun after
    /// the kill) answered through the VIP.
    pub failover_ms: u64,
    /// Long-lived connections that broke, or did not exchange again before
    /// the deadline.
    pub conns_lost: usize,
    /// The longest a long-lived connection waited for an echo it got (the
    /// outage as TCP retransmission rode it out); None without any.
    pub stall_ms: Option<u64>,
    /// The backup's Master_Down_Interval.
    pub master_down: Duration,
}

/// Long-lived connections held through the director failover.
pub const LONG_LIVED: usize = 20;
/// From the kill to the new connections answering and every long-lived
/// connection talking again (or failing).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);

/// Two nodes of `kind` (node 1 MASTER priority 150, node 2 BACKUP priority
/// 100, VRRPv2 multicast, PASS auth), traffic to the VIP, node 1 crashed.
/// Directors run the DR service to three real servers and carry
/// LONG_LIVED long-lived connections; keepalived nodes (no IPVS on this
/// kernel) answer on the VIP themselves, so only new connections count.
pub fn failover_under_traffic(tag: &str, kind: Kind) -> Result<Failover> {
    let lan = Lan::new(tag, &[kind, kind])?;
    let lan = match kind {
        Kind::Director => lan.with_real_servers(tag)?,
        Kind::Keepalived => lan.with_node_listeners()?,
    };
    lan.explain(failover_in(&lan, kind))
}

fn failover_in(lan: &Lan, kind: Kind) -> Result<Failover> {
    let extra = if kind == Kind::Director { dr_service() } else { String::new() };
    let master = Instance::new(Version::V2, Cast::Multicast, true, 150);
    let backup = Instance::new(Version::V2, Cast::Multicast, false, 100);
    lan.configure(0, &master, &extra)?;
    lan.configure(1, &backup, &extra)?;
    let (first, second) = (&lan.nodes[0], &lan.nodes[1]);
    first.start()?;
    second.start()?;
    lan.wait_holder(&first.name, Duration::from_secs(15))?;

    let long_lived = if kind == Kind::Director { LONG_LIVED } else { 0 };
    let ready = Instant::now() + Duration::from_secs(15);
    let traffic = loop {
        // The first connection through the VIP waits for next hops.
        match Traffic::start(&lan.client, long_lived) {
            Ok(t) => break t,
            Err(e) if Instant::now() < ready => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.context("traffic to the VIP before the failover")),
        }
    };
    let warm = Instant::now() + Duration::from_secs(10);
    while !traffic.warmed_up(5) {
        ensure!(
            Instant::now() < warm,
            "traffic not flowing before the failover: {} new connections, chats {:?}",
            traffic.news.lock().unwrap().len(),
            traffic.errors()
        );
        std::thread::sleep(POLL);
    }

    let t0 = lan.crash(&first.name)?;
    let deadline = t0 + FAILOVER_DEADLINE;
    let failover = loop {
        let new = traffic.first_new_after(t0);
        let (_, waiting) = traffic.chat_counts(t0);
        if let Some(n) = new.filter(|_| waiting == 0) {
            break n;
        }
        if Instant::now() >= deadline {
            let view = lan.observe()?;
            break new.with_context(|| {
                format!(
                    "no new connection through the VIP within {FAILOVER_DEADLINE:?} of killing {}; now {view}; \
                     {} new connections answered before the kill",
                    first.name,
                    traffic.news.lock().unwrap().len()
                )
            })?;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    lan.wait_holder(&second.name, Duration::from_secs(10))?;
    let (failed, waiting) = traffic.chat_counts(t0);
    let errors = traffic.errors();
    if !errors.is_empty() {
        eprintln!("long-lived connections that failed: {errors:?}");
    }
    Ok(Failover {
        failover_ms: failover.duration_since(t0).as_millis() as u64,
        conns_lost: failed + waiting,
        stall_ms: traffic.chats.iter().map(|c| c.lock().unwrap().max_gap).max().map(|g| g.as_millis() as u64),
        master_down: backup.master_down(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_multicast_master_with_auth() {
        let conf = Instance::new(Version::V2, Cast::Multicast, true, 150).conf(node_ip(0), &[node_ip(1)]);
        assert_eq!(
            conf,
            "vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        10.90.0.100
    }
}
"
        );
    }

    #[test]
    fn v3_unicast_nopreempt_backup() {
        let mut i = Instance::new(Version::V3, Cast::Unicast, false, 100);
        i.nopreempt = true;
        let conf = i.conf(node_ip(1), &[node_ip(0)]);
        assert!(conf.contains("    state BACKUP\n"), "{conf}");
        assert!(conf.contains("    version 3\n    nopreempt\n"), "{conf}");
        assert!(conf.contains("    unicast_src_ip 10.90.0.3\n    unicast_peer {\n        10.90.0.2\n    }\n"), "{conf}");
        assert!(!conf.contains("authentication"), "v3 has no auth: {conf}");
    }

    #[test]
    fn master_down_interval() {
        // 3 s + (256 - 100) / 256 s.
        assert_eq!(Instance::new(Version::V2, Cast::Multicast, false, 100).master_down(), Duration::from_micros(3_609_375));
        assert_eq!(Instance::new(Version::V2, Cast::Multicast, false, 255).master_down(), Duration::from_nanos(3_003_906_250));
    }

    #[test]
    fn neigh_entries() {
        assert_eq!(parse_neigh("10.90.0.100 lladdr 02:AA:bb:cc:dd:ee REACHABLE\n").as_deref(), Some("02:aa:bb:cc:dd:ee"));
        assert_eq!(parse_neigh("10.90.0.100 lladdr 02:aa:bb:cc:dd:ee STALE\n").as_deref(), Some("02:aa:bb:cc:dd:ee"));
        assert_eq!(parse_neigh("10.90.0.100 INCOMPLETE\n"), None);
        assert_eq!(parse_neigh("10.90.0.100 lladdr 02:aa:bb:cc:dd:ee FAILED\n"), None);
        assert_eq!(parse_neigh(""), None);
    }

    #[test]
    fn vrrp_state_in_status() {
        let status = "config  /x (generation 1)\nvrrp VI_1     BACKUP, priority 90 (configured 100), VRID 51 on eth0 (v2)\n";
        assert_eq!(vrrp_state_of(status).as_deref(), Some("BACKUP"));
        assert_eq!(vrrp_state_of("vrrp VI_10    MASTER, priority 1\n"), None);
    }

    #[test]
    fn metric_sums_by_label_value() {
        let text = "# HELP x\ndirector_vrrp_rejects_total{instance=\"VI_1\",reason=\"auth\"} 3\n\
                    director_vrrp_rejects_total{instance=\"VI_1\",reason=\"ttl\"} 1\n\
                    director_vs_packets_total{reason=\"auth\"} 9\n";
        assert_eq!(metric_sum(text, "director_vrrp", "auth"), 3.0);
        assert_eq!(metric_sum(text, "director_vrrp", "vrid"), 0.0);
    }
}

/// Records when each advert from `from` reached the client's LAN (the
/// kernel's receive time, so the test's own busy threads cannot widen a
/// gap), until the first one after `stop` (which brackets the load's end),
/// or `linger` after `stop` if none comes. Run it in the client's namespace.
pub fn adverts_from(from: Ipv4Addr, stop: &AtomicBool, stamps: &Mutex<Vec<Instant>>, linger: Duration) -> Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
    sock.join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &CLIENT_IP)?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::from_ref(&on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(rc == 0, "SO_TIMESTAMPNS: {}", std::io::Error::last_os_error());
    let mut stopped: Option<Instant> = None;
    let mut buf = [0u8; 2048];
    while stopped.is_none_or(|t| t.elapsed() < linger) {
        if stopped.is_none() && stop.load(Ordering::Relaxed) {
            stopped = Some(Instant::now());
        }
        let Ok((src, at)) = recv_stamped(&sock, &mut buf) else { continue };
        if src == from {
            // The receive time on the monotonic clock the load is timed by.
            let ago = SystemTime::now().duration_since(at).unwrap_or_default();
            stamps.lock().unwrap().push(Instant::now().checked_sub(ago).context("receive time")?);
            if stopped.is_some() {
                break;
            }
        }
    }
    Ok(())
}

/// One datagram: its source and the kernel's receive timestamp.
fn recv_stamped(sock: &Socket, buf: &mut [u8]) -> std::io::Result<(Ipv4Addr, SystemTime)> {
    // SAFETY: all-zero is a valid sockaddr_in, msghdr.
    let mut src: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // u64s: aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = std::ptr::from_mut(&mut src).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: msg names live buffers of the lengths it gives.
    if unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut at = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                at = Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let at = at.ok_or_else(|| std::io::Error::other("no receive timestamp"))?;
    Ok((Ipv4Addr::from(u32::from_be(src.sin_addr.s_addr)), at))
}
