//! The "IPVS" generic netlink family's messages, as the kernel's
//! include/uapi/linux/ip_vs.h defines them and libipvs sends them.

use std::net::IpAddr;

use netlink_packet_core::{DecodeError, Emitable, Nla, NlaBuffer, NlasIterator, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use super::table::{Dest, DestKey, Service, SvcKey, Stats};

pub const FAMILY_NAME: &str = "IPVS";
const VERSION: u8 = 1;

/// IPVS_CMD_*.
pub mod cmd {
    pub const NEW_SERVICE: u8 = 1;
    pub const SET_SERVICE: u8 = 2;
    pub const DEL_SERVICE: u8 = 3;
    pub const GET_SERVICE: u8 = 4;
    pub const NEW_DEST: u8 = 5;
    pub const SET_DEST: u8 = 6;
    pub const DEL_DEST: u8 = 7;
    pub const GET_DEST: u8 = 8;
    pub const SET_CONFIG: u8 = 12;
    pub const GET_CONFIG: u8 = 13;
}

/// IPVS_CMD_ATTR_*.
mod cmd_attr {
    pub const SERVICE: u16 = 1;
    pub const DEST: u16 = 2;
    pub const TIMEOUT_TCP: u16 = 4;
    pub const TIMEOUT_TCP_FIN: u16 = 5;
    pub const TIMEOUT_UDP: u16 = 6;
}

/// IPVS_SVC_ATTR_*.
mod svc_attr {
    pub const AF: u16 = 1;
    pub const PROTOCOL: u16 = 2;
    pub const ADDR: u16 = 3;
    pub const PORT: u16 = 4;
    pub const FWMARK: u16 = 5;
    pub const SCHED_NAME: u16 = 6;
    pub const FLAGS: u16 = 7;
    pub const TIMEOUT: u16 = 8;
    pub const NETMASK: u16 = 9;
    pub const STATS: u16 = 10;
    pub const STATS64: u16 = 12;
}

/// IPVS_DEST_ATTR_*.
mod dest_attr {
    pub const ADDR: u16 = 1;
    pub const PORT: u16 = 2;
    pub const FWD_METHOD: u16 = 3;
    pub const WEIGHT: u16 = 4;
    pub const U_THRESH: u16 = 5;
    pub const L_THRESH: u16 = 6;
    pub const ACTIVE_CONNS: u16 = 7;
    pub const INACT_CONNS: u16 = 8;
    pub const PERSIST_CONNS: u16 = 9;
    pub const STATS: u16 = 10;
    pub const ADDR_FAMILY: u16 = 11;
    pub const STATS64: u16 = 12;
}

/// IPVS_STATS_ATTR_*: 32-bit counters in STATS, 64-bit in STATS64 (bytes
/// are 64-bit in both).
mod stats_attr {
    pub const CONNS: u16 = 1;
    pub const INPKTS: u16 = 2;
    pub const OUTPKTS: u16 = 3;
    pub const INBYTES: u16 = 4;
    pub const OUTBYTES: u16 = 5;
}

const NLA_F_NESTED: u16 = 0x8000;

/// One attribute; nested ones carry their children already encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub kind: u16,
    pub value: Vec<u8>,
}

impl Attr {
    fn u16(kind: u16, v: u16) -> Attr {
        Attr { kind, value: v.to_ne_bytes().to_vec() }
    }
    fn be16(kind: u16, v: u16) -> Attr {
        Attr { kind, value: v.to_be_bytes().to_vec() }
    }
    fn u32(kind: u16, v: u32) -> Attr {
        Attr { kind, value: v.to_ne_bytes().to_vec() }
    }
    fn nested(kind: u16, children: &[Attr]) -> Attr {
        let mut value = vec![0; children.buffer_len()];
        children.emit(&mut value);
        Attr { kind: kind | NLA_F_NESTED, value }
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        self.value.len()
    }
    fn kind(&self) -> u16 {
        self.kind
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        buffer.copy_from_slice(&self.value);
    }
}

/// A message of the IPVS family: its command and top-level attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpvsMsg {
    pub cmd: u8,
    pub attrs: Vec<Attr>,
}

impl GenlFamily for IpvsMsg {
    fn family_name() -> &'static str {
        FAMILY_NAME
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        VERSION
    }
}

impl Emitable for IpvsMsg {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMsg {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(IpvsMsg { cmd: header.cmd, attrs: parse_attrs(buf)? })
    }
}

fn parse_attrs(buf: &[u8]) -> Result<Vec<Attr>, DecodeError> {
    NlasIterator::new(buf)
        .map(|nla| nla.map(|n: NlaBuffer<&[u8]>| Attr { kind: n.kind(), value: n.value().to_vec() }))
        .collect()
}

// Requests.

/// IPVS_CMD_NEW_SERVICE / SET_SERVICE: the full service.
pub fn service(cmd: u8, svc: &Service) -> IpvsMsg {
    let mut a = svc_key(&svc.key);
    let mut sched = svc.sched.as_bytes().to_vec();
    sched.push(0);
    a.push(Attr { kind: svc_attr::SCHED_NAME, value: sched });
    // struct ip_vs_flags { flags, mask }: the mask says which bits to set.
    let mut flags = svc.flags.to_ne_bytes().to_vec();
    flags.extend_from_slice(&u32::MAX.to_ne_bytes());
    a.push(Attr { kind: svc_attr::FLAGS, value: flags });
    a.push(Attr::u32(svc_attr::TIMEOUT, svc.timeout));
    a.push(Attr::u32(svc_attr::NETMASK, svc.netmask));
    IpvsMsg { cmd, attrs: vec![Attr::nested(cmd_attr::SERVICE, &a)] }
}

/// IPVS_CMD_DEL_SERVICE, or IPVS_CMD_GET_DEST (a dump of its destinations).
pub fn service_key(cmd: u8, key: &SvcKey) -> IpvsMsg {
    IpvsMsg { cmd, attrs: vec![Attr::nested(cmd_attr::SERVICE, &svc_key(key))] }
}

/// IPVS_CMD_NEW_DEST / SET_DEST: the full destination.
pub fn dest(cmd: u8, svc: &SvcKey, d: &Dest) -> IpvsMsg {
    let mut a = dest_key(&d.key);
    a.push(Attr::u32(dest_attr::FWD_METHOD, d.fwd));
    a.push(Attr::u32(dest_attr::WEIGHT, d.weight));
    a.push(Attr::u32(dest_attr::U_THRESH, d.u_thresh));
    a.push(Attr::u32(dest_attr::L_THRESH, d.l_thresh));
    IpvsMsg { cmd, attrs: vec![Attr::nested(cmd_attr::SERVICE, &svc_key(svc)), Attr::nested(cmd_attr::DEST, &a)] }
}

/// IPVS_CMD_DEL_DEST.
pub fn del_dest(svc: &SvcKey, d: &DestKey) -> IpvsMsg {
    IpvsMsg {
        cmd: cmd::DEL_DEST,
        attrs: vec![Attr::nested(cmd_attr::SERVICE, &svc_key(svc)), Attr::nested(cmd_attr::DEST, &dest_key(d))],
    }
}

/// IPVS_CMD_SET_CONFIG with lvs_timeouts (seconds; 0 leaves one as it is).
pub fn timeouts(t: &Timeouts) -> IpvsMsg {
    IpvsMsg {
        cmd: cmd::SET_CONFIG,
        attrs: vec![
            Attr::u32(cmd_attr::TIMEOUT_TCP, t.tcp),
            Attr::u32(cmd_attr::TIMEOUT_TCP_FIN, t.tcp_fin),
            Attr::u32(cmd_attr::TIMEOUT_UDP, t.udp),
        ],
    }
}

/// The kernel's connection timeouts, seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub udp: u32,
}

fn svc_key(key: &SvcKey) -> Vec<Attr> {
    match *key {
        SvcKey::Fwmark { v6, mark } => vec![Attr::u16(svc_attr::AF, af(v6)), Attr::u32(svc_attr::FWMARK, mark)],
        SvcKey::Addr { proto, addr, port } => vec![
            Attr::u16(svc_attr::AF, af(addr.is_ipv6())),
            Attr::u16(svc_attr::PROTOCOL, proto),
            Attr { kind: svc_attr::ADDR, value: addr16(addr) },
            Attr::be16(svc_attr::PORT, port),
        ],
    }
}

fn dest_key(d: &DestKey) -> Vec<Attr> {
    vec![
        Attr { kind: dest_attr::ADDR, value: addr16(d.addr) },
        Attr::be16(dest_attr::PORT, d.port),
        Attr::u16(dest_attr::ADDR_FAMILY, af(d.addr.is_ipv6())),
    ]
}

fn af(v6: bool) -> u16 {
    (if v6 { libc::AF_INET6 } else { libc::AF_INET }) as u16
}

/// `union nf_inet_addr`, as libipvs sends it: 16 bytes, IPv4 first.
fn addr16(a: IpAddr) -> Vec<u8> {
    let mut v = vec![0; 16];
    match a {
        IpAddr::V4(a) => v[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => v.copy_from_slice(&a.octets()),
    }
    v
}

// Replies.

/// A service from a GET_SERVICE dump, with its counters.
pub fn parse_service(msg: &IpvsMsg) -> Result<(Service, Stats), DecodeError> {
    let nested = find(&msg.attrs, cmd_attr::SERVICE).ok_or("service reply without IPVS_CMD_ATTR_SERVICE")?;
    let a = parse_attrs(nested)?;
    let v6 = u16_of(&a, svc_attr::AF)? == af(true);
    let key = match find(&a, svc_attr::FWMARK).map(u32_from).transpose()? {
        Some(mark) if mark != 0 => SvcKey::Fwmark { v6, mark },
        _ => SvcKey::Addr {
            proto: u16_of(&a, svc_attr::PROTOCOL)?,
            addr: addr_from(req(&a, svc_attr::ADDR)?, v6)?,
            port: be16_from(req(&a, svc_attr::PORT)?)?,
        },
    };
    let sched = String::from_utf8_lossy(req(&a, svc_attr::SCHED_NAME)?).trim_end_matches('\0').to_string();
    let flags = u32_from(req(&a, svc_attr::FLAGS)?.get(..4).ok_or("short IPVS_SVC_ATTR_FLAGS")?)?;
    let svc = Service {
        key,
        sched,
        flags,
        timeout: u32_from(req(&a, svc_attr::TIMEOUT)?)?,
        netmask: u32_from(req(&a, svc_attr::NETMASK)?)?,
    };
    Ok((svc, stats(&a, svc_attr::STATS64, svc_attr::STATS)?))
}

/// A destination from a GET_DEST dump, with its connection counts and counters.
pub fn parse_dest(msg: &IpvsMsg, v6_service: bool) -> Result<(Dest, DestConns, Stats), DecodeError> {
    let nested = find(&msg.attrs, cmd_attr::DEST).ok_or("destination reply without IPVS_CMD_ATTR_DEST")?;
    let a = parse_attrs(nested)?;
    let v6 = match find(&a, dest_attr::ADDR_FAMILY) {
        Some(f) => u16_from(f)? == af(true),
        None => v6_service,
    };
    let dest = Dest {
        key: DestKey { addr: addr_from(req(&a, dest_attr::ADDR)?, v6)?, port: be16_from(req(&a, dest_attr::PORT)?)? },
        fwd: u32_from(req(&a, dest_attr::FWD_METHOD)?)? & super::table::FWD_MASK,
        weight: u32_from(req(&a, dest_attr::WEIGHT)?)?,
        u_thresh: u32_from(req(&a, dest_attr::U_THRESH)?)?,
        l_thresh: u32_from(req(&a, dest_attr::L_THRESH)?)?,
    };
    let conn = |k| find(&a, k).map(u32_from).transpose().map(Option::unwrap_or_default);
    let conns = DestConns {
        active: conn(dest_attr::ACTIVE_CONNS)?,
        inactive: conn(dest_attr::INACT_CONNS)?,
        persistent: conn(dest_attr::PERSIST_CONNS)?,
    };
    Ok((dest, conns, stats(&a, dest_attr::STATS64, dest_attr::STATS)?))
}

/// A destination's connection counts, as `ipvsadm -Ln` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestConns {
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
}

/// The 64-bit counters when the kernel sends them (3.18+), else the 32-bit ones.
fn stats(a: &[Attr], stats64: u16, stats32: u16) -> Result<Stats, DecodeError> {
    let (nested, wide) = match (find(a, stats64), find(a, stats32)) {
        (Some(n), _) => (n, true),
        (None, Some(n)) => (n, false),
        (None, None) => return Ok(Stats::default()),
    };
    let s = parse_attrs(nested)?;
    let count = |k| -> Result<u64, DecodeError> {
        match find(&s, k) {
            None => Ok(0),
            Some(v) if wide || k == stats_attr::INBYTES || k == stats_attr::OUTBYTES => u64_from(v),
            Some(v) => u32_from(v).map(u64::from),
        }
    };
    Ok(Stats {
        conns: count(stats_attr::CONNS)?,
        in_packets: count(stats_attr::INPKTS)?,
        out_packets: count(stats_attr::OUTPKTS)?,
        in_bytes: count(stats_attr::INBYTES)?,
        out_bytes: count(stats_attr::OUTBYTES)?,
    })
}

fn find(a: &[Attr], kind: u16) -> Option<&[u8]> {
    a.iter().find(|x| x.kind & !NLA_F_NESTED == kind).map(|x| x.value.as_slice())
}

fn req(a: &[Attr], kind: u16) -> Result<&[u8], DecodeError> {
    find(a, kind).ok_or_else(|| DecodeError::from(format!("IPVS reply without attribute {kind}")))
}

fn u16_of(a: &[Attr], kind: u16) -> Result<u16, DecodeError> {
    u16_from(req(a, kind)?)
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], DecodeError> {
    v.get(..N).and_then(|b| b.try_into().ok()).ok_or_else(|| DecodeError::from(format!("attribute shorter than {N} bytes")))
}

fn u16_from(v: &[u8]) -> Result<u16, DecodeError> {
    fixed(v).map(u16::from_ne_bytes)
}

fn be16_from(v: &[u8]) -> Result<u16, DecodeError> {
    fixed(v).map(u16::from_be_bytes)
}

fn u32_from(v: &[u8]) -> Result<u32, DecodeError> {
    fixed(v).map(u32::from_ne_bytes)
}

fn u64_from(v: &[u8]) -> Result<u64, DecodeError> {
    fixed(v).map(u64::from_ne_bytes)
}

fn addr_from(v: &[u8], v6: bool) -> Result<IpAddr, DecodeError> {
    Ok(if v6 { IpAddr::from(fixed::<16>(v)?) } else { IpAddr::from(fixed::<4>(v)?) })
}

#[cfg(all(test, target_endian = "little"))]
mod tests {
    use super::*;
    use crate::dataplane::ipvs::table::{FWD_DROUTE, FWD_MASQ, SVC_F_PERSISTENT};

    fn bytes(m: &IpvsMsg) -> Vec<u8> {
        let mut b = vec![0; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    fn tcp_service() -> Service {
        Service {
            key: SvcKey::Addr { proto: 6, addr: "10.107.107.0".parse().unwrap(), port: 1337 },
            sched: "wlc".into(),
            flags: SVC_F_PERSISTENT,
            timeout: 300,
            netmask: u32::from_ne_bytes([255, 255, 255, 0]),
        }
    }

    #[test]
    fn new_service_has_libipvs_layout() {
        let b = bytes(&service(cmd::NEW_SERVICE, &tcp_service()));
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            84, 0, 0x01, 0x80,                   // IPVS_CMD_ATTR_SERVICE, nested
            6, 0, 1, 0, 2, 0, 0, 0,              // AF = AF_INET
            6, 0, 2, 0, 6, 0, 0, 0,              // PROTOCOL = TCP
            20, 0, 3, 0, 10, 107, 107, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // ADDR, union nf_inet_addr
            6, 0, 4, 0, 0x05, 0x39, 0, 0,        // PORT 1337, network order
            8, 0, 6, 0, b'w', b'l', b'c', 0,     // SCHED_NAME
            12, 0, 7, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // FLAGS {PERSISTENT, mask ~0}
            8, 0, 8, 0, 44, 1, 0, 0,             // TIMEOUT 300
            8, 0, 9, 0, 255, 255, 255, 0,        // NETMASK 255.255.255.0 as the kernel's __be32
        ];
        assert_eq!(b, want);
    }

    #[test]
    fn fwmark_v6_service_key_and_dest_layout() {
        let key = SvcKey::Fwmark { v6: true, mark: 7 };
        let d = Dest {
            key: DestKey { addr: "fd00::1".parse().unwrap(), port: 80 },
            fwd: FWD_DROUTE,
            weight: 0,
            u_thresh: 0,
            l_thresh: 0,
        };
        let b = bytes(&dest(cmd::NEW_DEST, &key, &d));
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            20, 0, 0x01, 0x80,
            6, 0, 1, 0, 10, 0, 0, 0,             // AF = AF_INET6
            8, 0, 5, 0, 7, 0, 0, 0,              // FWMARK 7
            72, 0, 0x02, 0x80,                   // IPVS_CMD_ATTR_DEST, nested
            20, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            6, 0, 2, 0, 0, 80, 0, 0,             // PORT 80
            6, 0, 11, 0, 10, 0, 0, 0,            // ADDR_FAMILY
            8, 0, 3, 0, 3, 0, 0, 0,              // FWD_METHOD = IP_VS_CONN_F_DROUTE
            8, 0, 4, 0, 0, 0, 0, 0,              // WEIGHT 0: quiescent
            8, 0, 5, 0, 0, 0, 0, 0,              // U_THRESH
            8, 0, 6, 0, 0, 0, 0, 0,              // L_THRESH
        ];
        assert_eq!(b, want);
    }

    #[test]
    fn del_dest_carries_only_keys_and_timeouts_are_set_config() {
        let key = SvcKey::Addr { proto: 17, addr: "10.0.0.1".parse().unwrap(), port: 53 };
        let m = del_dest(&key, &DestKey { addr: "10.0.0.2".parse().unwrap(), port: 5353 });
        assert_eq!(m.cmd, cmd::DEL_DEST);
        let inner = parse_attrs(&m.attrs[1].value).unwrap();
        assert_eq!(inner.iter().map(|a| a.kind).collect::<Vec<_>>(), [1, 2, 11]);
        let t = bytes(&timeouts(&Timeouts { tcp: 900, tcp_fin: 120, udp: 300 }));
        assert_eq!(t, [8, 0, 4, 0, 0x84, 3, 0, 0, 8, 0, 5, 0, 120, 0, 0, 0, 8, 0, 6, 0, 0x2c, 1, 0, 0]);
    }

    #[test]
    fn replies_parse_back_with_stats() {
        // A reply as the kernel builds it: the request's attributes plus
        // HASHED in the flags and a STATS64 nest.
        let svc = tcp_service();
        let mut reply = service(cmd::NEW_SERVICE, &svc);
        let mut inner = parse_attrs(&reply.attrs[0].value).unwrap();
        inner[5].value[0] |= 0x2;
        let st = [(1u16, 5u64), (2, 10), (3, 0), (4, 1000), (5, 0)]
            .map(|(k, v)| Attr { kind: k, value: v.to_ne_bytes().to_vec() });
        inner.push(Attr::nested(svc_attr::STATS64, &st));
        reply.attrs = vec![Attr::nested(cmd_attr::SERVICE, &inner)];
        let (got, stats) = parse_service(&reply).unwrap();
        assert_eq!(got, Service { flags: SVC_F_PERSISTENT | 0x2, ..svc.clone() });
        assert_eq!(stats, Stats { conns: 5, in_packets: 10, out_packets: 0, in_bytes: 1000, out_bytes: 0 });

        let d = Dest { key: DestKey { addr: "10.0.0.9".parse().unwrap(), port: 8080 }, fwd: FWD_MASQ, weight: 3, u_thresh: 0, l_thresh: 0 };
        let mut reply = dest(cmd::NEW_DEST, &svc.key, &d);
        let mut inner = parse_attrs(&reply.attrs[1].value).unwrap();
        inner.push(Attr::u32(dest_attr::ACTIVE_CONNS, 2));
        inner.push(Attr::u32(dest_attr::INACT_CONNS, 1));
        reply.attrs = vec![Attr::nested(cmd_attr::DEST, &inner)];
        let (got, conns, _) = parse_dest(&reply, false).unwrap();
        assert_eq!(got, d);
        assert_eq!(conns, DestConns { active: 2, inactive: 1, persistent: 0 });
    }

    #[test]
    fn truncated_replies_are_errors_not_panics() {
        let reply = IpvsMsg { cmd: cmd::NEW_SERVICE, attrs: vec![Attr::nested(cmd_attr::SERVICE, &[Attr::u16(svc_attr::AF, 2)])] };
        assert!(parse_service(&reply).is_err());
        assert!(parse_service(&IpvsMsg { cmd: cmd::NEW_SERVICE, attrs: vec![] }).is_err());
    }
}
