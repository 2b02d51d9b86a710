//! Cross-object checks, run once the whole config is built: references to
//! undefined objects, and clashes between objects.
//!
//! All of these are linear (hash lookups), so a config with thousands of
//! real servers or instances stays fast.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::diag::{Diags, Pos};
use super::keywords;
use super::model::{Config, Protocol, VsKey};

/// References and definitions collected by the builder, with positions.
#[derive(Clone, Debug, Default)]
pub struct Refs {
    /// `track_script` entries.
    pub scripts: Vec<Ref>,
    /// `track_file` entries and FILE_CHECK `track_file`.
    pub track_files: Vec<Ref>,
    /// `vrrp_sync_group` members.
    pub instances: Vec<Ref>,
    /// `virtual_server group NAME`.
    pub vs_groups: Vec<Ref>,
    pub vrids: Vec<VridUse>,
    pub virtual_servers: Vec<VsDef>,
}

/// A name used at `pos` by the object described by `from`.
#[derive(Clone, Debug)]
pub struct Ref {
    pub name: String,
    pub pos: Pos,
    pub from: String,
}

/// A VRRP instance's identity on the wire.
#[derive(Clone, Debug)]
pub struct VridUse {
    pub instance: String,
    pub pos: Pos,
    pub interface: Option<String>,
    /// Where `interface` was given.
    pub interface_pos: Option<Pos>,
    pub ipv6: bool,
    pub vrid: u8,
    pub unicast: bool,
    pub mcast_dst: Option<IpAddr>,
}

/// A virtual server's identity.
#[derive(Clone, Debug)]
pub struct VsDef {
    pub key: VsKey,
    pub protocol: Protocol,
    pub pos: Pos,
}

pub fn validate(config: &Config, refs: &Refs, diags: &mut Diags) {
    let scripts: Vec<&str> = config
        .vrrp_scripts
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    undefined(
        &refs.scripts,
        &scripts,
        "vrrp_script",
        "ignored, as keepalived does",
        false,
        diags,
    );
    let files: Vec<&str> = config.track_files.iter().map(|f| f.name.as_str()).collect();
    undefined(
        &refs.track_files,
        &files,
        "track_file",
        "ignored, as keepalived does",
        false,
        diags,
    );
    let instances: Vec<&str> = config.instances.iter().map(|i| i.name.as_str()).collect();
    undefined(
        &refs.instances,
        &instances,
        "vrrp_instance",
        "ignored, as keepalived does",
        false,
        diags,
    );
    let groups: Vec<&str> = config
        .virtual_server_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    undefined(
        &refs.vs_groups,
        &groups,
        "virtual_server_group",
        "this virtual server cannot be set up",
        true,
        diags,
    );
    duplicate_vrids(&refs.vrids, diags);
    duplicate_virtual_servers(&refs.virtual_servers, diags);
}

fn undefined(
    refs: &[Ref],
    defined: &[&str],
    kind: &str,
    outcome: &str,
    error: bool,
    diags: &mut Diags,
) {
    let set: HashSet<&str> = defined.iter().copied().collect();
    for r in refs.iter().filter(|r| !set.contains(r.name.as_str())) {
        let hint = keywords::closest(&r.name, defined.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        let msg = format!(
            "`{}` refers to `{}`, but no `{kind} {}` is defined{hint}; {outcome}",
            r.from, r.name, r.name
        );
        if error {
            diags.error(&r.pos, msg);
        } else {
            diags.warn(&r.pos, msg);
        }
    }
}

/// Two multicast instances with one VRID on one interface and family are
/// the same virtual router on the wire. Unicast instances may share a VRID
/// when their peers differ, so they are not checked.
fn duplicate_vrids(uses: &[VridUse], diags: &mut Diags) {
    let mut seen: HashMap<(&str, bool, u8, Option<IpAddr>), &VridUse> = HashMap::new();
    for u in uses {
        let Some(ifname) = u.interface.as_deref() else {
            continue;
        };
        if u.unicast || u.vrid == 0 {
            continue;
        }
        match seen.get(&(ifname, u.ipv6, u.vrid, u.mcast_dst)) {
            Some(first) => {
                let msg = format!(
                    "`vrrp_instance {}` uses virtual_router_id {} on {ifname}, like `vrrp_instance {}` (at {}); each instance on an interface needs its own VRID",
                    u.instance,
                    u.vrid,
                    first.instance,
                    first.pos.relative_to(&u.pos)
                );
                diags.error(&u.pos, msg);
            }
            None => {
                seen.insert((ifname, u.ipv6, u.vrid, u.mcast_dst), u);
            }
        }
    }
}

fn duplicate_virtual_servers(defs: &[VsDef], diags: &mut Diags) {
    let mut seen: HashMap<(&VsKey, Protocol), &Pos> = HashMap::new();
    for d in defs {
        if let Some(first) = seen.get(&(&d.key, d.protocol)) {
            let msg = format!(
                "`virtual_server {}` ({}) is already defined at {}; one service cannot have two definitions",
                d.key,
                d.protocol.name(),
                first.relative_to(&d.pos)
            );
            diags.error(&d.pos, msg);
        } else {
            seen.insert((&d.key, d.protocol), &d.pos);
        }
    }
}
