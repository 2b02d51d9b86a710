//! Applying a DesiredState to the maps as a diff.
//!
//! Order is what keeps packets safe: a real server's entry is written
//! before any ring slot points at it, a ring is complete before its SERVICES
//! key exists, and on removal the key goes first. Freed real-server ids are
//! reused last-in-line, so a connection-table entry that still names an old
//! id finds it absent (and is rescheduled) rather than finding a stranger.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet, VecDeque},
    net::IpAddr,
};

use director_common::lb::{
    MAX_REALS, MAX_SERVICES, NO_REAL, PROTO_TCP, PROTO_UDP, REAL_PRESENT, REAL_QUIESCED, Real,
    SVC_PERSISTENT,
    Service, ServiceKey, maps, method,
};

use super::{
    Maps, XdpError,
    capacity::{CapacityError, Limit, Limits, Usage},
    pool::RingPool,
};
use crate::{
    dataplane::{
        ApplyReport, maglev,
        sched::{self, Weights},
    },
    state::{DesiredState, Method, Proto, RealSpec, ServiceAddr, ServiceSpec},
};

/// The ids an applied service uses in the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceIds {
    /// The service's slot: its SERVICE_STATS index.
    pub ring: u32,
    /// Where its ring starts in RINGS; the ring has `table.len()` slots.
    pub ring_base: u32,
    /// (address, port) → REALS index.
    pub reals: BTreeMap<(IpAddr, u16), u32>,
    pub sorry: Option<u32>,
    /// The ring as written (slot → REALS index or NO_REAL).
    pub table: Vec<u32>,
}

/// What this process has written into the maps.
pub(super) struct Applied {
    services: BTreeMap<ServiceAddr, AppliedService>,
    free_ids: VecDeque<u32>,
    free_reals: VecDeque<u32>,
    pool: RingPool,
    /// Every ring has this size instead of the desired state's (tests).
    fixed_ring: Option<u32>,
    /// Last `Real::generation` handed out.
    generation: u32,
}

struct AppliedService {
    ids: ServiceIds,
    value: Service,
    reals: BTreeMap<(IpAddr, u16), Real>,
    sorry: Option<(IpAddr, u16, Real)>,
}

impl AppliedService {
    /// Its ring's block of the pool (base, size); None before it has one
    /// (an add the kernel refused part of).
    fn ring_block(&self) -> Option<(u32, u32)> {
        (!self.ids.table.is_empty()).then(|| (self.ids.ring_base, self.ids.table.len() as u32))
    }
}

impl Applied {
    pub(super) fn new(ring_slots: u32, fixed_ring: Option<u32>) -> Self {
        Applied {
            services: BTreeMap::new(),
            free_ids: (0..MAX_SERVICES).collect(),
            free_reals: (0..MAX_REALS).collect(),
            pool: RingPool::new(ring_slots),
            fixed_ring,
            generation: 0,
        }
    }

    /// Rebuilds what a previous daemon applied from the maps it left pinned,
    /// so the next `apply` is a diff against what packets see right now.
    pub(super) fn adopt(maps: &Maps, ring_slots: u32, fixed_ring: Option<u32>) -> Result<Self, XdpError> {
        let mut applied = Applied::new(ring_slots, fixed_ring);
        for entry in maps.services.iter() {
            let (key, value) = entry.map_err(|source| XdpError::Map { name: maps::SERVICES, source })?;
            let proto = match key.proto {
                PROTO_TCP => Proto::Tcp,
                PROTO_UDP => Proto::Udp,
                other => return Err(invalid(format!("pinned service with protocol {other}"))),
            };
            let addr = ServiceAddr { vip: addr_from_words(&key.addr, key.family), port: u16::from_be(key.port), proto };
            if value.id >= MAX_SERVICES || !applied.pool.reserve(value.ring_base, value.ring_size) {
                return Err(invalid(format!("pinned service {addr}: ring {} at {} overlaps another", value.id, value.ring_base)));
            }
            let table = (0..value.ring_size)
                .map(|slot| maps.rings.get(&(value.ring_base + slot), 0))
                .collect::<Result<Vec<u32>, _>>()
                .map_err(|source| XdpError::Map { name: maps::RINGS, source })?;
            let ids = ServiceIds { ring: value.id, ring_base: value.ring_base, reals: BTreeMap::new(), sorry: None, table };
            applied.services.insert(addr, AppliedService { ids, value, reals: BTreeMap::new(), sorry: None });
        }
        for id in 0..MAX_REALS {
            let real = maps.reals.get(&id, 0).map_err(|source| XdpError::Map { name: maps::REALS, source })?;
            if real.flags & REAL_PRESENT == 0 {
                continue;
            }
            applied.generation = applied.generation.max(real.generation);
            let Some(svc) = applied.services.values_mut().find(|s| s.ids.ring == real.service) else { continue };
            let key = (addr_from_words(&real.addr, real.family), u16::from_be(real.port));
            if svc.value.sorry_real == id {
                svc.ids.sorry = Some(id);
                svc.sorry = Some((key.0, key.1, real));
            } else {
                svc.ids.reals.insert(key, id);
                svc.reals.insert(key, real);
            }
        }
        let rings: BTreeSet<u32> = applied.services.values().map(|s| s.ids.ring).collect();
        let reals: BTreeSet<u32> = applied
            .services
            .values()
            .flat_map(|s| s.ids.reals.values().copied().chain(s.ids.sorry))
            .collect();
        applied.free_ids.retain(|r| !rings.contains(r));
        applied.free_reals.retain(|r| !reals.contains(r));
        Ok(applied)
    }

    pub(super) fn ids(&self, addr: &ServiceAddr) -> Option<ServiceIds> {
        self.services.get(addr).map(|s| s.ids.clone())
    }

    /// What the maps hold now, against their limits.
    pub(super) fn usage(&self) -> (Usage, Limits) {
        let vips: BTreeSet<IpAddr> = self.services.keys().map(|a| a.vip).collect();
        let usage = Usage {
            services: self.services.len() as u64,
            service_keys: self.services.len() as u64,
            vips: vips.len() as u64,
            reals: self.services.values().map(|s| (s.reals.len() + s.sorry.iter().count()) as u64).sum(),
            ring_slots: self.pool.used(),
        };
        (usage, Limits::with_ring_slots(self.pool.slots()))
    }

    fn ring_size(&self, spec: &ServiceSpec) -> u32 {
        self.fixed_ring.unwrap_or(spec.ring_size)
    }

    pub(super) fn apply(&mut self, maps: &mut Maps, desired: &DesiredState) -> Result<ApplyReport, XdpError> {
        self.check(desired)?;
        let mut report = ApplyReport::default();
        let wanted: BTreeMap<ServiceAddr, &ServiceSpec> =
            desired.services.iter().map(|s| (s.addr, s)).collect();

        let gone: Vec<ServiceAddr> =
            self.services.keys().filter(|a| !wanted.contains_key(a)).copied().collect();
        for addr in gone {
            self.remove_service(maps, &addr)?;
            report.services_removed += 1;
        }
        // In the order `check` replayed: which ids and blocks are free
        // when depends on it.
        for spec in &desired.services {
            let (slots, changed) = self.upsert_service(maps, spec)?;
            report.slots_written += slots;
            match changed {
                Change::Added => report.services_added += 1,
                Change::Changed => report.services_changed += 1,
                Change::None => {}
            }
        }
        self.sync_vips(maps)?;
        Ok(report)
    }

    /// Everything that could fail half-way is checked before the first
    /// write: the apply is replayed on counters, in its own order (a new
    /// ring or real server is taken before the one it replaces is freed),
    /// so a limit is reported exactly when the apply would run out.
    pub(super) fn check(&self, desired: &DesiredState) -> Result<(), XdpError> {
        let mut seen = BTreeSet::new();
        for s in &desired.services {
            let a = s.addr;
            if !seen.insert(a) {
                return Err(invalid(format!("service {a} is listed twice")));
            }
            if sched::plan(&s.sched).is_none() {
                return Err(invalid(format!("service {a}: unknown scheduler `{}`", s.sched)));
            }
            for r in s.reals.iter().chain(s.sorry.iter()) {
                if r.addr.is_ipv4() != a.vip.is_ipv4() {
                    return Err(invalid(format!("service {a}: real server {} is of another address family", r.addr)));
                }
                if r.method == Method::Tun && r.next_hop.tun_src.is_none_or(|t| t.is_ipv4() != r.addr.is_ipv4()) {
                    return Err(invalid(format!(
                        "service {a}: TUN real server {} needs a tunnel source address of its family",
                        r.addr
                    )));
                }
            }
        }
        let limits = Limits::with_ring_slots(self.pool.slots());
        let over = |limit: Limit, detail: String| XdpError::Capacity(CapacityError { limit, max: limits.get(limit), detail });
        let vips: BTreeSet<IpAddr> = seen.iter().map(|a| a.vip).collect();
        if seen.len() as u64 > limits.service_keys {
            return Err(over(Limit::ServiceKeys, format!("{} wanted", seen.len())));
        }
        if vips.len() as u64 > limits.vips {
            return Err(over(Limit::Vips, format!("{} wanted", vips.len())));
        }
        let mut ids = self.free_ids.len() as i64;
        let mut reals = self.free_reals.len() as i64;
        let mut pool = self.pool.clone();
        for (addr, svc) in &self.services {
            if !seen.contains(addr) {
                ids += 1;
                reals += (svc.reals.len() + svc.sorry.iter().count()) as i64;
                if let Some((base, size)) = svc.ring_block() {
                    pool.free(base, size);
                }
            }
        }
        for spec in &desired.services {
            let size = self.ring_size(spec);
            let old = self.services.get(&spec.addr);
            if old.is_none() {
                ids -= 1;
                if ids < 0 {
                    return Err(over(Limit::Services, format!("{} wanted", seen.len())));
                }
            }
            if old.is_none_or(|o| o.ids.table.len() != size as usize) {
                if pool.alloc(size).is_none() {
                    let used = pool.used();
                    return Err(over(Limit::RingSlots, format!("service {}: no free block for a ring of {size} ({used} in use)", spec.addr)));
                }
                if let Some((base, size)) = old.and_then(AppliedService::ring_block) {
                    pool.free(base, size);
                }
            }
            let keep = |k: &(IpAddr, u16)| old.is_some_and(|o| o.reals.contains_key(k));
            let new_sorry = spec.sorry.as_ref().is_some_and(|r| old.is_none_or(|o| o.sorry.as_ref().is_none_or(|(a, p, _)| (*a, *p) != (r.addr, r.port))));
            reals -= spec.reals.iter().filter(|r| !keep(&(r.addr, r.port))).count() as i64 + i64::from(new_sorry);
            if reals < 0 {
                let total: usize = desired.services.iter().map(|s| s.reals.len() + s.sorry.iter().count()).sum();
                return Err(over(Limit::Reals, format!("{total} wanted (service {} is where the apply runs out)", spec.addr)));
            }
            if let Some(o) = old {
                let wanted: BTreeSet<(IpAddr, u16)> = spec.reals.iter().map(|r| (r.addr, r.port)).collect();
                reals += o.reals.keys().filter(|k| !wanted.contains(k)).count() as i64;
                reals += i64::from(o.sorry.is_some() && (new_sorry || spec.sorry.is_none()));
            }
        }
        Ok(())
    }

    fn upsert_service(&mut self, maps: &mut Maps, spec: &ServiceSpec) -> Result<(usize, Change), XdpError> {
        let plan = sched::plan(&spec.sched).ok_or_else(|| invalid(format!("unknown scheduler {}", spec.sched)))?;
        let ring_size = self.ring_size(spec);
        let added = !self.services.contains_key(&spec.addr);
        let mut svc = match self.services.remove(&spec.addr) {
            Some(s) => s,
            None => {
                let ring = self.free_ids.pop_front().ok_or_else(|| invalid("no free service slot".into()))?;
                AppliedService {
                    ids: ServiceIds {
                        ring,
                        ring_base: 0,
                        reals: BTreeMap::new(),
                        sorry: None,
                        table: Vec::new(),
                    },
                    value: Service { id: ring, sorry_real: NO_REAL, ..Default::default() },
                    reals: BTreeMap::new(),
                    sorry: None,
                }
            }
        };

        // Kept whatever happens: a write the kernel refused is retried by
        // the next apply, and what the service holds is never lost track of.
        let written = self.write_parts(maps, spec, plan, ring_size, added, &mut svc);
        self.services.insert(spec.addr, svc);
        let (slots, dirty) = written?;
        let change = if added {
            Change::Added
        } else if dirty || slots > 0 {
            Change::Changed
        } else {
            Change::None
        };
        Ok((slots, change))
    }

    /// Writes one service's parts, in an order no packet can see half of.
    /// Returns the ring slots written and whether anything changed.
    fn write_parts(
        &mut self,
        maps: &mut Maps,
        spec: &ServiceSpec,
        plan: sched::Plan,
        ring_size: u32,
        added: bool,
        svc: &mut AppliedService,
    ) -> Result<(usize, bool), XdpError> {
        // 1. Real-server entries, before any slot can point at them.
        let mut dirty = false;
        let mut keep = BTreeSet::new();
        for r in &spec.reals {
            let key = (r.addr, r.port);
            keep.insert(key);
            let (id, generation) = match (svc.ids.reals.get(&key), svc.reals.get(&key)) {
                (Some(&id), Some(old)) => (id, old.generation),
                _ => {
                    let id = self.free_reals.pop_front().ok_or_else(|| invalid("no free real-server id".into()))?;
                    svc.ids.reals.insert(key, id);
                    (id, self.next_generation())
                }
            };
            let value = real_value(r, generation, svc.ids.ring);
            if svc.reals.get(&key) != Some(&value) {
                write_real(maps, id, value)?;
                svc.reals.insert(key, value);
                dirty = true;
            }
        }
        // The sorry server: a replaced or dropped one is retired only after
        // the service entry stops naming it (step 4).
        let mut retire = Vec::new();
        let sorry_id = match &spec.sorry {
            Some(r) => {
                let same = svc.sorry.as_ref().is_some_and(|(a, p, _)| (*a, *p) == (r.addr, r.port));
                let (id, generation) = match (svc.ids.sorry, &svc.sorry) {
                    (Some(id), Some((_, _, old))) if same => (id, old.generation),
                    (old, _) => {
                        retire.extend(old);
                        let id = self.free_reals.pop_front().ok_or_else(|| invalid("no free real-server id".into()))?;
                        (id, self.next_generation())
                    }
                };
                let value = real_value(r, generation, svc.ids.ring);
                if !same || svc.sorry.as_ref().map(|s| s.2) != Some(value) {
                    write_real(maps, id, value)?;
                    svc.sorry = Some((r.addr, r.port, value));
                    dirty = true;
                }
                svc.ids.sorry = Some(id);
                id
            }
            None => {
                retire.extend(svc.ids.sorry.take());
                svc.sorry = None;
                NO_REAL
            }
        };

        // 2. The ring: only the slots that move. A new or resized ring
        // goes into a fresh block, written whole (it may hold a former
        // ring's slots); the service entry switches to it in step 3.
        let backends = backends(spec, &svc.ids.reals, plan.weights);
        let fresh = svc.ids.table.len() != ring_size as usize;
        let mut old_block = None;
        if fresh {
            let base = self.pool.alloc(ring_size).ok_or_else(|| invalid(format!("no free ring block of {ring_size} slots")))?;
            old_block = svc.ring_block();
            svc.ids.ring_base = base;
            svc.ids.table = vec![NO_REAL; ring_size as usize];
        }
        let table = maglev::rebuild(&svc.ids.table, &backends, ring_size)?;
        let base = svc.ids.ring_base;
        let mut slots = 0;
        let writes: Box<dyn Iterator<Item = (u32, u32)>> = if fresh {
            Box::new(table.iter().enumerate().map(|(slot, &id)| (slot as u32, id)))
        } else {
            Box::new(maglev::changed_slots(&svc.ids.table, &table))
        };
        for (slot, id) in writes {
            maps.rings
                .set(base + slot, id, 0)
                .map_err(|source| XdpError::Map { name: maps::RINGS, source })?;
            slots += 1;
        }
        svc.ids.table = table;

        // 3. The service entry: created last, so a new service is complete
        // before the first packet can find it.
        let value = service_value(spec, &svc.ids, plan.hash_by, sorry_id);
        if value != svc.value || added {
            write_service(maps, spec, &value)?;
            svc.value = value;
            dirty = true;
        }
        if let Some((base, size)) = old_block {
            self.pool.free(base, size);
        }

        // 4. Real servers that left: no slot or service entry names them now.
        let gone: Vec<(IpAddr, u16)> = svc.ids.reals.keys().filter(|k| !keep.contains(*k)).copied().collect();
        for key in gone {
            if let Some(id) = svc.ids.reals.remove(&key) {
                svc.reals.remove(&key);
                retire.push(id);
            }
        }
        dirty |= !retire.is_empty();
        for id in retire {
            self.retire_real(maps, id)?;
        }
        Ok((slots, dirty))
    }

    fn remove_service(&mut self, maps: &mut Maps, addr: &ServiceAddr) -> Result<(), XdpError> {
        let Some(svc) = self.services.remove(addr) else { return Ok(()) };
        maps.services
            .remove(&service_key(addr))
            .map_err(|source| XdpError::Map { name: maps::SERVICES, source })?;
        for id in svc.ids.reals.values().copied().chain(svc.ids.sorry) {
            self.retire_real(maps, id)?;
        }
        if let Some((base, size)) = svc.ring_block() {
            self.pool.free(base, size);
        }
        self.free_ids.push_back(svc.ids.ring);
        Ok(())
    }

    fn next_generation(&mut self) -> u32 {
        // Zero is never handed out, so a zeroed (retired) slot never matches.
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }

    fn retire_real(&mut self, maps: &mut Maps, id: u32) -> Result<(), XdpError> {
        write_real(maps, id, Real::default())?;
        self.free_reals.push_back(id);
        Ok(())
    }

    /// VIPS holds exactly the addresses that have a service.
    fn sync_vips(&self, maps: &mut Maps) -> Result<(), XdpError> {
        let want: HashSet<ServiceKey> = self.services.keys().map(vip_key).collect();
        let have: Vec<ServiceKey> = maps.vips.keys().filter_map(Result::ok).collect();
        for k in &want {
            maps.vips.insert(k, 1, 0).map_err(|source| XdpError::Map { name: maps::VIPS, source })?;
        }
        for k in have.iter().filter(|k| !want.contains(k)) {
            maps.vips.remove(k).map_err(|source| XdpError::Map { name: maps::VIPS, source })?;
        }
        Ok(())
    }
}

#[derive(PartialEq, Eq)]
enum Change {
    None,
    Added,
    Changed,
}

fn backends(spec: &ServiceSpec, ids: &BTreeMap<(IpAddr, u16), u32>, weights: Weights) -> Vec<maglev::Backend> {
    let top = spec.reals.iter().map(|r| r.weight).max().unwrap_or(0);
    // fo/ovf: the first server (in configuration order) with the top weight.
    let chosen = spec.reals.iter().position(|r| r.weight == top && top > 0);
    spec.reals
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let id = *ids.get(&(r.addr, r.port))?;
            let weight = match weights {
                Weights::Proportional => r.weight,
                Weights::Equal => u32::from(r.weight > 0),
                Weights::HighestOnly => u32::from(Some(i) == chosen),
            };
            Some(maglev::Backend { key: backend_key(r.addr, r.port), id, weight })
        })
        .collect()
}

/// A real server's identity for Maglev: stable across processes and
/// versions (FNV-1a), so two directors build the same ring.
pub fn backend_key(addr: IpAddr, port: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    for b in bytes.iter().chain(port.to_be_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Address words exactly as they sit in a packet.
pub fn addr_words(a: IpAddr) -> [u32; 4] {
    match a {
        IpAddr::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// The inverse of `addr_words`.
pub fn addr_from_words(words: &[u32; 4], family: u8) -> IpAddr {
    if family == 4 {
        IpAddr::from(words[0].to_ne_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    }
}

pub fn family(a: IpAddr) -> u8 {
    if a.is_ipv4() { 4 } else { 6 }
}

pub fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => PROTO_TCP,
        Proto::Udp => PROTO_UDP,
        // Never handed to XDP: the daemon routes them to IPVS.
        Proto::Sctp => 132,
        Proto::Fwmark(_) => 0,
    }
}

pub fn service_key(a: &ServiceAddr) -> ServiceKey {
    ServiceKey { addr: addr_words(a.vip), port: a.port.to_be(), proto: proto_number(a.proto), family: family(a.vip) }
}

fn vip_key(a: &ServiceAddr) -> ServiceKey {
    ServiceKey { addr: addr_words(a.vip), port: 0, proto: 0, family: family(a.vip) }
}

fn real_value(r: &RealSpec, generation: u32, service: u32) -> Real {
    Real {
        addr: addr_words(r.addr),
        port: r.port.to_be(),
        method: match r.method {
            Method::Dr => method::DR,
            Method::Tun => method::TUN,
            Method::Nat => method::NAT,
        },
        family: family(r.addr),
        mac: r.next_hop.mac,
        src_mac: r.next_hop.src_mac,
        ifindex: r.next_hop.ifindex,
        flags: if r.weight == 0 { REAL_PRESENT | REAL_QUIESCED } else { REAL_PRESENT },
        tun_src: r.next_hop.tun_src.map(addr_words).unwrap_or_default(),
        generation,
        service,
    }
}

fn service_value(spec: &ServiceSpec, ids: &ServiceIds, hash_by: u8, sorry: u32) -> Service {
    let (flags, mask, timeout) = match &spec.persistence {
        Some(p) => (SVC_PERSISTENT, addr_words(p.granularity), p.timeout.as_nanos() as u64),
        None => (0, [0; 4], 0),
    };
    Service {
        id: ids.ring,
        flags,
        persist_mask: mask,
        persist_timeout_ns: timeout,
        sorry_real: sorry,
        hash_by,
        _pad: [0; 3],
        ring_base: ids.ring_base,
        ring_size: ids.table.len() as u32,
    }
}

fn write_real(maps: &mut Maps, id: u32, value: Real) -> Result<(), XdpError> {
    maps.reals.set(id, value, 0).map_err(|source| XdpError::Map { name: maps::REALS, source })
}

fn write_service(maps: &mut Maps, spec: &ServiceSpec, value: &Service) -> Result<(), XdpError> {
    maps.services
        .insert(service_key(&spec.addr), value, 0)
        .map_err(|source| XdpError::Map { name: maps::SERVICES, source })
}

fn invalid(msg: String) -> XdpError {
    XdpError::Invalid(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_words_round_trip() {
        for a in ["192.168.122.100", "fd00::1:2", "::ffff:10.0.0.1"] {
            let ip: IpAddr = a.parse().unwrap();
            assert_eq!(addr_from_words(&addr_words(ip), family(ip)), ip);
        }
    }
}
