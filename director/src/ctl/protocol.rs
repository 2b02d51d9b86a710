//! The control socket's protocol: one JSON request per line, one JSON
//! response per line. `version` lets a newer directorctl talk to an older
//! daemon (and say clearly when it cannot).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::status::Snapshot;

pub const VERSION: u32 = 1;
pub const DEFAULT_SOCKET: &str = "/run/director/director.sock";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The whole snapshot (status and list both render it).
    Status,
    /// Connection-table entries (`directorctl list -c`).
    Connections,
    /// Administrative state of real servers.
    RealServer { target: RealTarget, action: AdminAction },
    /// Re-read the configuration file; keep the running one on error. A
    /// dry run checks it and answers with the plan, changing nothing.
    Reload {
        #[serde(default)]
        dry_run: bool,
    },
}

/// `IP[:PORT] [--vs VIP:PORT]`: which real servers a command means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealTarget {
    pub addr: IpAddr,
    /// None: every port of that address.
    pub port: Option<u16>,
    /// None: in every virtual server that has it.
    pub virtual_server: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "weight", rename_all = "snake_case")]
pub enum AdminAction {
    /// Weight 0: no new connections, existing ones finish.
    Disable,
    /// Back to the configured weight.
    Enable,
    Weight(u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status { snapshot: Box<Snapshot> },
    Connections { entries: Vec<ConnView> },
    /// One line per real server changed, e.g. "192.168.122.10:80 in TCP 192.168.122.100:80: weight 1 -> 0 (disabled)".
    Changed { changes: Vec<String> },
    Reloaded { generation: u64, warnings: Vec<String> },
    /// What a reload would change, one line each (`reload --dry-run`).
    ReloadPlan { changes: Vec<String> },
    Error { message: String },
}

/// One connection-table entry, as `ipvsadm -Lnc` lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    /// "TCP" or "UDP".
    pub proto: String,
    pub source: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub destination: SocketAddr,
}
