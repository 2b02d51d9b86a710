//! Bounds-checked views of the packet. Every header access goes through
//! `Packet::ptr`, a check the verifier can follow; header structs are
//! `packed`, so field reads are unaligned-safe wherever the frame puts them.

pub mod hdr;
pub mod parse;

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;

pub struct Packet {
    pub start: usize,
    pub end: usize,
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
    pub fn ptr<T>(&self, offset: usize) -> Option<*mut T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        Some(at as *mut T)
    }
}
