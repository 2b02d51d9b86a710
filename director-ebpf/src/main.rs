//! The director XDP program: entry point only. `net` parses, `vrrp` judges
//! VRRP adverts, `lb` decides, `fwd` sends, `maps` declares every map,
//! `stats` counts; `verdict` is what `vrrp`, `lb` and `fwd` return.
#![no_std]
#![no_main]

mod fwd;
mod lb;
mod maps;
mod net;
mod stats;
mod verdict;
mod vrrp;

use aya_ebpf::{macros::xdp, programs::XdpContext};

#[xdp]
pub fn director_xdp(ctx: XdpContext) -> u32 {
    let len = ctx.data_end() - ctx.data();
    let verdict = lb::process(&ctx);
    stats::count(verdict.reason, len);
    verdict.action
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Does nothing but XDP_TX: the benchmark baseline, run the same way as
/// `director_xdp`, so figures can be read as "cost over an empty program".
#[xdp]
pub fn baseline_xdp_tx(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_TX
}
