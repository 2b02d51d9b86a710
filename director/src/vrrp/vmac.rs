//! `use_vmac`: a macvlan on the instance's interface carrying the virtual
//! router MAC (RFC 5798 §7.3: 00:00:5e:00:01:VRID, IPv6 00:00:5e:00:02:VRID),
//! so a failover moves no MAC address in the neighbours' caches.
//!
//! As keepalived 2.2.7 (vrrp_vmac.c): mode private, default name
//! `vrrp.<VRID>` for both families, and for IPv4 the sysctls it sets so the
//! macvlan hears the other routers and only the right interface answers ARP
//! (VMAC: accept_local=1, arp_ignore=1, rp_filter=0; parent: arp_ignore=1,
//! arp_filter=1). Default names are unique among the instances
//! ([`VmacSpec::for_instances`]); unlike keepalived, an existing interface
//! of that name that is not a macvlan on the same parent is an error rather
//! than a reason to pick another name.

use futures::TryStreamExt;
use rtnetlink::{
    Handle, LinkMacVlan, LinkUnspec,
    packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode},
};

use super::announce::Mac;
use crate::config::VrrpInstance;

#[derive(Debug, thiserror::Error)]
pub enum VmacError {
    #[error("{instance}: use_vmac MAC {mac:?} is not of the form xx:xx:xx:xx:xx:xx")]
    BadMac { instance: String, mac: String },
    #[error("{instance}: use_vmac name {name:?} is longer than 15 characters")]
    BadName { instance: String, name: String },
    #[error("{instance}: use_vmac needs an interface")]
    NoInterface { instance: String },
    #[error("VMAC {name}: base interface {base} does not exist")]
    NoBase { name: String, base: String },
    #[error("VMAC {name}: an interface of that name exists and is not a macvlan on {base}")]
    NameInUse { name: String, base: String },
    #[error("VMAC {name} on {base}: {reason}")]
    Netlink {
        name: String,
        base: String,
        reason: String,
    },
}

/// The macvlan an instance needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmacSpec {
    pub name: String,
    /// The instance's interface.
    pub base: String,
    pub mac: Mac,
    /// Set keepalived's IPv4 sysctls.
    pub ipv4: bool,
}

/// The virtual router MAC for `vrid`.
pub fn virtual_mac(vrid: u8, ipv6: bool) -> Mac {
    [0x00, 0x00, 0x5e, 0x00, if ipv6 { 0x02 } else { 0x01 }, vrid]
}

impl VmacSpec {
    /// The VMACs of all instances, `(instance, ipv6)` in config order:
    /// unnamed ones get keepalived's names, unique among them (`vrrp.VRID`,
    /// then `vrrp6.VRID` for IPv6, then `vrrp1.VRID`, `vrrp2.VRID`, ...).
    pub fn for_instances(
        instances: &[(&VrrpInstance, bool)],
    ) -> Result<Vec<Option<VmacSpec>>, VmacError> {
        let explicit: Vec<&str> = instances
            .iter()
            .filter_map(|(i, _)| i.use_vmac.as_ref()?.name.as_deref())
            .collect();
        let mut taken: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for &(inst, ipv6) in instances {
            let mut spec = Self::from_config(inst, ipv6)?;
            if let Some(s) = spec.as_mut()
                && inst.use_vmac.as_ref().is_some_and(|v| v.name.is_none())
            {
                let used = |n: &str| explicit.contains(&n) || taken.iter().any(|t| t == n);
                s.name = default_name(inst.virtual_router_id, ipv6, used);
            }
            if let Some(s) = &spec {
                taken.push(s.name.clone());
            }
            out.push(spec);
        }
        Ok(out)
    }

    /// One instance's VMAC, named `vrrp.VRID` unless configured; prefer
    /// [`VmacSpec::for_instances`], which keeps names unique. `ipv6` is the
    /// instance's family (its VIPs').
    pub fn from_config(inst: &VrrpInstance, ipv6: bool) -> Result<Option<VmacSpec>, VmacError> {
        let Some(v) = &inst.use_vmac else {
            return Ok(None);
        };
        let base = inst
            .interface
            .clone()
            .ok_or_else(|| VmacError::NoInterface {
                instance: inst.name.clone(),
            })?;
        let name = v
            .name
            .clone()
            .unwrap_or_else(|| format!("vrrp.{}", inst.virtual_router_id));
        if name.len() > 15 {
            return Err(VmacError::BadName {
                instance: inst.name.clone(),
                name,
            });
        }
        let mac = match &v.mac {
            None => virtual_mac(inst.virtual_router_id, ipv6),
            Some(m) => parse_mac(m).ok_or_else(|| VmacError::BadMac {
                instance: inst.name.clone(),
                mac: m.clone(),
            })?,
        };
        Ok(Some(VmacSpec {
            name,
            base,
            mac,
            ipv4: !ipv6,
        }))
    }

    fn err(&self, e: impl std::fmt::Display) -> VmacError {
        VmacError::Netlink {
            name: self.name.clone(),
            base: self.base.clone(),
            reason: e.to_string(),
        }
    }

    /// Creates the macvlan (or adopts ours, fixing its MAC) and brings it
    /// up; returns its ifindex. Idempotent.
    pub async fn ensure(&self, handle: &Handle) -> Result<u32, VmacError> {
        let base = link(handle, &self.base)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| VmacError::NoBase {
                name: self.name.clone(),
                base: self.base.clone(),
            })?;
        let base_index = base.header.index;
        let index = match link(handle, &self.name).await.map_err(|e| self.err(e))? {
            Some(l) => {
                if !is_macvlan_on(&l, base_index) {
                    return Err(VmacError::NameInUse {
                        name: self.name.clone(),
                        base: self.base.clone(),
                    });
                }
                let msg = LinkUnspec::new_with_index(l.header.index)
                    .address(self.mac.to_vec())
                    .up()
                    .build();
                handle
                    .link()
                    .change(msg)
                    .execute()
                    .await
                    .map_err(|e| self.err(e))?;
                l.header.index
            }
            None => {
                let msg = LinkMacVlan::new(&self.name, base_index, MacVlanMode::Private)
                    .address(self.mac.to_vec())
                    .build();
                handle
                    .link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(|e| self.err(e))?;
                let index = link(handle, &self.name)
                    .await
                    .map_err(|e| self.err(e))?
                    .ok_or_else(|| self.err("created but not found"))?
                    .header
                    .index;
                if self.ipv4 {
                    // As keepalived: no IPv6 link-local on an IPv4 VMAC, or
                    // every node's VMAC would send from the shared MAC (DAD,
                    // router solicitations) and the switch would flap.
                    let key = format!("/proc/sys/net/ipv6/conf/{}/addr_gen_mode", self.name);
                    if let Err(e) = std::fs::write(&key, "1") {
                        tracing::warn!("{}: cannot set {key}: {e}", self.name);
                    }
                }
                let up = LinkUnspec::new_with_index(index).up().build();
                handle.link().change(up).execute().await.map_err(|e| self.err(e))?;
                index
            }
        };
        if self.ipv4 {
            for (dev, key, val) in [
                (&self.name, "accept_local", "1"),
                (&self.name, "arp_ignore", "1"),
                (&self.name, "rp_filter", "0"),
                (&self.base, "arp_ignore", "1"),
                (&self.base, "arp_filter", "1"),
            ] {
                std::fs::write(format!("/proc/sys/net/ipv4/conf/{dev}/{key}"), val)
                    .map_err(|e| self.err(format!("setting {dev} {key}={val}: {e}")))?;
            }
        }
        Ok(index)
    }

    /// Deletes the macvlan (instance stopped). Ok(false) if it was gone; an
    /// interface of that name that is not ours is left alone.
    pub async fn remove(&self, handle: &Handle) -> Result<bool, VmacError> {
        let Some(l) = link(handle, &self.name).await.map_err(|e| self.err(e))? else {
            return Ok(false);
        };
        let base = link(handle, &self.base).await.map_err(|e| self.err(e))?;
        if !base.is_some_and(|b| is_macvlan_on(&l, b.header.index)) {
            return Err(VmacError::NameInUse {
                name: self.name.clone(),
                base: self.base.clone(),
            });
        }
        match handle.link().del(l.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}

/// keepalived's `create_vmac_name`: the first free name of `vrrp.VRID`,
/// (IPv6) `vrrp6.VRID`, `vrrp1.VRID`, `vrrp2.VRID`, ... (6 skipped for
/// IPv6, already tried).
fn default_name(vrid: u8, ipv6: bool, used: impl Fn(&str) -> bool) -> String {
    let first = format!("vrrp.{vrid}");
    if !used(&first) {
        return first;
    }
    let mut num = 0u32;
    loop {
        num = match (ipv6, num) {
            (true, 0) => 6,
            (true, 6) => 1,
            (true, 5) => 7,
            _ => num + 1,
        };
        let name = format!("vrrp{num}.{vrid}");
        if !used(&name) {
            return name;
        }
    }
}

fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

async fn link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(l) => Ok(l),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_macvlan_on(l: &LinkMessage, base_index: u32) -> bool {
    let mut kind = false;
    let mut parent = false;
    for a in &l.attributes {
        match a {
            LinkAttribute::LinkInfo(infos) => {
                kind = infos
                    .iter()
                    .any(|i| matches!(i, LinkInfo::Kind(InfoKind::MacVlan)));
            }
            LinkAttribute::Link(i) => parent = *i == base_index,
            _ => {}
        }
    }
    kind && parent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Vmac;

    #[test]
    fn rfc_virtual_macs() {
        assert_eq!(virtual_mac(51, false), [0, 0, 0x5e, 0, 1, 51]);
        assert_eq!(virtual_mac(255, true), [0, 0, 0x5e, 0, 2, 255]);
    }

    #[test]
    fn spec_from_config() {
        let mut inst = crate::vrrp::packet::tests::test_instance();
        inst.interface = Some("eth0".into());
        inst.virtual_router_id = 7;
        assert_eq!(VmacSpec::from_config(&inst, false).unwrap(), None);
        inst.use_vmac = Some(Vmac {
            name: None,
            mac: None,
        });
        let s = VmacSpec::from_config(&inst, false).unwrap().unwrap();
        assert_eq!(
            s,
            VmacSpec {
                name: "vrrp.7".into(),
                base: "eth0".into(),
                mac: [0, 0, 0x5e, 0, 1, 7],
                ipv4: true
            }
        );
        inst.use_vmac = Some(Vmac {
            name: Some("vmac7".into()),
            mac: Some("02:aa:bb:cc:dd:0e".into()),
        });
        let s = VmacSpec::from_config(&inst, true).unwrap().unwrap();
        assert_eq!(
            (s.name.as_str(), s.mac, s.ipv4),
            ("vmac7", [2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e], false)
        );
        inst.use_vmac = Some(Vmac {
            name: None,
            mac: Some("02:aa:bb:cc:dd".into()),
        });
        assert!(matches!(
            VmacSpec::from_config(&inst, false),
            Err(VmacError::BadMac { .. })
        ));
        inst.use_vmac = Some(Vmac {
            name: Some("a-name-too-long-for-linux".into()),
            mac: None,
        });
        assert!(matches!(
            VmacSpec::from_config(&inst, false),
            Err(VmacError::BadName { .. })
        ));
        inst.interface = None;
        inst.use_vmac = Some(Vmac {
            name: None,
            mac: None,
        });
        assert!(matches!(
            VmacSpec::from_config(&inst, false),
            Err(VmacError::NoInterface { .. })
        ));
    }

    #[test]
    fn default_names_are_unique_as_keepalived_picks_them() {
        let mut base = crate::vrrp::packet::tests::test_instance();
        base.interface = Some("eth0".into());
        base.virtual_router_id = 9;
        base.use_vmac = Some(Vmac {
            name: None,
            mac: None,
        });
        let mut named = base.clone();
        named.virtual_router_id = 10;
        named.use_vmac = Some(Vmac {
            name: Some("vrrp1.9".into()),
            mac: None,
        });
        let plain = crate::vrrp::packet::tests::test_instance();
        let list = [
            (&base, false),
            (&base, true),
            (&named, false),
            (&plain, false),
            (&base, false),
            (&base, true),
        ];
        let names: Vec<Option<String>> = VmacSpec::for_instances(&list)
            .unwrap()
            .into_iter()
            .map(|s| s.map(|s| s.name))
            .collect();
        let want = ["vrrp.9", "vrrp6.9", "vrrp1.9"].map(|n| Some(n.to_string()));
        assert_eq!(names[..3], want);
        assert_eq!(names[3], None);
        assert_eq!(names[4].as_deref(), Some("vrrp2.9"));
        assert_eq!(names[5].as_deref(), Some("vrrp3.9"));
        assert_eq!(
            default_name(1, true, |n| [
                "vrrp.1", "vrrp6.1", "vrrp1.1", "vrrp2.1", "vrrp3.1", "vrrp4.1", "vrrp5.1"
            ]
            .contains(&n)),
            "vrrp7.1"
        );
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("0:0:5e:0:1:a"), Some([0, 0, 0x5e, 0, 1, 0xa]));
        for bad in [
            "",
            "00:00:5e:00:01",
            "00:00:5e:00:01:02:03",
            "000:00:5e:00:01:02",
            "zz:00:5e:00:01:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }
}
