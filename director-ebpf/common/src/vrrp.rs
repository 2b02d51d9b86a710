//! The VRRP advert fast path: which VRRP instances this host runs (filled
//! by userspace) and the latest valid advert the XDP program saw for each.
//!
//! Keys are per interface, as VRIDs are: the same VRID may name two
//! different routers on two LANs.

/// Map names, shared so userspace and the program cannot disagree.
pub mod maps {
    pub const VRRP_INSTANCES: &str = "VRRP_INSTANCES";
    pub const VRRP_ADVERTS: &str = "VRRP_ADVERTS";
    pub const VRRP_PEERS: &str = "VRRP_PEERS";
    pub const VRRP_RATE: &str = "VRRP_RATE";
}

/// IP protocol number (IPv4) and next header (IPv6) of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The TTL / hop limit every advert of a multicast instance must carry
/// (RFC 3768 §7.1, RFC 5798 §7.1), whatever its destination, as the VRRP
/// socket checks. A unicast instance's adverts may cross routers: only a
/// peer's min_ttl / max_ttl applies to them.
pub const VRRP_TTL: u8 = 255;
/// 224.0.0.18, as the bytes sit in the packet.
pub const VRRP_GROUP_V4: u32 = u32::from_ne_bytes([224, 0, 0, 18]);
/// ff02::12, as the bytes sit in the packet.
pub const VRRP_GROUP_V6: [u32; 4] =
    [u32::from_ne_bytes([0xff, 0x02, 0, 0]), 0, 0, u32::from_ne_bytes([0, 0, 0, 0x12])];
/// Fixed VRRP header, both versions.
pub const HEADER_LEN: usize = 8;
/// v2 authentication data, after the addresses.
pub const AUTH_DATA_LEN: usize = 8;
/// The only VRRP message type.
pub const TYPE_ADVERT: u8 = 1;
/// v3 Max Adver Int: 12 bits of centiseconds.
pub const V3_INTERVAL_MASK: u16 = 0x0fff;

/// VRRP_INSTANCES and VRRP_ADVERTS hold at most this many keys (a VRID per
/// family on a few interfaces, plus one marker per interface and family).
pub const MAX_VRRP_KEYS: u32 = 1024;
/// VRRP_PEERS: `unicast_peer` entries over all instances.
pub const MAX_VRRP_PEERS: u32 = 4096;
/// VRRP_RATE: the (instance, source) pairs being counted; an LRU, so a
/// flood from many sources only evicts old counts.
pub const MAX_VRRP_SOURCES: u32 = 8192;
/// At most RATE_BURST adverts per source and instance pass in a window of
/// RATE_WINDOW_NS: 200 a second, twice the fastest router (VRRPv3 at one
/// centisecond), so no real router is ever held back.
pub const RATE_BURST: u32 = 20;
pub const RATE_WINDOW_NS: u64 = 100_000_000;

/// VRID 0 is not a valid router id (RFC 5798 §5.2.3): the key with VRID 0
/// marks an (interface, family) on which director runs VRRP. Only there does
/// the program drop adverts for VRIDs it does not know; elsewhere every
/// VRRP packet passes untouched.
pub const MARKER_VRID: u8 = 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VrrpKey {
    /// The interface the advert arrives on.
    pub ifindex: u32,
    /// 4 or 6.
    pub family: u8,
    pub vrid: u8,
    pub _pad: [u8; 2],
}

/// What we run for a VRID: an advert is recorded only when it matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpInstance {
    /// 2 or 3; 0 in the marker entry.
    pub version: u8,
    /// v2 only: 0 none, 1 PASS (keepalived's `auth_type PASS`).
    pub auth_type: u8,
    /// 1 when the instance has `unicast_peer`s: adverts may then carry any
    /// TTL but their peer's min/max; 0 (multicast) requires TTL 255.
    pub unicast: u8,
    /// 1 with `check_unicast_src`: only sources in VRRP_PEERS are heard.
    pub check_src: u8,
    pub _pad: [u8; 4],
    /// v2 PASS: the first 8 bytes of the password, zero-padded.
    pub auth: [u8; AUTH_DATA_LEN],
}

/// An advert's sender for an instance: a VRRP_PEERS and VRRP_RATE key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VrrpSource {
    pub key: VrrpKey,
    /// As on the wire; IPv4 in word 0.
    pub addr: [u32; 4],
}

/// A `unicast_peer`'s TTL range; 0 and 255 where none is configured.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpPeer {
    pub min_ttl: u8,
    pub max_ttl: u8,
}

/// Adverts counted from one source in its current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpRate {
    pub window_ns: u64,
    pub count: u32,
    pub _pad: u32,
}

/// The latest valid advert for a VRID we run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VrrpAdvert {
    /// The sender (IP source), as on the wire; IPv4 in word 0.
    pub src: [u32; 4],
    /// bpf_ktime_get_ns() on arrival: CLOCK_MONOTONIC.
    pub last_ns: u64,
    /// Valid adverts recorded under this key since it was created.
    pub count: u64,
    /// The advertised interval in centiseconds (v2 seconds × 100).
    pub interval_cs: u16,
    pub priority: u8,
    pub version: u8,
    pub _pad: [u8; 4],
}

const _: () = {
    use core::mem::size_of;
    assert!(size_of::<VrrpKey>() == 8);
    assert!(size_of::<VrrpInstance>() == 16);
    assert!(size_of::<VrrpAdvert>() == 40);
    assert!(size_of::<VrrpSource>() == 24);
    assert!(size_of::<VrrpPeer>() == 2);
    assert!(size_of::<VrrpRate>() == 16);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: repr(C) with explicit padding fields; every bit pattern is valid.
    unsafe impl aya::Pod for VrrpKey {}
    unsafe impl aya::Pod for VrrpInstance {}
    unsafe impl aya::Pod for VrrpAdvert {}
    unsafe impl aya::Pod for VrrpSource {}
    unsafe impl aya::Pod for VrrpPeer {}
    unsafe impl aya::Pod for VrrpRate {}
}
