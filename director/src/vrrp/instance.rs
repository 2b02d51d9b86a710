//! One running VRRP instance: the state machine ([`super::fsm`]) on the real
//! clock, its socket, its VIPs. Each instance is a tokio task on the VRRP
//! thread (see [`super::manager`]); the manager talks to it through
//! [`InstanceHandle`] and hears of its transitions as [`Event`]s. Both
//! channels are unbounded: a command or a state change is never dropped,
//! and neither side ever waits for the other. The VRRP timers are the state
//! machine's `next_deadline`, slept on in [`Driver::run`].

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{
    addr::{self, AddrError, Addrs, Vip},
    announce::{self, Burst, GarpSchedule},
    event::Event,
    fsm::{Action, Fsm, FsmConfig, Input, State},
    notify::{self, NotifyState, Notifier, Subject},
    vmac::{VmacError, VmacSpec},
    packet::{self, InstanceParams, Reject, RxMeta, Version},
    socket::{Interface, SocketError, VrrpSocket},
    sync::SyncCmd,
    witness::{Family, VrrpWatch, Witness},
};
use crate::{
    config::{GlobalDefs, VrrpInstance},
    status::VrrpView as Status,
};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("vrrp_instance {0}: no `interface`")]
    NoInterface(String),
    #[error("vrrp_instance {0}: no virtual_ipaddress")]
    NoVips(String),
    #[error("vrrp_instance {name}: {source}")]
    Params {
        name: String,
        source: packet::ParamsError,
    },
    #[error("vrrp_instance {name}: IPv6 VIPs need `version 3`")]
    V6NeedsV3 { name: String },
    #[error("vrrp_instance {name}: {source}")]
    Socket { name: String, source: SocketError },
    #[error("vrrp_instance {name}: virtual_ipaddress {source}")]
    Addr { name: String, source: AddrError },
    #[error("vrrp_instance {name}: {source}")]
    Vmac { name: String, source: VmacError },
}

impl InstanceError {
    /// The instance the error is about.
    pub fn instance(&self) -> &str {
        match self {
            InstanceError::NoInterface(n) | InstanceError::NoVips(n) => n,
            InstanceError::Params { name, .. }
            | InstanceError::V6NeedsV3 { name }
            | InstanceError::Socket { name, .. }
            | InstanceError::Addr { name, .. }
            | InstanceError::Vmac { name, .. } => name,
        }
    }
}

/// Everything an instance runs from, resolved against the host.
#[derive(Debug, Clone)]
pub struct Spec {
    pub config: VrrpInstance,
    /// Its notify scripts, their users looked up before the VRRP thread.
    pub notifier: Notifier,
    pub params: InstanceParams,
    pub fsm: FsmConfig,
    /// The instance's interface (its adverts' source address is on it).
    pub iface: Interface,
    /// `virtual_ipaddress` then `virtual_ipaddress_excluded`, resolved.
    pub vips: Vec<Vip>,
    /// `use_vmac`: adverts, VIPs and announcements go through this macvlan.
    pub vmac: Option<VmacSpec>,
    pub garp: GarpSchedule,
    /// Where adverts go: the multicast group, or the unicast peers.
    pub dsts: Vec<IpAddr>,
    pub multicast: bool,
    pub v6: bool,
}

impl Spec {
    /// What a witness must know to record this instance's adverts.
    pub fn watch(&self) -> VrrpWatch {
        VrrpWatch {
            ifindex: self.iface.index,
            family: self.family(),
            vrid: self.params.vrid,
            version: self.params.version,
            auth: self.params.auth,
            unicast_peers: self.params.unicast_peers.clone(),
            check_unicast_src: self.params.check_unicast_src,
        }
    }

    fn family(&self) -> Family {
        if self.v6 { Family::V6 } else { Family::V4 }
    }

    pub fn resolve(inst: &VrrpInstance, global: &GlobalDefs, notifier: Notifier) -> Result<Spec, InstanceError> {
        let name = inst.name.clone();
        let ifname = inst.interface.clone().ok_or_else(|| InstanceError::NoInterface(name.clone()))?;
        let first = inst.virtual_ipaddress.first().ok_or_else(|| InstanceError::NoVips(name.clone()))?;
        let v6 = first.addr.is_ipv6();
        let params = InstanceParams::from_config(inst, global)
            .map_err(|source| InstanceError::Params { name: name.clone(), source })?;
        if v6 && params.version != Version::V3 {
            return Err(InstanceError::V6NeedsV3 { name });
        }
        let vips: Vec<IpAddr> = inst.virtual_ipaddress.iter().map(|v| v.addr).collect();
        let iface = Interface::lookup(&ifname, &vips).map_err(|source| InstanceError::Socket { name: name.clone(), source })?;
        let src = match inst.unicast_src_ip.or(inst.mcast_src_ip) {
            Some(ip) => ip,
            None => iface.source(v6).map_err(|source| InstanceError::Socket { name: name.clone(), source })?,
        };
        let vmac = VmacSpec::from_config(inst, v6).map_err(|source| InstanceError::Vmac { name: name.clone(), source })?;
        let default_dev = vmac.as_ref().map_or(ifname.as_str(), |v| v.name.as_str());
        let (mut vips, excluded) =
            addr::resolve_all(&inst.virtual_ipaddress, &inst.virtual_ipaddress_excluded, default_dev)
                .map_err(|source| InstanceError::Addr { name: name.clone(), source })?;
        vips.extend(excluded);
        let multicast = inst.unicast_peer.is_empty();
        let dsts = if multicast {
            vec![inst.mcast_dst_ip.unwrap_or(if v6 {
                IpAddr::V6(global.vrrp_mcast_group6)
            } else {
                IpAddr::V4(global.vrrp_mcast_group4)
            })]
        } else {
            inst.unicast_peer.iter().map(|p| p.addr).collect()
        };
        Ok(Spec {
            fsm: FsmConfig::from_config(inst, src),
            params,
            iface,
            vips,
            vmac,
            garp: GarpSchedule::from_config(inst, global, v6),
            dsts,
            multicast,
            v6,
            config: inst.clone(),
            notifier,
        })
    }
}

/// What the daemon tells an instance.
#[derive(Debug)]
pub enum Command {
    /// New effective priority from tracking; `None` = FAULT.
    Track(Option<u8>),
    /// From the `vrrp_sync_group`.
    Sync(SyncCmd),
    /// Stop; answered when done. With `handover` (a reload restarts the
    /// instance) nothing is undone: no priority 0, the VIPs and the VMAC
    /// stay for the new instance. Otherwise a master sends priority 0 and
    /// everything is removed.
    Shutdown { handover: bool, done: oneshot::Sender<()> },
}

pub fn state_name(s: State) -> &'static str {
    match s {
        State::Initialize => "INIT",
        State::Backup => "BACKUP",
        State::Master => "MASTER",
        State::Fault => "FAULT",
    }
}

pub struct InstanceHandle {
    pub spec: Spec,
    pub status: Arc<Mutex<Status>>,
    tx: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl InstanceHandle {
    pub fn send(&self, cmd: Command) {
        if let Err(e) = self.tx.send(cmd) {
            warn!("VRRP_Instance({}) has stopped; {:?} not delivered", self.spec.config.name, e.0);
        }
    }

    /// Stops the instance and waits until its VIPs are gone.
    pub async fn shutdown(self) {
        self.stop(false).await;
    }

    /// Stops the instance for a replacement, leaving its VIPs; returns
    /// whether it was master (the replacement then resumes as master).
    pub async fn handover(self) -> bool {
        let master = self.status.lock().unwrap().state == state_name(State::Master);
        self.stop(true).await;
        master
    }

    async fn stop(self, handover: bool) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { handover, done }).is_ok() {
            let _ = rx.await;
        }
        let _ = self.task.await;
    }
}

/// Creates the VMAC if there is one, opens the socket and starts the
/// instance's task. `track` is the tracking verdict already known for the
/// instance (`Some(None)`: FAULT), applied before the state machine starts.
/// `resume_master`: the instance replaces one that was master (a reload).
pub async fn start(
    spec: Spec,
    io: Io,
    track: Option<Option<u8>>,
    resume_master: bool,
    events: mpsc::UnboundedSender<Event>,
) -> Result<InstanceHandle, InstanceError> {
    let name = spec.config.name.clone();
    let socket_err = |source| InstanceError::Socket { name: name.clone(), source };
    // The link adverts and announcements leave through: the VMAC, unless
    // `vmac_xmit_base` keeps adverts on the base interface.
    let (announce_on, advert_on) = match &spec.vmac {
        Some(v) => {
            v.ensure(&io.netlink).await.map_err(|source| InstanceError::Vmac { name: name.clone(), source })?;
            let vmac = Interface::lookup(&v.name, &spec.params.vips).map_err(socket_err)?;
            let advert_on = if spec.config.vmac_xmit_base { spec.iface.clone() } else { vmac.clone() };
            (vmac, advert_on)
        }
        None => (spec.iface.clone(), spec.iface.clone()),
    };
    let sock = VrrpSocket::open(&advert_on, spec.v6, spec.multicast.then(|| spec.dsts[0])).map_err(socket_err)?;
    if let (false, Some(ttl)) = (spec.multicast, spec.config.unicast_ttl) {
        sock.set_unicast_ttl(ttl).map_err(socket_err)?;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = Driver::new(spec.clone(), io, announce_on, events);
    let status = driver.status.clone();
    let task = tokio::spawn(driver.run(sock, rx, track, resume_master));
    Ok(InstanceHandle { spec, status, tx, task })
}

/// What every instance shares: netlink, and the witness of the adverts on
/// the wire (the XDP program's record; None without the XDP data plane).
#[derive(Clone)]
pub struct Io {
    pub netlink: rtnetlink::Handle,
    pub addrs: Addrs,
    pub witness: Option<Arc<dyn Witness>>,
}

/// How often one reason for dropping adverts may be logged.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);
/// More packets than a default raw-socket receive buffer holds.
const DRAIN_AT_MOST: usize = 512;

struct Driver {
    fsm: Fsm,
    spec: Spec,
    /// The state machine's clock is time since this instant.
    start: Instant,
    status: Arc<Mutex<Status>>,
    events: mpsc::UnboundedSender<Event>,
    io: Io,
    /// Where gratuitous ARPs / NAs go out (the VMAC or the interface).
    announce_on: Interface,
    /// The announcements still due while master (`garp_master_*`).
    garp: Option<Announcements>,
    /// The notify scripts of the last transition (awaited briefly on stop).
    scripts: Option<tokio::task::JoinHandle<()>>,
    /// The state last reported (the state machine's, once performed).
    state: State,
    /// FAULT from our own tracking, and from a sync-group sibling.
    track_fault: bool,
    sync_fault: bool,
    /// Whether the VIPs are on; None until the first transition decides,
    /// which makes it act whatever a previous daemon left behind (a
    /// killed master's VIPs come off when this one starts as backup).
    holding: Option<bool>,
    /// Last log time and drops since, per reject reason.
    reject_log: BTreeMap<&'static str, (Instant, u64)>,
    /// The sender of the last advert the socket accepted: the only source
    /// whose XDP record may stand in for a late timer (the program does not
    /// verify checksums, the socket does).
    heard_from: Option<IpAddr>,
}

impl Driver {
    fn new(spec: Spec, io: Io, announce_on: Interface, events: mpsc::UnboundedSender<Event>) -> Driver {
        let status = Status {
            name: spec.config.name.clone(),
            interface: spec.iface.name.clone(),
            vrid: spec.params.vrid,
            version: spec.params.version.as_u8(),
            state: state_name(State::Initialize).into(),
            priority: spec.fsm.priority,
            base_priority: spec.fsm.priority,
            vips: spec.params.vips.clone(),
            ..Status::default()
        };
        Driver {
            fsm: Fsm::new(spec.fsm.clone()),
            spec,
            start: Instant::now(),
            status: Arc::new(Mutex::new(status)),
            events,
            io,
            announce_on,
            garp: None,
            scripts: None,
            state: State::Initialize,
            track_fault: false,
            sync_fault: false,
            holding: None,
            reject_log: BTreeMap::new(),
            heard_from: None,
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self, sock: VrrpSocket, mut rx: mpsc::UnboundedReceiver<Command>, track: Option<Option<u8>>, resume: bool) {
        let name = self.spec.config.name.clone();
        info!(
            "VRRP_Instance({name}) starting on {} (VRID {}, v{}, priority {}, {})",
            self.spec.iface.name,
            self.spec.params.vrid,
            self.spec.params.version.as_u8(),
            self.spec.fsm.priority,
            if self.spec.multicast { "multicast".to_string() } else { format!("unicast to {:?}", self.spec.dsts) }
        );
        if let Some(track) = track {
            self.on_track(&sock, track).await;
        }
        if resume {
            // The VIPs are already on: hold() finds them and re-announces.
            self.input(&sock, Input::ResumeMaster).await;
        } else {
            let initial_state = self.spec.config.state;
            self.input(&sock, Input::Startup { initial_state }).await;
        }
        let mut buf = vec![0u8; 2048];
        loop {
            let at = |d: Option<Duration>| d.map(|d| tokio::time::Instant::from_std(self.start + d));
            let (timer, garp_timer) = (sleep_until(at(self.fsm.next_deadline())), sleep_until(at(self.garp.as_ref().and_then(|g| g.next).map(|b| b.at))));
            // Timers before packets: a flood of adverts must not starve our
            // own adverts or the Master_Down_Timer (a socket that is always
            // readable would win every round). Adverts already queued when
            // the Master_Down_Timer fires are read first, though: after a
            // stall they, not the timer, say whether the master lives.
            tokio::select! {
                biased;
                cmd = rx.recv() => match cmd {
                    Some(Command::Track(p)) => self.on_track(&sock, p).await,
                    Some(Command::Sync(SyncCmd::Master)) => self.input(&sock, Input::SyncMaster).await,
                    Some(Command::Sync(SyncCmd::Backup)) => self.input(&sock, Input::SyncBackup).await,
                    Some(Command::Sync(SyncCmd::Fault(on))) => {
                        self.sync_fault = on;
                        self.input(&sock, Input::Fault(self.track_fault || self.sync_fault)).await;
                    }
                    Some(Command::Shutdown { handover: true, done }) => {
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Shutdown { handover: false, done }) => {
                        self.input(&sock, Input::Shutdown).await;
                        if let Some(v) = &self.spec.vmac
                            && let Err(e) = v.remove(&self.io.netlink).await
                        {
                            warn!("VRRP_Instance({name}) {e}");
                        }
                        // keepalived gives notify_stop a second before it exits.
                        if let Some(scripts) = self.scripts.take() {
                            let _ = tokio::time::timeout(notify::STOP_WAIT, scripts).await;
                        }
                        let _ = done.send(());
                        return;
                    }
                    None => return,
                },
                () = timer => {
                    if self.fsm.state() == State::Backup {
                        self.drain(&sock).await;
                    }
                    if self.fsm.next_deadline().is_some_and(|d| self.now() >= d) && !self.master_alive_per_xdp() {
                        self.input(&sock, Input::Timer).await;
                    }
                }
                () = garp_timer => self.announce(),
                got = sock.recv(&mut buf) => match got {
                    Ok(rx) => {
                        let (payload, meta) = (rx.payload.to_vec(), rx.meta);
                        self.on_packet(&sock, &payload, meta).await;
                    }
                    Err(e) => {
                        warn!("VRRP_Instance({name}) receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }

    /// Reads what the socket has queued, at most DRAIN_AT_MOST packets.
    async fn drain(&mut self, sock: &VrrpSocket) {
        let mut buf = vec![0u8; 2048];
        for _ in 0..DRAIN_AT_MOST {
            match sock.try_recv(&mut buf) {
                Ok(Some(rx)) => {
                    let (payload, meta) = (rx.payload.to_vec(), rx.meta);
                    self.on_packet(sock, &payload, meta).await;
                }
                Ok(None) => return,
                Err(e) => {
                    warn!("VRRP_Instance({}) receive failed: {e}", self.spec.config.name);
                    return;
                }
            }
        }
    }

    async fn input(&mut self, sock: &VrrpSocket, input: Input) {
        let actions = self.fsm.handle(self.now(), input);
        self.perform(sock, actions).await;
    }

    /// The Master_Down_Timer expired, but did the master really go quiet?
    /// The XDP program records every valid advert as it arrives, however
    /// late this task runs; a record that would have kept us backup means
    /// we were starved, not the master dead. It is then taken as received
    /// (at its arrival time) instead of the timer, but only from the source
    /// the socket last accepted an advert from: the program checks what the
    /// socket checks except the checksum.
    fn master_alive_per_xdp(&mut self) -> bool {
        let Some(witness) = self.io.witness.as_ref().filter(|_| self.fsm.state() == State::Backup) else {
            return false;
        };
        let seen = match witness.last_advert(self.spec.iface.index, self.spec.family(), self.spec.params.vrid) {
            Ok(Some(seen)) => seen,
            Ok(None) => return false,
            Err(e) => {
                warn!("VRRP_Instance({}) reading the XDP advert record: {e}", self.spec.config.name);
                return false;
            }
        };
        let preempt = !self.spec.config.nopreempt;
        if !seen.keeps_backup(self.heard_from, self.fsm.master_down_interval(), self.fsm.priority(), preempt) {
            return false;
        }
        let now = self.now();
        let at = now.saturating_sub(seen.age);
        let input = Input::AdvertReceived { priority: seen.priority, src_ip: seen.src, max_advert_int: seen.interval };
        let actions = self.fsm.handle(at, input);
        debug_assert!(actions.is_empty(), "a backup answers an advert with no action");
        self.status.lock().unwrap().late_timer_saves += 1;
        info!(
            "VRRP_Instance({}) Master_Down_Timer fired late, but XDP saw {}'s advert (priority {}) {:?} ago: staying BACKUP",
            self.spec.config.name, seen.src, seen.priority, seen.age
        );
        true
    }

    async fn on_track(&mut self, sock: &VrrpSocket, priority: Option<u8>) {
        let now = self.now();
        let was = std::mem::replace(&mut self.track_fault, priority.is_none());
        if was != self.track_fault {
            // The sync group needs to know even when the state stays (already
            // in FAULT through a sibling).
            self.report(self.state);
        }
        let mut actions = self.fsm.handle(now, Input::Fault(self.track_fault || self.sync_fault));
        if let Some(p) = priority {
            actions.extend(self.fsm.handle(now, Input::PriorityChanged(p)));
        }
        self.status.lock().unwrap().priority = self.fsm.priority();
        self.perform(sock, actions).await;
    }

    async fn on_packet(&mut self, sock: &VrrpSocket, payload: &[u8], meta: RxMeta) {
        // The socket sees every VRRP packet on the link: other VRIDs belong
        // to other instances or routers, not to our error counters.
        if payload.get(1) != Some(&self.spec.params.vrid) || meta.src == self.spec.fsm.primary_ip {
            return;
        }
        match packet::receive(payload, &meta, &self.spec.params) {
            Ok(advert) => {
                self.heard_from = Some(meta.src);
                {
                    let mut st = self.status.lock().unwrap();
                    st.adverts_received += 1;
                    if advert.priority != 0 && self.fsm.state() != State::Master {
                        st.master = Some(meta.src);
                    }
                }
                let input = Input::AdvertReceived {
                    priority: advert.priority,
                    src_ip: meta.src,
                    max_advert_int: advert.interval(),
                };
                let actions = self.fsm.handle(self.now(), input);
                self.perform(sock, actions).await;
            }
            Err(reject) => self.on_reject(&reject, meta.src),
        }
    }

    fn on_reject(&mut self, reject: &Reject, src: IpAddr) {
        let reason = reject.counter();
        *self.status.lock().unwrap().rejects.entry(reason.to_string()).or_default() += 1;
        let now = Instant::now();
        let entry = self.reject_log.entry(reason).or_insert((now - REJECT_LOG_EVERY, 0));
        entry.1 += 1;
        if now.duration_since(entry.0) >= REJECT_LOG_EVERY {
            let name = &self.spec.config.name;
            let more = entry.1 - 1;
            let more = if more > 0 { format!(" ({more} more since the last report)") } else { String::new() };
            warn!("VRRP_Instance({name}) dropped an advert from {src}: {reject}{more}");
            *entry = (now, 0);
        }
    }

    async fn perform(&mut self, sock: &VrrpSocket, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => self.send(sock, priority),
                Action::SendPriorityZero => self.send(sock, 0),
                Action::BecomeMaster => {
                    self.hold(true).await;
                    self.transition(State::Master);
                }
                Action::BecomeBackup => {
                    self.hold(false).await;
                    self.transition(State::Backup);
                }
                Action::EnterFault => {
                    self.hold(false).await;
                    self.transition(State::Fault);
                }
                Action::Stop => {
                    self.hold(false).await;
                    self.transition(State::Initialize);
                }
            }
        }
    }

    fn send(&mut self, sock: &VrrpSocket, priority: u8) {
        let advert = self.spec.params.advert(priority, self.fsm.advert_interval());
        let src = self.spec.fsm.primary_ip;
        let mut sent = 0;
        let mut failed = 0;
        for &dst in &self.spec.dsts {
            let res = advert
                .encode(src, dst)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))
                .and_then(|bytes| sock.send(&bytes, src, dst));
            match res {
                Ok(()) => sent += 1,
                Err(e) => {
                    failed += 1;
                    warn!("VRRP_Instance({}) advert to {dst} failed: {e}", self.spec.config.name);
                }
            }
        }
        let mut st = self.status.lock().unwrap();
        st.adverts_sent += sent;
        st.send_errors += failed;
    }

    /// Adds (master) or removes the VIPs; becoming master also starts the
    /// gratuitous ARP / NA schedule, leaving it stops it.
    async fn hold(&mut self, on: bool) {
        if self.holding == Some(on) {
            return;
        }
        let name = &self.spec.config.name;
        for vip in &self.spec.vips {
            let res = if on { self.io.addrs.add(vip).await } else { self.io.addrs.remove(vip).await };
            if let Err(e) = res {
                warn!("VRRP_Instance({name}) {e}");
            }
        }
        self.holding = Some(on);
        self.garp = on.then(|| {
            let mut rest = Box::new(self.spec.garp.bursts(self.now()));
            Announcements { next: rest.next(), rest }
        });
        if on {
            self.announce();
        }
    }

    /// Sends every burst that is due, in the background (a burst with
    /// `vrrp_garp_interval` spacing takes a while).
    fn announce(&mut self) {
        let now = self.now();
        let Some(g) = self.garp.as_mut() else { return };
        let mut count = 0;
        while let Some(b) = g.next.filter(|b| b.at <= now) {
            count += b.count;
            g.next = g.rest.next();
        }
        if count == 0 {
            return;
        }
        let ips: Vec<IpAddr> = self.spec.vips.iter().map(|v| v.addr).collect();
        let (ifindex, mac, spacing) = (self.announce_on.index, self.announce_on.mac, self.spec.garp.spacing);
        let name = self.spec.config.name.clone();
        let on = self.announce_on.name.clone();
        tokio::spawn(async move {
            match announce::send_burst(ifindex, mac, &ips, count, spacing).await {
                Ok(()) => info!("VRRP_Instance({name}) sent {count} gratuitous ARP / NA round(s) on {on} for {ips:?}"),
                Err(e) => warn!("VRRP_Instance({name}) gratuitous ARP / NA on {on}: {e}"),
            }
        });
    }

    fn transition(&mut self, to: State) {
        let priority = self.fsm.priority();
        let from = std::mem::replace(&mut self.state, to);
        {
            let mut st = self.status.lock().unwrap();
            st.state = state_name(to).into();
            st.priority = priority;
            st.transitions += 1;
            if to == State::Master {
                st.master = Some(self.spec.fsm.primary_ip);
            } else if to != State::Backup {
                st.master = None;
            }
        }
        let name = &self.spec.config.name;
        let word = if to == State::Initialize { "STOP" } else { state_name(to) };
        info!("VRRP_Instance({name}) Entering {word} STATE (priority {priority})");
        let state = NotifyState::of(to);
        self.scripts = Some(self.spec.notifier.run(Subject::Instance(name), state, priority));
        self.report_from(from, to);
    }

    fn report(&self, state: State) {
        self.report_from(state, state);
    }

    fn report_from(&self, from: State, to: State) {
        let event = Event {
            instance: self.spec.config.name.clone(),
            from,
            to,
            priority: self.fsm.priority(),
            own_fault: self.track_fault,
        };
        // Fails only once the manager is gone, and nobody is left to tell.
        let _ = self.events.send(event);
    }
}

/// The `garp_master_*` bursts still due, the next one apart.
struct Announcements {
    next: Option<Burst>,
    rest: Box<dyn Iterator<Item = Burst> + Send>,
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON_LO: &str =
        "vrrp_instance VI {\n interface lo\n virtual_router_id 7\n priority 100\n virtual_ipaddress {\n  10.0.0.7\n }\n}\n";

    /// An instance on lo, of `text`; nothing of it touches the network.
    fn spec(text: &str) -> Spec {
        let cfg = crate::config::load_str(text, "t.conf", &Default::default()).config;
        let notifier = Notifier::resolve(&cfg.instances[0].notify, &cfg.global);
        Spec::resolve(&cfg.instances[0], &cfg.global, notifier).unwrap()
    }

    fn driver(spec: Spec, events: mpsc::UnboundedSender<Event>) -> Driver {
        let (_, netlink, _) = rtnetlink::new_connection().unwrap();
        let io = Io { addrs: Addrs::with_handle(netlink.clone()), netlink, witness: None };
        Driver::new(spec.clone(), io, spec.iface, events)
    }

    #[test]
    fn a_transition_looks_up_no_user_on_the_vrrp_thread() {
        let text = format!("global_defs {{\n script_user root\n}}\n{}", ON_LO.replace("}\n}", "}\n notify_master /bin/true\n}"));
        let spec = spec(&text);
        let on_vrrp_thread = std::thread::Builder::new().name(super::super::manager::THREAD.into()).spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let (events, _rx) = mpsc::unbounded_channel();
                driver(spec, events).transition(State::Master);
            })
        });
        on_vrrp_thread.unwrap().join().expect("the transition looked up a user on the VRRP thread");
    }

    #[tokio::test]
    async fn every_transition_reaches_a_manager_that_is_not_reading() {
        let (events, mut rx) = mpsc::unbounded_channel();
        let mut d = driver(spec(ON_LO), events);
        // Far more than any channel of the old daemon held (256).
        let states = [State::Backup, State::Master, State::Fault];
        for i in 0..1000 {
            d.transition(states[i % 3]);
        }
        let mut from = State::Initialize;
        for i in 0..1000 {
            let e = rx.try_recv().unwrap_or_else(|e| panic!("transition {i} lost: {e}"));
            assert_eq!((e.from, e.to), (from, states[i % 3]), "transition {i}");
            from = e.to;
        }
    }
}
