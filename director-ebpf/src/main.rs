//! The director XDP program: entry point only. `net` parses, `lb` decides,
//! `fwd` sends, `maps` declares every map, `stats` counts.
#![no_std]
#![no_main]

mod fwd;
mod lb;
mod maps;
mod net;
mod stats;

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
