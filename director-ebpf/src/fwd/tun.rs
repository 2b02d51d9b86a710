//! TUN: IPIP for IPv4 real servers, IPv6-in-IPv6 for IPv6 ones, as IPVS
//! does. The inner packet is untouched; the real server decapsulates and
//! answers the client directly from the VIP.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use director_common::{csum, lb::Real, stats::Reason};

use super::send;
use crate::{
    net::{
        Packet,
        hdr::{
            ETH_LEN, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, Eth, IPPROTO_IPIP, IPPROTO_IPV6, IPV4_DF,
            IPV4_LEN, IPV6_LEN, Ipv4, Ipv6, Vlan,
        },
        parse::Parsed,
    },
    verdict::Verdict,
};

const TTL: u8 = 64;

#[inline(always)]
pub fn encap(ctx: &XdpContext, p: &Parsed, real: &Real) -> Verdict {
    let done = if p.v6 { encap6(ctx, p, real) } else { encap4(ctx, p, real) };
    match done {
        Some(()) => send(ctx, real.ifindex, Reason::FwdTun),
        None => Verdict::drop(Reason::DropEncapFailed),
    }
}

#[inline(always)]
fn encap4(ctx: &XdpContext, p: &Parsed, real: &Real) -> Option<()> {
    let pkt = Packet::new(ctx);
    let inner: *const Ipv4 = pkt.ptr(p.l3)?;
    let (tot_len, tos, frag) = unsafe { ((*inner).tot_len, (*inner).tos, (*inner).frag) };
    let tci = vlan_tci(&pkt, p);
    grow(ctx, IPV4_LEN)?;

    let pkt = Packet::new(ctx);
    write_l2(&pkt, real, tci, ETH_P_IP)?;
    let outer: *mut Ipv4 = pkt.ptr(p.l3)?;
    unsafe {
        (*outer).vihl = 0x45;
        (*outer).tos = tos;
        (*outer).tot_len = (u16::from_be(tot_len).wrapping_add(IPV4_LEN as u16)).to_be();
        (*outer).id = 0;
        // Keep the client's DF so PMTU discovery still works end to end.
        (*outer).frag = frag & IPV4_DF;
        (*outer).ttl = TTL;
        (*outer).proto = IPPROTO_IPIP;
        (*outer).check = 0;
        (*outer).src = real.tun_src[0];
        (*outer).dst = real.addr[0];
        let words = core::ptr::read_unaligned(outer as *const [u16; 10]);
        (*outer).check = csum::ipv4_header(&words);
    }
    Some(())
}

#[inline(always)]
fn encap6(ctx: &XdpContext, p: &Parsed, real: &Real) -> Option<()> {
    let pkt = Packet::new(ctx);
    let inner: *const Ipv6 = pkt.ptr(p.l3)?;
    let payload = unsafe { (*inner).payload_len };
    let tci = vlan_tci(&pkt, p);
    grow(ctx, IPV6_LEN)?;

    let pkt = Packet::new(ctx);
    write_l2(&pkt, real, tci, ETH_P_IPV6)?;
    let outer: *mut Ipv6 = pkt.ptr(p.l3)?;
    unsafe {
        (*outer).vcf = (6u32 << 28).to_be();
        (*outer).payload_len = (u16::from_be(payload).wrapping_add(IPV6_LEN as u16)).to_be();
        (*outer).next = IPPROTO_IPV6;
        (*outer).hop_limit = TTL;
        (*outer).src = real.tun_src;
        (*outer).dst = real.addr;
    }
    Some(())
}

#[inline(always)]
fn vlan_tci(pkt: &Packet, p: &Parsed) -> Option<u16> {
    if p.l3 == ETH_LEN {
        return None;
    }
    pkt.ptr::<Vlan>(ETH_LEN).map(|v| unsafe { (*v).tci })
}

/// Makes room for an outer header in front of the frame.
#[inline(always)]
fn grow(ctx: &XdpContext, by: usize) -> Option<()> {
    // SAFETY: the helper checks the headroom; every pointer is re-derived
    // from ctx afterwards.
    (unsafe { bpf_xdp_adjust_head(ctx.ctx, -(by as i32)) } == 0).then_some(())
}

/// A fresh L2 header towards the real server, keeping any VLAN tag.
#[inline(always)]
fn write_l2(pkt: &Packet, real: &Real, tci: Option<u16>, proto: u16) -> Option<()> {
    let eth: *mut Eth = pkt.ptr(0)?;
    unsafe {
        (*eth).dst = real.mac;
        (*eth).src = real.src_mac;
        (*eth).proto = proto;
    }
    if let Some(tci) = tci {
        let vlan: *mut Vlan = pkt.ptr(ETH_LEN)?;
        unsafe {
            (*eth).proto = ETH_P_8021Q;
            (*vlan).tci = tci;
            (*vlan).proto = proto;
        }
    }
    Some(())
}
