//! The director XDP program: entry points only. Packet parsing lives in
//! `net`, maps in `maps`, counters in `stats`.
#![no_std]
#![no_main]

mod maps;
mod net;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use director_common::stats::Reason;

use crate::net::{ETH_P_IP, ETH_P_IPV6, Packet};

#[xdp]
pub fn director_xdp(ctx: XdpContext) -> u32 {
    let pkt = Packet::new(&ctx);
    let reason = match pkt.eth() {
        None => Reason::PassTruncatedEth,
        Some(eth) => match eth.ether_type {
            ETH_P_IP => Reason::PassIpv4,
            ETH_P_IPV6 => Reason::PassIpv6,
            _ => Reason::PassNotIp,
        },
    };
    stats::count(reason, pkt.len());
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
