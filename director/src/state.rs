//! The desired state of one data plane: the services it should be
//! forwarding right now. `daemon::desired` computes it (with the rest the
//! daemon programs) from every input, and a data plane applies it as a diff.

use std::{net::IpAddr, time::Duration};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DesiredState {
    pub services: Vec<ServiceSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proto {
    Tcp,
    Udp,
    /// IPVS only.
    Sctp,
    /// An IPVS firewall-mark service (IPVS only): `vip` is the family's
    /// unspecified address and `port` is 0.
    Fwmark(u32),
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
            Proto::Sctp => "SCTP",
            Proto::Fwmark(_) => "FWM",
        })
    }
}

/// (VIP, port, protocol); port 0 means every port of the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceAddr {
    pub vip: IpAddr,
    pub port: u16,
    pub proto: Proto,
}

impl ServiceAddr {
    pub fn socket(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.vip, self.port)
    }
}

/// As ipvsadm shows it: `TCP 192.168.122.100:80`, `TCP [fd00::1]:80`, `FWM 7`.
impl std::fmt::Display for ServiceAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.proto {
            Proto::Fwmark(m) if self.vip.is_ipv6() => write!(f, "FWM {m} IPv6"),
            Proto::Fwmark(m) => write!(f, "FWM {m}"),
            _ => write!(f, "{} {}", self.proto, self.socket()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceSpec {
    pub addr: ServiceAddr,
    /// keepalived's `lvs_sched` name (rr, wlc, sh, mh, ...).
    pub sched: String,
    pub persistence: Option<Persistence>,
    pub reals: Vec<RealSpec>,
    pub sorry: Option<RealSpec>,
    /// Maglev ring slots (XDP), sized from the configured real servers,
    /// not the healthy ones, so a health flap never resizes the ring.
    pub ring_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Persistence {
    pub timeout: Duration,
    /// Client addresses under this mask share a real server
    /// (`persistence_granularity`; all ones by default).
    pub granularity: IpAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Method {
    Dr,
    Tun,
    Nat,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RealSpec {
    pub addr: IpAddr,
    pub port: u16,
    /// 0 = quiescent: no new flows, existing ones continue.
    pub weight: u32,
    pub method: Method,
    pub next_hop: NextHop,
}

/// How to reach a real server at L2, resolved by the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NextHop {
    /// The real server's (or its gateway's) MAC.
    pub mac: [u8; 6],
    /// Our MAC on the egress interface.
    pub src_mac: [u8; 6],
    pub ifindex: u32,
    /// Outer source address for TUN.
    pub tun_src: Option<IpAddr>,
}
