//! From raw frame to a `Parsed` flow: Ethernet, one optional 802.1Q tag,
//! IPv4 or IPv6, and the L4 ports.

use director_common::{
    lb::{FlowKey, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP},
    stats::Reason,
    vrrp::IPPROTO_VRRP,
};

use super::{Packet, hdr::*};

/// What the fast path needs to know about an IP packet.
pub struct Parsed {
    /// Offset of the IP header (after Ethernet and any VLAN tag).
    pub l3: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    pub v6: bool,
    /// src/dst addresses, protocol; ports stay 0 until `ports` fills them.
    pub key: FlowKey,
    /// Set when the packet cannot be scheduled even if it is for a VIP:
    /// the drop reason to use in that case.
    pub irregular: Option<Reason>,
}

/// Parses L2 and L3. Err carries the pass reason for frames that are not IP
/// or cannot be read far enough to tell.
#[inline(always)]
pub fn parse(pkt: &Packet) -> Result<Parsed, Reason> {
    let eth: *const Eth = pkt.ptr(0).ok_or(Reason::PassTruncated)?;
    let mut proto = unsafe { (*eth).proto };
    let mut l3 = ETH_LEN;
    if proto == ETH_P_8021Q {
        let vlan: *const Vlan = pkt.ptr(ETH_LEN).ok_or(Reason::PassTruncated)?;
        proto = unsafe { (*vlan).proto };
        l3 = ETH_LEN + VLAN_LEN;
    }
    if proto == ETH_P_IP {
        ipv4(pkt, l3)
    } else if proto == ETH_P_IPV6 {
        ipv6(pkt, l3)
    } else {
        Err(Reason::PassNotIp)
    }
}

#[inline(always)]
fn ipv4(pkt: &Packet, l3: usize) -> Result<Parsed, Reason> {
    let ip: *const Ipv4 = pkt.ptr(l3).ok_or(Reason::PassTruncated)?;
    let (vihl, frag, proto, src, dst) =
        unsafe { ((*ip).vihl, (*ip).frag, (*ip).proto, (*ip).src, (*ip).dst) };
    if vihl >> 4 != 4 || vihl & 0x0f < 5 {
        return Err(Reason::PassMalformed);
    }
    let irregular = if frag & IPV4_FRAG_MASK != 0 {
        Some(Reason::DropFragment)
    } else if vihl & 0x0f != 5 {
        Some(Reason::DropIpv4Options)
    } else {
        None
    };
    Ok(Parsed {
        l3,
        l4: l3 + IPV4_LEN,
        v6: false,
        key: FlowKey { src: [src, 0, 0, 0], dst: [dst, 0, 0, 0], proto, family: 4, ..Default::default() },
        irregular,
    })
}

#[inline(always)]
fn ipv6(pkt: &Packet, l3: usize) -> Result<Parsed, Reason> {
    let ip: *const Ipv6 = pkt.ptr(l3).ok_or(Reason::PassTruncated)?;
    let (vcf, next, src, dst) = unsafe { ((*ip).vcf, (*ip).next, (*ip).src, (*ip).dst) };
    if u32::from_be(vcf) >> 28 != 6 {
        return Err(Reason::PassMalformed);
    }
    let irregular = match next {
        PROTO_TCP | PROTO_UDP | PROTO_ICMPV6 | IPPROTO_VRRP => None,
        // Fragment header (44) and every other extension header: we do not
        // walk header chains on the fast path.
        _ => Some(Reason::DropIpv6ExtHeader),
    };
    Ok(Parsed {
        l3,
        l4: l3 + IPV6_LEN,
        v6: true,
        key: FlowKey { src, dst, proto: next, family: 6, ..Default::default() },
        irregular,
    })
}

/// Fills in the ports for TCP/UDP. None when the L4 header is cut short.
#[inline(always)]
pub fn ports(pkt: &Packet, p: &mut Parsed) -> Option<()> {
    let ports: *const Ports = pkt.ptr(p.l4)?;
    unsafe {
        p.key.sport = (*ports).src;
        p.key.dport = (*ports).dst;
    }
    Some(())
}

#[inline(always)]
pub fn is_icmp(p: &Parsed) -> bool {
    (!p.v6 && p.key.proto == PROTO_ICMP) || (p.v6 && p.key.proto == PROTO_ICMPV6)
}
