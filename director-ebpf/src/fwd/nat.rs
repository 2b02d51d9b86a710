//! NAT: destination translation towards the real server, and source
//! translation of its replies back to the VIP. Checksums are updated
//! incrementally (RFC 1624); XDP has no csum_replace helpers.
//!
//! Replies go back to the L2 hop the client's packets came from, learned
//! when the flow was scheduled: the path is symmetric through the director,
//! so no routing lookup is needed.

use aya_ebpf::programs::XdpContext;
use director_common::{
    csum,
    lb::{CONN_NAT_REPLY, Conn, FlowKey, PROTO_TCP, PROTO_UDP, Real},
    stats::Reason,
};

use super::{send, set_macs};
use crate::{
    maps::CONNS,
    net::{
        Packet,
        hdr::{Eth, Ipv4, Ipv6, Ports, TCP_CHECK_OFF, UDP_CHECK_OFF},
        parse::Parsed,
    },
    verdict::Verdict,
};

#[inline(always)]
pub fn dnat(ctx: &XdpContext, pkt: &Packet, p: &Parsed, real: &Real, new: Option<&Conn>) -> Verdict {
    let Some(eth) = pkt.ptr::<Eth>(0) else { return Verdict::drop(Reason::DropTruncatedL4) };
    let (client_mac, our_mac) = unsafe { ((*eth).src, (*eth).dst) };
    let port = if real.port != 0 { real.port } else { p.key.dport };
    if rewrite(pkt, p, Side::Dst, &real.addr, port).is_none() {
        return Verdict::drop(Reason::DropTruncatedL4);
    }
    if let Some(conn) = new {
        let reply = FlowKey {
            src: real.addr,
            dst: p.key.src,
            sport: port,
            dport: p.key.sport,
            proto: p.key.proto,
            family: p.key.family,
            _pad: [0; 2],
        };
        let back = Conn {
            kind: CONN_NAT_REPLY,
            vip: p.key.dst,
            vport: p.key.dport,
            client_mac,
            our_mac,
            ifindex: ctx.ingress_ifindex() as u32,
            ..*conn
        };
        let _ = CONNS.insert(&reply, &back, 0);
    }
    if set_macs(pkt, &real.mac, &real.src_mac).is_none() {
        return Verdict::drop(Reason::DropTruncatedL4);
    }
    send(ctx, real.ifindex, Reason::FwdNat)
}

/// A NAT real server's reply (`back` is its CONN_NAT_REPLY entry).
#[inline(always)]
pub fn reply(ctx: &XdpContext, pkt: &Packet, p: &Parsed, back: &Conn) -> Verdict {
    if rewrite(pkt, p, Side::Src, &back.vip, back.vport).is_none()
        || set_macs(pkt, &back.client_mac, &back.our_mac).is_none()
    {
        return Verdict::drop(Reason::DropTruncatedL4);
    }
    send(ctx, back.ifindex, Reason::FwdNatReply)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
}

/// Replaces one side's address and port, fixing the IPv4 header checksum
/// and the TCP/UDP checksum (whose pseudo-header covers the address).
#[inline(always)]
fn rewrite(pkt: &Packet, p: &Parsed, side: Side, addr: &[u32; 4], port: u16) -> Option<()> {
    let check_off = if p.key.proto == PROTO_TCP { TCP_CHECK_OFF } else { UDP_CHECK_OFF };
    let l4_check: *mut u16 = pkt.ptr(p.l4 + check_off)?;
    let ports: *mut Ports = pkt.ptr(p.l4)?;
    unsafe {
        let mut check = core::ptr::read_unaligned(l4_check);
        // IPv4 UDP may carry no checksum at all; leave it that way.
        let no_l4_check = p.key.proto == PROTO_UDP && check == 0 && !p.v6;
        if p.v6 {
            let ip: *mut Ipv6 = pkt.ptr(p.l3)?;
            let old = if side == Side::Dst { (*ip).dst } else { (*ip).src };
            check = csum::replace128(check, &old, addr);
            if side == Side::Dst {
                (*ip).dst = *addr;
            } else {
                (*ip).src = *addr;
            }
        } else {
            let ip: *mut Ipv4 = pkt.ptr(p.l3)?;
            let old = if side == Side::Dst { (*ip).dst } else { (*ip).src };
            (*ip).check = csum::replace32((*ip).check, old, addr[0]);
            check = csum::replace32(check, old, addr[0]);
            if side == Side::Dst {
                (*ip).dst = addr[0];
            } else {
                (*ip).src = addr[0];
            }
        }
        let old_port = if side == Side::Dst { (*ports).dst } else { (*ports).src };
        check = csum::replace16(check, old_port, port);
        if side == Side::Dst {
            (*ports).dst = port;
        } else {
            (*ports).src = port;
        }
        if !no_l4_check {
            // In UDP a computed 0 is sent as all ones (RFC 768).
            if check == 0 && p.key.proto == PROTO_UDP {
                check = 0xffff;
            }
            core::ptr::write_unaligned(l4_check, check);
        }
    }
    Some(())
}
