//! Checks that depend on the host rather than the file: `--config-test`
//! reports them as warnings (the file may be meant for another host), a
//! reload as errors (this is the host that would run it), before anything
//! changes. keepalived warns "interface eth9 for vrrp_instance doesn't exist".

use super::{
    diag::{Diagnostic, Severity, at},
    model::Config,
    validate::Refs,
};

/// What the checks ask of the host; tests stand in a fake one.
pub trait Host {
    fn has_interface(&self, name: &str) -> bool;
}

/// This host, in the current network namespace.
pub struct SystemHost;

impl Host for SystemHost {
    fn has_interface(&self, name: &str) -> bool {
        nix::net::if_::if_nametoindex(name).is_ok()
    }
}

pub(super) fn check(config: &Config, refs: &Refs, host: &dyn Host, severity: Severity) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for inst in &config.instances {
        let used = refs.vrids.iter().find(|u| u.instance == inst.name);
        let pos = used.map(|u| &u.pos);
        if let Some(ifname) = inst.interface.as_deref().filter(|i| !host.has_interface(i)) {
            let msg = format!("interface {ifname} for vrrp_instance {} does not exist on this host", inst.name);
            out.push(at(used.and_then(|u| u.interface_pos.as_ref()).or(pos), severity, msg));
        }
        for vip in inst.virtual_ipaddress.iter().chain(&inst.virtual_ipaddress_excluded) {
            if let Some(dev) = vip.dev.as_deref().filter(|d| !host.has_interface(d)) {
                let msg = format!("vrrp_instance {}: interface {dev} for VIP {} does not exist on this host", inst.name, vip.addr);
                out.push(at(pos, severity, msg));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{LoadOptions, Severity, load_str};

    struct Only(&'static [&'static str]);
    impl super::Host for Only {
        fn has_interface(&self, name: &str) -> bool {
            self.0.contains(&name)
        }
    }

    #[test]
    fn a_missing_interface_is_named_where_it_was_given() {
        let text = "vrrp_instance VI_1 {\n    interface eth9\n    virtual_router_id 1\n    virtual_ipaddress {\n        10.0.0.1 dev eth7\n    }\n}\n";
        let loaded = load_str(text, "k.conf", &LoadOptions::default());
        let d = loaded.host_diagnostics(&Only(&["eth0"]), Severity::Error);
        let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "k.conf:2:5: error: interface eth9 for vrrp_instance VI_1 does not exist on this host",
                "k.conf:1:1: error: vrrp_instance VI_1: interface eth7 for VIP 10.0.0.1 does not exist on this host",
            ]
        );
        assert!(loaded.host_diagnostics(&Only(&["eth9", "eth7"]), Severity::Warning).is_empty());
    }
}
