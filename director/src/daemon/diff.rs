//! What a reload would change, in words: `directorctl reload --dry-run`.
//! Pure: both sides are desired states (what is applied, what the new file
//! gives), so the plan is exactly what the apply would do.

use std::collections::{BTreeMap, BTreeSet};

use super::desired::Desired;
use crate::{
    config::VrrpInstance,
    state::{RealSpec, ServiceSpec},
};

/// One line per change: `+` added, `-` removed, `~` changed.
pub fn describe(old: &Desired, new: &Desired) -> Vec<String> {
    let of = |d: &Desired| d.vrrp.as_ref().map_or(Vec::new(), |v| v.instances.clone());
    let mut out = Vec::new();
    services(old, new, &mut out);
    instances(&of(old), &of(new), &mut out);
    out
}

fn services(old: &Desired, new: &Desired, out: &mut Vec<String>) {
    let before: BTreeMap<_, &ServiceSpec> = old.services().map(|s| (s.addr, s)).collect();
    let after: BTreeMap<_, &ServiceSpec> = new.services().map(|s| (s.addr, s)).collect();
    for (addr, s) in &before {
        if !after.contains_key(addr) {
            out.push(format!("- service {addr} ({} real servers)", s.reals.len()));
        }
    }
    for (addr, s) in &after {
        let Some(o) = before.get(addr) else {
            out.push(format!("+ service {addr} ({}, {} real servers)", s.sched, s.reals.len()));
            for r in &s.reals {
                out.push(format!("+ real server {} in {addr}: weight {}", at(r), r.weight));
            }
            continue;
        };
        if o.sched != s.sched {
            out.push(format!("~ service {addr}: lvs_sched {} -> {}", o.sched, s.sched));
        }
        if o.persistence != s.persistence {
            let secs = |p: &Option<crate::state::Persistence>| p.map_or("none".into(), |p| format!("{}s", p.timeout.as_secs()));
            out.push(format!("~ service {addr}: persistence {} -> {}", secs(&o.persistence), secs(&s.persistence)));
        }
        let sorry = |x: &ServiceSpec| x.sorry.as_ref().map_or("none".into(), at);
        if sorry(o) != sorry(s) {
            out.push(format!("~ service {addr}: sorry_server {} -> {}", sorry(o), sorry(s)));
        }
        let by_key = |x: &'_ ServiceSpec| x.reals.iter().map(|r| ((r.addr, r.port), r.clone())).collect::<BTreeMap<_, RealSpec>>();
        let (ob, nb) = (by_key(o), by_key(s));
        for (k, r) in &ob {
            if !nb.contains_key(k) {
                out.push(format!("- real server {} in {addr}", at(r)));
            }
        }
        for (k, r) in &nb {
            match ob.get(k) {
                None => out.push(format!("+ real server {} in {addr}: weight {}", at(r), r.weight)),
                Some(p) if p.weight != r.weight => {
                    out.push(format!("~ real server {} in {addr}: weight {} -> {}", at(r), p.weight, r.weight));
                }
                Some(p) if p.method != r.method => {
                    out.push(format!("~ real server {} in {addr}: lvs_method {:?} -> {:?}", at(r), p.method, r.method));
                }
                Some(_) => {}
            }
        }
    }
}

fn instances(old: &[VrrpInstance], new: &[VrrpInstance], out: &mut Vec<String>) {
    let before: BTreeMap<&str, &VrrpInstance> = old.iter().map(|i| (i.name.as_str(), i)).collect();
    let after: BTreeMap<&str, &VrrpInstance> = new.iter().map(|i| (i.name.as_str(), i)).collect();
    for (name, i) in &before {
        if !after.contains_key(name) {
            out.push(format!("- vrrp_instance {name} (VIPs {})", vips(&vip_set(i))));
        }
    }
    for (name, i) in &after {
        match before.get(name) {
            None => out.push(format!("+ vrrp_instance {name} (VIPs {})", vips(&vip_set(i)))),
            Some(o) if o == i => out.push(format!("= vrrp_instance {name} kept")),
            Some(o) => {
                out.push(format!("~ vrrp_instance {name} replaced in place (its state is kept)"));
                let (ov, nv) = (vip_set(o), vip_set(i));
                for a in ov.difference(&nv) {
                    out.push(format!("- VIP {a} ({name})"));
                }
                for a in nv.difference(&ov) {
                    out.push(format!("+ VIP {a} ({name})"));
                }
            }
        }
    }
}

fn vip_set(i: &VrrpInstance) -> BTreeSet<String> {
    i.virtual_ipaddress.iter().chain(&i.virtual_ipaddress_excluded).map(|a| format!("{}/{}", a.addr, a.prefix)).collect()
}

fn vips(set: &BTreeSet<String>) -> String {
    if set.is_empty() { "none".into() } else { set.iter().cloned().collect::<Vec<_>>().join(", ") }
}

fn at(r: &RealSpec) -> String {
    std::net::SocketAddr::new(r.addr, r.port).to_string()
}

/// Interfaces XDP would be attached to or detached from.
pub fn interfaces(before: &[String], after: &[String]) -> Vec<String> {
    let mut out: Vec<String> = before.iter().filter(|b| !after.contains(b)).map(|b| format!("- XDP on {b}")).collect();
    out.extend(after.iter().filter(|a| !before.contains(a)).map(|a| format!("+ XDP on {a}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{LoadOptions, load_str},
        daemon::desired::{AdminOverrides, HealthMap, build},
        state::{DesiredState, NextHop},
        vrrp,
    };

    fn side(text: &str) -> Desired {
        let config = load_str(text, "t.conf", &LoadOptions::default()).config;
        let (xdp, _, _) =
            build(config.virtual_servers.iter(), &AdminOverrides::new(), &HealthMap::new(), None, &|_| Some(NextHop::default()));
        Desired { xdp, ipvs: DesiredState::default(), vrrp: Some(vrrp::Setup::of(&config)), ..Default::default() }
    }

    #[test]
    fn interfaces_attached_and_detached() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(interfaces(&names(&["eth0", "eth1"]), &names(&["eth0", "eth2"])), ["- XDP on eth1", "+ XDP on eth2"]);
        assert!(interfaces(&names(&["eth0"]), &names(&["eth0"])).is_empty());
    }

    #[test]
    fn a_plan_names_every_change_and_nothing_else() {
        let vrrp = |vips: &str| format!("vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 1\n virtual_ipaddress {{ {vips} }}\n}}\n");
        let vs = |rs: &str| format!("virtual_server 10.0.0.1 80 {{\n protocol TCP\n lvs_sched wrr\n{rs}}}\n");
        let old = format!(
            "{}{}",
            vrrp("10.0.0.1"),
            vs(" real_server 10.0.1.1 80 { weight 1 }\n real_server 10.0.1.2 80 { weight 1 }\n")
        );
        let new = format!(
            "{}{}virtual_server 10.0.0.2 53 {{\n protocol UDP\n real_server 10.0.1.9 53 {{ }}\n}}\n",
            vrrp("10.0.0.1\n 10.0.0.5"),
            vs(" real_server 10.0.1.1 80 { weight 3 }\n real_server 10.0.1.3 80 { weight 1 }\n")
        );
        let (od, nd) = (side(&old), side(&new));
        assert_eq!(
            describe(&od, &nd),
            [
                "- real server 10.0.1.2:80 in TCP 10.0.0.1:80",
                "~ real server 10.0.1.1:80 in TCP 10.0.0.1:80: weight 1 -> 3",
                "+ real server 10.0.1.3:80 in TCP 10.0.0.1:80: weight 1",
                "+ service UDP 10.0.0.2:53 (wlc, 1 real servers)",
                "+ real server 10.0.1.9:53 in UDP 10.0.0.2:53: weight 1",
                "~ vrrp_instance VI_1 replaced in place (its state is kept)",
                "+ VIP 10.0.0.5/32 (VI_1)",
            ]
        );
        assert_eq!(describe(&od, &od), ["= vrrp_instance VI_1 kept"]);
    }
}
