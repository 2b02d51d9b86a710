//! The load-balancing decision: is the packet for a service, which real
//! server gets it, and how it is sent there.

mod icmp;
mod schedule;

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use director_common::{
    lb::{Conn, FlowKey, PROTO_TCP, PROTO_UDP, REAL_PRESENT, Real, Service, ServiceKey},
    stats::Reason,
};

use crate::{
    fwd,
    maps::{CONNS, REALS, SERVICES, SETTINGS, VIPS},
    net::{
        Packet,
        parse::{Parsed, is_icmp, parse, ports},
    },
    stats,
};

/// What to do with the packet, and the counter that says why.
pub struct Verdict {
    pub action: u32,
    pub reason: Reason,
}

impl Verdict {
    #[inline(always)]
    pub fn pass(reason: Reason) -> Self {
        Verdict { action: xdp_action::XDP_PASS, reason }
    }

    #[inline(always)]
    pub fn drop(reason: Reason) -> Self {
        Verdict { action: xdp_action::XDP_DROP, reason }
    }
}

#[inline(always)]
pub fn process(ctx: &XdpContext) -> Verdict {
    let pkt = Packet::new(ctx);
    let mut p = match parse(&pkt) {
        Ok(p) => p,
        Err(reason) => return Verdict::pass(reason),
    };
    let l4_proto = p.key.proto == PROTO_TCP || p.key.proto == PROTO_UDP;
    if p.irregular.is_none() && l4_proto {
        if ports(&pkt, &mut p).is_none() {
            return if is_vip(&p.key) {
                Verdict::drop(Reason::DropTruncatedL4)
            } else {
                Verdict::pass(Reason::PassTruncated)
            };
        }
        if let Some(svc) = find_service(&p.key) {
            return to_service(ctx, &pkt, &p, svc);
        }
        if nat_enabled() {
            if let Some(v) = fwd::nat::reply(ctx, &pkt, &p) {
                return v;
            }
        }
        return Verdict::pass(Reason::PassNotService);
    }
    // Fragments, options, ICMP and other protocols: only VIP-bound ones are
    // our business, and we look that up only for these rare packets.
    if !is_vip(&p.key) {
        return Verdict::pass(Reason::PassNotService);
    }
    if let Some(reason) = p.irregular {
        return Verdict::drop(reason);
    }
    if is_icmp(&p) {
        return icmp::steer(ctx, &pkt, &p);
    }
    Verdict::pass(Reason::PassNotService)
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
fn nat_enabled() -> bool {
    SETTINGS.get(0).is_some_and(|s| s.nat_enabled != 0)
}

#[inline(always)]
pub fn real(id: u32) -> Option<&'static Real> {
    REALS.get(id).filter(|r| r.flags & REAL_PRESENT != 0)
}

/// A packet for a service: the connection table first, else schedule.
#[inline(always)]
fn to_service(ctx: &XdpContext, pkt: &Packet, p: &Parsed, svc: &Service) -> Verdict {
    // SAFETY: as above.
    let pinned = unsafe { CONNS.get(&p.key) }.and_then(|c| real(c.real).map(|r| (c.real, r)));
    let (id, r, new) = match pinned {
        Some((id, r)) => (id, r, false),
        None => {
            let id = match schedule::pick(svc, &p.key) {
                Ok(id) => id,
                Err(reason) => return Verdict::drop(reason),
            };
            let Some(r) = real(id) else { return Verdict::drop(Reason::DropBadReal) };
            let _ = CONNS.insert(&p.key, &Conn { real: id, service: svc.id }, 0);
            (id, r, true)
        }
    };
    stats::traffic(svc.id, id, pkt.len(), new);
    fwd::forward(ctx, pkt, p, r, new)
}
