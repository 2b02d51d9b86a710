//! From configuration (plus operator overrides and resolved next hops) to
//! the DesiredState a data plane applies. Pure: no I/O, so the mapping is
//! tested without root.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use super::planes::{self, Kind};
use crate::{
    check,
    config::{Config, Family, LvsMethod, Protocol, VirtualServer, VsKey},
    dataplane::maglev,
    state::{DesiredState, Method, NextHop, Persistence, Proto, RealSpec, ServiceAddr, ServiceSpec},
    status::AdminState,
    vrrp::{self, witness::VrrpWatch},
};

/// `directorctl rs disable/enable/weight` decisions, by (service, real).
/// They outlive reloads: the key is the configuration's own identity of
/// the pair, not an id of ours.
pub type AdminOverrides = BTreeMap<(ServiceAddr, (IpAddr, u16)), AdminState>;

/// What the health checkers say about one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub alive: bool,
    /// A `misc_dynamic` MISC_CHECK's weight, replacing the configured one.
    pub weight: Option<u32>,
}

/// Health by (virtual server, real server); a server without checkers has
/// no entry and counts as alive.
pub type HealthMap = std::collections::HashMap<(VsKey, std::net::SocketAddr), Health>;

/// Why a configured service or real server is not in the desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub what: String,
    pub why: String,
}

/// Services whose alive real servers weigh too little: they lost their
/// `quorum` (and their sorry server, if any, took over).
pub type QuorumLost = std::collections::BTreeSet<ServiceAddr>;

/// Everything the daemon programs, from every input: the services of
/// each data plane, the destination MACs XDP forwards frames for, the
/// VRRP instances whose adverts XDP records, the VRRP setup (instances,
/// VIPs, tracked scripts) and the health checkers. One pure function
/// computes it ([`compute`]); the daemon's one apply step makes the VRRP
/// manager, the checkers and the planes match it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub xdp: DesiredState,
    pub ipvs: DesiredState,
    /// Per ifindex: the interface's own MAC, then the VMACs it is master of.
    pub local_macs: BTreeMap<u32, Vec<[u8; 6]>>,
    pub vrrp_watches: Vec<VrrpWatch>,
    /// The real servers to health-check, and with what.
    pub check_targets: Vec<check::Target>,
    /// What the VRRP manager runs; None before it first ran, and after a
    /// reload asked it to re-read its part of the file (script users,
    /// init_files) as keepalived does, changed or not.
    pub vrrp: Option<vrrp::Setup>,
    /// What the configuration asks for that cannot be served now.
    pub skipped: Vec<Skipped>,
    /// Services below their quorum.
    pub lost: QuorumLost,
}

impl Desired {
    /// Both planes' services, for status and the dry-run diff.
    pub fn services(&self) -> impl Iterator<Item = &ServiceSpec> {
        self.xdp.services.iter().chain(&self.ipvs.services)
    }
}

/// Which data planes run, and where unmarked services go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routing {
    pub default: Kind,
    pub xdp: bool,
    pub ipvs: bool,
}

/// The inputs of [`compute`].
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub admin: &'a AdminOverrides,
    pub health: &'a HealthMap,
    /// The previous computation's quorum losses (None at start-up).
    pub lost_before: Option<&'a QuorumLost>,
    pub hops: &'a BTreeMap<IpAddr, NextHop>,
    pub routing: Routing,
    /// The attached interfaces: (ifindex, own MAC).
    pub interfaces: &'a [(u32, [u8; 6])],
    /// (ifindex, VMAC) of the instances this director is master of.
    pub master_vmacs: &'a [(u32, [u8; 6])],
    pub vrrp_watches: &'a [VrrpWatch],
}

pub fn compute(i: &Inputs) -> Desired {
    let (mut to_xdp, mut to_ipvs) = (Vec::new(), Vec::new());
    for vs in &i.config.virtual_servers {
        match planes::route(i.routing.default, vs).0 {
            Kind::Xdp => to_xdp.push(vs),
            Kind::Ipvs => to_ipvs.push(vs),
        }
    }
    let mut skipped = Vec::new();
    let mut lost = QuorumLost::new();
    let mut part = |list: Vec<&VirtualServer>, running: bool, why: &str, hop: &dyn Fn(IpAddr) -> Option<NextHop>| {
        if !running {
            skipped.extend(list.iter().map(|vs| Skipped { what: format!("virtual_server {}", vs.key), why: why.into() }));
            return DesiredState::default();
        }
        let (state, s, l) = build(list.into_iter(), i.admin, i.health, i.lost_before, hop);
        skipped.extend(s);
        lost.extend(l);
        state
    };
    let xdp = part(to_xdp, i.routing.xdp, "it asks for the XDP data plane, which is not running (--dataplane ipvs)", &|ip| {
        i.hops.get(&ip).copied()
    });
    let ipvs = part(to_ipvs, i.routing.ipvs, "it needs the IPVS data plane, which this kernel does not offer", &|_| {
        Some(NextHop::default())
    });
    let local_macs = if i.routing.xdp { local_macs(i.interfaces, i.master_vmacs) } else { BTreeMap::new() };
    let vrrp_watches = if i.routing.xdp { i.vrrp_watches.to_vec() } else { Vec::new() };
    let check_targets = check::targets_from_config(i.config);
    Desired { xdp, ipvs, local_macs, vrrp_watches, check_targets, vrrp: Some(vrrp::Setup::of(i.config)), skipped, lost }
}

/// The health map for `targets`: what is known of each kept, a new one as
/// its checkers start (down with `alpha`), the rest dropped.
pub fn seed_health(targets: &[check::Target], known: &HealthMap) -> HealthMap {
    targets
        .iter()
        .map(|t| {
            let key = (t.key.vs.clone(), t.key.rs);
            let h = known.get(&key).copied().unwrap_or(Health { alive: check::initially_alive(&t.checkers), weight: None });
            (key, h)
        })
        .collect()
}

/// The destination MAC filter: each attached interface's own MAC, then the
/// VMACs of the instances it is master of (in a stable order).
pub fn local_macs(interfaces: &[(u32, [u8; 6])], master_vmacs: &[(u32, [u8; 6])]) -> BTreeMap<u32, Vec<[u8; 6]>> {
    interfaces
        .iter()
        .map(|&(index, mac)| {
            let mut macs = vec![mac];
            let mut vmacs: Vec<[u8; 6]> = master_vmacs.iter().filter(|(i, _)| *i == index).map(|(_, m)| *m).collect();
            vmacs.sort_unstable();
            vmacs.dedup();
            macs.extend(vmacs);
            (index, macs)
        })
        .collect()
}

/// The services of `virtual_servers`, what had to be left out of them, and
/// those without quorum. `lost_before` is the previous computation's set
/// (None at start-up), which `hysteresis` needs.
pub fn build<'a>(
    virtual_servers: impl Iterator<Item = &'a VirtualServer>,
    admin: &AdminOverrides,
    health: &HealthMap,
    lost_before: Option<&QuorumLost>,
    next_hop: &dyn Fn(IpAddr) -> Option<NextHop>,
) -> (DesiredState, Vec<Skipped>, QuorumLost) {
    let mut skipped = Vec::new();
    let mut services = Vec::new();
    let mut lost = QuorumLost::new();
    for vs in virtual_servers {
        let Some(addr) = service_addr(vs) else {
            skipped.push(Skipped {
                what: format!("virtual_server {}", vs.key),
                why: "virtual_server_group services are not supported yet".into(),
            });
            continue;
        };
        let mut reals = Vec::new();
        let mut alive_weight = 0u64;
        for rs in &vs.real_servers {
            let h = health.get(&(vs.key.clone(), std::net::SocketAddr::new(rs.ip, rs.port)));
            // As keepalived: a failed server leaves the pool, or stays at
            // weight 0 with inhibit_on_failure.
            let alive = h.is_none_or(|h| h.alive);
            if !alive && !rs.inhibit_on_failure {
                continue;
            }
            let Some(hop) = next_hop(rs.ip) else {
                skipped.push(Skipped {
                    what: format!("real server {} in {}", SocketAddr::new(rs.ip, rs.port), format!("virtual_server {}", vs.key)),
                    why: "no route or neighbour entry towards it yet".into(),
                });
                continue;
            };
            let configured = h.and_then(|h| h.weight).unwrap_or(rs.weight);
            let weight = if alive { effective_weight(admin.get(&(addr, (rs.ip, rs.port))), configured) } else { 0 };
            alive_weight += u64::from(weight);
            reals.push(RealSpec { addr: rs.ip, port: rs.port, weight, method: method(&rs.lvs_method), next_hop: hop });
        }
        let sorry = vs.sorry_server.as_ref().and_then(|s| match next_hop(s.ip) {
            Some(hop) => Some(RealSpec { addr: s.ip, port: s.port, weight: 1, method: method(&s.lvs_method), next_hop: hop }),
            None => {
                skipped.push(Skipped {
                    what: format!("sorry server {} in {}", SocketAddr::new(s.ip, s.port), format!("virtual_server {}", vs.key)),
                    why: "no route or neighbour entry towards it yet".into(),
                });
                None
            }
        });
        let held_before = lost_before.map(|l| !l.contains(&addr));
        if !quorum_held(held_before, alive_weight, vs.quorum, vs.hysteresis) {
            lost.insert(addr);
            // The sorry server takes every new connection, as keepalived
            // swaps it in; it gives way when the quorum returns.
            if sorry.is_some() {
                reals.clear();
            }
        }
        let persistence = vs.persistence_timeout.map(|secs| Persistence {
            timeout: Duration::from_secs(u64::from(secs)),
            granularity: vs.persistence_granularity.unwrap_or(all_ones(addr.vip)),
        });
        let ring_size = maglev::ring_size_for(vs.real_servers.len());
        services.push(ServiceSpec { addr, sched: vs.lvs_sched.clone(), persistence, reals, sorry, ring_size });
    }
    (DesiredState { services }, skipped, lost)
}

/// Whether a service holds its quorum, as keepalived's
/// `update_quorum_state`: with quorum held, it is lost when the alive
/// weight drops below `quorum - hysteresis`; without, it is regained at
/// `quorum + hysteresis`. At start-up (`held_before` None) it is held from
/// `quorum + hysteresis` up.
pub fn quorum_held(held_before: Option<bool>, alive: u64, quorum: u32, hysteresis: u32) -> bool {
    let (q, h) = (u64::from(quorum), u64::from(hysteresis));
    match held_before {
        Some(true) => alive >= q.saturating_sub(h),
        Some(false) | None => alive >= q + h,
    }
}

/// The weight the data plane uses: the operator's decision, else the
/// configuration's.
pub fn effective_weight(admin: Option<&AdminState>, configured: u32) -> u32 {
    match admin {
        Some(AdminState::Disabled) => 0,
        Some(AdminState::Weight(w)) => *w,
        Some(AdminState::Enabled) | None => configured,
    }
}


/// The service's identity in the desired state. A fwmark service's family
/// is its `ip_family`, else its first real server's, as in keepalived.
pub fn service_addr(vs: &VirtualServer) -> Option<ServiceAddr> {
    let proto = match vs.protocol {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
        Protocol::Sctp => Proto::Sctp,
    };
    match vs.key {
        VsKey::Addr { ip, port } => Some(ServiceAddr { vip: ip, port, proto }),
        VsKey::Fwmark(mark) => {
            let v6 = match vs.ip_family {
                Some(f) => f == Family::Inet6,
                None => vs.real_servers.first().is_some_and(|r| r.ip.is_ipv6()),
            };
            let vip = if v6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            Some(ServiceAddr { vip, port: 0, proto: Proto::Fwmark(mark) })
        }
        VsKey::Group(_) => None,
    }
}

fn method(m: &LvsMethod) -> Method {
    match m {
        LvsMethod::Nat => Method::Nat,
        LvsMethod::Dr => Method::Dr,
        LvsMethod::Tun(_) => Method::Tun,
    }
}

fn all_ones(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    const CONF: &str = "
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 80
    virtual_ipaddress {
        192.168.122.100
        10.1.1.1/24 dev eth1
    }
}
virtual_server 192.168.122.100 80 {
    lvs_sched wrr
    lvs_method DR
    protocol TCP
    persistence_timeout 50
    sorry_server 192.168.122.99 80
    real_server 192.168.122.10 80 { weight 1 }
    real_server 192.168.122.20 80 { weight 3 }
    real_server 10.9.9.9 80 { weight 2 }
}
virtual_server fwmark 7 {
    lvs_sched rr
    real_server 192.168.122.10 80 { weight 1 }
}
";

    fn hop(ip: IpAddr) -> Option<NextHop> {
        // 10.9.9.9 is unreachable in this test.
        (ip != "10.9.9.9".parse::<IpAddr>().unwrap()).then(|| NextHop { ifindex: 2, ..Default::default() })
    }

    fn config() -> Config {
        load_str(CONF, "t.conf", &LoadOptions::default()).config
    }

    #[test]
    fn compute_routes_each_service_and_builds_the_mac_filter() {
        let config = config();
        let (admin, health) = (AdminOverrides::new(), HealthMap::new());
        let hops: BTreeMap<IpAddr, NextHop> = ["192.168.122.10", "192.168.122.20", "192.168.122.99"]
            .map(|a| (a.parse().unwrap(), NextHop { ifindex: 2, ..Default::default() }))
            .into();
        let (own, va, vb) = ([2, 0, 0, 0, 0, 1], [0, 0, 0x5e, 0, 1, 9], [0, 0, 0x5e, 0, 1, 3]);
        // Masters of two VMACs on ifindex 2 (one twice) and one on an
        // interface XDP is not attached to.
        let vmacs = [(2, va), (2, vb), (2, va), (7, vb)];
        let compute_with = |default, xdp, ipvs| {
            compute(&Inputs {
                config: &config,
                admin: &admin,
                health: &health,
                lost_before: None,
                hops: &hops,
                routing: Routing { default, xdp, ipvs },
                interfaces: &[(2, own)],
                master_vmacs: &vmacs,
                vrrp_watches: &[],
            })
        };
        let both = compute_with(Kind::Xdp, true, true);
        assert_eq!(both.xdp.services.len(), 1, "the VIP service on XDP");
        assert_eq!(both.xdp.services[0].ring_size, maglev::ring_size_for(3), "sized from its configured reals");
        assert_eq!(both.ipvs.services.len(), 1, "the fwmark service on IPVS");
        assert!(matches!(both.ipvs.services[0].addr.proto, Proto::Fwmark(7)));
        assert_eq!(both.local_macs, BTreeMap::from([(2, vec![own, vb, va])]), "own MAC first, VMACs sorted once");
        assert!(both.skipped.iter().any(|s| s.what.contains("10.9.9.9:80")), "{:?}", both.skipped);

        let ipvs_only = compute_with(Kind::Ipvs, false, true);
        assert!(ipvs_only.xdp.services.is_empty() && ipvs_only.local_macs.is_empty());
        assert_eq!(ipvs_only.ipvs.services.len(), 2, "both services on IPVS");

        let no_ipvs = compute_with(Kind::Xdp, true, false);
        assert!(no_ipvs.ipvs.services.is_empty());
        assert!(
            no_ipvs.skipped.iter().any(|s| s.what == "virtual_server fwmark 7" && s.why.contains("IPVS data plane")),
            "{:?}",
            no_ipvs.skipped
        );
        assert_eq!(both.vrrp, Some(vrrp::Setup::of(&config)), "what the VRRP manager runs");
        assert_eq!(compute_with(Kind::Xdp, true, true), both, "the same inputs give the same state");
    }

    #[test]
    fn check_targets_come_with_the_state_and_seed_the_health_input() {
        let text = |alpha: &str| {
            format!(
                "virtual_server 10.0.0.1 80 {{\n protocol TCP\n lvs_sched wrr\n\
                 real_server 10.0.1.1 80 {{ TCP_CHECK {{ }} }}\n\
                 real_server 10.0.1.2 80 {{ TCP_CHECK {{ {alpha} }} }}\n\
                 real_server 10.0.1.3 80 {{ }}\n}}\n"
            )
        };
        let targets = |t: &str| check::targets_from_config(&load_str(t, "t.conf", &LoadOptions::default()).config);
        let first = targets(&text(""));
        assert_eq!(first.len(), 2, "the server without checkers has no target");
        let vs = first[0].key.vs.clone();
        let key = |ip: &str| (vs.clone(), SocketAddr::new(ip.parse().unwrap(), 80));
        let mut known = seed_health(&first, &HealthMap::new());
        assert!(known.values().all(|h| h.alive), "without alpha a server starts up");
        known.insert(key("10.0.1.1"), Health { alive: false, weight: None });
        known.insert(key("10.0.1.9"), Health { alive: false, weight: None });
        // 10.0.1.2 gains alpha: a changed target keeps what is known of it.
        let next = seed_health(&targets(&text("alpha")), &known);
        assert_eq!(next.get(&key("10.0.1.1")).map(|h| h.alive), Some(false), "what is known stays");
        assert_eq!(next.get(&key("10.0.1.2")).map(|h| h.alive), Some(true));
        assert!(!next.contains_key(&key("10.0.1.9")), "a server that left the targets leaves the map");
        let fresh = seed_health(&targets(&text("alpha")), &HealthMap::new());
        assert_eq!(fresh.get(&key("10.0.1.2")).map(|h| h.alive), Some(false), "alpha starts down");
    }

    #[test]
    fn services_reals_weights_and_persistence_come_from_the_config() {
        let (state, skipped, _) = build(config().virtual_servers.iter(), &AdminOverrides::new(), &HealthMap::new(), None, &hop);
        let s = &state.services[0];
        assert_eq!(s.addr, ServiceAddr { vip: "192.168.122.100".parse().unwrap(), port: 80, proto: Proto::Tcp });
        assert_eq!(s.sched, "wrr");
        assert_eq!(s.persistence.unwrap().timeout, Duration::from_secs(50));
        assert_eq!(s.persistence.unwrap().granularity, "255.255.255.255".parse::<IpAddr>().unwrap());
        let weights: Vec<(String, u32)> = s.reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
        assert_eq!(weights, [("192.168.122.10".into(), 1), ("192.168.122.20".into(), 3)]);
        assert!(s.reals.iter().all(|r| r.method == Method::Dr));
        assert_eq!(s.sorry.as_ref().unwrap().addr.to_string(), "192.168.122.99");
        // The unreachable real is reported, not dropped silently.
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(skipped[0].what.contains("10.9.9.9:80"));
        // The fwmark service is there for the IPVS data plane.
        assert_eq!(state.services.len(), 2);
        assert_eq!(state.services[1].addr, ServiceAddr { vip: "0.0.0.0".parse().unwrap(), port: 0, proto: Proto::Fwmark(7) });
    }

    #[test]
    fn admin_overrides_win_over_configured_weights() {
        let config = config();
        let addr = service_addr(&config.virtual_servers[0]).unwrap();
        let mut admin = AdminOverrides::new();
        admin.insert((addr, ("192.168.122.10".parse().unwrap(), 80)), AdminState::Disabled);
        admin.insert((addr, ("192.168.122.20".parse().unwrap(), 80)), AdminState::Weight(7));
        let (state, _, _) = build(config.virtual_servers.iter(), &admin, &HealthMap::new(), None, &hop);
        let weights: Vec<u32> = state.services[0].reals.iter().map(|r| r.weight).collect();
        assert_eq!(weights, [0, 7]);
    }

    #[test]
    fn failed_servers_leave_the_pool_and_quorum_loss_brings_the_sorry_server() {
        let config = config();
        let vs = config.virtual_servers[0].key.clone();
        let at = |ip: &str| std::net::SocketAddr::new(ip.parse().unwrap(), 80);
        let mut health = HealthMap::new();
        health.insert((vs.clone(), at("192.168.122.10")), Health { alive: false, weight: None });
        health.insert((vs.clone(), at("192.168.122.20")), Health { alive: true, weight: Some(9) });
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, None, &hop);
        assert!(lost.is_empty());
        let weights: Vec<(String, u32)> = state.services[0].reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
        assert_eq!(weights, [("192.168.122.20".into(), 9)], "down server out, misc_dynamic weight in");
        // Both down: below quorum 1, so only the sorry server remains.
        health.insert((vs, at("192.168.122.20")), Health { alive: false, weight: None });
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, Some(&lost), &hop);
        assert!(state.services[0].reals.is_empty());
        assert!(state.services[0].sorry.is_some());
        assert_eq!(lost.len(), 1, "quorum_down is due");
        let (_, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &HealthMap::new(), Some(&lost), &hop);
        assert!(lost.is_empty());
    }

    #[test]
    fn hysteresis_lost_below_quorum_minus_h_regained_at_quorum_plus_h() {
        // quorum 5, hysteresis 2: lost below 3, regained from 7.
        let held = |before, alive| quorum_held(before, alive, 5, 2);
        assert!(held(None, 7) && !held(None, 6), "start-up needs quorum + hysteresis");
        assert!(held(Some(true), 3) && !held(Some(true), 2));
        assert!(!held(Some(false), 6) && held(Some(false), 7));
        // A flapping weight between 3 and 6 changes nothing either way.
        for w in 3..=6 {
            assert!(held(Some(true), w));
            assert!(!held(Some(false), w));
        }
        // hysteresis above quorum: never lost while held.
        assert!(quorum_held(Some(true), 0, 1, 3));
        assert!(quorum_held(Some(true), 1, 1, 0) && !quorum_held(Some(true), 0, 1, 0));
    }

    #[test]
    fn hysteresis_keeps_the_sorry_server_until_quorum_plus_h() {
        let config = load_str(
            &CONF.replace("persistence_timeout 50", "persistence_timeout 50\n    quorum 3\n    hysteresis 1"),
            "t.conf",
            &LoadOptions::default(),
        )
        .config;
        let vs = config.virtual_servers[0].key.clone();
        let at = |ip: &str| std::net::SocketAddr::new(ip.parse().unwrap(), 80);
        let down = Health { alive: false, weight: None };
        let mut health = HealthMap::new();
        // Alive weight 4 (1 + 3) >= 3 + 1: held from the start.
        let (_, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, None, &hop);
        assert!(lost.is_empty());
        // 3 left: >= 3 - 1, still held.
        health.insert((vs.clone(), at("192.168.122.10")), down);
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, Some(&lost), &hop);
        assert!(lost.is_empty() && state.services[0].reals.len() == 1);
        // 1 left: below 2, lost; the sorry server alone.
        health.insert((vs.clone(), at("192.168.122.20")), Health { alive: true, weight: Some(1) });
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, Some(&lost), &hop);
        assert_eq!(lost.len(), 1);
        assert!(state.services[0].reals.is_empty());
        // Back to 3: not yet 3 + 1, still lost.
        health.remove(&(vs.clone(), at("192.168.122.20")));
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, Some(&lost), &hop);
        assert_eq!(lost.len(), 1);
        assert!(state.services[0].reals.is_empty());
        // 4: regained, the real servers are back.
        health.clear();
        let (state, _, lost) = build(config.virtual_servers.iter(), &AdminOverrides::new(), &health, Some(&lost), &hop);
        assert!(lost.is_empty());
        assert_eq!(state.services[0].reals.len(), 2);
    }
}
