//! The daemon's view of VRRP: starts, restarts and stops the configured
//! instances (see [`super::instance`]) as the configuration changes.
//!
//! Everything that keeps VRRP's time runs on a thread of its own with its
//! own tokio runtime: every instance's task (socket, timers, adverts, VIPs,
//! GARP), the sync groups and the tracker. The daemon's main loop does
//! blocking work (map writes, IPVS dumps, config loading, metrics), and
//! none of it can delay an advert. [`Vrrp`] is the daemon's handle: its
//! requests go to the thread over a channel, transitions come back as
//! [`Report`]s, and what `status`, `watches` and `master_vmacs` read is
//! shared with the thread.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::{
    addr::Addrs,
    event::Event,
    instance::{self, Command, InstanceError, InstanceHandle, Io, Spec},
    notify::Notifier,
    sync::{GroupChange, SyncGroups},
    track::{InitFiles, TrackUpdate, Tracker, Tracking},
    witness::{VrrpWatch, Witness},
};
use crate::{
    config::{Config, GlobalDefs, TrackFile, VrrpInstance, VrrpScript, VrrpSyncGroup},
    status::VrrpView,
};

/// The name of the VRRP thread.
pub const THREAD: &str = "vrrp";

/// What the daemon hears of VRRP: an instance's transition, which its sync
/// group has already followed, and the group's change of state it caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub event: Event,
    pub group: Option<GroupChange>,
}

pub struct Vrrp {
    requests: mpsc::UnboundedSender<Request>,
    running: Running,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Instances that could not start (no interface yet, no address on it),
    /// with why; retried by [`Vrrp::retry`].
    failed: BTreeMap<String, String>,
    /// A configuration was applied: later ones are reloads.
    applied: bool,
}

/// The running instances, as the VRRP thread last published them.
type Running = Arc<Mutex<BTreeMap<String, Published>>>;

struct Published {
    spec: Spec,
    status: Arc<Mutex<VrrpView>>,
}

/// Every part of a configuration VRRP runs from: instances, sync groups,
/// what they track, and the globals they read. The daemon's desired state
/// holds it, so that [`Vrrp::apply`] runs exactly when it changed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Setup {
    pub global: GlobalDefs,
    pub vrrp_scripts: Vec<VrrpScript>,
    pub track_files: Vec<TrackFile>,
    pub sync_groups: Vec<VrrpSyncGroup>,
    pub instances: Vec<VrrpInstance>,
}

impl Setup {
    pub fn of(config: &Config) -> Setup {
        Setup {
            global: config.global.clone(),
            vrrp_scripts: config.vrrp_scripts.clone(),
            track_files: config.track_files.clone(),
            sync_groups: config.sync_groups.clone(),
            instances: config.instances.clone(),
        }
    }
}

/// The part of the configuration VRRP runs from.
struct Wanted {
    /// Each with its notify scripts' users looked up: made on the daemon's
    /// thread, as a lookup may block.
    instances: Vec<(VrrpInstance, Notifier)>,
    sync_groups: Vec<VrrpSyncGroup>,
    global: GlobalDefs,
}

impl Wanted {
    fn of(config: &Config) -> Wanted {
        Wanted {
            instances: config.instances.iter().map(|i| (i.clone(), Notifier::resolve(&i.notify, &config.global))).collect(),
            sync_groups: config.sync_groups.clone(),
            global: config.global.clone(),
        }
    }
}

enum Request {
    /// A new configuration; `tracker: None` runs without tracking.
    Apply { wanted: Wanted, tracker: Option<Tracker>, done: oneshot::Sender<Vec<InstanceError>> },
    /// Start what could not start, tracking unchanged.
    Retry { wanted: Wanted, done: oneshot::Sender<Vec<InstanceError>> },
    /// Every instance stops (a master sends priority 0, drops its VIPs).
    Shutdown { done: oneshot::Sender<()> },
}

impl Vrrp {
    /// Starts the VRRP thread; its netlink connection (for the VIPs) and
    /// every socket are made on its runtime. Transitions go to `events`.
    /// `witness`: the XDP program's advert record, when XDP runs.
    pub fn new(events: mpsc::UnboundedSender<Report>, witness: Option<impl Witness + 'static>) -> std::io::Result<Vrrp> {
        let witness = witness.map(|w| Arc::new(w) as Arc<dyn Witness>);
        let (requests, rx) = mpsc::unbounded_channel();
        let running = Running::default();
        let shared = Arc::clone(&running);
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name(THREAD.into()).spawn(move || {
            let failed = ready_tx.clone();
            let run = || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async move {
                    let core = Core::new(events, witness, shared)?;
                    let _ = ready_tx.send(Ok(()));
                    core.run(rx).await;
                    Ok(())
                })
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let _ = failed.send(Err(e));
                }
                // Nothing would send adverts for the VIPs held: better gone,
                // so a backup takes over, than a master that went quiet.
                Err(_) => {
                    error!("the VRRP thread panicked; exiting");
                    std::process::abort();
                }
            }
        })?;
        ready.recv().map_err(|_| std::io::Error::other("the VRRP thread ended while starting"))??;
        Ok(Vrrp { requests, running, thread: Some(thread), failed: BTreeMap::new(), applied: false })
    }

    /// Makes the running instances those of `config`: an unchanged instance
    /// keeps running (its state and VIPs untouched), a changed one restarts,
    /// a removed one stops. Tracking follows the configuration, keeping the
    /// state of what did not change. Instances that cannot start are
    /// returned, the others still run.
    pub async fn apply(&mut self, config: &Config) -> Vec<InstanceError> {
        // Here, on the daemon's thread: user lookups (tracked and notify
        // scripts) and init_file writes.
        let init = if self.applied { InitFiles::Reload } else { InitFiles::Start };
        self.applied = true;
        let tracker = Tracker::new(config, init)
            .inspect_err(|e| error!("VRRP tracking: {e}; instances run at their configured priority"))
            .ok();
        let errors = self.request(|done| Request::Apply { wanted: Wanted::of(config), tracker, done }).await;
        self.failed = errors.iter().map(|e| (e.instance().to_string(), e.to_string())).collect();
        errors
    }

    /// Tries the instances that could not start again (an interface that
    /// appeared, an address that was added). Returns the errors that are
    /// new or different since the last attempt, so a lasting one is logged once.
    pub async fn retry(&mut self, config: &Config) -> Vec<InstanceError> {
        if self.failed.is_empty() {
            return Vec::new();
        }
        let before = std::mem::take(&mut self.failed);
        let errors = self.request(|done| Request::Retry { wanted: Wanted::of(config), done }).await;
        self.failed = errors.iter().map(|e| (e.instance().to_string(), e.to_string())).collect();
        let running = self.running.lock().unwrap();
        for name in before.keys().filter(|n| !self.failed.contains_key(*n) && running.contains_key(*n)) {
            info!("VRRP_Instance({name}) started on retry");
        }
        errors.into_iter().filter(|e| before.get(e.instance()) != Some(&e.to_string())).collect()
    }

    /// Stops every instance: a master sends priority 0 and drops its VIPs.
    /// Returns when that is done and the VRRP thread has ended.
    pub async fn shutdown(&mut self) {
        self.request(|done| Request::Shutdown { done }).await;
        if let Some(t) = self.thread.take() {
            // It ends right after answering.
            let _ = t.join();
        }
    }

    /// Sends a request to the VRRP thread and waits for its answer (the
    /// default when the thread has ended).
    async fn request<T: Default>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> T {
        let (done, answer) = oneshot::channel();
        if self.requests.send(make(done)).is_err() {
            return T::default();
        }
        answer.await.unwrap_or_default()
    }

    /// (base interface index, VMAC) of every `use_vmac` instance that is
    /// master now: frames to those MACs are ours to forward.
    pub fn master_vmacs(&self) -> Vec<(u32, [u8; 6])> {
        self.running
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.status.lock().unwrap().state == instance::state_name(super::State::Master))
            .filter_map(|p| p.spec.vmac.as_ref().map(|v| (p.spec.iface.index, v.mac)))
            .collect()
    }

    /// The running instances, as the XDP advert fast path must know them.
    pub fn watches(&self) -> Vec<VrrpWatch> {
        self.running.lock().unwrap().values().map(|p| p.spec.watch()).collect()
    }

    pub fn status(&self) -> Vec<VrrpView> {
        self.running.lock().unwrap().values().map(|p| p.status.lock().unwrap().clone()).collect()
    }
}

/// The VRRP thread's state: the instances, their sync groups and tracking.
struct Core {
    instances: BTreeMap<String, InstanceHandle>,
    io: Io,
    /// From the instances, and to the daemon.
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    reports: mpsc::UnboundedSender<Report>,
    tracking: Option<Tracking>,
    track_tx: mpsc::UnboundedSender<TrackUpdate>,
    track: mpsc::UnboundedReceiver<TrackUpdate>,
    /// The last tracking verdict of each instance (`None` = FAULT), for
    /// instances that start after it arrived.
    verdicts: BTreeMap<String, Option<u8>>,
    sync: SyncGroups,
    running: Running,
}

impl Core {
    fn new(reports: mpsc::UnboundedSender<Report>, witness: Option<Arc<dyn Witness>>, running: Running) -> std::io::Result<Core> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (track_tx, track) = mpsc::unbounded_channel();
        Ok(Core {
            instances: BTreeMap::new(),
            io: Io { addrs: Addrs::with_handle(handle.clone()), netlink: handle, witness },
            events_tx,
            events,
            reports,
            tracking: None,
            track_tx,
            track,
            verdicts: BTreeMap::new(),
            sync: SyncGroups::default(),
            running,
        })
    }

    /// Until shutdown, or until the daemon's handle is gone (which stops
    /// the instances as a shutdown does).
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        loop {
            tokio::select! {
                Some(e) = self.events.recv() => self.on_event(e),
                Some(u) = self.track.recv() => self.on_track(u),
                req = requests.recv() => match req {
                    Some(Request::Apply { wanted, tracker, done }) => {
                        self.set_tracking(tracker, &wanted).await;
                        let errors = self.reconcile(&wanted).await;
                        let _ = done.send(errors);
                    }
                    Some(Request::Retry { wanted, done }) => {
                        let errors = self.reconcile(&wanted).await;
                        let _ = done.send(errors);
                    }
                    Some(Request::Shutdown { done }) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
            }
        }
    }

    /// An instance's transition: its sync-group siblings follow (see
    /// [`SyncGroups`]), then the daemon hears of it.
    fn on_event(&mut self, event: Event) {
        let (cmds, group) = self.sync.on_event(&event);
        for (member, cmd) in cmds {
            if let Some(h) = self.instances.get(&member) {
                h.send(Command::Sync(cmd));
            }
        }
        let _ = self.reports.send(Report { event, group });
    }

    /// A tracking verdict for an instance (`None` = FAULT).
    fn on_track(&mut self, u: TrackUpdate) {
        self.verdicts.insert(u.instance.clone(), u.priority);
        if let Some(h) = self.instances.get(&u.instance) {
            h.send(Command::Track(u.priority));
        }
    }

    /// Tracks the new configuration (what did not change keeps its state
    /// and verdict), and takes in the verdicts that changed before any
    /// instance starts, so it starts with them.
    async fn set_tracking(&mut self, tracker: Option<Tracker>, wanted: &Wanted) {
        let Some(tracker) = tracker else {
            self.tracking = None;
            self.verdicts.clear();
            return;
        };
        let tx = self.track_tx.clone();
        self.tracking.get_or_insert_with(|| Tracking::spawn(tx)).set(tracker).await;
        // In the order sent: what arrived before the new configuration first.
        while let Ok(u) = self.track.try_recv() {
            self.on_track(u);
        }
        self.verdicts.retain(|name, _| wanted.instances.iter().any(|(i, _)| &i.name == name));
    }

    async fn reconcile(&mut self, config: &Wanted) -> Vec<InstanceError> {
        self.sync.configure(&config.sync_groups);
        let mut errors = Vec::new();
        let mut wanted = BTreeMap::new();
        for (inst, notifier) in &config.instances {
            match Spec::resolve(inst, &config.global, notifier.clone()) {
                Ok(spec) => {
                    wanted.insert(inst.name.clone(), spec);
                }
                Err(e) => errors.push(e),
            }
        }
        let stale: Vec<String> = self
            .instances
            .iter()
            .filter(|(name, h)| wanted.get(*name).is_none_or(|s| s.config != h.spec.config || s.iface != h.spec.iface))
            .map(|(name, _)| name.clone())
            .collect();
        let mut resume = BTreeSet::new();
        for name in stale {
            let Some(h) = self.instances.remove(&name) else { continue };
            self.sync.forget(&name);
            let Some(new) = wanted.get(&name) else {
                info!("VRRP_Instance({name}) stopping: no longer configured");
                h.shutdown().await;
                continue;
            };
            // Changed: the new instance takes over where this one is, so a
            // reload never makes the peers see the master leave.
            info!("VRRP_Instance({name}) restarting: its configuration changed");
            let old = h.spec.clone();
            if h.handover().await {
                resume.insert(name.clone());
            }
            self.release_leftovers(&old, new).await;
        }
        for (name, spec) in wanted {
            if self.instances.contains_key(&name) {
                continue;
            }
            let track = self.verdicts.get(&name).copied();
            let resume = resume.contains(&name);
            match instance::start(spec, self.io.clone(), track, resume, self.events_tx.clone()).await {
                Ok(h) => {
                    self.instances.insert(name, h);
                }
                Err(e) => errors.push(e),
            }
        }
        self.publish();
        errors
    }

    /// What a handed-over instance held that its replacement will not:
    /// VIPs no longer configured, a VMAC no longer used.
    async fn release_leftovers(&self, old: &Spec, new: &Spec) {
        let name = &old.config.name;
        for vip in old.vips.iter().filter(|v| !new.vips.contains(v)) {
            if let Err(e) = self.io.addrs.remove(vip).await {
                warn!("VRRP_Instance({name}) {e}");
            }
        }
        if let Some(v) = old.vmac.as_ref().filter(|v| new.vmac.as_ref() != Some(*v))
            && let Err(e) = v.remove(&self.io.netlink).await
        {
            warn!("VRRP_Instance({name}) {e}");
        }
    }

    async fn shutdown(&mut self) {
        for (_, h) in std::mem::take(&mut self.instances) {
            h.shutdown().await;
        }
        self.publish();
    }

    /// Lets the daemon see the instances as they run now.
    fn publish(&self) {
        *self.running.lock().unwrap() = self
            .instances
            .iter()
            .map(|(name, h)| (name.clone(), Published { spec: h.spec.clone(), status: Arc::clone(&h.status) }))
            .collect();
    }
}
