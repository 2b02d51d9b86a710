//! The typed configuration, with keepalived's defaults already applied.
//!
//! Conventions:
//! - Every time value is a `std::time::Duration`; JSON output shows it as
//!   seconds (a float), the unit keepalived.conf uses.
//! - Values a checker inherits (connect_timeout, retry, delay_before_retry,
//!   delay_loop, warmup, alpha, virtualhost) are resolved: each `Checker`
//!   holds its effective value, whichever level of the config set it.
//! - A config that produced errors still yields a `Config` (for tooling), but
//!   its content is only meaningful where no error was reported; e.g. a VRRP
//!   instance without `virtual_router_id` has `virtual_router_id == 0`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::Serialize;

pub use super::keywords::CheckerKind;

/// The whole keepalived.conf.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Config {
    pub global: GlobalDefs,
    pub vrrp_scripts: Vec<VrrpScript>,
    pub track_files: Vec<TrackFile>,
    pub sync_groups: Vec<VrrpSyncGroup>,
    pub instances: Vec<VrrpInstance>,
    pub virtual_server_groups: Vec<VirtualServerGroup>,
    pub virtual_servers: Vec<VirtualServer>,
}

/// `global_defs { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GlobalDefs {
    pub router_id: Option<String>,
    pub notification_email: Vec<String>,
    pub notification_email_from: Option<String>,
    pub smtp_server: Option<SmtpServer>,
    pub smtp_helo_name: Option<String>,
    #[serde(serialize_with = "secs")]
    pub smtp_connect_timeout: Duration,
    pub smtp_alert: Option<bool>,
    pub smtp_alert_vrrp: Option<bool>,
    pub smtp_alert_checker: Option<bool>,
    pub no_email_faults: bool,
    pub enable_script_security: bool,
    pub script_user: Option<RunAs>,
    /// Interface for addresses that name none (keepalived: eth0).
    pub default_interface: String,
    pub vrrp_version: u8,
    pub vrrp_mcast_group4: Ipv4Addr,
    pub vrrp_mcast_group6: Ipv6Addr,
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_master_delay: Duration,
    pub vrrp_garp_master_repeat: u32,
    #[serde(serialize_with = "opt_secs")]
    pub vrrp_garp_master_refresh: Option<Duration>,
    pub vrrp_garp_master_refresh_repeat: u32,
    #[serde(serialize_with = "secs")]
    pub vrrp_garp_interval: Duration,
    #[serde(serialize_with = "secs")]
    pub vrrp_gna_interval: Duration,
    pub vrrp_strict: bool,
    pub vrrp_skip_check_adv_addr: bool,
    pub vrrp_check_unicast_src: bool,
    #[serde(serialize_with = "secs")]
    pub vrrp_startup_delay: Duration,
    pub lvs_flush: bool,
    pub checker_log_all_failures: bool,
    /// `lvs_timeouts tcp N tcpfin N udp N`: IPVS connection timeouts, seconds.
    pub lvs_timeouts: LvsTimeouts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct LvsTimeouts {
    pub tcp: Option<u32>,
    pub tcpfin: Option<u32>,
    pub udp: Option<u32>,
}

impl Default for GlobalDefs {
    fn default() -> Self {
        GlobalDefs {
            router_id: None,
            notification_email: Vec::new(),
            notification_email_from: None,
            smtp_server: None,
            smtp_helo_name: None,
            smtp_connect_timeout: Duration::from_secs(30),
            smtp_alert: None,
            smtp_alert_vrrp: None,
            smtp_alert_checker: None,
            no_email_faults: false,
            enable_script_security: false,
            script_user: None,
            default_interface: "eth0".to_string(),
            vrrp_version: 2,
            vrrp_mcast_group4: Ipv4Addr::new(224, 0, 0, 18),
            vrrp_mcast_group6: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12),
            vrrp_garp_master_delay: Duration::from_secs(5),
            vrrp_garp_master_repeat: 5,
            vrrp_garp_master_refresh: None,
            vrrp_garp_master_refresh_repeat: 1,
            vrrp_garp_interval: Duration::ZERO,
            vrrp_gna_interval: Duration::ZERO,
            vrrp_strict: false,
            vrrp_skip_check_adv_addr: false,
            vrrp_check_unicast_src: false,
            vrrp_startup_delay: Duration::ZERO,
            lvs_timeouts: LvsTimeouts::default(),
            lvs_flush: false,
            checker_log_all_failures: false,
        }
    }
}

/// `smtp_server HOST [PORT]`; HOST is an address or a host name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
}

/// The user (and optional group) a script runs as.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunAs {
    pub user: String,
    pub group: Option<String>,
}

/// A script keepalived runs: a command line, split into words the way
/// keepalived does (spaces separate words, single quotes group them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Script {
    /// The command as written (quotes removed).
    pub command: String,
    pub argv: Vec<String>,
    pub run_as: Option<RunAs>,
}

/// The notify scripts of a VRRP instance or sync group.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Notify {
    pub master: Option<Script>,
    pub backup: Option<Script>,
    pub fault: Option<Script>,
    pub stop: Option<Script>,
    /// `notify`: run on every transition with extra arguments.
    pub any: Option<Script>,
}

/// `vrrp_script NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpScript {
    pub name: String,
    pub script: Option<Script>,
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    #[serde(serialize_with = "opt_secs")]
    pub timeout: Option<Duration>,
    /// Priority change; 0 (default) means "fault on failure".
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub init_fail: bool,
}

impl VrrpScript {
    pub fn new(name: String) -> Self {
        VrrpScript {
            name,
            script: None,
            interval: Duration::from_secs(1),
            timeout: None,
            weight: 0,
            weight_reverse: false,
            rise: 1,
            fall: 1,
            init_fail: false,
        }
    }
}

/// `track_file NAME { ... }` (old name: `vrrp_track_file`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackFile {
    pub name: String,
    pub file: Option<String>,
    pub weight: i32,
    pub reverse: bool,
    /// `init_file [VALUE] [overwrite]`.
    pub init_file: Option<TrackFileInit>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackFileInit {
    pub value: i64,
    pub overwrite: bool,
}

/// `vrrp_sync_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpSyncGroup {
    pub name: String,
    pub members: Vec<String>,
    pub track_interface: Vec<Tracked>,
    pub track_script: Vec<Tracked>,
    pub track_file: Vec<Tracked>,
    pub notify: Notify,
    pub smtp_alert: Option<bool>,
    pub sync_group_tracking_weight: bool,
}

/// An entry of a `track_interface` / `track_script` / `track_file` block:
/// `NAME [weight N] [reverse|noreverse]`. `weight: None` uses the tracked
/// object's own weight (scripts, files) or "fault when down" (interfaces).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracked {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: bool,
}

/// VRRP initial state. keepalived reads anything but MASTER as BACKUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VrrpState {
    Master,
    Backup,
}

/// `vrrp_instance NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpInstance {
    pub name: String,
    /// Initial state; when absent keepalived uses MASTER if priority is 255.
    pub state: VrrpState,
    pub interface: Option<String>,
    pub virtual_router_id: u8,
    /// When absent: 255 for `state MASTER`, else 100 (as keepalived).
    pub priority: u8,
    /// VRRPv2: whole seconds; VRRPv3: centisecond resolution.
    #[serde(serialize_with = "secs")]
    pub advert_int: Duration,
    pub version: u8,
    pub nopreempt: bool,
    #[serde(serialize_with = "secs")]
    pub preempt_delay: Duration,
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub virtual_ipaddress_excluded: Vec<VirtualAddress>,
    pub unicast_src_ip: Option<IpAddr>,
    pub mcast_src_ip: Option<IpAddr>,
    pub mcast_dst_ip: Option<IpAddr>,
    pub unicast_peer: Vec<UnicastPeer>,
    pub unicast_ttl: Option<u8>,
    pub check_unicast_src: bool,
    pub track_interface: Vec<Tracked>,
    pub track_script: Vec<Tracked>,
    pub track_file: Vec<Tracked>,
    pub dont_track_primary: bool,
    pub use_vmac: Option<Vmac>,
    pub vmac_xmit_base: bool,
    #[serde(serialize_with = "secs")]
    pub garp_master_delay: Duration,
    pub garp_master_repeat: u32,
    #[serde(serialize_with = "opt_secs")]
    pub garp_master_refresh: Option<Duration>,
    pub garp_master_refresh_repeat: u32,
    pub notify: Notify,
    pub smtp_alert: Option<bool>,
    /// `accept` / `no_accept`; `None` = keepalived's default (accept unless strict).
    pub accept: Option<bool>,
    pub strict_mode: bool,
    pub skip_check_adv_addr: bool,
}

/// `authentication { auth_type PASS|AH; auth_pass SECRET }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authentication {
    pub auth_type: AuthType,
    /// At most 8 characters (keepalived truncates longer ones).
    pub auth_pass: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AuthType {
    Pass,
    Ah,
}

/// `use_vmac [NAME] [MAC]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vmac {
    pub name: Option<String>,
    pub mac: Option<String>,
}

/// One `virtual_ipaddress` entry:
/// `ADDR[/PREFIX] [brd X] [dev IF] [scope S] [label L] [peer P] [flags...]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualAddress {
    pub addr: IpAddr,
    /// 32 / 128 when not written.
    pub prefix: u8,
    pub brd: Option<Broadcast>,
    pub dev: Option<String>,
    pub scope: Option<String>,
    pub label: Option<String>,
    pub peer: Option<IpAddr>,
    pub use_vmac: bool,
    pub no_track: bool,
    /// Flags passed to the kernel as written: home, -nodad, mngtmpaddr,
    /// noprefixroute, autojoin, `preferred_lft N|forever`.
    pub flags: Vec<String>,
}

impl VirtualAddress {
    /// `ADDR/PREFIX` with no options.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        VirtualAddress {
            addr,
            prefix,
            brd: None,
            dev: None,
            scope: None,
            label: None,
            peer: None,
            use_vmac: false,
            no_track: false,
            flags: Vec::new(),
        }
    }
}

/// `brd ADDR`, or `brd +` / `brd -` to set / clear the host bits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Broadcast {
    Addr(IpAddr),
    SetHostBits,
    ClearHostBits,
}

/// `unicast_peer { ADDR [min_ttl N] [max_ttl N] }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnicastPeer {
    pub addr: IpAddr,
    pub min_ttl: Option<u8>,
    pub max_ttl: Option<u8>,
}

/// `virtual_server_group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualServerGroup {
    pub name: String,
    pub entries: Vec<VsGroupEntry>,
}

/// A group member: an address or address range with optional port, or a fwmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum VsGroupEntry {
    /// `first == last` for a single address.
    Range {
        first: IpAddr,
        last: IpAddr,
        port: Option<u16>,
    },
    Fwmark {
        mark: u32,
        family: Option<Family>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    Inet,
    Inet6,
}

/// How a virtual server is named.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum VsKey {
    Addr { ip: IpAddr, port: u16 },
    Fwmark(u32),
    Group(String),
}

impl std::fmt::Display for VsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VsKey::Addr {
                ip: IpAddr::V6(ip),
                port,
            } => write!(f, "[{ip}]:{port}"),
            VsKey::Addr { ip, port } => write!(f, "{ip}:{port}"),
            VsKey::Fwmark(m) => write!(f, "fwmark {m}"),
            VsKey::Group(g) => write!(f, "group {g}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The spelling used in keepalived.conf.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// LVS forwarding method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LvsMethod {
    Nat,
    Dr,
    Tun(Tunnel),
}

/// `lvs_method TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]`.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Tunnel {
    pub kind: TunnelKind,
    pub checksum: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub enum TunnelKind {
    #[default]
    Ipip,
    Gue {
        port: u16,
    },
    Gre,
}

/// `virtual_server IP PORT | fwmark N | group NAME { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VirtualServer {
    pub key: VsKey,
    /// keepalived's default scheduler is `wlc`.
    pub lvs_sched: String,
    pub lvs_method: LvsMethod,
    /// keepalived (like the kernel) defaults to UDP when `protocol` is absent.
    pub protocol: Protocol,
    /// Seconds; `persistence_timeout` without a value means 360.
    pub persistence_timeout: Option<u32>,
    pub persistence_granularity: Option<IpAddr>,
    pub persistence_engine: Option<String>,
    pub ha_suspend: bool,
    pub ops: bool,
    pub smtp_alert: Option<bool>,
    pub virtualhost: Option<String>,
    pub alpha: bool,
    pub omega: bool,
    pub quorum: u32,
    pub hysteresis: u32,
    pub quorum_up: Option<Script>,
    pub quorum_down: Option<Script>,
    pub ip_family: Option<Family>,
    pub sorry_server: Option<SorryServer>,
    #[serde(serialize_with = "secs")]
    pub delay_loop: Duration,
    pub inhibit_on_failure: bool,
    pub real_servers: Vec<RealServer>,
    /// `director_dataplane xdp|ipvs` (director's own keyword): which data
    /// plane serves this service; None follows `--dataplane`.
    pub director_dataplane: Option<DataplaneChoice>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneChoice {
    Xdp,
    Ipvs,
}

/// `sorry_server IP [PORT]` and its companions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SorryServer {
    pub ip: IpAddr,
    pub port: u16,
    pub inhibit: bool,
    pub lvs_method: LvsMethod,
}

/// `real_server IP [PORT] { ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealServer {
    pub ip: IpAddr,
    /// The virtual server's port when not written (0 for fwmark services).
    pub port: u16,
    pub weight: u32,
    pub lvs_method: LvsMethod,
    pub inhibit_on_failure: bool,
    pub notify_up: Option<Script>,
    pub notify_down: Option<Script>,
    pub uthreshold: Option<u32>,
    pub lthreshold: Option<u32>,
    pub smtp_alert: Option<bool>,
    pub checkers: Vec<Checker>,
}

/// One health checker of a real server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checker {
    pub common: CheckCommon,
    pub check: Check,
}

impl Checker {
    pub fn kind(&self) -> CheckerKind {
        match self.check {
            Check::Tcp => CheckerKind::Tcp,
            Check::Http(_) => CheckerKind::Http,
            Check::Ssl(_) => CheckerKind::Ssl,
            Check::Misc(_) => CheckerKind::Misc,
            Check::Smtp(_) => CheckerKind::Smtp,
            Check::Dns(_) => CheckerKind::Dns,
            Check::Udp(_) => CheckerKind::Udp,
            Check::Ping => CheckerKind::Ping,
            Check::File(_) => CheckerKind::File,
        }
    }
}

/// Options shared by the checkers, resolved through inheritance
/// (checker → real_server → virtual_server → keepalived default).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckCommon {
    /// Defaults to the real server's address.
    pub connect_ip: Option<IpAddr>,
    /// Defaults to the real server's port.
    pub connect_port: Option<u16>,
    pub bindto: Option<IpAddr>,
    pub bind_if: Option<String>,
    pub bind_port: Option<u16>,
    pub fwmark: Option<u32>,
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// Default 1; DNS_CHECK 3; MISC_CHECK 0.
    pub retry: u32,
    /// Default 1 s; HTTP_GET/SSL_GET 3 s; DNS_CHECK the delay_loop.
    #[serde(serialize_with = "secs")]
    pub delay_before_retry: Duration,
    #[serde(serialize_with = "secs")]
    pub delay_loop: Duration,
    /// Random initial delay bound; `None` = up to delay_loop.
    #[serde(serialize_with = "opt_secs")]
    pub warmup: Option<Duration>,
    pub alpha: bool,
    pub log_all_failures: bool,
}

/// The checker type and its own options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Check {
    Tcp,
    Http(HttpCheck),
    Ssl(HttpCheck),
    Misc(MiscCheck),
    Smtp(SmtpCheck),
    Dns(DnsCheck),
    Udp(UdpCheck),
    Ping,
    File(FileCheck),
}

/// HTTP_GET / SSL_GET options.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct HttpCheck {
    pub urls: Vec<Url>,
    /// `1.0`, `1.0C` or `1.1`; keepalived sends 1.0 when unset.
    pub http_protocol: Option<String>,
    pub fast_recovery: bool,
    /// Host header, inherited from real_server / virtual_server.
    pub virtualhost: Option<String>,
    pub enable_sni: bool,
    pub sni_name: Option<String>,
    pub verify_cert: bool,
}

/// `url { path P; digest D; status_code 200-299 404 ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Url {
    pub path: String,
    /// MD5 of the body, lower-case hex (as `genhash` prints it).
    pub digest: Option<String>,
    /// Inclusive ranges; default 200-299.
    pub status_code: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
    pub regex: Option<String>,
    pub regex_no_match: bool,
}

/// MISC_CHECK options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiscCheck {
    pub misc_path: Option<Script>,
    #[serde(serialize_with = "opt_secs")]
    pub misc_timeout: Option<Duration>,
    pub misc_dynamic: bool,
    /// The global `enable_script_security`, resolved into the checker.
    pub script_security: bool,
}

/// SMTP_CHECK options.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct SmtpCheck {
    pub helo_name: Option<String>,
}

/// DNS_CHECK options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsCheck {
    /// A, NS, CNAME, SOA (default), MX, TXT or AAAA.
    pub query_type: String,
    pub name: String,
}

/// UDP_CHECK options. Hex strings are kept as written (keepalived's
/// free-form hex, where `X` in `require_reply` matches any nibble).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UdpCheck {
    pub payload: Option<String>,
    pub require_reply: bool,
    pub reply_pattern: Option<String>,
    pub min_reply_length: u32,
    pub max_reply_length: u32,
}

/// FILE_CHECK options. Once the whole config is built, the named
/// `track_file` block is resolved into it: `file`, and `weight`/`reverse`
/// when FILE_CHECK sets no (or a zero) weight, as keepalived does.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCheck {
    pub track_file: String,
    pub dynamic: bool,
    pub weight: Option<i32>,
    pub reverse: bool,
    /// The `file` of the `track_file` block (None: the block is missing).
    pub file: Option<String>,
    /// The real server's configured weight, the base `dynamic` adds to.
    pub base_weight: u32,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
