//! Frame builders for fixtures, on etherparse: it computes every checksum
//! itself, so comparing our program's output with a frame built here checks
//! our incremental checksums against an independent implementation.

use std::net::IpAddr;

use etherparse::{
    EtherType, Ethernet2Header, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, PacketBuilder,
    PacketBuilderStep, TcpHeader, VlanId,
};

pub type Mac = [u8; 6];

/// One L4 segment's identity; the payload is fixed per builder call.
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub vlan: Option<u16>,
}

pub const PAYLOAD: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// A TCP SYN-ish segment (fixed seq/window so input and expected match).
pub fn tcp(s: &Seg) -> Vec<u8> {
    match l3(s) {
        L3::V4(b) | L3::V6(b) => b.tcp(s.sport, s.dport, 1000, 65535).bytes(PAYLOAD),
    }
}

/// A TCP SYN: a new connection.
pub fn tcp_syn(s: &Seg) -> Vec<u8> {
    match l3(s) {
        L3::V4(b) | L3::V6(b) => b.tcp(s.sport, s.dport, 1000, 65535).syn().bytes(PAYLOAD),
    }
}

pub fn udp(s: &Seg) -> Vec<u8> {
    match l3(s) {
        L3::V4(b) | L3::V6(b) => b.udp(s.sport, s.dport).bytes(PAYLOAD),
    }
}

enum L3 {
    V4(PacketBuilderStep<etherparse::IpHeaders>),
    V6(PacketBuilderStep<etherparse::IpHeaders>),
}


fn l3(s: &Seg) -> L3 {
    let eth = PacketBuilder::ethernet2(s.src_mac, s.dst_mac);
    match (s.src, s.dst, s.vlan) {
        (IpAddr::V4(a), IpAddr::V4(b), None) => L3::V4(eth.ipv4(a.octets(), b.octets(), 64)),
        (IpAddr::V4(a), IpAddr::V4(b), Some(v)) => {
            L3::V4(eth.single_vlan(VlanId::try_new(v).expect("vlan id")).ipv4(a.octets(), b.octets(), 64))
        }
        (IpAddr::V6(a), IpAddr::V6(b), None) => L3::V6(eth.ipv6(a.octets(), b.octets(), 64)),
        (IpAddr::V6(a), IpAddr::V6(b), Some(v)) => {
            L3::V6(eth.single_vlan(VlanId::try_new(v).expect("vlan id")).ipv6(a.octets(), b.octets(), 64))
        }
        _ => panic!("mixed address families in a fixture"),
    }
}

/// The two terminal builder steps share `write`, but not through a trait.
pub trait Writable {
    fn bytes(self, payload: &[u8]) -> Vec<u8>;
}

impl Writable for PacketBuilderStep<TcpHeader> {
    fn bytes(self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v, payload).expect("writing a frame");
        v
    }
}

impl Writable for PacketBuilderStep<etherparse::UdpHeader> {
    fn bytes(self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v, payload).expect("writing a frame");
        v
    }
}

/// `inner` (an IP packet) inside a fresh IPIP or IPv6-in-IPv6 header, as a
/// TUN real server should receive it.
pub fn tunnel(dst_mac: Mac, src_mac: Mac, outer_src: IpAddr, outer_dst: IpAddr, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match (outer_src, outer_dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(
                &Ethernet2Header { source: src_mac, destination: dst_mac, ether_type: EtherType::IPV4 }.to_bytes(),
            );
            let mut h = Ipv4Header::new(inner.len() as u16, 64, IpNumber::IPV4, s.octets(), d.octets()).unwrap();
            h.identification = 0;
            // The outer header copies the inner DF bit.
            h.dont_fragment = inner[6] & 0x40 != 0;
            h.header_checksum = h.calc_header_checksum();
            out.extend_from_slice(&h.to_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(
                &Ethernet2Header { source: src_mac, destination: dst_mac, ether_type: EtherType::IPV6 }.to_bytes(),
            );
            let h = Ipv6Header {
                traffic_class: 0,
                flow_label: Ipv6FlowLabel::ZERO,
                payload_length: inner.len() as u16,
                next_header: IpNumber::IPV6,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            };
            out.extend_from_slice(&h.to_bytes());
        }
        _ => panic!("mixed address families in a tunnel"),
    }
    out.extend_from_slice(inner);
    out
}

/// An ICMP "fragmentation needed" (v4) or "packet too big" (v6) from a
/// router to `to`, quoting the start of `quoted` (an IP packet).
pub fn too_big(src_mac: Mac, dst_mac: Mac, router: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let quote = &quoted[..quoted.len().min(64)];
    let mut v = Vec::new();
    match (router, to) {
        (IpAddr::V4(r), IpAddr::V4(t)) => {
            use etherparse::{Icmpv4Type, icmpv4::DestUnreachableHeader};
            PacketBuilder::ethernet2(src_mac, dst_mac)
                .ipv4(r.octets(), t.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: 1400,
                }))
                .write(&mut v, quote)
                .unwrap();
        }
        (IpAddr::V6(r), IpAddr::V6(t)) => {
            PacketBuilder::ethernet2(src_mac, dst_mac)
                .ipv6(r.octets(), t.octets(), 64)
                .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
                .write(&mut v, quote)
                .unwrap();
        }
        _ => panic!("mixed address families"),
    }
    v
}

/// An ICMP echo request (ping) to `to`.
pub fn ping(src_mac: Mac, dst_mac: Mac, from: IpAddr, to: IpAddr) -> Vec<u8> {
    let mut v = Vec::new();
    match (from, to) {
        (IpAddr::V4(f), IpAddr::V4(t)) => PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv4(f.octets(), t.octets(), 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut v, b"ping")
            .unwrap(),
        (IpAddr::V6(f), IpAddr::V6(t)) => PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(f.octets(), t.octets(), 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut v, b"ping")
            .unwrap(),
        _ => panic!("mixed address families"),
    }
    v
}

/// Replaces the Ethernet addresses, as DR does.
pub fn with_macs(frame: &[u8], dst: Mac, src: Mac) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f
}

/// The IPv4 header checksum of a frame's IP header (at `l3`), recomputed.
pub fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    frame[l3 + 10] = 0;
    frame[l3 + 11] = 0;
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    let mut sum = 0u32;
    for c in frame[l3..l3 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
}

/// A VRRP message (`msg`, e.g. `director::vrrp::Advert::encode`'s output)
/// from `src` to `dst` with the given TTL / hop limit.
pub fn vrrp(src_mac: Mac, dst_mac: Mac, src: IpAddr, dst: IpAddr, ttl: u8, msg: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let step = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), ttl),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), ttl),
        _ => panic!("mixed address families"),
    };
    let mut v = Vec::new();
    step.write(&mut v, IpNumber::VRRP, msg).expect("writing a frame");
    v
}
