//! What the program answers for a packet. Its own module so that `vrrp` and
//! `fwd` need not import from `lb`, which calls them.

use aya_ebpf::bindings::xdp_action;
use director_common::stats::Reason;

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
