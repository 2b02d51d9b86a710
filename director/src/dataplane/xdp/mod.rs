//! The XDP data plane: loading the embedded program, attaching it to
//! interfaces, programming its maps (`apply`), reading its counters, and
//! the VRRP advert fast path (`vrrp`).

mod apply;
pub mod capacity;
mod pool;
mod vrrp;

use std::{
    fmt, fs,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use director_common::{
    lb::{
        Conn, DEFAULT_MAX_CONNS, DEFAULT_RING_SLOTS, FlowKey, LocalMacs, MAP_LAYOUT_VERSION, MAX_LOCAL_IFINDEX,
        MAX_LOCAL_MACS, Persist, PersistKey, Real, Service, ServiceKey, TrafficCounter, maps,
    },
    stats::{Counter, Reason},
    vrrp::{VrrpAdvert, VrrpInstance, VrrpKey, VrrpPeer, VrrpSource, maps as vrrp_maps},
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
    #[error("cannot attach XDP to {iface}: native mode failed ({}), SKB mode failed ({})", chain(native), chain(skb))]
    Attach { iface: String, native: ProgramError, skb: ProgramError },
    #[error("ring size {0} is not a prime of at least 3")]
    RingSize(u32),
    #[error("{0}")]
    Capacity(#[from] capacity::CapacityError),
    #[error("{0}")]
    Invalid(String),
    #[error("Maglev: {0}")]
    Maglev(#[from] maglev::MaglevError),
    #[error("{path}: {msg}")]
    Pin { path: PathBuf, msg: String },
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

/// Sizes fixed when the program is loaded, and where it is pinned.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// One size (a prime) for every ring instead of each service's own
    /// (`ServiceSpec::ring_size`): small rings keep tests readable.
    pub ring_size: Option<u32>,
    /// Slots of the RINGS pool every ring is carved from. Pinned maps keep
    /// the size they were created with.
    pub ring_slots: u32,
    /// Connection-table entries (a NAT flow takes two).
    pub max_conns: u32,
    /// A bpffs directory for the maps and links, so forwarding and the
    /// connection table outlive the daemon; None keeps everything private
    /// to this process (tests).
    pub pin_dir: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { ring_size: None, ring_slots: DEFAULT_RING_SLOTS, max_conns: DEFAULT_MAX_CONNS, pin_dir: None }
    }
}

/// Every map the program declares, for pinning.
const MAP_NAMES: [&str; 11] = [
    maps::SERVICES,
    maps::VIPS,
    maps::RINGS,
    maps::REALS,
    maps::CONNS,
    maps::PERSIST,
    maps::STATS,
    maps::SERVICE_STATS,
    maps::REAL_STATS,
    vrrp_maps::VRRP_INSTANCES,
    vrrp_maps::VRRP_ADVERTS,
];

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
    pub vrrp_instances: HashMap<MapData, VrrpKey, VrrpInstance>,
    pub vrrp_adverts: HashMap<MapData, VrrpKey, VrrpAdvert>,
    pub vrrp_peers: HashMap<MapData, VrrpSource, VrrpPeer>,
    pub local_macs: Array<MapData, LocalMacs>,
}

/// The loaded program and its maps. Dropping it detaches every link that
/// is not pinned.
pub struct XdpProgram {
    ebpf: Ebpf,
    pub maps: Maps,
    applied: Applied,
    /// The layout-versioned pin directory, when pinning.
    pins: Option<PathBuf>,
    /// True when the maps were found pinned and their content adopted.
    adopted: bool,
    /// Links this process holds open, by interface: detaching closes them
    /// (a pinned link also needs its pin removed).
    held: std::collections::BTreeMap<String, XdpLinkId>,
}

impl XdpProgram {
    /// Loads the embedded program with default sizes.
    pub fn load() -> Result<Self, XdpError> {
        Self::load_with(LoadOptions::default())
    }

    /// Loads the embedded program into the kernel (verifier included).
    pub fn load_with(opts: LoadOptions) -> Result<Self, XdpError> {
        if let Some(size) = opts.ring_size.filter(|&n| n < 3 || !maglev::is_prime(n)) {
            return Err(XdpError::RingSize(size));
        }
        let pins = opts.pin_dir.as_deref().map(pin_dir).transpose()?;
        let adopted = pins.as_ref().is_some_and(|d| d.join(maps::SERVICES).exists());
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(maps::RINGS, opts.ring_slots).map_max_entries(maps::CONNS, opts.max_conns);
        if let Some(dir) = &pins {
            // Existing pins are reused as they are: that is the adoption.
            for name in MAP_NAMES {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(PROGRAM_OBJECT)?;
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
            vrrp_instances: take(&mut ebpf, vrrp_maps::VRRP_INSTANCES)?,
            vrrp_adverts: take(&mut ebpf, vrrp_maps::VRRP_ADVERTS)?,
            vrrp_peers: take(&mut ebpf, vrrp_maps::VRRP_PEERS)?,
            local_macs: take(&mut ebpf, maps::LOCAL_MACS)?,
        };
        let ring_slots = maps.rings.len();
        let applied = if adopted {
            Applied::adopt(&maps, ring_slots, opts.ring_size)?
        } else {
            Applied::new(ring_slots, opts.ring_size)
        };
        Ok(XdpProgram { ebpf, maps, applied, pins, adopted, held: Default::default() })
    }

    /// Whether the maps (and so the connection table) came from a previous
    /// daemon's pins.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// Detaches every pinned link and removes every pin under `dir`, of
    /// every map layout: what `director --cleanup` does. Returns the
    /// interfaces detached.
    pub fn cleanup(dir: &Path) -> Result<Vec<String>, XdpError> {
        let mut detached = Vec::new();
        for layout in layouts(dir) {
            for entry in fs::read_dir(&layout).map_err(|e| pin_err(&layout, e))?.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                // link-<mode>-<netns>-<iface>
                if let Some(iface) = name.strip_prefix("link-").and_then(|m| m.splitn(3, '-').nth(2)) {
                    // Unpinning drops the last reference: the link detaches.
                    let link = PinnedLink::from_pin(&path).map_err(|e| pin_err(&path, e))?;
                    drop(link.unpin().map_err(|e| pin_err(&path, e))?);
                    detached.push(iface.to_string());
                } else {
                    fs::remove_file(&path).map_err(|e| pin_err(&path, e))?;
                }
            }
            fs::remove_dir(&layout).map_err(|e| pin_err(&layout, e))?;
        }
        // The operator's directory goes too once nothing else is in it.
        let _ = fs::remove_dir(dir);
        Ok(detached)
    }

    /// Attaches in native (driver) mode, falling back to SKB mode when the
    /// driver refuses. When pinning, a link a previous daemon left on the
    /// interface is taken over: the new program replaces the old one
    /// atomically, and no packet goes unprocessed.
    /// Frames are then forwarded only when addressed to the interface's own
    /// MAC (see [`XdpProgram::set_local_macs`]).
    pub fn attach(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let mode = self.attach_link(iface)?;
        let (index, mac) = link_mac(iface)?;
        self.set_local_macs(index, &[mac])?;
        Ok(mode)
    }

    /// Which destination MACs frames arriving on `ifindex` must carry to be
    /// forwarded (the interface's own, and the VMACs it is VRRP master of);
    /// empty: every MAC. A switch flooding another host's frames (the dead
    /// master's, say) then never gets them forwarded twice.
    pub fn set_local_macs(&mut self, ifindex: u32, macs: &[[u8; 6]]) -> Result<(), XdpError> {
        if ifindex >= MAX_LOCAL_IFINDEX {
            tracing::warn!("ifindex {ifindex} is beyond the destination MAC filter ({MAX_LOCAL_IFINDEX}); frames on it are not filtered");
            return Ok(());
        }
        if macs.len() > MAX_LOCAL_MACS {
            return Err(XdpError::Invalid(format!(
                "ifindex {ifindex}: {} destination MACs, the filter holds {MAX_LOCAL_MACS}",
                macs.len()
            )));
        }
        let mut v = LocalMacs { count: macs.len() as u32, ..Default::default() };
        v.macs[..macs.len()].copy_from_slice(macs);
        self.maps.local_macs.set(ifindex, v, 0).map_err(|source| XdpError::Map { name: maps::LOCAL_MACS, source })
    }

    /// Detaches the program from `iface`: the link this process holds, and
    /// its pin, so that nothing forwards there once the interface left the
    /// configuration (or a failed attempt attached it).
    pub fn detach(&mut self, iface: &str) -> Result<(), XdpError> {
        if let Some(id) = self.held.remove(iface) {
            xdp_mut(&mut self.ebpf)?.detach(id)?;
        }
        let Some(dir) = &self.pins else { return Ok(()) };
        // Under any layout: an older daemon's link forwards from its maps.
        for layout in layouts(dir.parent().unwrap_or(dir)) {
            for mode in [AttachMode::Native, AttachMode::Skb] {
                let path = layout.join(link_name(mode, iface));
                if path.exists() {
                    let link = PinnedLink::from_pin(&path).map_err(|e| pin_err(&path, e))?;
                    drop(link.unpin().map_err(|e| pin_err(&path, e))?);
                }
            }
            if &layout != dir {
                retire_if_unlinked(&layout)?;
            }
        }
        Ok(())
    }

    /// The interfaces of this network namespace with a pinned link, under
    /// any map layout: what previous daemons attached.
    pub fn pinned_interfaces(&self) -> Vec<String> {
        let Some(dir) = &self.pins else { return Vec::new() };
        let ours = format!("-{}-", netns_id());
        let mut names: Vec<String> = layouts(dir.parent().unwrap_or(dir))
            .iter()
            .filter_map(|layout| fs::read_dir(layout).ok())
            .flat_map(|entries| entries.flatten())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("link-")?;
                let at = rest.find(&ours)?;
                Some(rest[at + ours.len()..].to_string())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn attach_link(&mut self, iface: &str) -> Result<AttachMode, XdpError> {
        let Some(dir) = self.pins.clone() else {
            let (mode, id) = self.attach_new(iface)?;
            self.held.insert(iface.to_string(), id);
            return Ok(mode);
        };
        let name = |mode: AttachMode| link_name(mode, iface);
        let pinned_as = |mode: AttachMode| dir.join(name(mode));
        for mode in [AttachMode::Native, AttachMode::Skb] {
            let path = pinned_as(mode);
            if path.exists() {
                let pinned = PinnedLink::from_pin(&path).map_err(|e| pin_err(&path, e))?;
                let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_err(&path, e))?;
                let id = xdp_mut(&mut self.ebpf)?.attach_to_link(link)?;
                self.held.insert(iface.to_string(), id);
                return Ok(mode);
            }
        }
        if let Some(mode) = self.take_over_older_layout(&dir, name)? {
            return Ok(mode);
        }
        let (mode, id) = self.attach_new(iface)?;
        let link = xdp_mut(&mut self.ebpf)?.take_link(id)?;
        // Only bpf_link attachments can be pinned; a kernel that fell back
        // to the netlink API gets a link that ends with this process.
        if let Ok(fd) = FdLink::try_from(link) {
            let path = pinned_as(mode);
            fd.pin(&path).map_err(|e| pin_err(&path, e))?;
        }
        Ok(mode)
    }

    /// A daemon of an older map layout left its link on the interface: our
    /// program replaces its program in that link atomically, so forwarding
    /// continues, and the link moves under our layout. Its maps are not
    /// adopted (their layout differs): established flows are rescheduled,
    /// onto the same servers wherever the ring is unchanged. The older
    /// layout's pins go once none of its links is left.
    fn take_over_older_layout(
        &mut self,
        dir: &Path,
        link_name: impl Fn(AttachMode) -> String,
    ) -> Result<Option<AttachMode>, XdpError> {
        let root = dir.parent().unwrap_or(dir);
        for old in layouts(root).into_iter().filter(|l| l != dir) {
            for mode in [AttachMode::Native, AttachMode::Skb] {
                let from = old.join(link_name(mode));
                if !from.exists() {
                    continue;
                }
                let pinned = PinnedLink::from_pin(&from).map_err(|e| pin_err(&from, e))?;
                let link = XdpLink::try_from(FdLink::from(pinned)).map_err(|e| pin_err(&from, e))?;
                let prog = xdp_mut(&mut self.ebpf)?;
                let id = prog.attach_to_link(link)?;
                let to = dir.join(link_name(mode));
                let link = FdLink::try_from(prog.take_link(id)?).map_err(|e| pin_err(&to, e))?;
                link.pin(&to).map_err(|e| pin_err(&to, e))?;
                fs::remove_file(&from).map_err(|e| pin_err(&from, e))?;
                retire_if_unlinked(&old)?;
                return Ok(Some(mode));
            }
        }
        Ok(None)
    }

    fn attach_new(&mut self, iface: &str) -> Result<(AttachMode, aya::programs::xdp::XdpLinkId), XdpError> {
        let prog = xdp_mut(&mut self.ebpf)?;
        let native = match prog.attach(iface, XdpMode::Driver) {
            Ok(id) => return Ok((AttachMode::Native, id)),
            Err(e) => e,
        };
        match prog.attach(iface, XdpMode::Skb) {
            Ok(id) => Ok((AttachMode::Skb, id)),
            Err(skb) => Err(XdpError::Attach { iface: iface.to_string(), native, skb }),
        }
    }

    /// The program itself, for BPF_PROG_TEST_RUN.
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        xdp_mut(&mut self.ebpf)
    }

    /// Whether `desired` would apply: every limit and every value, checked
    /// without touching a map.
    pub fn check(&self, desired: &DesiredState) -> Result<(), XdpError> {
        self.applied.check(desired)
    }

    /// What the maps hold, against their limits.
    pub fn usage(&self) -> (capacity::Usage, capacity::Limits) {
        self.applied.usage()
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
        self.applied.apply(&mut self.maps, desired)
    }
}

pub use apply::{ServiceIds, addr_from_words, addr_words, backend_key, family, proto_number};
pub use vrrp::VrrpWitness;
// The VRRP types this plane's API takes and returns.
pub use crate::vrrp::witness::{Family, SeenAdvert, VrrpWatch};

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

/// `<dir>/v<MAP_LAYOUT_VERSION>`, created, on a bpffs. The bpffs itself is
/// mounted on the parent when the host has none there yet, as systemd
/// would have done.
fn pin_dir(dir: &Path) -> Result<PathBuf, XdpError> {
    let root = dir.parent().unwrap_or(dir);
    // Two daemons starting at once must not both mount: the second mount
    // would hide the first one's pins.
    let _lock = MountLock::take();
    if !is_bpffs(root) {
        fs::create_dir_all(root).map_err(|e| pin_err(root, e))?;
        let c = cstring(root)?;
        // SAFETY: NUL-terminated strings; no data argument.
        let rc = unsafe { libc::mount(c"bpf".as_ptr(), c.as_ptr(), c"bpf".as_ptr(), 0, std::ptr::null()) };
        if rc != 0 || !is_bpffs(root) {
            return Err(XdpError::Pin {
                path: root.to_path_buf(),
                msg: format!(
                    "not a BPF filesystem, and mounting one failed ({}); mount it with `mount -t bpf bpf {}`",
                    std::io::Error::last_os_error(),
                    root.display()
                ),
            });
        }
    }
    let dir = versioned(dir);
    fs::create_dir_all(&dir).map_err(|e| pin_err(&dir, e))?;
    Ok(dir)
}

/// An exclusive flock for the check-then-mount of bpffs; released on drop.
struct MountLock {
    _file: Option<fs::File>,
}

impl MountLock {
    fn take() -> Self {
        let file = fs::OpenOptions::new().create(true).write(true).truncate(false).open("/run/director-bpffs.lock").ok();
        if let Some(f) = &file {
            // SAFETY: a valid fd; blocking until the other daemon is done.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(f), libc::LOCK_EX) };
        }
        MountLock { _file: file }
    }
}

/// A link's pin name. bpffs holds only pinned objects, so the mode lives
/// in the name; and one host may run daemons in several network
/// namespaces, so the namespace does too.
fn link_name(mode: AttachMode, iface: &str) -> String {
    format!("link-{mode}-{}-{iface}", netns_id())
}

/// This process's network namespace, as `ip netns identify` would key it.
fn netns_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0)
}

fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c) = cstring(path) else { return false };
    // SAFETY: a zeroed statfs is valid, and c is a NUL-terminated path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

fn cstring(path: &Path) -> Result<std::ffi::CString, XdpError> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| pin_err(path, e))
}

fn versioned(dir: &Path) -> PathBuf {
    dir.join(format!("v{MAP_LAYOUT_VERSION}"))
}

/// Every `v<N>` layout directory under `dir`, this one's included.
fn layouts(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect()
}

/// Removes an older layout's map pins and directory once no link of it is
/// left; its maps then go with the last program using them.
fn retire_if_unlinked(layout: &Path) -> Result<(), XdpError> {
    let entries: Vec<fs::DirEntry> =
        fs::read_dir(layout).map_err(|e| pin_err(layout, e))?.flatten().collect();
    if entries.iter().any(|e| e.file_name().to_string_lossy().starts_with("link-")) {
        return Ok(());
    }
    for e in entries {
        fs::remove_file(e.path()).map_err(|err| pin_err(&e.path(), err))?;
    }
    fs::remove_dir(layout).map_err(|e| pin_err(layout, e))
}

/// An error with its causes: aya's syscall errors keep the errno there.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(": {s}"));
        cur = s.source();
    }
    out
}

fn pin_err(path: &Path, e: impl fmt::Display) -> XdpError {
    XdpError::Pin { path: path.to_path_buf(), msg: e.to_string() }
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

/// An interface's index and MAC, from the current network namespace
/// (getifaddrs, not /sys, which shows the namespace it was mounted in).
pub fn link_mac(iface: &str) -> Result<(u32, [u8; 6]), XdpError> {
    let err = |e: &dyn std::fmt::Display| XdpError::Invalid(format!("{iface}: {e}"));
    let index = nix::net::if_::if_nametoindex(iface).map_err(|e| err(&e))?;
    let mac = nix::ifaddrs::getifaddrs()
        .map_err(|e| err(&e))?
        .filter(|a| a.interface_name == iface)
        .find_map(|a| a.address.as_ref().and_then(|s| s.as_link_addr()).and_then(|l| l.addr()))
        .ok_or_else(|| err(&"no MAC address"))?;
    Ok((index, mac))
}
