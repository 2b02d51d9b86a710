//! VRRP on the wire: one raw IP socket (protocol 112) per instance, bound to
//! the instance's interface. It both receives (with the TTL / hop limit and
//! destination the validation needs) and sends, choosing the source address
//! per packet with IP(V6)_PKTINFO so a VIP on the same interface is never
//! used as the advert's source.

use std::{
    io::{self, IoSlice, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd,
};

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrIn, SockaddrIn6, SockaddrStorage, recvmsg, sendmsg,
    setsockopt, sockopt,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::RxMeta;

pub const IPPROTO_VRRP: i32 = 112;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("interface {0} not found")]
    NoInterface(String),
    #[error("interface {iface} has no {what} address to send adverts from")]
    NoAddress { iface: String, what: &'static str },
    #[error("VRRP socket on {iface}: {op}: {source}")]
    Io {
        iface: String,
        op: &'static str,
        source: io::Error,
    },
}

/// What an instance needs to know about its interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// The first IPv4 address that is not one of `exclude` (keepalived's
    /// primary address).
    pub ipv4: Option<Ipv4Addr>,
    /// The first link-local IPv6 address (RFC 5798 §5.1.2.1: the source of v6 adverts).
    pub ipv6_link_local: Option<Ipv6Addr>,
}

impl Interface {
    /// Reads the interface's index, MAC and addresses; `exclude` are the
    /// VIPs, which may already be on it (a restart, or another instance).
    pub fn lookup(name: &str, exclude: &[IpAddr]) -> Result<Interface, SocketError> {
        let index = nix::net::if_::if_nametoindex(name).map_err(|_| SocketError::NoInterface(name.to_string()))?;
        let mut iface = Interface { name: name.to_string(), index, mac: [0; 6], ipv4: None, ipv6_link_local: None };
        let addrs = nix::ifaddrs::getifaddrs().map_err(|e| SocketError::Io {
            iface: name.to_string(),
            op: "getifaddrs",
            source: e.into(),
        })?;
        for a in addrs.filter(|a| a.interface_name == name) {
            let Some(addr) = a.address else { continue };
            if let Some(link) = addr.as_link_addr() {
                if let Some(mac) = link.addr() {
                    iface.mac = mac;
                }
            } else if let Some(v4) = addr.as_sockaddr_in() {
                let ip = v4.ip();
                if iface.ipv4.is_none() && !exclude.contains(&IpAddr::V4(ip)) {
                    iface.ipv4 = Some(ip);
                }
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                let ip = v6.ip();
                if iface.ipv6_link_local.is_none() && ip.is_unicast_link_local() {
                    iface.ipv6_link_local = Some(ip);
                }
            }
        }
        Ok(iface)
    }

    /// The address adverts of this family come from.
    pub fn source(&self, v6: bool) -> Result<IpAddr, SocketError> {
        let found = if v6 { self.ipv6_link_local.map(IpAddr::V6) } else { self.ipv4.map(IpAddr::V4) };
        found.ok_or_else(|| SocketError::NoAddress {
            iface: self.name.clone(),
            what: if v6 { "link-local IPv6" } else { "IPv4" },
        })
    }
}

/// A received advert: the VRRP message (IP header stripped) and what the
/// IP header said.
pub struct Received<'a> {
    pub payload: &'a [u8],
    pub meta: RxMeta,
}

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    iface: Interface,
    v6: bool,
}

impl VrrpSocket {
    /// Opens the socket on `iface`; joins `group` (the VRRP multicast group)
    /// unless the instance is unicast-only.
    pub fn open(iface: &Interface, v6: bool, group: Option<IpAddr>) -> Result<VrrpSocket, SocketError> {
        let err = |op| {
            let name = iface.name.clone();
            move |source| SocketError::Io { iface: name, op, source }
        };
        let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
        let sock = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_VRRP))).map_err(err("socket"))?;
        sock.bind_device(Some(iface.name.as_bytes())).map_err(err("SO_BINDTODEVICE"))?;
        sock.set_nonblocking(true).map_err(err("O_NONBLOCK"))?;
        if v6 {
            sock.set_multicast_hops_v6(255).map_err(err("IPV6_MULTICAST_HOPS"))?;
            sock.set_unicast_hops_v6(255).map_err(err("IPV6_UNICAST_HOPS"))?;
            sock.set_multicast_loop_v6(false).map_err(err("IPV6_MULTICAST_LOOP"))?;
            setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(|e| err("IPV6_RECVPKTINFO")(e.into()))?;
            setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true).map_err(|e| err("IPV6_RECVHOPLIMIT")(e.into()))?;
            if let Some(IpAddr::V6(g)) = group {
                sock.join_multicast_v6(&g, iface.index).map_err(err("IPV6_ADD_MEMBERSHIP"))?;
            }
        } else {
            sock.set_multicast_ttl_v4(255).map_err(err("IP_MULTICAST_TTL"))?;
            sock.set_ttl_v4(255).map_err(err("IP_TTL"))?;
            sock.set_multicast_loop_v4(false).map_err(err("IP_MULTICAST_LOOP"))?;
            if let Some(IpAddr::V4(g)) = group {
                let idx = socket2::InterfaceIndexOrAddress::Index(iface.index);
                sock.join_multicast_v4_n(&g, &idx).map_err(err("IP_ADD_MEMBERSHIP"))?;
            }
        }
        // SAFETY: `sock` owns its descriptor; AsyncFd keeps it until dropped.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| err("epoll")(e.into_parts().1))?;
        Ok(VrrpSocket { fd, iface: iface.clone(), v6 })
    }

    /// Sets the TTL / hop limit of unicast adverts (`unicast_ttl`).
    pub fn set_unicast_ttl(&self, ttl: u8) -> Result<(), SocketError> {
        let r = if self.v6 {
            self.fd.get_ref().set_unicast_hops_v6(u32::from(ttl))
        } else {
            self.fd.get_ref().set_ttl_v4(u32::from(ttl))
        };
        r.map_err(|source| SocketError::Io { iface: self.iface.name.clone(), op: "unicast TTL", source })
    }

    /// Sends one advert from `src` to `dst` (the group or a unicast peer).
    pub fn send(&self, payload: &[u8], src: IpAddr, dst: IpAddr) -> io::Result<()> {
        let fd = self.fd.get_ref().as_raw_fd();
        let iov = [IoSlice::new(payload)];
        let flags = MsgFlags::empty();
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: self.iface.index as i32,
                    ipi_spec_dst: libc::in_addr { s_addr: u32::from(src).to_be() },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
                sendmsg(fd, &iov, &[ControlMessage::Ipv4PacketInfo(&info)], flags, Some(&to))?;
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr { s6_addr: src.octets() },
                    ipi6_ifindex: self.iface.index,
                };
                let to = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, self.iface.index));
                sendmsg(fd, &iov, &[ControlMessage::Ipv6PacketInfo(&info)], flags, Some(&to))?;
            }
            _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "mixed address families")),
        }
        Ok(())
    }

    /// Waits for the next VRRP packet. Packets too short to carry an IP
    /// header (v4) are skipped: they cannot be attributed to anyone.
    pub async fn recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Received<'a>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let got = guard.try_io(|inner| {
                let fd = inner.get_ref().as_raw_fd();
                if self.v6 { recv_v6(fd, buf) } else { recv_v4(fd, buf) }
            });
            match got {
                Ok(Ok(Some((range, meta)))) => return Ok(Received { payload: &buf[range], meta }),
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// A packet already queued, without waiting: None when there is none.
    pub fn try_recv<'a>(&self, buf: &'a mut [u8]) -> io::Result<Option<Received<'a>>> {
        let fd = self.fd.get_ref().as_raw_fd();
        loop {
            match if self.v6 { recv_v6(fd, buf) } else { recv_v4(fd, buf) } {
                Ok(Some((range, meta))) => return Ok(Some(Received { payload: &buf[range], meta })),
                Ok(None) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

type RecvResult = io::Result<Option<(std::ops::Range<usize>, RxMeta)>>;

/// IPv4 raw sockets deliver the IP header: TTL and addresses come from it.
fn recv_v4(fd: i32, buf: &mut [u8]) -> RecvResult {
    let n = nix::sys::socket::recv(fd, buf, MsgFlags::empty())?;
    Ok(parse_ipv4(&buf[..n]))
}

/// The VRRP payload range and the header fields of an IPv4 packet.
pub fn parse_ipv4(pkt: &[u8]) -> Option<(std::ops::Range<usize>, RxMeta)> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
    if ihl < 20 || total < ihl {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
    Some((ihl..total, RxMeta { src: src.into(), dst: dst.into(), ttl: pkt[8] }))
}

/// IPv6 raw sockets deliver only the payload: the hop limit and the
/// destination come as control messages, the source as the peer address.
fn recv_v6(fd: i32, buf: &mut [u8]) -> RecvResult {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let Some(src) = msg.address.as_ref().and_then(|a| a.as_sockaddr_in6()).map(|a| a.ip()) else {
        return Ok(None);
    };
    let (mut dst, mut hops) = (None, None);
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
            ControlMessageOwned::Ipv6HopLimit(h) => hops = Some(h),
            _ => {}
        }
    }
    let (Some(dst), Some(hops)) = (dst, hops) else { return Ok(None) };
    let n = msg.bytes;
    Ok(Some((0..n, RxMeta { src: src.into(), dst: dst.into(), ttl: hops.clamp(0, 255) as u8 })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_fields_and_payload() {
        let mut pkt = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 255, 112, 0, 0, 10, 0, 0, 1, 224, 0, 0, 18];
        pkt.extend_from_slice(&[0x21, 51, 100, 1, 0, 1, 0, 0]);
        pkt.extend_from_slice(&[0xee; 4]); // link-layer padding beyond total length
        let (range, meta) = parse_ipv4(&pkt).unwrap();
        assert_eq!(range, 20..28);
        assert_eq!(meta.ttl, 255);
        assert_eq!(meta.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(meta.dst, IpAddr::from([224, 0, 0, 18]));
    }

    #[test]
    fn ipv4_with_options_skips_them() {
        let mut pkt = vec![0x46, 0, 0, 32, 0, 0, 0, 0, 254, 112, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1, 1, 1, 1, 0];
        pkt.extend_from_slice(&[0x21, 51, 100, 1, 0, 1, 0, 0]);
        let (range, meta) = parse_ipv4(&pkt).unwrap();
        assert_eq!(range, 24..32);
        assert_eq!(meta.ttl, 254);
    }

    #[test]
    fn ipv4_garbage_is_skipped() {
        assert!(parse_ipv4(&[0x45; 10]).is_none());
        assert!(parse_ipv4(&[0x65; 40]).is_none());
        // IHL below the minimum header.
        let mut bad = vec![0x44u8; 40];
        bad[2] = 0;
        bad[3] = 40;
        assert!(parse_ipv4(&bad).is_none());
    }
}
