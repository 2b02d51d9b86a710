//! Virtual addresses (`virtual_ipaddress`, `virtual_ipaddress_excluded`)
//! added and removed through rtnetlink, with keepalived's options.
//!
//! [`Vip::resolve`] turns a config entry into what the kernel is told (pure,
//! unit-tested); [`Addrs`] adds and removes it. Both operations are
//! idempotent, so a restarted or reloaded daemon can replay them.
//!
//! Address flags: `home`, `-nodad`/`nodad`, `mngtmpaddr`, `noprefixroute`,
//! `autojoin` map to IFA_F_* and `preferred_lft N|forever` to IFA_CACHEINFO,
//! as `ip addr add` does. The kernel applies `home`, `-nodad` and
//! `mngtmpaddr` to IPv6 only (IPv4 ignores them, as with `ip`).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::{
    Handle,
    packet_route::{
        AddressFamily,
        address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope, CacheInfo},
    },
};

use crate::config::{Broadcast, VirtualAddress};

/// Linux's interface name limit (IFNAMSIZ - 1); labels share it.
const IFNAME_MAX: usize = 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    #[error(
        "{addr}: label {label:?} must start with the interface name {dev:?} and be at most 15 characters"
    )]
    BadLabel {
        addr: IpAddr,
        label: String,
        dev: String,
    },
    #[error("{addr}: unknown scope {scope:?} (host, link, global, site, nowhere or 0-255)")]
    BadScope { addr: IpAddr, scope: String },
    #[error("{addr}: `brd` applies to IPv4 only")]
    BroadcastOnIpv6 { addr: IpAddr },
    #[error("{addr}: `brd` {brd} is not IPv4")]
    BadBroadcast { addr: IpAddr, brd: IpAddr },
    #[error("{addr}: prefix /{prefix} is too long")]
    BadPrefix { addr: IpAddr, prefix: u8 },
    #[error("{addr}: `preferred_lft` needs a number of seconds or `forever`, not {value:?}")]
    BadLifetime { addr: IpAddr, value: String },
    #[error("{addr}: `peer` {peer} is not the same family")]
    BadPeer { addr: IpAddr, peer: IpAddr },
    #[error("{addr}/{prefix} on {dev}: no such interface")]
    NoDevice {
        addr: IpAddr,
        prefix: u8,
        dev: String,
    },
    #[error("adding {addr}/{prefix} to {dev}: {reason}")]
    Add {
        addr: IpAddr,
        prefix: u8,
        dev: String,
        reason: String,
    },
    #[error("removing {addr}/{prefix} from {dev}: {reason}")]
    Remove {
        addr: IpAddr,
        prefix: u8,
        dev: String,
        reason: String,
    },
    #[error("rtnetlink: {0}")]
    Netlink(String),
}

/// A virtual address as the kernel is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub addr: IpAddr,
    pub prefix: u8,
    pub dev: String,
    /// IPv4 only (the kernel has no IPv6 labels).
    pub label: Option<String>,
    /// RT_SCOPE_* value; 0 = global (keepalived's default).
    pub scope: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub peer: Option<IpAddr>,
    /// IFA_F_* bits.
    pub flags: u32,
    /// `preferred_lft` in seconds; `None` = forever.
    pub preferred_lft: Option<u32>,
}

impl Vip {
    /// Resolves a config entry; `default_dev` is the instance's interface
    /// (or its VMAC when `use_vmac` is set), used when the entry has no `dev`.
    pub fn resolve(va: &VirtualAddress, default_dev: &str) -> Result<Vip, AddrError> {
        let addr = va.addr;
        let dev = va.dev.clone().unwrap_or_else(|| default_dev.to_string());
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if va.prefix > max {
            return Err(AddrError::BadPrefix {
                addr,
                prefix: va.prefix,
            });
        }
        let label = match (&va.label, addr) {
            // keepalived drops labels on IPv6 addresses too.
            (Some(_), IpAddr::V6(_)) | (None, _) => None,
            (Some(l), IpAddr::V4(_)) => {
                if !l.starts_with(dev.as_str()) || l.len() > IFNAME_MAX {
                    return Err(AddrError::BadLabel {
                        addr,
                        label: l.clone(),
                        dev,
                    });
                }
                Some(l.clone())
            }
        };
        let scope = match va.scope.as_deref() {
            None => 0,
            Some(s) => parse_scope(s).ok_or_else(|| AddrError::BadScope {
                addr,
                scope: s.to_string(),
            })?,
        };
        // As keepalived (vrrp_ipaddress.c): `brd` is dropped next to a
        // `peer`, and `+` / `-` apply to prefixes up to /30 only.
        let broadcast = match (&va.brd, addr) {
            (None, _) => None,
            (Some(_), IpAddr::V6(_)) => return Err(AddrError::BroadcastOnIpv6 { addr }),
            (Some(Broadcast::Addr(IpAddr::V6(b))), _) => {
                return Err(AddrError::BadBroadcast {
                    addr,
                    brd: IpAddr::V6(*b),
                });
            }
            (Some(_), _) if va.peer.is_some() => None,
            (Some(Broadcast::Addr(IpAddr::V4(b))), _) => Some(*b),
            (Some(_), _) if va.prefix > 30 => None,
            (Some(b), IpAddr::V4(v4)) => {
                let host_bits = u32::MAX.checked_shr(u32::from(va.prefix)).unwrap_or(0);
                let set = matches!(b, Broadcast::SetHostBits);
                Some(Ipv4Addr::from(if set {
                    u32::from(v4) | host_bits
                } else {
                    u32::from(v4) & !host_bits
                }))
            }
        };
        if let Some(p) = va.peer
            && p.is_ipv4() != addr.is_ipv4()
        {
            return Err(AddrError::BadPeer { addr, peer: p });
        }
        let (flags, preferred_lft) = parse_flags(addr, &va.flags)?;
        Ok(Vip {
            addr,
            prefix: va.prefix,
            dev,
            label,
            scope,
            broadcast,
            peer: va.peer,
            flags,
            preferred_lft,
        })
    }

    /// The RTM_NEWADDR / RTM_DELADDR body for interface `index`: IFA_LOCAL is
    /// our address, IFA_ADDRESS the peer (or ours), as iproute2 sends them.
    pub fn message(&self, index: u32) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = if self.addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        m.header.prefix_len = self.prefix;
        m.header.index = index;
        m.header.scope = AddressScope::from(self.scope);
        m.attributes.push(AddressAttribute::Local(self.addr));
        m.attributes
            .push(AddressAttribute::Address(self.peer.unwrap_or(self.addr)));
        if let Some(b) = self.broadcast {
            m.attributes.push(AddressAttribute::Broadcast(b));
        }
        if let Some(l) = &self.label {
            m.attributes.push(AddressAttribute::Label(l.clone()));
        }
        if self.flags != 0 {
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::from_bits_retain(
                    self.flags,
                )));
        }
        if let Some(p) = self.preferred_lft {
            let mut c = CacheInfo::default();
            c.ifa_preferred = p;
            c.ifa_valid = u32::MAX;
            m.attributes.push(AddressAttribute::CacheInfo(c));
        }
        m
    }
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} dev {}", self.addr, self.prefix, self.dev)
    }
}

/// `scope` as `ip addr` reads it: a name or a number.
fn parse_scope(s: &str) -> Option<u8> {
    Some(match s {
        "global" | "universe" => 0,
        "site" => 200,
        "link" => 253,
        "host" => 254,
        "nowhere" => 255,
        n => n.parse().ok()?,
    })
}

fn parse_flags(addr: IpAddr, words: &[String]) -> Result<(u32, Option<u32>), AddrError> {
    let mut flags = AddressFlags::empty();
    let mut preferred = None;
    let mut it = words.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "home" => flags |= AddressFlags::Homeaddress,
            "-nodad" | "nodad" => flags |= AddressFlags::Nodad,
            "mngtmpaddr" => flags |= AddressFlags::Managetempaddr,
            "noprefixroute" => flags |= AddressFlags::Noprefixroute,
            "autojoin" => flags |= AddressFlags::Mcautojoin,
            "preferred_lft" => {
                let v = it.next().map(String::as_str).unwrap_or("");
                preferred = match v {
                    "forever" => None,
                    n => Some(n.parse().map_err(|_| AddrError::BadLifetime {
                        addr,
                        value: v.to_string(),
                    })?),
                };
            }
            // The config parser accepts no other word here.
            _ => {}
        }
    }
    Ok((flags.bits(), preferred))
}

/// Resolves every `virtual_ipaddress` (first) and `virtual_ipaddress_excluded`
/// entry of an instance; the excluded ones are added the same way but never
/// carried in adverts.
pub fn resolve_all(
    vips: &[VirtualAddress],
    excluded: &[VirtualAddress],
    default_dev: &str,
) -> Result<(Vec<Vip>, Vec<Vip>), AddrError> {
    let r = |l: &[VirtualAddress]| {
        l.iter()
            .map(|v| Vip::resolve(v, default_dev))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((r(vips)?, r(excluded)?))
}

/// Adds and removes [`Vip`]s over one rtnetlink connection.
#[derive(Clone)]
pub struct Addrs {
    handle: Handle,
}

impl Addrs {
    /// Opens a netlink connection; its task runs on the current tokio runtime.
    pub fn new() -> Result<Self, AddrError> {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| AddrError::Netlink(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Addrs { handle })
    }

    /// Shares a connection the caller already has.
    pub fn with_handle(handle: Handle) -> Self {
        Addrs { handle }
    }

    /// Adds `vip` (becoming master). Ok(true) if added, Ok(false) if it was
    /// already there.
    pub async fn add(&self, vip: &Vip) -> Result<bool, AddrError> {
        let index = self.index(vip).await?;
        let mut req = self.handle.address().add(index, vip.addr, vip.prefix);
        *req.message_mut() = vip.message(index);
        match req.execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => Ok(false),
            Err(e) => Err(AddrError::Add {
                addr: vip.addr,
                prefix: vip.prefix,
                dev: vip.dev.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Removes `vip` (leaving master). Ok(true) if removed, Ok(false) if it
    /// was not there (or its interface is gone).
    pub async fn remove(&self, vip: &Vip) -> Result<bool, AddrError> {
        let Some(index) = self.index_if_any(vip).await? else {
            return Ok(false);
        };
        match self
            .handle
            .address()
            .del(vip.message(index))
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e))
                if [-libc::EADDRNOTAVAIL, -libc::ENOENT, -libc::ENODEV].contains(&e.raw_code()) =>
            {
                Ok(false)
            }
            Err(e) => Err(AddrError::Remove {
                addr: vip.addr,
                prefix: vip.prefix,
                dev: vip.dev.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Whether `vip`'s address is on its interface (with any prefix).
    pub async fn is_present(&self, vip: &Vip) -> Result<bool, AddrError> {
        let Some(index) = self.index_if_any(vip).await? else {
            return Ok(false);
        };
        let mut found = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(vip.addr)
            .execute();
        Ok(found
            .try_next()
            .await
            .map_err(|e| AddrError::Netlink(e.to_string()))?
            .is_some())
    }

    /// `None` when the interface is gone (nothing to remove or find there).
    async fn index_if_any(&self, vip: &Vip) -> Result<Option<u32>, AddrError> {
        match self.index(vip).await {
            Ok(i) => Ok(Some(i)),
            Err(AddrError::NoDevice { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn index(&self, vip: &Vip) -> Result<u32, AddrError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(vip.dev.clone())
            .execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(l.header.index),
            Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Err(AddrError::NoDevice {
                addr: vip.addr,
                prefix: vip.prefix,
                dev: vip.dev.clone(),
            }),
            Err(e) => Err(AddrError::Netlink(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn va(addr: &str, prefix: u8) -> VirtualAddress {
        VirtualAddress::new(addr.parse().unwrap(), prefix)
    }

    #[test]
    fn defaults_use_the_instance_interface_global_scope_no_broadcast() {
        let v = Vip::resolve(&va("10.0.0.10", 24), "eth0").unwrap();
        assert_eq!(v.dev, "eth0");
        assert_eq!(v.scope, 0);
        assert_eq!(v.broadcast, None);
        assert_eq!(v.label, None);
        assert_eq!((v.flags, v.preferred_lft), (0, None));
    }

    #[test]
    fn dev_label_scope_and_broadcast_forms() {
        let mut a = va("10.0.0.10", 24);
        a.dev = Some("eth1".into());
        a.label = Some("eth1:vip".into());
        a.scope = Some("link".into());
        a.brd = Some(Broadcast::SetHostBits);
        let v = Vip::resolve(&a, "eth0").unwrap();
        assert_eq!(
            (v.dev.as_str(), v.label.as_deref(), v.scope),
            ("eth1", Some("eth1:vip"), 253)
        );
        assert_eq!(v.broadcast, Some(Ipv4Addr::new(10, 0, 0, 255)));
        a.brd = Some(Broadcast::ClearHostBits);
        assert_eq!(
            Vip::resolve(&a, "eth0").unwrap().broadcast,
            Some(Ipv4Addr::new(10, 0, 0, 0))
        );
        a.brd = Some(Broadcast::Addr("10.0.0.127".parse().unwrap()));
        assert_eq!(
            Vip::resolve(&a, "eth0").unwrap().broadcast,
            Some(Ipv4Addr::new(10, 0, 0, 127))
        );
        let mut b = va("10.0.0.10", 32);
        b.brd = Some(Broadcast::SetHostBits);
        assert_eq!(Vip::resolve(&b, "eth0").unwrap().broadcast, None);
        b.prefix = 30;
        assert_eq!(
            Vip::resolve(&b, "eth0").unwrap().broadcast,
            Some(Ipv4Addr::new(10, 0, 0, 11))
        );
        b.peer = Some("10.0.0.20".parse().unwrap());
        assert_eq!(Vip::resolve(&b, "eth0").unwrap().broadcast, None);
        b.peer = None;
        b.prefix = 0;
        assert_eq!(
            Vip::resolve(&b, "eth0").unwrap().broadcast,
            Some(Ipv4Addr::BROADCAST)
        );
        for (s, n) in [
            ("host", 254),
            ("site", 200),
            ("nowhere", 255),
            ("global", 0),
            ("42", 42),
        ] {
            a.scope = Some(s.into());
            assert_eq!(Vip::resolve(&a, "eth0").unwrap().scope, n, "{s}");
        }
    }

    #[test]
    fn bad_entries_are_errors_naming_the_address() {
        let mut a = va("10.0.0.10", 24);
        a.label = Some("eth0:vip".into());
        let e = Vip::resolve(&a, "eth1").unwrap_err();
        assert!(
            e.to_string().contains("10.0.0.10") && e.to_string().contains("eth1"),
            "{e}"
        );
        a.label = Some("eth1:a-very-long-label".into());
        assert!(matches!(
            Vip::resolve(&a, "eth1"),
            Err(AddrError::BadLabel { .. })
        ));
        let mut s = va("10.0.0.10", 24);
        s.scope = Some("galactic".into());
        assert!(matches!(
            Vip::resolve(&s, "eth0"),
            Err(AddrError::BadScope { .. })
        ));
        s.scope = None;
        s.brd = Some(Broadcast::Addr("2001:db8::ff".parse().unwrap()));
        assert!(matches!(
            Vip::resolve(&s, "eth0"),
            Err(AddrError::BadBroadcast { .. })
        ));
        let mut six = va("2001:db8::1", 64);
        six.brd = Some(Broadcast::SetHostBits);
        assert!(matches!(
            Vip::resolve(&six, "eth0"),
            Err(AddrError::BroadcastOnIpv6 { .. })
        ));
        assert!(matches!(
            Vip::resolve(&va("10.0.0.1", 33), "eth0"),
            Err(AddrError::BadPrefix { .. })
        ));
        let mut p = va("10.0.0.1", 32);
        p.peer = Some("2001:db8::2".parse().unwrap());
        assert!(matches!(
            Vip::resolve(&p, "eth0"),
            Err(AddrError::BadPeer { .. })
        ));
    }

    #[test]
    fn ipv6_labels_are_dropped_as_keepalived_does() {
        let mut a = va("2001:db8::1", 64);
        a.label = Some("eth0:v6".into());
        assert_eq!(Vip::resolve(&a, "eth0").unwrap().label, None);
    }

    #[test]
    fn flags_map_to_ifa_bits_and_cacheinfo() {
        let mut a = va("2001:db8::1", 64);
        a.flags = [
            "home",
            "-nodad",
            "noprefixroute",
            "mngtmpaddr",
            "autojoin",
            "preferred_lft",
            "0",
        ]
        .map(String::from)
        .to_vec();
        let v = Vip::resolve(&a, "eth0").unwrap();
        assert_eq!(v.flags, 0x10 | 0x02 | 0x200 | 0x100 | 0x400);
        assert_eq!(v.preferred_lft, Some(0));
        let m = v.message(7);
        assert!(
            m.attributes
                .contains(&AddressAttribute::Flags(AddressFlags::from_bits_retain(
                    v.flags
                )))
        );
        assert!(m.attributes.iter().any(|a| matches!(a, AddressAttribute::CacheInfo(c) if c.ifa_preferred == 0 && c.ifa_valid == u32::MAX)));
        a.flags = vec!["preferred_lft".into(), "soon".into()];
        assert!(matches!(
            Vip::resolve(&a, "eth0"),
            Err(AddrError::BadLifetime { .. })
        ));
    }

    #[test]
    fn message_carries_local_peer_label_broadcast_scope() {
        let mut a = va("10.0.0.10", 24);
        a.peer = Some("10.0.0.20".parse().unwrap());
        a.label = Some("eth0:1".into());
        a.brd = Some(Broadcast::SetHostBits);
        a.scope = Some("host".into());
        let m = Vip::resolve(&a, "eth0").unwrap().message(3);
        assert_eq!(
            (m.header.index, m.header.prefix_len, m.header.scope),
            (3, 24, AddressScope::Host)
        );
        assert_eq!(
            m.attributes,
            vec![
                AddressAttribute::Local(a.addr),
                AddressAttribute::Address("10.0.0.20".parse().unwrap()),
                AddressAttribute::Label("eth0:1".into()),
            ],
            "keepalived drops `brd` next to `peer`"
        );
        a.peer = None;
        let m = Vip::resolve(&a, "eth0").unwrap().message(3);
        assert_eq!(
            m.attributes,
            vec![
                AddressAttribute::Local(a.addr),
                AddressAttribute::Address(a.addr),
                AddressAttribute::Broadcast(Ipv4Addr::new(10, 0, 0, 255)),
                AddressAttribute::Label("eth0:1".into()),
            ]
        );
    }

    #[test]
    fn resolve_all_keeps_both_lists() {
        let (v, x) = resolve_all(
            &[va("10.0.0.1", 32)],
            &[va("10.0.0.2", 32), va("10.0.0.3", 32)],
            "eth0",
        )
        .unwrap();
        assert_eq!((v.len(), x.len()), (1, 2));
        assert!(resolve_all(&[], &[va("10.0.0.2", 40)], "eth0").is_err());
    }
}
