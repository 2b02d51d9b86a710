//! ICMP to a VIP. Errors that say "fragmentation needed" / "packet too big"
//! about one of our flows go to the real server of that flow, so that Path
//! MTU Discovery works for the server that actually sends the big packets.
//! Everything else (echo and friends) is the director's own business.

use aya_ebpf::programs::XdpContext;
use director_common::{
    lb::{FlowKey, method},
    stats::Reason,
};

use super::pinned;
use crate::{
    fwd,
    maps::CONNS,
    net::{
        Packet,
        hdr::{
            ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_LEN, ICMPV6_PKT_TOOBIG, IPV4_LEN, IPV6_LEN,
            Icmp, Ipv4, Ipv6, Ports,
        },
        parse::Parsed,
    },
    verdict::Verdict,
};

#[inline(always)]
pub fn steer(ctx: &XdpContext, pkt: &Packet, p: &Parsed) -> Verdict {
    let Some(icmp) = pkt.ptr::<Icmp>(p.l4) else { return Verdict::pass(Reason::PassTruncated) };
    let (kind, code) = unsafe { ((*icmp).kind, (*icmp).code) };
    let inner = p.l4 + ICMP_LEN;
    // The quoted packet is the one our real server sent: VIP → client. Its
    // flow in the client's direction is the connection-table key.
    let key = if p.v6 {
        if kind != ICMPV6_PKT_TOOBIG {
            return Verdict::pass(Reason::PassIcmpToVip);
        }
        let (Some(ip), Some(ports)) = (pkt.ptr::<Ipv6>(inner), pkt.ptr::<Ports>(inner + IPV6_LEN)) else {
            return Verdict::pass(Reason::PassIcmpNoFlow);
        };
        unsafe {
            FlowKey {
                src: (*ip).dst,
                dst: (*ip).src,
                sport: (*ports).dst,
                dport: (*ports).src,
                proto: (*ip).next,
                family: 6,
                _pad: [0; 2],
            }
        }
    } else {
        if kind != ICMP_DEST_UNREACH || code != ICMP_FRAG_NEEDED {
            return Verdict::pass(Reason::PassIcmpToVip);
        }
        let (Some(ip), Some(ports)) = (pkt.ptr::<Ipv4>(inner), pkt.ptr::<Ports>(inner + IPV4_LEN)) else {
            return Verdict::pass(Reason::PassIcmpNoFlow);
        };
        unsafe {
            if (*ip).vihl != 0x45 {
                return Verdict::pass(Reason::PassIcmpNoFlow);
            }
            FlowKey {
                src: [(*ip).dst, 0, 0, 0],
                dst: [(*ip).src, 0, 0, 0],
                sport: (*ports).dst,
                dport: (*ports).src,
                proto: (*ip).proto,
                family: 4,
                _pad: [0; 2],
            }
        }
    };
    // SAFETY: map values live as long as the program run.
    let Some(conn) = (unsafe { CONNS.get(&key) }) else {
        return Verdict::pass(Reason::PassIcmpNoFlow);
    };
    let Some(r) = pinned(conn) else { return Verdict::pass(Reason::PassIcmpNoFlow) };
    // A NAT real server would need the quoted packet translated too; the
    // kernel's own ICMP handling is the safer answer there.
    if r.method == method::NAT {
        return Verdict::pass(Reason::PassIcmpNoFlow);
    }
    let mut v = fwd::forward(ctx, pkt, p, r, None);
    if v.reason == Reason::FwdDr || v.reason == Reason::FwdTun {
        v.reason = Reason::FwdIcmpError;
    }
    v
}
