//! The daemon's view of VRRP: starts, restarts and stops the configured
//! instances (see [`super::instance`]) as the configuration changes.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    addr::Addrs,
    instance::{self, Command, Event, InstanceError, InstanceHandle, Io, Spec},
    sync::{GroupChange, SyncGroups},
};
use crate::{
    config::Config,
    dataplane::xdp::{VrrpWatch, VrrpWitness},
    status::VrrpView,
};

pub struct Vrrp {
    instances: BTreeMap<String, InstanceHandle>,
    events: mpsc::Sender<Event>,
    io: Io,
    /// The last tracking verdict of each instance (`None` = FAULT), for
    /// instances that start after it arrived.
    verdicts: BTreeMap<String, Option<u8>>,
    sync: SyncGroups,
    /// Instances that could not start (no interface yet, no address on it),
    /// with why; retried by [`Vrrp::retry`].
    failed: BTreeMap<String, String>,
}

impl Vrrp {
    /// Opens the netlink connection the instances add and remove VIPs with.
    /// `witness`: the XDP program's advert record, when XDP runs.
    pub fn new(events: mpsc::Sender<Event>, witness: Option<VrrpWitness>) -> std::io::Result<Vrrp> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Vrrp {
            instances: BTreeMap::new(),
            events,
            io: Io { addrs: Addrs::with_handle(handle.clone()), netlink: handle, witness: witness.map(Arc::new) },
            verdicts: BTreeMap::new(),
            sync: SyncGroups::default(),
            failed: BTreeMap::new(),
        })
    }

    /// Makes the running instances those of `config`: an unchanged instance
    /// keeps running (its state and VIPs untouched), a changed one restarts,
    /// a removed one stops. Instances that cannot start are returned, the
    /// others still run.
    pub async fn apply(&mut self, config: &Config) -> Vec<InstanceError> {
        let errors = self.reconcile(config).await;
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
        let errors = self.reconcile(config).await;
        self.failed = errors.iter().map(|e| (e.instance().to_string(), e.to_string())).collect();
        for name in before.keys().filter(|n| !self.failed.contains_key(*n) && self.instances.contains_key(*n)) {
            info!("VRRP_Instance({name}) started on retry");
        }
        errors.into_iter().filter(|e| before.get(e.instance()) != Some(&e.to_string())).collect()
    }

    async fn reconcile(&mut self, config: &Config) -> Vec<InstanceError> {
        self.sync.configure(&config.sync_groups);
        let mut errors = Vec::new();
        let mut wanted = BTreeMap::new();
        for inst in &config.instances {
            match Spec::resolve(inst, &config.global) {
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
        let mut resume = std::collections::BTreeSet::new();
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
            match instance::start(spec, self.io.clone(), track, resume, self.events.clone()).await {
                Ok(h) => {
                    self.instances.insert(name, h);
                }
                Err(e) => errors.push(e),
            }
        }
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

    /// Notes an instance's transition and makes its sync-group siblings
    /// follow (see [`SyncGroups`]). Returns the group's change of state.
    pub fn on_event(&mut self, e: &Event) -> Option<GroupChange> {
        let (cmds, change) = self.sync.on_event(e);
        for (member, cmd) in cmds {
            if let Some(h) = self.instances.get(&member) {
                h.send(Command::Sync(cmd));
            }
        }
        change
    }

    /// A tracking verdict for an instance (`None` = FAULT).
    pub fn track(&mut self, instance: &str, priority: Option<u8>) {
        self.verdicts.insert(instance.to_string(), priority);
        if let Some(h) = self.instances.get(instance) {
            h.send(Command::Track(priority));
        }
    }

    /// Forgets the verdicts: a new tracker (after a reload) reports afresh.
    pub fn clear_verdicts(&mut self) {
        self.verdicts.clear();
    }

    /// Stops every instance: a master sends priority 0 and drops its VIPs.
    pub async fn shutdown(&mut self) {
        for (_, h) in std::mem::take(&mut self.instances) {
            h.shutdown().await;
        }
    }

    /// (base interface index, VMAC) of every `use_vmac` instance that is
    /// master now: frames to those MACs are ours to forward.
    pub fn master_vmacs(&self) -> Vec<(u32, [u8; 6])> {
        self.instances
            .values()
            .filter(|h| h.status.lock().unwrap().state == instance::state_name(super::State::Master))
            .filter_map(|h| h.spec.vmac.as_ref().map(|v| (h.spec.iface.index, v.mac)))
            .collect()
    }

    /// The running instances, as the XDP advert fast path must know them.
    pub fn watches(&self) -> Vec<VrrpWatch> {
        self.instances.values().map(|h| h.spec.watch()).collect()
    }

    pub fn status(&self) -> Vec<VrrpView> {
        self.instances.values().map(|h| h.status.lock().unwrap().clone()).collect()
    }
}
