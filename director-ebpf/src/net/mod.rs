//! Bounds-checked views of the packet. Every header access goes through
//! `Packet::header`, which the verifier can follow.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use network_types::eth::EthHdr;

/// EtherTypes as they sit in the frame (network byte order), so the hot path
/// compares raw fields without swapping.
pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_IPV6: u16 = 0x86DDu16.to_be();

pub struct Packet {
    start: usize,
    end: usize,
}

impl Packet {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Packet { start: ctx.data(), end: ctx.data_end() }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// A `T` at `offset`, or None when the frame is too short.
    #[inline(always)]
    pub fn header<T>(&self, offset: usize) -> Option<&T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: in bounds (checked above). Packet loads need no alignment
        // because we never ask the verifier for strict alignment.
        Some(unsafe { &*(at as *const T) })
    }

    #[inline(always)]
    pub fn eth(&self) -> Option<&EthHdr> {
        self.header(0)
    }
}
