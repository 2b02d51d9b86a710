//! What a configuration must pass before the daemon runs it, beyond the
//! file itself: the XDP maps' capacity, VMACs per interface, and the host's
//! interfaces. `--config-test`, start-up and reload all call [`run_checks`],
//! so they report the same problems at the same `file:line:col`.

use std::collections::BTreeMap;

use director_common::lb::MAX_LOCAL_MACS;

use super::{
    desired,
    planes::{self, Kind},
};
use crate::{
    config::{Diagnostic, Host, Loaded, Severity},
    dataplane::{
        maglev,
        xdp::capacity::{self, Limits, Need},
    },
};

/// Every check below; host-dependent problems get `host_severity`
/// (a warning for `--config-test`, an error for a reload).
pub fn run_checks(loaded: &Loaded, default: Kind, host: &dyn Host, host_severity: Severity) -> Vec<Diagnostic> {
    let mut out = capacity(loaded, default, &Limits::DEFAULT);
    out.extend(vmacs(loaded));
    out.extend(loaded.host_diagnostics(host, host_severity));
    out
}

/// The XDP services against the maps' limits: an error at the first
/// virtual_server that does not fit.
pub fn capacity(loaded: &Loaded, default: Kind, limits: &Limits) -> Vec<Diagnostic> {
    let on_xdp: Vec<_> = loaded
        .config
        .virtual_servers
        .iter()
        .filter(|vs| planes::route(default, vs).0 == Kind::Xdp)
        .filter_map(|vs| Some((vs, desired::service_addr(vs)?)))
        .collect();
    let needs: Vec<Need> = on_xdp
        .iter()
        .map(|(vs, addr)| Need {
            vip: addr.vip,
            reals: (vs.real_servers.len() + vs.sorry_server.iter().count()) as u64,
            ring_size: maglev::ring_size_for(vs.real_servers.len()),
        })
        .collect();
    match capacity::fit(limits, &needs) {
        Ok(_) => Vec::new(),
        Err((i, e)) => vec![loaded.at_virtual_server(on_xdp[i].0, Severity::Error, format!("virtual_server {}: {e}", on_xdp[i].0.key))],
    }
}

/// XDP forwards frames for an interface's own MAC and the VMACs of its
/// master instances; its filter holds MAX_LOCAL_MACS of them.
fn vmacs(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut per_iface: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for inst in loaded.config.instances.iter().filter(|i| i.use_vmac.is_some()) {
        let Some(iface) = inst.interface.as_deref() else { continue };
        per_iface.entry(iface).or_default().push(&inst.name);
    }
    let most = MAX_LOCAL_MACS - 1;
    per_iface
        .into_iter()
        .filter(|(_, names)| names.len() > most)
        .map(|(iface, names)| {
            let msg = format!(
                "{} instances with use_vmac on {iface} ({}); the XDP destination MAC filter holds {most} VMACs per interface",
                names.len(),
                names.join(", ")
            );
            loaded.at_instance(names[most], Severity::Error, msg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    fn services(n: usize) -> String {
        (0..n)
            .map(|i| format!("virtual_server 10.0.{}.{} 80 {{\n  protocol TCP\n  real_server 10.1.0.1 80 {{ }}\n}}\n", i / 250, i % 250 + 1))
            .collect()
    }

    #[test]
    fn the_service_over_the_limit_is_named_at_its_line() {
        let limits = Limits { services: 64, ..Limits::DEFAULT };
        let loaded = load_str(&services(65), "big.conf", &LoadOptions::default());
        let d = capacity(&loaded, Kind::Xdp, &limits);
        assert_eq!(d.len(), 1);
        // Four lines per virtual_server: the 65th starts at line 257.
        assert!(d[0].to_string().starts_with("big.conf:257:1: error: virtual_server 10.0.0.65:80: the XDP data plane holds at most 64 services"), "{}", d[0]);
        assert!(capacity(&loaded, Kind::Ipvs, &limits).is_empty(), "IPVS services do not count");
        assert!(capacity(&loaded, Kind::Xdp, &Limits::DEFAULT).is_empty());
    }

    #[test]
    fn too_many_vmacs_on_one_interface() {
        let inst = |i: usize| format!("vrrp_instance V{i} {{\n interface eth0\n use_vmac\n virtual_router_id {i}\n virtual_ipaddress {{ 10.0.0.{i} }}\n}}\n");
        let three: String = (1..=3).map(inst).collect();
        assert!(vmacs(&load_str(&three, "v.conf", &LoadOptions::default())).is_empty());
        let four: String = (1..=4).map(inst).collect();
        let d = vmacs(&load_str(&four, "v.conf", &LoadOptions::default()));
        assert_eq!(d.len(), 1);
        assert!(d[0].to_string().starts_with("v.conf:19:1: error: 4 instances with use_vmac on eth0"), "{}", d[0]);
    }
}
