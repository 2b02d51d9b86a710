//! Every map the program uses, declared in one place. Userspace finds them
//! by the names in `director_common::lb::maps`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use director_common::{
    lb::{
        Conn, DEFAULT_MAX_CONNS, DEFAULT_RING_SLOTS, FlowKey, LocalMacs, MAX_LOCAL_IFINDEX, MAX_REALS,
        MAX_SERVICE_KEYS, MAX_SERVICES, Persist, PersistKey, Real, Service, ServiceKey, TrafficCounter,
    },
    stats::{Counter, STATS_SLOTS},
    vrrp::{
        MAX_VRRP_KEYS, MAX_VRRP_PEERS, MAX_VRRP_SOURCES, VrrpAdvert, VrrpInstance, VrrpKey, VrrpPeer, VrrpRate,
        VrrpSource,
    },
};

/// Packets and bytes per verdict reason, per CPU.
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

#[map]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);

/// Every VIP address (port and protocol 0): decides whether an irregular
/// packet (fragment, options, ICMP) is ours.
#[map]
pub static VIPS: HashMap<ServiceKey, u32> = HashMap::with_max_entries(MAX_SERVICE_KEYS, 0);

/// Every service's Maglev ring (`Service::ring_base`, `ring_size`), each
/// slot a REALS index; userspace may resize the pool at load time.
#[map]
pub static RINGS: Array<u32> = Array::with_max_entries(DEFAULT_RING_SLOTS, 0);

#[map]
pub static REALS: Array<Real> = Array::with_max_entries(MAX_REALS, 0);

/// Flow → real server, and NAT reply flow → translation back. One table
/// that every CPU sees, not per-CPU tables: a NAT reply arrives on another
/// interface, often on another CPU, and a flow must keep its server when RSS
/// moves it. Its LRU is the common one: BPF_F_NO_COMMON_LRU measured no
/// steady gain here (see README) and splits the capacity per CPU, so a busy
/// CPU would evict long before the table is full.
#[map]
pub static CONNS: LruHashMap<FlowKey, Conn> = LruHashMap::with_max_entries(DEFAULT_MAX_CONNS, 0);

/// (service, masked client) → real, for persistence_timeout.
#[map]
pub static PERSIST: LruHashMap<PersistKey, Persist> = LruHashMap::with_max_entries(1 << 16, 0);

#[map]
pub static SERVICE_STATS: PerCpuArray<TrafficCounter> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map]
pub static REAL_STATS: PerCpuArray<TrafficCounter> = PerCpuArray::with_max_entries(MAX_REALS, 0);

/// The VRRP instances we run, and per (interface, family) the marker that
/// says we run VRRP there at all. Filled by userspace.
#[map]
pub static VRRP_INSTANCES: HashMap<VrrpKey, VrrpInstance> = HashMap::with_max_entries(MAX_VRRP_KEYS, 0);

/// The latest valid advert per instance; userspace reads it.
#[map]
pub static VRRP_ADVERTS: HashMap<VrrpKey, VrrpAdvert> = HashMap::with_max_entries(MAX_VRRP_KEYS, 0);

/// The `unicast_peer`s of each unicast instance, with their TTL range.
/// Filled by userspace.
#[map]
pub static VRRP_PEERS: HashMap<VrrpSource, VrrpPeer> = HashMap::with_max_entries(MAX_VRRP_PEERS, 0);

/// Adverts per (instance, source) in the current rate window.
#[map]
pub static VRRP_RATE: LruHashMap<VrrpSource, VrrpRate> = LruHashMap::with_max_entries(MAX_VRRP_SOURCES, 0);

/// Per ingress ifindex, the destination MACs we forward frames for.
#[map]
pub static LOCAL_MACS: Array<LocalMacs> = Array::with_max_entries(MAX_LOCAL_IFINDEX, 0);
