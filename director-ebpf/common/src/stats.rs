//! Per-CPU packet counters, one slot per verdict reason.

/// Why the XDP program passed, dropped or forwarded a packet. Each reason is
/// one slot of the per-CPU `STATS` array; `name()` is the label users see in
/// `directorctl` and metrics, and the README lists them all.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): always the kernel's business.
    PassNotIp = 0,
    /// IP, but not addressed to a configured service.
    PassNotService,
    /// Too short to tell whether it is ours; the kernel decides.
    PassTruncated,
    /// An IP header we cannot trust (bad version or length); the kernel decides.
    PassMalformed,
    /// ICMP to a VIP that is not an error about a flow (echo, ...): the
    /// director itself answers.
    PassIcmpToVip,
    /// An ICMP error about a flow we have no entry for.
    PassIcmpNoFlow,
    /// A fragment to a VIP: without ports it cannot be scheduled.
    DropFragment,
    /// IPv4 options on a packet to a VIP (source routing and friends).
    DropIpv4Options,
    /// IPv6 extension headers on a packet to a VIP.
    DropIpv6ExtHeader,
    /// A packet to a VIP whose TCP/UDP header is cut short.
    DropTruncatedL4,
    /// The service has no usable real server and no sorry server.
    DropNoReal,
    /// The ring pointed at a real server that is not programmed.
    DropBadReal,
    /// Growing the packet for encapsulation failed.
    DropEncapFailed,
    /// Forwarded by direct routing.
    FwdDr,
    /// Forwarded in an IPIP / IPv6-in-IPv6 tunnel.
    FwdTun,
    /// Forwarded with destination NAT.
    FwdNat,
    /// A NAT reply, source-translated back to the VIP.
    FwdNatReply,
    /// An ICMP frag-needed / packet-too-big steered to its flow's real server.
    FwdIcmpError,
    /// A valid VRRP advert for a VRID we run: recorded in VRRP_ADVERTS and
    /// passed on to the VRRP socket.
    PassVrrp,
    /// A well-formed VRRP advert for a VRID we run, but of another version or
    /// v2 authentication: not recorded; the VRRP socket decides and counts why.
    PassVrrpUnmatched,
    /// A VRRP advert whose TTL / hop limit the VRRP socket would refuse: not
    /// 255 for a multicast instance (whatever the destination), outside a
    /// unicast peer's min_ttl..max_ttl.
    DropVrrpTtl,
    /// A VRRP packet whose version is not 2 or 3 (or v2 over IPv6), or whose
    /// type is not ADVERTISEMENT.
    DropVrrpVersion,
    /// A VRRP packet shorter than its header, or whose length does not match
    /// its address count (and v2 authentication data).
    DropVrrpLength,
    /// A VRRP advert for a VRID we do not run, on an interface where we run VRRP.
    DropVrrpUnknownVrid,
    /// Traffic for a service in a frame addressed to another host's MAC (a
    /// switch flooding it, e.g. after the VRRP master died): not ours to
    /// forward; the kernel drops it.
    PassOtherHost,
    /// A VRRP advert from a source that is not a `unicast_peer`, for an
    /// instance with `check_unicast_src`.
    DropVrrpUnicastSrc,
    /// VRRP adverts from one source beyond `vrrp::RATE_BURST` per
    /// `vrrp::RATE_WINDOW_NS` for one instance: a flood, not a router.
    DropVrrpRate,
}

/// Slots in the STATS map: more than there are reasons, so that a new reason
/// does not change the pinned map's layout.
pub const STATS_SLOTS: u32 = 64;

impl Reason {
    pub const COUNT: u32 = 27;
    pub const ALL: [Reason; Self::COUNT as usize] = [
        Reason::PassNotIp,
        Reason::PassNotService,
        Reason::PassTruncated,
        Reason::PassMalformed,
        Reason::PassIcmpToVip,
        Reason::PassIcmpNoFlow,
        Reason::DropFragment,
        Reason::DropIpv4Options,
        Reason::DropIpv6ExtHeader,
        Reason::DropTruncatedL4,
        Reason::DropNoReal,
        Reason::DropBadReal,
        Reason::DropEncapFailed,
        Reason::FwdDr,
        Reason::FwdTun,
        Reason::FwdNat,
        Reason::FwdNatReply,
        Reason::FwdIcmpError,
        Reason::PassVrrp,
        Reason::PassVrrpUnmatched,
        Reason::DropVrrpTtl,
        Reason::DropVrrpVersion,
        Reason::DropVrrpLength,
        Reason::DropVrrpUnknownVrid,
        Reason::PassOtherHost,
        Reason::DropVrrpUnicastSrc,
        Reason::DropVrrpRate,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::PassNotIp => "pass_not_ip",
            Reason::PassNotService => "pass_not_service",
            Reason::PassTruncated => "pass_truncated",
            Reason::PassMalformed => "pass_malformed",
            Reason::PassIcmpToVip => "pass_icmp_to_vip",
            Reason::PassIcmpNoFlow => "pass_icmp_no_flow",
            Reason::DropFragment => "drop_fragment",
            Reason::DropIpv4Options => "drop_ipv4_options",
            Reason::DropIpv6ExtHeader => "drop_ipv6_ext_header",
            Reason::DropTruncatedL4 => "drop_truncated_l4",
            Reason::DropNoReal => "drop_no_real",
            Reason::DropBadReal => "drop_bad_real",
            Reason::DropEncapFailed => "drop_encap_failed",
            Reason::FwdDr => "fwd_dr",
            Reason::FwdTun => "fwd_tun",
            Reason::FwdNat => "fwd_nat",
            Reason::FwdNatReply => "fwd_nat_reply",
            Reason::FwdIcmpError => "fwd_icmp_error",
            Reason::PassVrrp => "pass_vrrp",
            Reason::PassVrrpUnmatched => "pass_vrrp_unmatched",
            Reason::DropVrrpTtl => "drop_vrrp_ttl",
            Reason::DropVrrpVersion => "drop_vrrp_version",
            Reason::DropVrrpLength => "drop_vrrp_length",
            Reason::DropVrrpUnknownVrid => "drop_vrrp_unknown_vrid",
            Reason::PassOtherHost => "pass_other_host",
            Reason::DropVrrpUnicastSrc => "drop_vrrp_unicast_src",
            Reason::DropVrrpRate => "drop_vrrp_rate",
        }
    }

    /// "pass", "drop" or "fwd": the metric's `action` label.
    pub fn action(self) -> &'static str {
        let name = self.name();
        match name.find('_') {
            Some(i) => &name[..i],
            None => name,
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
const _: () = assert!(Reason::ALL.len() == Reason::COUNT as usize);
const _: () = assert!(Reason::COUNT <= STATS_SLOTS);

#[cfg(feature = "user")]
// SAFETY: plain old data, no padding, every bit pattern is valid.
unsafe impl aya::Pod for Counter {}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn all_lists_every_reason_in_discriminant_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
    }
}
