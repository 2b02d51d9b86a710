//! The XDP data plane: loading the embedded program, attaching it to
//! interfaces, programming its maps (`apply`), reading its counters.

mod apply;

use std::fmt;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
};
use director_common::{
    lb::{
        Conn, DEFAULT_MAX_CONNS, DEFAULT_RING_SIZE, FlowKey, MAX_SERVICES, Persist, PersistKey,
        Real, Service, ServiceKey, TrafficCounter, globals, maps,
    },
    stats::{Counter, Reason},
};

use self::apply::Applied;
use super::{ApplyReport, Dataplane, maglev};
use crate::state::DesiredState;

/// The XDP object built by director's build.rs from `director-ebpf`.
pub static PROGRAM_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/director"));

const PROGRAM_NAME: &str = "director_xdp";

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the XDP program: {0}")]
    Program(#[from] ProgramError),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: MapError },
    #[error("{0} is missing from the XDP object")]
    Missing(&'static str),
    #[error("cannot attach XDP to {iface}: native mode failed ({native}), SKB mode failed ({skb})")]
    Attach { iface: String, native: ProgramError, skb: ProgramError },
    #[error("ring size {0} is not a prime of at least 3")]
    RingSize(u32),
    #[error("{0}")]
    Invalid(String),
    #[error("Maglev: {0}")]
    Maglev(#[from] maglev::MaglevError),
}

/// How the program ended up attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// In the driver: the fast path.
    Native,
    /// Generic XDP in the stack: works everywhere, slower.
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        })
    }
}

/// Sizes fixed when the program is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Slots per Maglev ring; must be prime.
    pub ring_size: u32,
    /// Connection-table entries (a NAT flow takes two).
    pub max_conns: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { ring_size: DEFAULT_RING_SIZE, max_conns: DEFAULT_MAX_CONNS }
    }
}

/// The program's maps, typed.
pub struct Maps {
    pub services: HashMap<MapData, ServiceKey, Service>,
    pub vips: HashMap<MapData, ServiceKey, u32>,
    pub rings: Array<MapData, u32>,
    pub reals: Array<MapData, Real>,
    pub conns: HashMap<MapData, FlowKey, Conn>,
    pub persist: HashMap<MapData, PersistKey, Persist>,
    pub stats: PerCpuArray<MapData, Counter>,
    pub service_stats: PerCpuArray<MapData, TrafficCounter>,
    pub real_stats: PerCpuArray<MapData, TrafficCounter>,
}

/// The loaded program and its maps. Dropping it detaches every link.
pub struct XdpProgram {
    ebpf: Ebpf,
    pub maps: Maps,
    ring_size: u32,
    applied: Applied,
}

impl XdpProgram {
    /// Loads the embedded program with default sizes.
    pub fn load() -> Result<Self, XdpError> {
        Self::load_with(LoadOptions::default())
    }

    /// Loads the embedded program into the kernel (verifier included).
    pub fn load_with(opts: LoadOptions) -> Result<Self, XdpError> {
        if opts.ring_size < 3 || !maglev::is_prime(opts.ring_size) {
            return Err(XdpError::RingSize(opts.ring_size));
        }
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::RING_SIZE, &opts.ring_size, true)
            .map_max_entries(maps::RINGS, MAX_SERVICES * opts.ring_size)
            .map_max_entries(maps::CONNS, opts.max_conns)
            .load(PROGRAM_OBJECT)?;
        xdp_mut(&mut ebpf)?.load()?;
        let maps = Maps {
            services: take(&mut ebpf, maps::SERVICES)?,
            vips: take(&mut ebpf, maps::VIPS)?,
            rings: take(&mut ebpf, maps::RINGS)?,
            reals: take(&mut ebpf, maps::REALS)?,
            conns: take(&mut ebpf, maps::CONNS)?,
            persist: take(&mut ebpf, maps::PERSIST)?,
            stats: take(&mut ebpf, maps::STATS)?,
            service_stats: take(&mut ebpf, maps::SERVICE_STATS)?,
            real_stats: take(&mut ebpf, maps::REAL_STATS)?,
        };
        Ok(XdpProgram { ebpf, maps, ring_size: opts.ring_size, applied: Applied::new() })
    }

    /// Attaches in native (driver) mode, falling back to SKB mode when the
    /// driver refuses.
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let prog = xdp_mut(&mut self.ebpf)?;
        let native = match prog.attach(iface, XdpMode::Driver) {
            Ok(_) => return Ok(AttachMode::Native),
            Err(e) => e,
        };
        match prog.attach(iface, XdpMode::Skb) {
            Ok(_) => Ok(AttachMode::Skb),
            Err(skb) => Err(XdpError::Attach { iface: iface.to_string(), native, skb }),
        }
    }

    /// The program itself, for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        xdp_mut(&mut self.ebpf)
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// The ring slots and real-server ids of an applied service (for tests
    /// and `directorctl`); None when the service is not applied.
    pub fn service_ids(&self, addr: &crate::state::ServiceAddr) -> Option<apply::ServiceIds> {
        self.applied.ids(addr)
    }

    /// Every verdict counter, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<(Reason, Counter)>, XdpError> {
        Reason::ALL
            .iter()
            .map(|&reason| {
                let per_cpu = self
                    .maps
                    .stats
                    .get(&(reason as u32), 0)
                    .map_err(|source| XdpError::Map { name: maps::STATS, source })?;
                let sum = per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
                    packets: acc.packets + c.packets,
                    bytes: acc.bytes + c.bytes,
                });
                Ok((reason, sum))
            })
            .collect()
    }

    /// Traffic to one service (by ring id) or real server (by id), summed over CPUs.
    pub fn traffic(&self, of: TrafficOf) -> Result<TrafficCounter, XdpError> {
        let (map, name, id) = match of {
            TrafficOf::Service(id) => (&self.maps.service_stats, maps::SERVICE_STATS, id),
            TrafficOf::Real(id) => (&self.maps.real_stats, maps::REAL_STATS, id),
        };
        let per_cpu = map.get(&id, 0).map_err(|source| XdpError::Map { name, source })?;
        Ok(per_cpu.iter().fold(TrafficCounter::default(), |a, c| TrafficCounter {
            packets: a.packets + c.packets,
            bytes: a.bytes + c.bytes,
            conns: a.conns + c.conns,
        }))
    }
}

#[derive(Clone, Copy, Debug)]
pub enum TrafficOf {
    Service(u32),
    Real(u32),
}

impl Dataplane for XdpProgram {
    type Error = XdpError;

    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, XdpError> {
        self.applied.apply(&mut self.maps, self.ring_size, desired)
    }
}

pub use apply::{ServiceIds, addr_from_words, addr_words, backend_key, family, proto_number};

/// The connection-table key of a packet from `src:sport` to `dst:dport`.
pub fn flow_key(src: std::net::IpAddr, sport: u16, dst: std::net::IpAddr, dport: u16, proto: crate::state::Proto) -> FlowKey {
    FlowKey {
        src: addr_words(src),
        dst: addr_words(dst),
        sport: sport.to_be(),
        dport: dport.to_be(),
        proto: proto_number(proto),
        family: family(src),
        _pad: [0; 2],
    }
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
    let prog = ebpf.program_mut(PROGRAM_NAME).ok_or(XdpError::Missing(PROGRAM_NAME))?;
    Ok(prog.try_into()?)
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, XdpError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(XdpError::Missing(name))?;
    T::try_from(map).map_err(|source| XdpError::Map { name, source })
}
