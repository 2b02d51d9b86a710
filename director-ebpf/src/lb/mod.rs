//! The load-balancing decision: is the packet for a service, which real
//! server gets it, and how it is sent there.

mod icmp;
mod schedule;

use aya_ebpf::programs::XdpContext;
use director_common::{
    lb::{
        CONN_NAT_REPLY, Conn, FlowKey, MAX_LOCAL_MACS, PROTO_TCP, PROTO_UDP, REAL_PRESENT, REAL_QUIESCED,
        Real, Service, ServiceKey,
    },
    stats::Reason,
    vrrp::IPPROTO_VRRP,
};

use crate::{
    fwd,
    maps::{CONNS, LOCAL_MACS, REALS, SERVICES, VIPS},
    net::{
        Packet,
        hdr::Eth,
        parse::{Parsed, is_icmp, parse, ports},
    },
    stats,
    verdict::Verdict,
    vrrp,
};

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Verdict {
    let pkt = Packet::new(ctx);
    let mut p = match parse(&pkt) {
        Ok(p) => p,
        Err(reason) => return Verdict::pass(reason),
    };
    // VRRP first: an advert (to 224.0.0.18, ff02::12 or a unicast peer) is
    // never a service's traffic.
    if p.key.proto == IPPROTO_VRRP && p.irregular.is_none() {
        if let Some(v) = vrrp::advert(ctx, &pkt, &p) {
            return v;
        }
    }
    let l4_proto = p.key.proto == PROTO_TCP || p.key.proto == PROTO_UDP;
    if p.irregular.is_none() && l4_proto {
        if ports(&pkt, &mut p).is_none() {
            return if is_vip(&p.key) {
                Verdict::drop(Reason::DropTruncatedL4)
            } else {
                Verdict::pass(Reason::PassTruncated)
            };
        }
        // Established flows first: one lookup for either direction.
        // SAFETY: map values live as long as the program run.
        if let Some(c) = unsafe { CONNS.get(&p.key) } {
            if let Some(r) = pinned(c).filter(|r| !reused_towards_quiesced(&pkt, &p, r)) {
                if !for_us(ctx, &pkt) {
                    return Verdict::pass(Reason::PassOtherHost);
                }
                if c.kind == CONN_NAT_REPLY {
                    return fwd::nat::reply(ctx, &pkt, &p, c);
                }
                stats::traffic(c.service, c.real, pkt.len(), false);
                return fwd::forward(ctx, &pkt, &p, r, None);
            }
        }
        if let Some(svc) = find_service(&p.key) {
            if !for_us(ctx, &pkt) {
                return Verdict::pass(Reason::PassOtherHost);
            }
            return new_flow(ctx, &pkt, &p, svc);
        }
        return Verdict::pass(Reason::PassNotService);
    }
    // Fragments, options, ICMP and other protocols: only VIP-bound ones are
    // our business, and we look that up only for these rare packets.
    if !is_vip(&p.key) {
        return Verdict::pass(Reason::PassNotService);
    }
    if !for_us(ctx, &pkt) {
        return Verdict::pass(Reason::PassOtherHost);
    }
    if let Some(reason) = p.irregular {
        return Verdict::drop(reason);
    }
    if is_icmp(&p) {
        return icmp::steer(ctx, &pkt, &p);
    }
    Verdict::pass(Reason::PassNotService)
}

/// Whether the frame is addressed to one of the ingress interface's MACs
/// (LOCAL_MACS); an interface without entries accepts every MAC. Checked
/// only once a frame is known to be service traffic.
#[inline(always)]
fn for_us(ctx: &XdpContext, pkt: &Packet) -> bool {
    let Some(local) = LOCAL_MACS.get(ctx.ingress_ifindex() as u32) else { return true };
    if local.count == 0 {
        return true;
    }
    let Some(eth) = pkt.ptr::<Eth>(0) else { return false };
    // SAFETY: `ptr` checked the header lies within the packet.
    let dst = unsafe { (*eth).dst };
    let mut i = 0;
    while i < MAX_LOCAL_MACS {
        if (i as u32) < local.count && local.macs[i] == dst {
            return true;
        }
        i += 1;
    }
    false
}

/// The exact (VIP, port, proto) service, else the VIP's all-ports service.
#[inline(always)]
fn find_service(key: &FlowKey) -> Option<&'static Service> {
    let mut skey = ServiceKey { addr: key.dst, port: key.dport, proto: key.proto, family: key.family };
    // SAFETY: map values live as long as the program run.
    if let Some(s) = unsafe { SERVICES.get(&skey) } {
        return Some(s);
    }
    skey.port = 0;
    unsafe { SERVICES.get(&skey) }
}

#[inline(always)]
fn is_vip(key: &FlowKey) -> bool {
    let vkey = ServiceKey { addr: key.dst, port: 0, proto: 0, family: key.family };
    VIPS.get_ptr(&vkey).is_some()
}

#[inline(always)]
pub fn real(id: u32) -> Option<&'static Real> {
    REALS.get(id).filter(|r| r.flags & REAL_PRESENT != 0)
}

/// The real a connection is pinned to, if it is still the same server.
#[inline(always)]
pub fn pinned(c: &Conn) -> Option<&'static Real> {
    real(c.real).filter(|r| r.generation == c.generation)
}

/// A new TCP connection (SYN without ACK) on ports whose previous
/// connection went to a now quiesced server.
#[inline(always)]
fn reused_towards_quiesced(pkt: &Packet, p: &Parsed, r: &Real) -> bool {
    if r.flags & REAL_QUIESCED == 0 || p.key.proto != PROTO_TCP {
        return false;
    }
    const FLAGS_OFF: usize = 13;
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    pkt.ptr::<u8>(p.l4 + FLAGS_OFF).is_some_and(|f| unsafe { *f } & (SYN | ACK) == SYN)
}

/// The first packet of a flow (or the first after its entry went stale).
#[inline(always)]
fn new_flow(ctx: &XdpContext, pkt: &Packet, p: &Parsed, svc: &Service) -> Verdict {
    let id = match schedule::pick(svc, &p.key) {
        Ok(id) => id,
        Err(reason) => return Verdict::drop(reason),
    };
    let Some(r) = real(id) else { return Verdict::drop(Reason::DropBadReal) };
    let conn = Conn { real: id, service: svc.id, generation: r.generation, ..Default::default() };
    let _ = CONNS.insert(&p.key, &conn, 0);
    stats::traffic(svc.id, id, pkt.len(), true);
    fwd::forward(ctx, pkt, p, r, Some(&conn))
}
