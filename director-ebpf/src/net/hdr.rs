//! Wire headers. Multi-byte fields hold network byte order exactly as in the
//! frame: we compare and copy them raw and only swap where arithmetic needs it.

pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6: u16 = 0x86DDu16.to_be();
pub const ETH_P_8021Q: u16 = 0x8100u16.to_be();

pub const ETH_LEN: usize = 14;
pub const VLAN_LEN: usize = 4;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;

pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_IPV6: u8 = 41;

#[repr(C, packed)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub proto: u16,
}

#[repr(C, packed)]
pub struct Vlan {
    pub tci: u16,
    pub proto: u16,
}

#[repr(C, packed)]
pub struct Ipv4 {
    pub vihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub src: u32,
    pub dst: u32,
}

/// MF flag and fragment offset, network order.
pub const IPV4_FRAG_MASK: u16 = 0x3fffu16.to_be();
pub const IPV4_DF: u16 = 0x4000u16.to_be();

#[repr(C, packed)]
pub struct Ipv6 {
    pub vcf: u32,
    pub payload_len: u16,
    pub next: u8,
    pub hop_limit: u8,
    pub src: [u32; 4],
    pub dst: [u32; 4],
}

/// The first four bytes of TCP and UDP.
#[repr(C, packed)]
pub struct Ports {
    pub src: u16,
    pub dst: u16,
}

#[repr(C, packed)]
pub struct Icmp {
    pub kind: u8,
    pub code: u8,
    pub check: u16,
    pub rest: u32,
}

pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMPV6_PKT_TOOBIG: u8 = 2;
pub const ICMP_LEN: usize = 8;

/// Where each L4 checksum sits, from the start of the L4 header.
pub const TCP_CHECK_OFF: usize = 16;
pub const UDP_CHECK_OFF: usize = 6;

/// The fixed VRRP header (RFC 3768 §5.1, RFC 5798 §5.1).
#[repr(C, packed)]
pub struct Vrrp {
    /// Version in the high nibble, type in the low.
    pub vtype: u8,
    pub vrid: u8,
    pub priority: u8,
    pub count: u8,
    /// v2: auth type, then the interval in seconds. v3: 4 reserved bits and
    /// 12 bits of centiseconds.
    pub word: [u8; 2],
    pub check: u16,
}
