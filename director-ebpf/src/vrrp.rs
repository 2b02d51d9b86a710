//! VRRP adverts, judged before any service lookup (an advert is never a
//! service's traffic). On an interface and family where director runs VRRP,
//! malformed adverts, adverts for VRIDs we do not run, adverts whose TTL or
//! source the VRRP socket would refuse, and adverts beyond a rate no router
//! sends at are dropped, each under its own counter; a valid advert for one
//! of ours is recorded in VRRP_ADVERTS and passed on, so the VRRP socket
//! still gets it. The record is a second witness that no CPU starvation of
//! the daemon can delay. It does not verify the checksum: userspace trusts
//! a record only from a source whose adverts the socket accepted.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use director_common::{
    stats::Reason,
    vrrp::{
        AUTH_DATA_LEN, HEADER_LEN, MARKER_VRID, RATE_BURST, RATE_WINDOW_NS, TYPE_ADVERT, V3_INTERVAL_MASK,
        VRRP_TTL, VrrpAdvert, VrrpInstance, VrrpKey, VrrpRate, VrrpSource,
    },
};

use crate::{
    maps::{VRRP_ADVERTS, VRRP_INSTANCES, VRRP_PEERS, VRRP_RATE},
    net::{
        Packet,
        hdr::{ETH_LEN, IPV4_LEN, Ipv4, Ipv6, Vrrp},
        parse::Parsed,
    },
    verdict::Verdict,
};

/// The verdict on a VRRP packet (IPv4 without options or fragmentation,
/// IPv6 without extension headers), or None where we run no VRRP: the
/// packet then takes the ordinary path, untouched.
#[inline(always)]
pub fn advert(ctx: &XdpContext, pkt: &Packet, p: &Parsed) -> Option<Verdict> {
    // A tagged frame belongs to a VLAN interface, which our keys (the
    // ingress interface) cannot name.
    if p.l3 != ETH_LEN {
        return None;
    }
    let key = VrrpKey { ifindex: ctx.ingress_ifindex() as u32, family: p.key.family, vrid: MARKER_VRID, _pad: [0; 2] };
    VRRP_INSTANCES.get_ptr(&key)?;
    Some(judge(ctx, pkt, p, key))
}

/// keepalived's order: TTL, header, version and type, length, VRID, then
/// the instance's TTL and source rules; a flood is cut before the rest.
#[inline(always)]
fn judge(ctx: &XdpContext, pkt: &Packet, p: &Parsed, mut key: VrrpKey) -> Verdict {
    let Some((ttl, payload_len)) = ip_fields(pkt, p) else { return Verdict::drop(Reason::DropVrrpLength) };
    if multicast(p) && ttl != VRRP_TTL {
        return Verdict::drop(Reason::DropVrrpTtl);
    }
    let Some(h) = pkt.ptr::<Vrrp>(p.l4) else { return Verdict::drop(Reason::DropVrrpLength) };
    // SAFETY: bounds-checked by `ptr`; the struct is packed.
    let (vtype, vrid, priority, count, word) = unsafe { ((*h).vtype, (*h).vrid, (*h).priority, (*h).count, (*h).word) };
    let version = vtype >> 4;
    if vtype & 0x0f != TYPE_ADVERT || !(version == 3 || (version == 2 && !p.v6)) {
        return Verdict::drop(Reason::DropVrrpVersion);
    }
    let alen = if p.v6 { 16 } else { 4 };
    let auth_len = if version == 2 { AUTH_DATA_LEN } else { 0 };
    let len = HEADER_LEN + count as usize * alen + auth_len;
    // The IP header's length, not the frame's: short frames carry padding.
    if len != payload_len || p.l4 + len > pkt.len() {
        return Verdict::drop(Reason::DropVrrpLength);
    }
    key.vrid = vrid;
    // SAFETY: map values live as long as the program run.
    let inst = if vrid == MARKER_VRID { None } else { unsafe { VRRP_INSTANCES.get(&key) } };
    let Some(inst) = inst else { return Verdict::drop(Reason::DropVrrpUnknownVrid) };
    let src = VrrpSource { key, addr: p.key.src };
    if let Err(reason) = heard(inst, &src, ttl) {
        return Verdict::drop(reason);
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if flooding(&src, now) {
        return Verdict::drop(Reason::DropVrrpRate);
    }
    if version != inst.version || (version == 2 && !auth_matches(ctx, p.l4 + len - AUTH_DATA_LEN, word[0], inst)) {
        return Verdict::pass(Reason::PassVrrpUnmatched);
    }
    let interval_cs = if version == 2 {
        u16::from(word[1]) * 100
    } else {
        u16::from_be_bytes(word) & V3_INTERVAL_MASK
    };
    // SAFETY: as above.
    let seen = VRRP_ADVERTS.get_ptr(&key).map_or(0, |a| unsafe { (*a).count });
    let record = VrrpAdvert {
        src: p.key.src,
        last_ns: now,
        count: seen + 1,
        interval_cs,
        priority,
        version,
        _pad: [0; 4],
    };
    // An update replaces the whole value, so a reader never sees half of it.
    let _ = VRRP_ADVERTS.insert(&key, &record, 0);
    Verdict::pass(Reason::PassVrrp)
}

/// The VRRP socket's TTL and source rules (`packet::check_ttl` and
/// `check_unicast_src` in the daemon): a multicast instance hears TTL 255
/// only, to any destination; a unicast instance any TTL within its peer's
/// range, and with `check_unicast_src` its peers only.
#[inline(always)]
fn heard(inst: &VrrpInstance, src: &VrrpSource, ttl: u8) -> Result<(), Reason> {
    // SAFETY: map values live as long as the program run.
    let peer = unsafe { VRRP_PEERS.get(src) };
    let ttl_ok = match peer {
        _ if inst.unicast == 0 => ttl == VRRP_TTL,
        Some(peer) => (peer.min_ttl..=peer.max_ttl).contains(&ttl),
        None => true,
    };
    if !ttl_ok {
        return Err(Reason::DropVrrpTtl);
    }
    if inst.check_src != 0 && peer.is_none() {
        return Err(Reason::DropVrrpUnicastSrc);
    }
    Ok(())
}

/// Counts the advert in its source's window; true past RATE_BURST. Counts
/// from several CPUs may race and miss an increment: the limit is coarse
/// on purpose, it only has to be far above any router and far below a flood.
#[inline(always)]
fn flooding(src: &VrrpSource, now: u64) -> bool {
    let Some(rate) = VRRP_RATE.get_ptr_mut(src) else {
        let _ = VRRP_RATE.insert(src, &VrrpRate { window_ns: now, count: 1, _pad: 0 }, 0);
        return false;
    };
    // SAFETY: map values live as long as the program run.
    unsafe {
        if now.wrapping_sub((*rate).window_ns) >= RATE_WINDOW_NS {
            (*rate).window_ns = now;
            (*rate).count = 1;
            return false;
        }
        (*rate).count = (*rate).count.saturating_add(1);
        (*rate).count > RATE_BURST
    }
}

/// TTL or hop limit, and the IP payload length the header declares.
#[inline(always)]
fn ip_fields(pkt: &Packet, p: &Parsed) -> Option<(u8, usize)> {
    if p.v6 {
        let ip = pkt.ptr::<Ipv6>(p.l3)?;
        // SAFETY: bounds-checked by `ptr`.
        unsafe { Some(((*ip).hop_limit, u16::from_be((*ip).payload_len) as usize)) }
    } else {
        let ip = pkt.ptr::<Ipv4>(p.l3)?;
        // SAFETY: as above; `parse` let through only 20-byte headers.
        let (ttl, tot) = unsafe { ((*ip).ttl, u16::from_be((*ip).tot_len) as usize) };
        Some((ttl, tot.checked_sub(IPV4_LEN)?))
    }
}

/// 224.0.0.0/4 or ff00::/8: the first byte, as it sits in word 0.
#[inline(always)]
fn multicast(p: &Parsed) -> bool {
    let first = p.key.dst[0].to_ne_bytes()[0];
    if p.v6 { first == 0xff } else { first & 0xf0 == 0xe0 }
}

/// v2: the auth type, and for PASS the 8 bytes that end the message. Those
/// sit at an offset that depends on the address count, which the verifier
/// cannot follow through a direct packet read: the helper copies them.
#[inline(always)]
fn auth_matches(ctx: &XdpContext, at: usize, auth_type: u8, inst: &VrrpInstance) -> bool {
    if auth_type != inst.auth_type {
        return false;
    }
    if auth_type == 0 {
        return true;
    }
    let mut data = [0u8; AUTH_DATA_LEN];
    // SAFETY: the helper bounds-checks the packet and writes at most
    // AUTH_DATA_LEN bytes into `data`.
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, at as u32, data.as_mut_ptr().cast(), AUTH_DATA_LEN as u32) };
    rc == 0 && data == inst.auth
}
