//! Types shared by the XDP program and the control plane.
//!
//! Everything here is `#[repr(C)]` with explicit padding, because the kernel
//! side and userspace read the same bytes out of BPF maps.
#![no_std]

pub mod stats;
