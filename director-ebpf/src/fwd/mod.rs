//! Sending a packet to its real server: DR rewrites MACs, TUN encapsulates,
//! NAT translates addresses.
//!
//! Next hop: the control plane resolves each real server's MAC and egress
//! interface through rtnetlink and stores them in its REALS entry, instead of
//! calling `bpf_fib_lookup` per packet. The set of next hops is small and
//! known in advance, the lookup is then free on the hot path, a missing
//! neighbour is visible to the operator before traffic arrives, and packet
//! fixtures give byte-exact results without depending on the host's tables.
//! NAT replies go back to the hop the client's packets came from, learned
//! per flow (see `nat`).

pub mod nat;
pub mod tun;

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect, programs::XdpContext};
use director_common::{
    lb::{Conn, Real, method},
    stats::Reason,
};

use crate::{
    net::{Packet, hdr::Eth, parse::Parsed},
    verdict::Verdict,
};

/// `new` is the connection-table entry just created for a new flow (NAT
/// adds the reverse entry next to it).
#[inline(always)]
pub fn forward(ctx: &XdpContext, pkt: &Packet, p: &Parsed, real: &Real, new: Option<&Conn>) -> Verdict {
    match real.method {
        method::TUN => tun::encap(ctx, p, real),
        method::NAT => nat::dnat(ctx, pkt, p, real, new),
        _ => {
            if set_macs(pkt, &real.mac, &real.src_mac).is_none() {
                return Verdict::drop(Reason::DropBadReal);
            }
            send(ctx, real.ifindex, Reason::FwdDr)
        }
    }
}

#[inline(always)]
pub fn set_macs(pkt: &Packet, dst: &[u8; 6], src: &[u8; 6]) -> Option<()> {
    let eth: *mut Eth = pkt.ptr(0)?;
    unsafe {
        (*eth).dst = *dst;
        (*eth).src = *src;
    }
    Some(())
}

/// Out of the interface it came in on (XDP_TX), or redirected to another.
#[inline(always)]
pub fn send(ctx: &XdpContext, ifindex: u32, reason: Reason) -> Verdict {
    let ingress = ctx.ingress_ifindex() as u32;
    if ifindex == 0 || ifindex == ingress {
        return Verdict { action: xdp_action::XDP_TX, reason };
    }
    // SAFETY: a plain helper call; it only records the target.
    let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
    Verdict { action, reason }
}
