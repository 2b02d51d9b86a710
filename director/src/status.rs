//! What the daemon reports about itself: one snapshot type that the control
//! socket (`directorctl status` / `list`) and the Prometheus endpoint both
//! render, so they can never disagree.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub daemon: DaemonView,
    pub services: Vec<ServiceView>,
    /// Packets/bytes per verdict reason (`pass_not_service`, `fwd_dr`, ...).
    pub reasons: Vec<ReasonView>,
    /// The VRRP instances (absent from daemons older than VRRP).
    #[serde(default)]
    pub vrrp: Vec<VrrpView>,
}

/// One VRRP instance, kept current by its task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    /// "INIT", "BACKUP", "MASTER" or "FAULT".
    pub state: String,
    /// Effective priority (after tracking) and the configured one.
    pub priority: u8,
    pub base_priority: u8,
    /// Ourselves when master, the master's advert source when backup.
    pub master: Option<IpAddr>,
    pub vips: Vec<IpAddr>,
    pub transitions: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    /// Received adverts dropped, by reason (`vrrp::Reject::counter`).
    pub rejects: std::collections::BTreeMap<String, u64>,
    pub send_errors: u64,
    /// Master_Down_Timer expiries that the XDP advert record showed to be
    /// the daemon's lateness, not the master's death (no takeover).
    #[serde(default)]
    pub late_timer_saves: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonView {
    pub version: String,
    pub pid: u32,
    pub config_file: String,
    /// Bumped by every successful (re)load.
    pub config_generation: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// The last reload error, `file:line:col: ...` lines.
    pub last_reload_error: Option<String>,
    /// "xdp" or "ipvs".
    pub dataplane: String,
    pub interfaces: Vec<InterfaceView>,
    pub uptime_secs: u64,
    /// The XDP data plane's limits and what is in use (none without XDP).
    #[serde(default)]
    pub limits: Vec<LimitView>,
}

/// One limit of the XDP maps: `services`, `service_keys`, `vips`,
/// `real_servers`, `ring_slots`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitView {
    pub name: String,
    pub used: u64,
    pub max: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceView {
    pub name: String,
    /// "native" or "skb".
    pub attach_mode: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// "TCP", "UDP", "SCTP" or "FWM".
    pub proto: String,
    pub vip: IpAddr,
    pub port: u16,
    /// keepalived's lvs_sched name.
    pub sched: String,
    /// persistence_timeout in seconds, when persistent.
    pub persistence_secs: Option<u64>,
    /// persistence_granularity when it is not a single address, as ipvsadm
    /// shows it (`255.255.255.0`, or `64` for IPv6).
    #[serde(default)]
    pub persistence_mask: Option<String>,
    /// A firewall-mark service (proto "FWM"; vip and port are then unused).
    #[serde(default)]
    pub fwmark: Option<u32>,
    pub reals: Vec<RealView>,
    pub sorry: Option<RealView>,
    pub traffic: TrafficView,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealView {
    pub addr: IpAddr,
    pub port: u16,
    /// ipvsadm's column: "Route", "Tunnel" or "Masq".
    pub forward: String,
    /// From the configuration.
    pub configured_weight: u32,
    /// What the data plane uses after admin and health decisions.
    pub effective_weight: u32,
    /// "enabled", "disabled" (directorctl rs disable) or an explicit weight.
    pub admin: AdminState,
    /// "up", "down" or "unknown" (no checker yet).
    pub health: String,
    /// Connections the data plane has pinned to this server (from the
    /// connection table: established / other).
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub traffic: TrafficView,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "weight")]
pub enum AdminState {
    Enabled,
    Disabled,
    /// `directorctl rs weight IP N`.
    Weight(u32),
}

/// Counters as ipvsadm --stats shows them. XDP sees only the inbound
/// direction except for NAT replies, so `out_*` are zero for DR and TUN, as
/// they are in IPVS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficView {
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonView {
    /// e.g. "fwd_dr".
    pub reason: String,
    /// "pass", "drop" or "fwd".
    pub action: String,
    pub packets: u64,
    pub bytes: u64,
}
