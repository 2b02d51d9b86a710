//! Per-CPU packet counters, one slot per verdict reason.

/// Why the XDP program passed or dropped a packet. Each reason is one slot
/// of the per-CPU `STATS` array; `name()` is the label users see in
/// `directorctl` and in metrics.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): always the kernel's business.
    PassNotIp = 0,
    PassIpv4 = 1,
    PassIpv6 = 2,
    /// Shorter than an Ethernet header; the stack decides what to do with it.
    PassTruncatedEth = 3,
}

impl Reason {
    pub const COUNT: u32 = 4;
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassIpv4,
        Reason::PassIpv6,
        Reason::PassTruncatedEth,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassIpv4 => "pass_ipv4",
            Reason::PassIpv6 => "pass_ipv6",
            Reason::PassTruncatedEth => "pass_truncated_eth",
        }
    }
}

/// One counter slot: packets and bytes seen on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<Counter>() == 16);

#[cfg(feature = "user")]
// SAFETY: plain old data, no padding, every bit pattern is valid.
unsafe impl aya::Pod for Counter {}
