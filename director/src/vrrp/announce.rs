//! Gratuitous ARP (IPv4) and unsolicited neighbour advertisements (IPv6)
//! that move the VIPs' neighbour entries to us, sent as keepalived sends them,
//! and when: the `garp_master_*` schedule.
//!
//! Frames (as keepalived 2.2.7, vrrp_arp.c / vrrp_ndisc.c):
//! - ARP: Ethernet broadcast, ARP *request*, sender = target = the VIP,
//!   target hardware address ff:ff:ff:ff:ff:ff.
//! - NA: to 33:33:00:00:00:01 / ff02::1 from the VIP itself, hop limit 255,
//!   Override set, Solicited clear, Router set when the interface forwards
//!   IPv6, and a target link-layer address option.
//!
//! The source MAC is the interface's, or the VMAC's with `use_vmac`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::packet::add_bytes;
use crate::config::{GlobalDefs, VrrpInstance};

/// An Ethernet address.
pub type Mac = [u8; 6];

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_ICMPV6: u8 = 58;
const ND_NEIGHBOR_ADVERT: u8 = 136;
const ND_NA_FLAG_ROUTER: u8 = 0x80;
const ND_NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// ff02::1, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The 42-byte gratuitous ARP that announces `ip` at `src_mac`.
pub fn garp_frame(src_mac: Mac, ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // htype Ethernet, ptype IPv4, hlen 6, plen 4, op request.
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&src_mac);
    f[28..32].copy_from_slice(&ip.octets());
    f[32..38].copy_from_slice(&[0xff; 6]);
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The 86-byte unsolicited neighbour advertisement for `ip` at `src_mac`;
/// `router` sets the R flag (the interface forwards IPv6).
pub fn na_frame(src_mac: Mac, ip: Ipv6Addr, router: bool) -> [u8; 86] {
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6: version 6, payload 32, next header ICMPv6, hop limit 255.
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip6[6] = IPPROTO_ICMPV6;
    ip6[7] = 255;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());
    let icmp = &mut f[54..86];
    icmp[0] = ND_NEIGHBOR_ADVERT;
    icmp[4] = ND_NA_FLAG_OVERRIDE | if router { ND_NA_FLAG_ROUTER } else { 0 };
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = ND_OPT_TARGET_LINKADDR;
    icmp[25] = 1; // length in units of 8 bytes
    icmp[26..32].copy_from_slice(&src_mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// RFC 4443 §2.3: over the pseudo-header and the message (checksum zero).
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum = add_bytes(0, &src.octets());
    sum = add_bytes(sum, &dst.octets());
    sum = add_bytes(sum, &(msg.len() as u32).to_be_bytes());
    sum = add_bytes(sum, &[0, 0, 0, IPPROTO_ICMPV6]);
    sum = add_bytes(sum, msg);
    !(sum as u16)
}

/// An AF_PACKET socket that sends whole Ethernet frames.
struct PacketSocket(std::os::fd::OwnedFd);

impl PacketSocket {
    fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // Protocol 0: send only, nothing is queued for us to read.
        // SAFETY: plain socket(2); the fd is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }))
    }

    fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: zeroed sockaddr_ll is valid; we fill the fields sendto needs.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        sll.sll_ifindex = ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[0..6]);
        // SAFETY: buffer and address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// Whether the interface forwards IPv6, which keepalived reports with the
/// NA's Router flag.
fn ipv6_forwarding(ifindex: u32) -> bool {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer has IF_NAMESIZE bytes as if_indextoname requires.
    if unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null() {
        return false;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy();
    std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{name}/forwarding"))
        .is_ok_and(|s| s.trim() == "1")
}

/// Announces each address once on `ifindex` from `src_mac`: a gratuitous
/// ARP per IPv4 address, an unsolicited NA per IPv6 address.
pub fn send(ifindex: u32, src_mac: Mac, ips: &[IpAddr]) -> io::Result<()> {
    let sock = PacketSocket::new()?;
    let router = ips.iter().any(IpAddr::is_ipv6) && ipv6_forwarding(ifindex);
    for ip in ips {
        match ip {
            IpAddr::V4(v4) => sock.send(ifindex, &garp_frame(src_mac, *v4))?,
            IpAddr::V6(v6) => sock.send(ifindex, &na_frame(src_mac, *v6, router))?,
        }
    }
    Ok(())
}

/// Sends one [`Burst`]: `count` rounds over all addresses, `spacing` apart
/// (`vrrp_garp_interval` / `vrrp_gna_interval`; zero sends back to back).
pub async fn send_burst(
    ifindex: u32,
    src_mac: Mac,
    ips: &[IpAddr],
    count: u32,
    spacing: Duration,
) -> io::Result<()> {
    for round in 0..count {
        if spacing.is_zero() {
            send(ifindex, src_mac, ips)?;
            continue;
        }
        for (i, ip) in ips.iter().enumerate() {
            if round > 0 || i > 0 {
                tokio::time::sleep(spacing).await;
            }
            send(ifindex, src_mac, std::slice::from_ref(ip))?;
        }
    }
    Ok(())
}

/// When to announce after becoming master, from the instance's
/// `garp_master_delay`, `garp_master_repeat`, `garp_master_refresh` and
/// `garp_master_refresh_repeat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpSchedule {
    pub delay: Duration,
    pub repeat: u32,
    pub refresh: Option<Duration>,
    pub refresh_repeat: u32,
    /// Gap between two messages: `vrrp_garp_interval` (IPv4 instances) or
    /// `vrrp_gna_interval` (IPv6), for [`send_burst`].
    pub spacing: Duration,
}

/// `count` rounds of announcements due at `at` (same clock as the start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    pub at: Duration,
    pub count: u32,
}

impl GarpSchedule {
    /// From the config (instance values already carry the global defaults).
    pub fn from_config(inst: &VrrpInstance, global: &GlobalDefs, ipv6: bool) -> Self {
        GarpSchedule {
            delay: inst.garp_master_delay,
            repeat: inst.garp_master_repeat,
            refresh: inst.garp_master_refresh.filter(|r| !r.is_zero()),
            refresh_repeat: inst.garp_master_refresh_repeat,
            spacing: if ipv6 {
                global.vrrp_gna_interval
            } else {
                global.vrrp_garp_interval
            },
        }
    }

    /// The bursts after becoming master at `start`, in time order: `repeat`
    /// at once, `repeat` again after `delay` (unless 0), then
    /// `refresh_repeat` every `refresh` for as long as we stay master (the
    /// iterator is endless then). keepalived sends the refresh with the first
    /// advert after it is due, so it may be up to one advert interval later.
    pub fn bursts(&self, start: Duration) -> impl Iterator<Item = Burst> + use<> {
        let first = Burst {
            at: start,
            count: self.repeat,
        };
        let delayed = (!self.delay.is_zero()).then_some(Burst {
            at: start + self.delay,
            count: self.repeat,
        });
        let n = self.refresh_repeat;
        // Filtered before the endless part: zero refreshes must not spin.
        let refreshes = self
            .refresh
            .filter(|_| n > 0)
            .into_iter()
            .flat_map(move |r| {
                (1u32..).map(move |k| Burst {
                    at: start + r * k,
                    count: n,
                })
            });
        merge(
            std::iter::once(first)
                .chain(delayed)
                .filter(|b| b.count > 0),
            refreshes,
        )
    }
}

/// Merges two time-ordered burst sequences (the delayed burst can fall
/// between refreshes).
fn merge(
    a: impl Iterator<Item = Burst>,
    b: impl Iterator<Item = Burst>,
) -> impl Iterator<Item = Burst> {
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.at < x.at => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn garp_bytes() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 168, 1, 10));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 168, 1, 10,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 192, 168, 1, 10,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn na_bytes_and_checksum() {
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let f = na_frame(MAC, ip, false);
        #[rustfmt::skip]
        let want: [u8; 86] = [
            0x33, 0x33, 0, 0, 0, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x86, 0xdd,
            0x60, 0, 0, 0, 0, 32, 58, 255,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            136, 0, 0x92, 0x74, 0x20, 0, 0, 0,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            2, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        ];
        assert_eq!(f, want);
        let r = na_frame(MAC, ip, true);
        assert_eq!(r[58], 0xa0, "router + override");
        // A receiver sums pseudo-header + message (with checksum) to zero.
        assert_eq!(icmpv6_checksum(ip, ALL_NODES, &r[54..]), 0);
    }

    fn sched(delay: u64, repeat: u32, refresh: Option<u64>, refresh_repeat: u32) -> GarpSchedule {
        GarpSchedule {
            delay: Duration::from_secs(delay),
            repeat,
            refresh: refresh.map(Duration::from_secs),
            refresh_repeat,
            spacing: Duration::ZERO,
        }
    }

    fn b(at: u64, count: u32) -> Burst {
        Burst {
            at: Duration::from_secs(at),
            count,
        }
    }

    #[test]
    fn keepalived_defaults_two_bursts_of_five() {
        let s = sched(5, 5, None, 1);
        assert_eq!(
            s.bursts(Duration::from_secs(100)).collect::<Vec<_>>(),
            vec![b(100, 5), b(105, 5)]
        );
    }

    #[test]
    fn zero_delay_means_no_second_burst() {
        assert_eq!(
            sched(0, 3, None, 1)
                .bursts(Duration::ZERO)
                .collect::<Vec<_>>(),
            vec![b(0, 3)]
        );
    }

    #[test]
    fn refresh_interleaves_with_the_delayed_burst_and_never_ends() {
        let s = sched(5, 2, Some(3), 1);
        let got: Vec<_> = s.bursts(Duration::from_secs(10)).take(5).collect();
        assert_eq!(got, vec![b(10, 2), b(13, 1), b(15, 2), b(16, 1), b(19, 1)]);
    }

    #[test]
    fn zero_counts_are_skipped() {
        let s = sched(5, 0, Some(2), 0);
        assert_eq!(s.bursts(Duration::ZERO).next(), None);
        let s = sched(5, 0, Some(2), 1);
        assert_eq!(
            s.bursts(Duration::ZERO).take(2).collect::<Vec<_>>(),
            vec![b(2, 1), b(4, 1)]
        );
    }

    #[test]
    fn from_config_takes_instance_values_and_family_spacing() {
        let mut inst = crate::vrrp::packet::tests::test_instance();
        inst.garp_master_delay = Duration::from_secs(7);
        inst.garp_master_repeat = 2;
        inst.garp_master_refresh = Some(Duration::from_secs(60));
        inst.garp_master_refresh_repeat = 3;
        let g = GlobalDefs {
            vrrp_garp_interval: Duration::from_millis(1),
            vrrp_gna_interval: Duration::from_millis(2),
            ..GlobalDefs::default()
        };
        let s = GarpSchedule::from_config(&inst, &g, false);
        assert_eq!(
            s,
            GarpSchedule {
                delay: Duration::from_secs(7),
                repeat: 2,
                refresh: Some(Duration::from_secs(60)),
                refresh_repeat: 3,
                spacing: Duration::from_millis(1)
            }
        );
        assert_eq!(
            GarpSchedule::from_config(&inst, &g, true).spacing,
            Duration::from_millis(2)
        );
    }
}
