//! Types and pure functions shared by the XDP program and the control plane.
//!
//! Everything here is `#[repr(C)]` with explicit padding, because the kernel
//! side and userspace read the same bytes out of BPF maps; and the checksum
//! and hash code is `no_std` so the program and the tests run the same math.
#![no_std]

pub mod csum;
pub mod hash;
pub mod lb;
pub mod stats;
pub mod vrrp;
