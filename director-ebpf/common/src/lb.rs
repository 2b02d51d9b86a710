//! Service, real-server and connection-table types: the keys and values of
//! the load-balancing maps.
//!
//! Addresses are four big-endian-as-stored u32 words (the bytes exactly as
//! on the wire). IPv4 uses word 0 and leaves the rest zero, so one key type
//! serves both families.

/// Map names, shared so userspace and the program cannot disagree.
pub mod maps {
    pub const SERVICES: &str = "SERVICES";
    pub const VIPS: &str = "VIPS";
    pub const RINGS: &str = "RINGS";
    pub const REALS: &str = "REALS";
    pub const CONNS: &str = "CONNS";
    pub const PERSIST: &str = "PERSIST";
    pub const STATS: &str = "STATS";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const REAL_STATS: &str = "REAL_STATS";
    pub const LOCAL_MACS: &str = "LOCAL_MACS";
}

/// Bumped whenever a map's key or value layout changes: pinned maps live
/// under a directory named after it, so a daemon never adopts maps of
/// another layout. A daemon finding an older layout takes over its XDP
/// links (forwarding continues) but starts with fresh maps.
/// 2: STATS got spare slots (`stats::STATS_SLOTS`); VRRP maps and
/// LOCAL_MACS added.
/// 3: rings are sized per service (`Service::ring_base`/`ring_size` into
/// one pool); 1,024 services, 4,096 keys, 16,384 real servers.
pub const MAP_LAYOUT_VERSION: u32 = 3;

/// Services (rings, SERVICE_STATS slots); SERVICES may hold more keys,
/// since a virtual_server_group maps several keys onto one ring.
pub const MAX_SERVICES: u32 = 1024;
/// SERVICES keys, and VIPS addresses.
pub const MAX_SERVICE_KEYS: u32 = 4096;
pub const MAX_REALS: u32 = 16384;
pub const DEFAULT_MAX_CONNS: u32 = 1 << 20;
/// The RINGS array: every service's ring is a power-of-two block of it
/// (16 MiB of slots).
pub const DEFAULT_RING_SLOTS: u32 = 1 << 22;
/// A ring slot or sorry server that points nowhere.
pub const NO_REAL: u32 = u32::MAX;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// How a real server is reached (keepalived's `lvs_method`).
pub mod method {
    /// Direct routing: rewrite the MAC, keep the packet.
    pub const DR: u8 = 0;
    /// IP-in-IP (IPv4) or IPv6-in-IPv6 encapsulation.
    pub const TUN: u8 = 1;
    /// Destination NAT inbound, source NAT on the way back.
    pub const NAT: u8 = 2;
}

/// Which packet fields feed the ring hash (how lvs_sched maps onto Maglev).
pub mod hash_by {
    /// Addresses, ports and protocol: per-flow spreading.
    pub const FLOW: u8 = 0;
    /// Client address only (sh, persistence-like stickiness).
    pub const SOURCE: u8 = 1;
    /// Destination address only (dh, lblc, lblcr).
    pub const DEST: u8 = 2;
}

/// `Service::flags`
pub const SVC_PERSISTENT: u32 = 1;

/// `Real::flags`
pub const REAL_PRESENT: u32 = 1;
/// Weight 0: no ring slot. A TCP SYN on a flow still pinned to it (a client
/// reusing its ports) is scheduled afresh, as IPVS's conn_reuse_mode does.
pub const REAL_QUIESCED: u32 = 2;

/// (VIP, port, protocol, family). Port 0 is the "all ports" service; in the
/// VIPS map port and protocol are 0 and the key just says "this is a VIP".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub addr: [u32; 4],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// Ring number and index into SERVICE_STATS.
    pub id: u32,
    pub flags: u32,
    /// Persistence: client address mask (persistence_granularity).
    pub persist_mask: [u32; 4],
    pub persist_timeout_ns: u64,
    /// Used when the ring has no usable real; NO_REAL to drop.
    pub sorry_real: u32,
    pub hash_by: u8,
    pub _pad: [u8; 3],
    /// The ring: RINGS[ring_base .. ring_base + ring_size], a prime size.
    pub ring_base: u32,
    pub ring_size: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    pub addr: [u32; 4],
    /// NAT target port, network byte order; 0 keeps the client's port.
    pub port: u16,
    pub method: u8,
    /// 4 or 6.
    pub family: u8,
    /// Next hop towards the real server (its MAC on a shared segment).
    pub mac: [u8; 6],
    /// Our MAC on the egress interface.
    pub src_mac: [u8; 6],
    pub ifindex: u32,
    pub flags: u32,
    /// Outer source address for TUN.
    pub tun_src: [u32; 4],
    /// Changes whenever this slot is given to another server, so a
    /// connection pinned to the slot's previous owner is recognised as stale.
    pub generation: u32,
    /// The service (ring) it belongs to; lets a restarted daemon adopt the
    /// maps it finds pinned.
    pub service: u32,
}

/// A flow as the client sent it. Ports are network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    pub _pad: [u8; 2],
}

/// `Conn::kind`
pub const CONN_FORWARD: u8 = 0;
/// A NAT real server's reply flow, to be translated back to the VIP.
pub const CONN_NAT_REPLY: u8 = 1;

/// Connection-table value. Both directions of a NAT flow live in the one
/// table, so any established packet costs a single hash lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    /// The real server (REALS index) the flow is pinned to.
    pub real: u32,
    /// Its service (SERVICE_STATS index).
    pub service: u32,
    /// `Real::generation` when pinned; a mismatch means the real is gone.
    pub generation: u32,
    pub kind: u8,
    pub _pad: [u8; 3],
    /// CONN_NAT_REPLY only: what the client expects to see, and the hop its
    /// packets came from (`client_mac`) on `ifindex`, where we are `our_mac`.
    pub vip: [u32; 4],
    pub vport: u16,
    pub client_mac: [u8; 6],
    pub our_mac: [u8; 6],
    pub _pad2: [u8; 2],
    pub ifindex: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    pub service: u32,
    pub client: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Persist {
    pub real: u32,
    pub _pad: u32,
    pub last_ns: u64,
}

/// Per service or per real, per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounter {
    pub packets: u64,
    pub bytes: u64,
    /// Flows scheduled (connection-table misses that picked this target).
    pub conns: u64,
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<ServiceKey>() == 20);
    assert!(size_of::<Service>() == 48);
    assert!(size_of::<Real>() == 64);
    assert!(size_of::<FlowKey>() == 40);
    assert!(size_of::<Conn>() == 52);
    assert!(size_of::<PersistKey>() == 20);
    assert!(size_of::<Persist>() == 16);
    assert!(size_of::<TrafficCounter>() == 24);
    assert!(size_of::<LocalMacs>() == 28);
};

/// Interfaces the LOCAL_MACS array covers (by ifindex); frames arriving on
/// a higher ifindex are not filtered by destination MAC.
pub const MAX_LOCAL_IFINDEX: u32 = 4096;
/// MACs per interface: its own and the VMACs of the VRRP instances it is master of.
pub const MAX_LOCAL_MACS: usize = 4;

/// The destination MACs a frame arriving on one interface must carry for
/// the program to forward it; other frames (a switch flooding another
/// host's traffic) go to the kernel, which drops them. `count` 0: no filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalMacs {
    pub count: u32,
    pub macs: [[u8; 6]; MAX_LOCAL_MACS],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) with explicit padding fields; every bit pattern is valid.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for Real {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for Conn {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for Persist {}
    unsafe impl aya::Pod for TrafficCounter {}
    unsafe impl aya::Pod for LocalMacs {}
}
