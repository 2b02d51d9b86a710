//! The IPVS table as plain values, what the desired state asks of it, and
//! the operations that turn one into the other. Pure: tested without root.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::state::{DesiredState, Method, Proto, RealSpec, ServiceAddr};

/// IP_VS_SVC_F_*: only these are ours to set; the kernel adds HASHED.
pub const SVC_F_PERSISTENT: u32 = 0x0001;
pub const SVC_F_ONEPACKET: u32 = 0x0004;
const SVC_F_OURS: u32 = SVC_F_PERSISTENT | SVC_F_ONEPACKET;

/// IP_VS_CONN_F_* forwarding methods.
pub const FWD_MASK: u32 = 0x0007;
pub const FWD_MASQ: u32 = 0x0000;
pub const FWD_TUNNEL: u32 = 0x0002;
pub const FWD_DROUTE: u32 = 0x0003;

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_SCTP: u16 = 132;

/// How IPVS names a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SvcKey {
    Addr { proto: u16, addr: IpAddr, port: u16 },
    Fwmark { v6: bool, mark: u32 },
}

impl SvcKey {
    pub fn is_v6(&self) -> bool {
        match *self {
            SvcKey::Addr { addr, .. } => addr.is_ipv6(),
            SvcKey::Fwmark { v6, .. } => v6,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub key: SvcKey,
    pub sched: String,
    pub flags: u32,
    /// Persistence timeout, seconds (0: not persistent).
    pub timeout: u32,
    /// IPv4: the mask as the kernel's __be32 (its bytes in network order);
    /// IPv6: the prefix length.
    pub netmask: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    pub addr: IpAddr,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dest {
    pub key: DestKey,
    pub fwd: u32,
    pub weight: u32,
    pub u_thresh: u32,
    pub l_thresh: u32,
}

/// Counters as IPVS keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Services and their destinations, keyed as IPVS keys them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    pub services: BTreeMap<SvcKey, (Service, BTreeMap<DestKey, Dest>)>,
}

/// One netlink request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    AddService(Service),
    EditService(Service),
    DelService(SvcKey),
    AddDest(SvcKey, Dest),
    EditDest(SvcKey, Dest),
    DelDest(SvcKey, DestKey),
}

impl Op {
    /// The service the request is about.
    pub fn service(&self) -> SvcKey {
        match self {
            Op::AddService(s) | Op::EditService(s) => s.key,
            Op::DelService(k) | Op::AddDest(k, _) | Op::EditDest(k, _) | Op::DelDest(k, _) => *k,
        }
    }
}

/// The IPVS key of a service.
pub fn svc_key(a: &ServiceAddr) -> SvcKey {
    let proto = match a.proto {
        Proto::Fwmark(mark) => return SvcKey::Fwmark { v6: a.vip.is_ipv6(), mark },
        Proto::Tcp => IPPROTO_TCP,
        Proto::Udp => IPPROTO_UDP,
        Proto::Sctp => IPPROTO_SCTP,
    };
    SvcKey::Addr { proto, addr: a.vip, port: a.port }
}

/// What the desired state asks of IPVS. The sorry server is a destination
/// only while no real server may take new connections, as keepalived does.
pub fn desired_table(desired: &DesiredState) -> Table {
    let mut services = BTreeMap::new();
    for s in &desired.services {
        let key = svc_key(&s.addr);
        let (flags, timeout, netmask) = match s.persistence {
            Some(p) => (SVC_F_PERSISTENT, p.timeout.as_secs().try_into().unwrap_or(u32::MAX), netmask(p.granularity)),
            None => (0, 0, netmask(full_mask(key.is_v6()))),
        };
        let svc = Service { key, sched: s.sched.clone(), flags, timeout, netmask };
        let mut dests: BTreeMap<DestKey, Dest> = s.reals.iter().map(|r| (dest_key(r), dest(r))).collect();
        if let Some(sorry) = s.sorry.as_ref().filter(|_| s.reals.iter().all(|r| r.weight == 0)) {
            dests.entry(dest_key(sorry)).or_insert_with(|| dest(sorry));
        }
        services.insert(key, (svc, dests));
    }
    Table { services }
}

/// The requests that make `current` match `desired`. Services this daemon
/// does not manage (absent from `managed` and from `desired`) are left
/// alone; destinations missing from `current` are added back, whoever
/// removed them. Additions come before removals so that a pool being
/// replaced is never empty.
pub fn diff(current: &Table, desired: &Table, managed: &BTreeSet<SvcKey>) -> Vec<Op> {
    let mut adds = Vec::new();
    let mut removals = Vec::new();
    for (key, (svc, dests)) in &desired.services {
        let existing = current.services.get(key);
        match existing {
            None => adds.push(Op::AddService(svc.clone())),
            Some((have, _)) if !same_service(have, svc) => adds.push(Op::EditService(svc.clone())),
            Some(_) => {}
        }
        let have_dests = existing.map(|(_, d)| d);
        for (dk, d) in dests {
            match have_dests.and_then(|h| h.get(dk)) {
                None => adds.push(Op::AddDest(*key, d.clone())),
                Some(h) if h != d => adds.push(Op::EditDest(*key, d.clone())),
                Some(_) => {}
            }
        }
        for dk in have_dests.into_iter().flat_map(BTreeMap::keys).filter(|dk| !dests.contains_key(dk)) {
            removals.push(Op::DelDest(*key, *dk));
        }
    }
    for key in managed.iter().filter(|k| !desired.services.contains_key(k) && current.services.contains_key(k)) {
        removals.push(Op::DelService(*key));
    }
    adds.extend(removals);
    adds
}

fn same_service(have: &Service, want: &Service) -> bool {
    // The kernel keeps the timeout and netmask of a service that is no
    // longer persistent; they mean nothing then.
    let persistent = want.flags & SVC_F_PERSISTENT != 0;
    have.sched == want.sched
        && have.flags & SVC_F_OURS == want.flags
        && (!persistent || (have.timeout, have.netmask) == (want.timeout, want.netmask))
}

fn dest_key(r: &RealSpec) -> DestKey {
    DestKey { addr: r.addr, port: r.port }
}

fn dest(r: &RealSpec) -> Dest {
    let fwd = match r.method {
        Method::Nat => FWD_MASQ,
        Method::Dr => FWD_DROUTE,
        Method::Tun => FWD_TUNNEL,
    };
    Dest { key: dest_key(r), fwd, weight: r.weight, u_thresh: 0, l_thresh: 0 }
}

fn full_mask(v6: bool) -> IpAddr {
    if v6 { IpAddr::from([0xffu8; 16]) } else { IpAddr::from([0xffu8; 4]) }
}

/// `persistence_granularity` as IPVS wants it: an IPv4 mask in network
/// order, an IPv6 prefix length.
fn netmask(mask: IpAddr) -> u32 {
    match mask {
        IpAddr::V4(m) => u32::from_ne_bytes(m.octets()),
        IpAddr::V6(m) => u128::from(m).leading_ones(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::state::{NextHop, Persistence, ServiceAddr, ServiceSpec};

    fn real(addr: &str, port: u16, weight: u32, method: Method) -> RealSpec {
        RealSpec { addr: addr.parse().unwrap(), port, weight, method, next_hop: NextHop::default() }
    }

    fn spec(vip: &str, port: u16, proto: Proto, sched: &str, reals: Vec<RealSpec>) -> ServiceSpec {
        ServiceSpec {
            addr: ServiceAddr { vip: vip.parse().unwrap(), port, proto },
            sched: sched.into(),
            persistence: None,
            reals,
            sorry: None,
            ring_size: 1021,
        }
    }

    fn state() -> DesiredState {
        let mut persistent = spec("10.0.0.1", 443, Proto::Tcp, "wlc", vec![real("10.0.1.1", 443, 1, Method::Dr)]);
        persistent.persistence =
            Some(Persistence { timeout: Duration::from_secs(600), granularity: "255.255.255.0".parse().unwrap() });
        let mut fwm6 = spec("::", 0, Proto::Fwmark(7), "sh", vec![real("fd00::11", 80, 2, Method::Tun)]);
        fwm6.persistence = Some(Persistence { timeout: Duration::from_secs(60), granularity: "ffff:ffff:ffff:ffff::".parse().unwrap() });
        DesiredState {
            services: vec![
                spec("10.0.0.1", 80, Proto::Tcp, "rr", vec![real("10.0.1.1", 80, 1, Method::Dr), real("10.0.1.2", 80, 0, Method::Dr)]),
                spec("10.0.0.1", 53, Proto::Udp, "lc", vec![real("10.0.2.1", 5353, 3, Method::Nat)]),
                persistent,
                fwm6,
            ],
        }
    }

    fn managed(t: &Table) -> BTreeSet<SvcKey> {
        t.services.keys().copied().collect()
    }

    /// What the kernel would hold after `ops` (the kernel's side of the test).
    fn run(mut t: Table, ops: &[Op]) -> Table {
        for op in ops {
            match op {
                Op::AddService(s) | Op::EditService(s) => {
                    t.services.entry(s.key).or_insert_with(|| (s.clone(), BTreeMap::new())).0 = s.clone();
                }
                Op::DelService(k) => {
                    t.services.remove(k);
                }
                Op::AddDest(k, d) | Op::EditDest(k, d) => {
                    t.services.get_mut(k).unwrap().1.insert(d.key, d.clone());
                }
                Op::DelDest(k, d) => {
                    t.services.get_mut(k).unwrap().1.remove(d);
                }
            }
        }
        t
    }

    #[test]
    fn desired_services_map_to_ipvs_keys_flags_and_masks() {
        let t = desired_table(&state());
        let (svc, dests) = &t.services[&SvcKey::Addr { proto: 6, addr: "10.0.0.1".parse().unwrap(), port: 443 }];
        assert_eq!((svc.flags, svc.timeout, svc.netmask.to_ne_bytes()), (SVC_F_PERSISTENT, 600, [255, 255, 255, 0]));
        assert_eq!(dests.values().next().unwrap().fwd, FWD_DROUTE);
        let (svc, dests) = &t.services[&SvcKey::Fwmark { v6: true, mark: 7 }];
        assert_eq!((svc.sched.as_str(), svc.timeout, svc.netmask), ("sh", 60, 64));
        assert_eq!(dests.values().next().unwrap().fwd, FWD_TUNNEL);
        let (svc, dests) = &t.services[&SvcKey::Addr { proto: 17, addr: "10.0.0.1".parse().unwrap(), port: 53 }];
        assert_eq!((svc.flags, svc.netmask), (0, u32::MAX));
        assert_eq!(dests.values().next().unwrap().fwd, FWD_MASQ);
    }

    #[test]
    fn from_empty_adds_every_service_then_its_dests() {
        let want = desired_table(&state());
        let ops = diff(&Table::default(), &want, &BTreeSet::new());
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::AddService(_))).count(), 4);
        assert_eq!(ops.iter().filter(|o| matches!(o, Op::AddDest(..))).count(), 5);
        assert_eq!(run(Table::default(), &ops), want);
    }

    #[test]
    fn in_sync_is_no_op_even_with_kernel_flags_and_stale_netmask() {
        let want = desired_table(&state());
        let mut have = want.clone();
        for (svc, _) in have.services.values_mut() {
            svc.flags |= 0x2; // HASHED
            if svc.flags & SVC_F_PERSISTENT == 0 {
                svc.timeout = 300;
            }
        }
        assert_eq!(diff(&have, &want, &managed(&want)), []);
    }

    #[test]
    fn a_weight_change_is_one_edit_and_nothing_else() {
        let have = desired_table(&state());
        let mut s = state();
        s.services[0].reals[1].weight = 5;
        let ops = diff(&have, &desired_table(&s), &managed(&have));
        let key = svc_key(&s.services[0].addr);
        assert_eq!(ops, [Op::EditDest(key, dest(&s.services[0].reals[1]))]);
    }

    #[test]
    fn externally_deleted_dest_is_added_back() {
        let want = desired_table(&state());
        let mut have = want.clone();
        let key = svc_key(&state().services[0].addr);
        let gone = DestKey { addr: "10.0.1.1".parse().unwrap(), port: 80 };
        have.services.get_mut(&key).unwrap().1.remove(&gone);
        let ops = diff(&have, &want, &managed(&want));
        assert_eq!(ops, [Op::AddDest(key, want.services[&key].1[&gone].clone())]);
    }

    #[test]
    fn replacing_reals_adds_before_it_removes_and_sched_change_is_an_edit() {
        let have = desired_table(&state());
        let mut s = state();
        s.services[1].reals = vec![real("10.0.2.2", 5353, 1, Method::Nat)];
        s.services[1].sched = "wlc".into();
        let want = desired_table(&s);
        let ops = diff(&have, &want, &managed(&have));
        assert!(matches!(&ops[0], Op::EditService(svc) if svc.sched == "wlc"));
        assert!(matches!(&ops[1], Op::AddDest(_, d) if d.key.addr.to_string() == "10.0.2.2"));
        assert!(matches!(&ops[2], Op::DelDest(_, d) if d.addr.to_string() == "10.0.2.1"));
        assert_eq!(ops.len(), 3);
        assert_eq!(run(have, &ops), want);
    }

    #[test]
    fn only_managed_services_are_removed() {
        let have = desired_table(&state());
        let mut s = state();
        let dropped = svc_key(&s.services.remove(3).addr);
        let want = desired_table(&s);
        // Someone else's service, never ours: left alone.
        let mut have_plus = have.clone();
        let foreign = SvcKey::Addr { proto: 6, addr: "192.0.2.1".parse().unwrap(), port: 22 };
        have_plus.services.insert(foreign, (Service { key: foreign, sched: "rr".into(), flags: 0, timeout: 0, netmask: u32::MAX }, BTreeMap::new()));
        let ops = diff(&have_plus, &want, &managed(&have));
        assert_eq!(ops, [Op::DelService(dropped)]);
    }

    #[test]
    fn sorry_server_is_a_dest_only_while_no_real_takes_traffic() {
        let mut s = state();
        s.services[0].sorry = Some(real("10.0.9.9", 80, 1, Method::Dr));
        let sorry = DestKey { addr: "10.0.9.9".parse().unwrap(), port: 80 };
        let key = svc_key(&s.services[0].addr);
        assert!(!desired_table(&s).services[&key].1.contains_key(&sorry));
        for r in &mut s.services[0].reals {
            r.weight = 0;
        }
        assert!(desired_table(&s).services[&key].1.contains_key(&sorry));
        s.services[0].reals.clear();
        assert_eq!(desired_table(&s).services[&key].1.keys().collect::<Vec<_>>(), [&sorry]);
    }
}
