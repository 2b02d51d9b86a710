//! The VRRP advert fast path, userspace side: tell the XDP program which
//! VRRP instances we run, and read the latest valid advert it saw for one.
//! This makes the XDP plane a [`Witness`] (see [`crate::vrrp::witness`] for
//! why VRRP wants one).

use std::{collections::BTreeMap, net::IpAddr, os::fd::AsFd, time::Duration};

use aya::maps::{HashMap as AyaHashMap, IterableMap, Map, MapData};
use director_common::vrrp::{MARKER_VRID, VrrpAdvert, VrrpInstance, VrrpKey, VrrpPeer, VrrpSource, maps};

use super::{XdpError, XdpProgram, addr_from_words, addr_words};
use crate::vrrp::{
    Auth, Version,
    witness::{Family, SeenAdvert, VrrpWatch, Witness, WitnessError},
};

/// The family as the maps' keys and records spell it.
fn family_number(family: Family) -> u8 {
    match family {
        Family::V4 => 4,
        Family::V6 => 6,
    }
}

/// The record as of `now_ns` (CLOCK_MONOTONIC, the clock of
/// bpf_ktime_get_ns).
fn seen_advert(rec: &VrrpAdvert, family: Family, now_ns: u64) -> SeenAdvert {
    SeenAdvert {
        priority: rec.priority,
        src: addr_from_words(&rec.src, family_number(family)),
        interval: Duration::from_millis(u64::from(rec.interval_cs) * 10),
        age: Duration::from_nanos(now_ns.saturating_sub(rec.last_ns)),
        count: rec.count,
    }
}

impl XdpProgram {
    /// Makes VRRP_INSTANCES and VRRP_PEERS hold exactly `instances`,
    /// touching only what differs. On each (interface, family) that has an
    /// instance, adverts for other VRIDs and malformed ones are dropped from
    /// then on; with an empty list every VRRP packet passes untouched again.
    /// Records of instances that leave are removed.
    pub fn set_vrrp_instances(&mut self, instances: &[VrrpWatch]) -> Result<(), XdpError> {
        let map_err = |name| move |source| XdpError::Map { name, source };
        let have: BTreeMap<VrrpKey, VrrpInstance> = self
            .maps
            .vrrp_instances
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_err(maps::VRRP_INSTANCES))?;
        let have_peers: BTreeMap<VrrpSource, VrrpPeer> =
            self.maps.vrrp_peers.iter().collect::<Result<_, _>>().map_err(map_err(maps::VRRP_PEERS))?;
        let (want, want_peers) = want(instances)?;
        // Peers first and gone last: an instance that checks its sources
        // never runs without its list.
        for (k, v) in want_peers.iter().filter(|(k, v)| have_peers.get(*k) != Some(*v)) {
            self.maps.vrrp_peers.insert(k, v, 0).map_err(map_err(maps::VRRP_PEERS))?;
        }
        let plan = plan(&have, &want);
        for (k, v) in &plan.write {
            self.maps.vrrp_instances.insert(k, v, 0).map_err(map_err(maps::VRRP_INSTANCES))?;
        }
        for k in &plan.remove {
            self.maps.vrrp_instances.remove(k).map_err(map_err(maps::VRRP_INSTANCES))?;
        }
        let stale: Vec<VrrpKey> =
            self.maps.vrrp_adverts.keys().filter_map(Result::ok).filter(|k| !want.contains_key(k)).collect();
        for k in &stale {
            self.maps.vrrp_adverts.remove(k).map_err(map_err(maps::VRRP_ADVERTS))?;
        }
        for k in have_peers.keys().filter(|k| !want_peers.contains_key(*k)) {
            self.maps.vrrp_peers.remove(k).map_err(map_err(maps::VRRP_PEERS))?;
        }
        Ok(())
    }

    /// The latest valid advert recorded for an instance, None when none
    /// arrived since it was set.
    pub fn vrrp_last_advert(&self, ifindex: u32, family: Family, vrid: u8) -> Result<Option<SeenAdvert>, XdpError> {
        last_advert(&self.maps.vrrp_adverts, ifindex, family, vrid)
    }

    /// A reader of the advert records that the VRRP instance tasks own: its
    /// own descriptor of the map, so reading never waits for the daemon.
    pub fn vrrp_witness(&self) -> Result<VrrpWitness, XdpError> {
        let err = |e: std::io::Error| XdpError::Map { name: maps::VRRP_ADVERTS, source: aya::maps::MapError::from(e) };
        let fd = self.maps.vrrp_adverts.map().fd().as_fd().try_clone_to_owned().map_err(err)?;
        let map_err = |source| XdpError::Map { name: maps::VRRP_ADVERTS, source };
        let data = MapData::from_fd(fd).map_err(map_err)?;
        let map = AyaHashMap::try_from(Map::HashMap(data)).map_err(map_err)?;
        Ok(VrrpWitness { map })
    }
}

/// The XDP program's record of the adverts it saw (see [`XdpProgram::vrrp_witness`]).
pub struct VrrpWitness {
    map: AyaHashMap<MapData, VrrpKey, VrrpAdvert>,
}

impl Witness for VrrpWitness {
    fn last_advert(&self, ifindex: u32, family: Family, vrid: u8) -> Result<Option<SeenAdvert>, WitnessError> {
        Ok(last_advert(&self.map, ifindex, family, vrid)?)
    }
}

fn last_advert(
    map: &AyaHashMap<MapData, VrrpKey, VrrpAdvert>,
    ifindex: u32,
    family: Family,
    vrid: u8,
) -> Result<Option<SeenAdvert>, XdpError> {
    let key = VrrpKey { ifindex, family: family_number(family), vrid, _pad: [0; 2] };
    match map.get(&key, 0) {
        Ok(rec) => Ok(Some(seen_advert(&rec, family, monotonic_ns()))),
        Err(aya::maps::MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(XdpError::Map { name: maps::VRRP_ADVERTS, source }),
    }
}

/// Writes and removals, in an order that never drops our own adverts: an
/// (interface, family) marker is written after its instances and removed
/// before them, so the program never judges an interface it half knows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    write: Vec<(VrrpKey, VrrpInstance)>,
    remove: Vec<VrrpKey>,
}

fn plan(have: &BTreeMap<VrrpKey, VrrpInstance>, want: &BTreeMap<VrrpKey, VrrpInstance>) -> Plan {
    let marker = |k: &VrrpKey| k.vrid == MARKER_VRID;
    let changed = |k: &&VrrpKey| have.get(*k) != want.get(*k);
    let mut plan = Plan::default();
    let (markers, routers): (Vec<&VrrpKey>, Vec<&VrrpKey>) = want.keys().filter(changed).partition(|k| marker(k));
    plan.write = routers.into_iter().chain(markers).map(|k| (*k, want[k])).collect();
    let (markers, routers): (Vec<&VrrpKey>, Vec<&VrrpKey>) =
        have.keys().filter(|k| !want.contains_key(*k)).partition(|k| marker(k));
    plan.remove = markers.into_iter().chain(routers).copied().collect();
    plan
}

/// Every key the maps should hold: the instances and their markers, and
/// the unicast peers.
type Want = (BTreeMap<VrrpKey, VrrpInstance>, BTreeMap<VrrpSource, VrrpPeer>);

fn want(instances: &[VrrpWatch]) -> Result<Want, XdpError> {
    let mut want = BTreeMap::new();
    let mut peers = BTreeMap::new();
    for w in instances {
        let what = || format!("VRRP VRID {} on interface {} ({:?})", w.vrid, w.ifindex, w.family);
        if w.vrid == MARKER_VRID {
            return Err(XdpError::Invalid(format!("{}: VRID 0 is not a valid router id", what())));
        }
        if w.version == Version::V2 && w.family == Family::V6 {
            return Err(XdpError::Invalid(format!("{}: VRRPv2 has no IPv6", what())));
        }
        let (auth_type, auth) = match (w.version, w.auth) {
            (_, Auth::None) => (0, [0; 8]),
            (Version::V2, Auth::Simple(data)) => (1, data),
            (Version::V3, Auth::Simple(_)) => {
                return Err(XdpError::Invalid(format!("{}: VRRPv3 has no authentication", what())));
            }
        };
        let key = VrrpKey { ifindex: w.ifindex, family: family_number(w.family), vrid: w.vrid, _pad: [0; 2] };
        let value = VrrpInstance {
            version: w.version.as_u8(),
            auth_type,
            unicast: u8::from(!w.unicast_peers.is_empty()),
            check_src: u8::from(w.check_unicast_src),
            _pad: [0; 4],
            auth,
        };
        if want.insert(key, value).is_some_and(|old| old != value) {
            return Err(XdpError::Invalid(format!("{}: listed twice with different settings", what())));
        }
        want.insert(VrrpKey { vrid: MARKER_VRID, ..key }, VrrpInstance::default());
        for &(addr, min, max) in &w.unicast_peers {
            let same_family = matches!((addr, w.family), (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6));
            if !same_family {
                return Err(XdpError::Invalid(format!("{}: unicast_peer {addr} is of the other family", what())));
            }
            let source = VrrpSource { key, addr: addr_words(addr) };
            peers.insert(source, VrrpPeer { min_ttl: min.unwrap_or(0), max_ttl: max.unwrap_or(u8::MAX) });
        }
    }
    Ok((want, peers))
}

/// CLOCK_MONOTONIC in nanoseconds: what bpf_ktime_get_ns reads.
fn monotonic_ns() -> u64 {
    // SAFETY: clock_gettime fills the zeroed timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(ifindex: u32, family: Family, vrid: u8) -> VrrpWatch {
        VrrpWatch::multicast(ifindex, family, vrid, Version::V3, Auth::None)
    }

    fn key(ifindex: u32, family: u8, vrid: u8) -> VrrpKey {
        VrrpKey { ifindex, family, vrid, _pad: [0; 2] }
    }

    fn plan_for(have: &BTreeMap<VrrpKey, VrrpInstance>, list: &[VrrpWatch]) -> Plan {
        plan(have, &want(list).unwrap().0)
    }

    fn applied(p: &Plan, mut have: BTreeMap<VrrpKey, VrrpInstance>) -> BTreeMap<VrrpKey, VrrpInstance> {
        have.extend(p.write.iter().copied());
        for k in &p.remove {
            have.remove(k);
        }
        have
    }

    #[test]
    fn markers_are_written_after_and_removed_before_their_instances() {
        let both = [watch(2, Family::V4, 51), watch(2, Family::V6, 51)];
        let p = plan_for(&BTreeMap::new(), &both);
        let vrids: Vec<(u8, u8)> = p.write.iter().map(|(k, _)| (k.family, k.vrid)).collect();
        assert_eq!(vrids, [(4, 51), (6, 51), (4, 0), (6, 0)]);
        assert!(p.remove.is_empty());

        let have = applied(&p, BTreeMap::new());
        let p = plan_for(&have, &[]);
        assert!(p.write.is_empty());
        let vrids: Vec<(u8, u8)> = p.remove.iter().map(|k| (k.family, k.vrid)).collect();
        assert_eq!(vrids, [(4, 0), (6, 0), (4, 51), (6, 51)]);
        assert!(applied(&p, have).is_empty());
    }

    #[test]
    fn only_the_difference_is_written() {
        let first = [watch(2, Family::V4, 51), watch(2, Family::V4, 52)];
        let have = applied(&plan_for(&BTreeMap::new(), &first), BTreeMap::new());
        // 52 leaves, 53 arrives, 51 changes version; the marker stays.
        let mut v2 = watch(2, Family::V4, 51);
        v2.version = Version::V2;
        v2.auth = Auth::simple("secret12345");
        let p = plan_for(&have, &[v2.clone(), watch(2, Family::V4, 53)]);
        let written: Vec<u8> = p.write.iter().map(|(k, _)| k.vrid).collect();
        assert_eq!(written, [51, 53]);
        assert_eq!(p.write[0].1, VrrpInstance {
                version: 2,
                auth_type: 1,
                unicast: 0,
                check_src: 0,
                _pad: [0; 4],
                auth: *b"secret12"
            });
        assert_eq!(p.remove, [key(2, 4, 52)]);
        // Applying the same list again writes nothing.
        let have = applied(&p, have);
        assert_eq!(plan_for(&have, &[v2, watch(2, Family::V4, 53)]), Plan::default());
    }

    #[test]
    fn impossible_instances_are_refused_with_their_vrid() {
        let mut v2v6 = watch(3, Family::V6, 9);
        v2v6.version = Version::V2;
        let mut v3auth = watch(3, Family::V4, 9);
        v3auth.auth = Auth::simple("pw");
        let mut twice = watch(3, Family::V4, 9);
        twice.version = Version::V2;
        for (bad, says) in [
            (vec![watch(3, Family::V4, 0)], "VRID 0"),
            (vec![v2v6], "no IPv6"),
            (vec![v3auth], "no authentication"),
            (vec![watch(3, Family::V4, 9), twice], "listed twice"),
            (vec![VrrpWatch { unicast_peers: vec![("fd00::2".parse().unwrap(), None, None)], ..watch(3, Family::V4, 9) }], "other family"),
        ] {
            let err = want(&bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains("interface 3"), "{err}");
        }
        // The same instance twice is harmless.
        assert!(want(&[watch(3, Family::V4, 9), watch(3, Family::V4, 9)]).is_ok());
    }

    #[test]
    fn unicast_instances_carry_their_peers_ttl_ranges_and_source_check() {
        let peers = vec![("10.0.0.2".parse().unwrap(), Some(250), None), ("10.0.0.3".parse().unwrap(), None, Some(64))];
        let w = VrrpWatch { unicast_peers: peers, check_unicast_src: true, ..watch(3, Family::V4, 9) };
        let (instances, peers) = want(&[w]).unwrap();
        let inst = instances[&key(3, 4, 9)];
        assert_eq!((inst.unicast, inst.check_src), (1, 1));
        let range = |ip: &str| {
            let k = VrrpSource { key: key(3, 4, 9), addr: addr_words(ip.parse().unwrap()) };
            peers.get(&k).map(|p| (p.min_ttl, p.max_ttl))
        };
        assert_eq!(range("10.0.0.2"), Some((250, 255)));
        assert_eq!(range("10.0.0.3"), Some((0, 64)));
        assert_eq!(range("10.0.0.4"), None);
        // A multicast instance: no peers, TTL 255 only.
        let (instances, peers) = want(&[watch(3, Family::V4, 9)]).unwrap();
        assert_eq!((instances[&key(3, 4, 9)].unicast, peers.len()), (0, 0));
    }

    #[test]
    fn a_record_reads_as_age_interval_and_sender() {
        let rec = VrrpAdvert {
            src: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            last_ns: 5_000_000_000,
            count: 7,
            interval_cs: 100,
            priority: 150,
            version: 2,
            _pad: [0; 4],
        };
        let seen = seen_advert(&rec, Family::V4, 5_250_000_000);
        assert_eq!(
            seen,
            SeenAdvert {
                priority: 150,
                src: "10.0.0.2".parse().unwrap(),
                interval: Duration::from_secs(1),
                age: Duration::from_millis(250),
                count: 7,
            }
        );
        // A clock read before the record (another CPU's) is age 0, not a panic.
        assert_eq!(seen_advert(&rec, Family::V4, 1).age, Duration::ZERO);
    }
}
