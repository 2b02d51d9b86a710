//! Tracking: `track_script`, `track_interface` and `track_file` of VRRP
//! instances and sync groups, turned into each instance's effective
//! priority or FAULT exactly as keepalived 2.2.7 computes them
//! (vrrp_track.c, track_file.c).
//!
//! Pure: [`TrackPlan::from_config`] (which objects each instance tracks,
//! with which weight) and [`TrackPlan::evaluate`] (priority or FAULT from
//! the objects' current [`Status`]); [`ScriptCounter`] is the rise/fall
//! counter. I/O: [`Tracker`] runs the scripts, reads links on every link
//! event (and every second) and files every second, and sends a
//! [`TrackUpdate`] whenever an instance's verdict changes.
//!
//! keepalived's rules, with `m` = -1 for `reverse`, else 1:
//! - script / interface, weight 0: FAULT while failed (reverse: while OK);
//!   weight > 0 adds `weight*m` while OK, weight < 0 adds `weight*m` while
//!   failed;
//! - file with value `v`, weight 0: FAULT while `v != 0` (reverse: while
//!   `v == 0`); otherwise `v*weight*m` clamped to -254..=253 is added, and
//!   -254 means FAULT;
//! - the sum is added to the base priority and clamped to 1..=254; an owner
//!   (255) keeps 255;
//! - the instance's own interface is tracked with weight 0 unless
//!   `dont_track_primary`;
//! - in a sync group without `sync_group_tracking_weight`, and for an owner,
//!   weighted objects of the instance are ignored (interfaces and files with
//!   the default weight become weight 0); a group's own objects apply to
//!   every member (weights cleared when a member is an owner); a member in
//!   FAULT puts the whole group in FAULT;
//! - a weight-0 script that has not finished its first run holds the
//!   instance back (keepalived keeps it in INIT): no verdict yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::fsm::{Input, PRIORITY_OWNER, clamp_priority};
use super::notify::script_ids;
use crate::check::misc::{ScriptOutcome, run_script};
use crate::config::{Config, Script, TrackFile, Tracked, VrrpScript};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackError {
    #[error("vrrp_instance {instance}: track_script {name}: no vrrp_script of that name")]
    UnknownScript { instance: String, name: String },
    #[error("vrrp_instance {instance}: track_file {name}: no track_file of that name")]
    UnknownFile { instance: String, name: String },
    #[error("vrrp_script {name}: has no `script`")]
    NoCommand { name: String },
    #[error("track_file {name}: has no `file`")]
    NoPath { name: String },
    #[error("vrrp_script {name}: {reason}")]
    RunAs { name: String, reason: String },
    #[error("track_file {name}: init_file {path}: {reason}")]
    InitFile {
        name: String,
        path: String,
        reason: String,
    },
}

/// A tracked object, by its configured name (interface name for links).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Script(String),
    Interface(String),
    File(String),
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Script(n) => write!(f, "script {n}"),
            Object::Interface(n) => write!(f, "interface {n}"),
            Object::File(n) => write!(f, "track_file {n}"),
        }
    }
}

/// One tracked object of an instance, with the weight that applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub object: Object,
    pub weight: i32,
    pub reverse: bool,
}

/// What one instance tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlan {
    pub instance: String,
    pub base: u8,
    pub group: Option<String>,
    pub entries: Vec<Entry>,
}

/// Every instance's tracked objects, resolved from the config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackPlan {
    pub instances: Vec<InstancePlan>,
}

/// The current state of the tracked objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `None`: no result yet (first run not finished).
    pub scripts: HashMap<String, Option<bool>>,
    /// Link up (IFF_UP and carrier); an unknown interface is down.
    pub links: HashMap<String, bool>,
    /// Value read from the file; a missing file reads 0.
    pub files: HashMap<String, i64>,
}

/// An instance's tracking verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A weight-0 script has not reported yet.
    Pending,
    /// FAULT, and why.
    Fault(String),
    Priority(u8),
}

impl TrackPlan {
    /// Which objects each instance tracks, with keepalived's defaults and
    /// sync-group / owner rules (see the module doc).
    pub fn from_config(cfg: &Config) -> Result<TrackPlan, TrackError> {
        let mut instances = Vec::new();
        for inst in &cfg.instances {
            let group = cfg
                .sync_groups
                .iter()
                .find(|g| g.members.contains(&inst.name));
            let owner = inst.priority == PRIORITY_OWNER;
            let unweighted = owner || group.is_some_and(|g| !g.sync_group_tracking_weight);
            let mut entries = Vec::new();
            if !inst.dont_track_primary
                && let Some(i) = &inst.interface
            {
                entries.push(Entry {
                    object: Object::Interface(i.clone()),
                    weight: 0,
                    reverse: false,
                });
            }
            let own = resolve(
                cfg,
                &inst.name,
                &inst.track_interface,
                &inst.track_script,
                &inst.track_file,
            )?;
            for (e, default_weight) in own {
                let weight = match &e.object {
                    _ if e.weight == 0 || !unweighted => e.weight,
                    // An owner stops tracking a weighted interface; a sync
                    // group tracks it with weight 0.
                    Object::Interface(_)
                        if owner && group.is_none_or(|g| g.sync_group_tracking_weight) =>
                    {
                        continue;
                    }
                    Object::Interface(_) => 0,
                    Object::File(_) if default_weight => 0,
                    Object::Script(_) | Object::File(_) => continue,
                };
                entries.push(Entry { weight, ..e });
            }
            if let Some(g) = group {
                let has_owner = cfg
                    .instances
                    .iter()
                    .any(|i| g.members.contains(&i.name) && i.priority == PRIORITY_OWNER);
                for (e, _) in resolve(
                    cfg,
                    &inst.name,
                    &g.track_interface,
                    &g.track_script,
                    &g.track_file,
                )? {
                    let weight = if has_owner { 0 } else { e.weight };
                    entries.push(Entry { weight, ..e });
                }
            }
            instances.push(InstancePlan {
                instance: inst.name.clone(),
                base: inst.priority,
                group: group.map(|g| g.name.clone()),
                entries,
            });
        }
        Ok(TrackPlan { instances })
    }

    /// Every object some instance tracks.
    pub fn objects(&self) -> HashSet<Object> {
        self.instances
            .iter()
            .flat_map(|i| i.entries.iter().map(|e| e.object.clone()))
            .collect()
    }

    /// Each instance's verdict from the objects' status, sync groups applied.
    pub fn evaluate(&self, status: &Status) -> BTreeMap<String, Verdict> {
        let mut out: BTreeMap<String, Verdict> = self
            .instances
            .iter()
            .map(|i| (i.instance.clone(), evaluate_instance(i, status)))
            .collect();
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for i in &self.instances {
            if let Some(g) = &i.group {
                groups.entry(g).or_default().push(&i.instance);
            }
        }
        for (g, members) in groups {
            let fault = members.iter().find_map(|m| match &out[*m] {
                Verdict::Fault(why) => Some(format!("sync group {g}: {m}: {why}")),
                _ => None,
            });
            let pending = members.iter().any(|m| out[*m] == Verdict::Pending);
            for m in members {
                match (&fault, out[m].clone()) {
                    (_, Verdict::Fault(_)) => {}
                    (Some(why), _) => {
                        out.insert(m.to_string(), Verdict::Fault(why.clone()));
                    }
                    (None, _) if pending => {
                        out.insert(m.to_string(), Verdict::Pending);
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// Entries from `track_*` blocks; the flag says the file weight was the
/// track_file's default (1) rather than written.
fn resolve(
    cfg: &Config,
    instance: &str,
    ifs: &[Tracked],
    scripts: &[Tracked],
    files: &[Tracked],
) -> Result<Vec<(Entry, bool)>, TrackError> {
    let mut out = Vec::new();
    for t in ifs {
        let e = Entry {
            object: Object::Interface(t.name.clone()),
            weight: t.weight.unwrap_or(0),
            reverse: t.reverse,
        };
        out.push((e, false));
    }
    for t in scripts {
        let s = find_script(cfg, &t.name).ok_or_else(|| TrackError::UnknownScript {
            instance: instance.to_string(),
            name: t.name.clone(),
        })?;
        // keepalived starts from the script's reverse; `noreverse` is not
        // kept by the config model, so it cannot clear it here.
        let e = Entry {
            object: Object::Script(t.name.clone()),
            weight: t.weight.unwrap_or(s.weight),
            reverse: t.reverse || s.weight_reverse,
        };
        out.push((e, false));
    }
    for t in files {
        let f = find_file(cfg, &t.name).ok_or_else(|| TrackError::UnknownFile {
            instance: instance.to_string(),
            name: t.name.clone(),
        })?;
        let weight = t.weight.unwrap_or(f.weight);
        let e = Entry {
            object: Object::File(t.name.clone()),
            weight,
            reverse: t.reverse || f.reverse,
        };
        out.push((e, weight == 1));
    }
    Ok(out)
}

fn find_script<'a>(cfg: &'a Config, name: &str) -> Option<&'a VrrpScript> {
    cfg.vrrp_scripts.iter().find(|s| s.name == name)
}

fn find_file<'a>(cfg: &'a Config, name: &str) -> Option<&'a TrackFile> {
    cfg.track_files.iter().find(|f| f.name == name)
}

fn evaluate_instance(plan: &InstancePlan, status: &Status) -> Verdict {
    let mut delta: i64 = 0;
    let mut fault = None;
    let mut pending = false;
    for e in &plan.entries {
        let m: i64 = if e.reverse { -1 } else { 1 };
        let w = i64::from(e.weight);
        match &e.object {
            Object::Script(n) | Object::Interface(n) => {
                let ok = match &e.object {
                    Object::Script(_) => status.scripts.get(n).copied().flatten(),
                    _ => Some(status.links.get(n).copied().unwrap_or(false)),
                };
                match ok {
                    // Not run yet: a weighted script counts nothing, as in keepalived's INIT.
                    None => pending |= w == 0,
                    Some(ok) if w == 0 => {
                        if ok == e.reverse && fault.is_none() {
                            let what = if ok { "is OK (reverse)" } else { "failed" };
                            let what = match (&e.object, ok) {
                                (Object::Interface(_), false) => "is down",
                                (Object::Interface(_), true) => "is up (reverse)",
                                _ => what,
                            };
                            fault = Some(format!("{} {what}", e.object));
                        }
                    }
                    Some(true) if w > 0 => delta += w * m,
                    Some(false) if w < 0 => delta += w * m,
                    Some(_) => {}
                }
            }
            Object::File(n) => {
                let v = status.files.get(n).copied().unwrap_or(0);
                if w == 0 {
                    if (v != 0) != e.reverse && fault.is_none() {
                        fault = Some(format!("{} has value {v}", e.object));
                    }
                } else {
                    let s = (i128::from(v) * i128::from(w) * i128::from(m)).clamp(-254, 253) as i64;
                    if s == -254 {
                        fault.get_or_insert_with(|| {
                            format!("{} has value {v} (× weight {w})", e.object)
                        });
                    } else {
                        delta += s;
                    }
                }
            }
        }
    }
    match (fault, pending) {
        (Some(why), _) => Verdict::Fault(why),
        (None, true) => Verdict::Pending,
        (None, false) => Verdict::Priority(clamp_priority(plan.base, delta)),
    }
}

/// keepalived's rise/fall counter of one vrrp_script (vrrp_scheduler.c):
/// `rise` successes in a row make a failed script OK, `fall` failures an OK
/// one failed; the very first result decides at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCounter {
    result: u32,
    rise: u32,
    fall: u32,
    state: Option<bool>,
}

impl ScriptCounter {
    /// Unknown until the first run, or failed with `init_fail`.
    pub fn new(s: &VrrpScript) -> Self {
        let (rise, fall) = (s.rise.max(1), s.fall.max(1));
        if s.init_fail {
            ScriptCounter {
                result: 0,
                rise,
                fall,
                state: Some(false),
            }
        } else {
            ScriptCounter {
                result: rise - 1,
                rise,
                fall,
                state: None,
            }
        }
    }

    /// OK, failed, or `None` before the first result.
    pub fn state(&self) -> Option<bool> {
        self.state
    }

    /// Records one run; true when the script's state changed.
    pub fn record(&mut self, ok: bool) -> bool {
        let before = self.state;
        let top = self.rise + self.fall - 1;
        if ok {
            if self.result < self.rise - 1 {
                self.result += 1;
            } else {
                self.result = top;
                self.state = Some(true);
            }
        } else if self.result > self.rise {
            self.result -= 1;
        } else {
            self.result = 0;
            self.state = Some(false);
        }
        self.state != before
    }
}

/// `strtol(buf, NULL, 0)` as keepalived reads a track file: leading blanks,
/// a sign, 0x / 0 prefixes, digits up to the first non-digit; no digits is
/// 0. `None` for a value out of keepalived's range (the read is ignored).
pub fn parse_track_value(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let v = if end == 0 {
        0
    } else {
        i64::from_str_radix(&digits[..end], radix).ok()?
    };
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&v)
        .then_some(v)
}

/// Sent whenever an instance's tracking verdict changes (and once at start,
/// when the verdict is first known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackUpdate {
    pub instance: String,
    /// Effective priority; `None` = FAULT.
    pub priority: Option<u8>,
}

impl TrackUpdate {
    /// What to feed the instance's state machine, in order: the new
    /// priority before leaving FAULT, so the election uses it.
    pub fn inputs(&self) -> Vec<Input> {
        match self.priority {
            Some(p) => vec![Input::PriorityChanged(p), Input::Fault(false)],
            None => vec![Input::Fault(true)],
        }
    }
}

/// How often links and files are re-read.
const POLL: Duration = Duration::from_secs(1);

/// Runs the tracked scripts, watches links and files, and reports verdict
/// changes. Build with [`Tracker::new`], start with [`Tracker::spawn`].
pub struct Tracker {
    plan: TrackPlan,
    scripts: Vec<ScriptJob>,
    files: Vec<(String, String)>,
    poll: Duration,
}

struct ScriptJob {
    name: String,
    command: String,
    ids: Option<(u32, u32)>,
    interval: Duration,
    timeout: Duration,
    counter: ScriptCounter,
}

enum Event {
    Script {
        name: String,
        outcome: ScriptOutcome,
    },
    Links(HashMap<String, bool>),
    Files(HashMap<String, i64>),
}

impl Tracker {
    /// Resolves the plan, the scripts' commands and users, and writes
    /// `init_file`s (keepalived does that at config load).
    pub fn new(cfg: &Config) -> Result<Tracker, TrackError> {
        let plan = TrackPlan::from_config(cfg)?;
        let objects = plan.objects();
        let mut scripts = Vec::new();
        let mut files = Vec::new();
        for o in &objects {
            match o {
                Object::Script(name) => {
                    let s = find_script(cfg, name).expect("resolved by from_config");
                    let script: &Script = s
                        .script
                        .as_ref()
                        .ok_or_else(|| TrackError::NoCommand { name: name.clone() })?;
                    let ids =
                        script_ids(script, &cfg.global).map_err(|reason| TrackError::RunAs {
                            name: name.clone(),
                            reason,
                        })?;
                    scripts.push(ScriptJob {
                        name: name.clone(),
                        command: script.command.clone(),
                        ids,
                        interval: s.interval,
                        timeout: s.timeout.unwrap_or(s.interval),
                        counter: ScriptCounter::new(s),
                    });
                }
                Object::File(name) => {
                    let f = find_file(cfg, name).expect("resolved by from_config");
                    let path = f
                        .file
                        .clone()
                        .ok_or_else(|| TrackError::NoPath { name: name.clone() })?;
                    if let Some(init) = &f.init_file
                        && (init.overwrite || !std::path::Path::new(&path).exists())
                    {
                        std::fs::write(&path, format!("{}\n", init.value)).map_err(|e| {
                            TrackError::InitFile {
                                name: name.clone(),
                                path: path.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                    }
                    files.push((name.clone(), path));
                }
                Object::Interface(_) => {}
            }
        }
        Ok(Tracker {
            plan,
            scripts,
            files,
            poll: POLL,
        })
    }

    /// Starts tracking on the current runtime; updates go to `tx`. The
    /// task ends when `tx`'s receiver is dropped.
    pub fn spawn(self, tx: mpsc::Sender<TrackUpdate>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(tx))
    }

    async fn run(self, tx: mpsc::Sender<TrackUpdate>) {
        let Tracker {
            plan,
            scripts,
            files,
            poll,
        } = self;
        let (etx, mut erx) = mpsc::channel::<Event>(64);
        let mut status = Status::default();
        let mut counters = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        for job in scripts {
            status.scripts.insert(job.name.clone(), job.counter.state());
            counters.insert(job.name.clone(), job.counter.clone());
            tasks.spawn(script_loop(job, etx.clone()));
        }
        let links: Vec<String> = plan
            .objects()
            .into_iter()
            .filter_map(|o| match o {
                Object::Interface(n) => Some(n),
                _ => None,
            })
            .collect();
        // Subscribed to link events, so a link going down is seen at once;
        // the periodic poll is the safety net.
        let (netlink, link_events) = if links.is_empty() {
            (None, None)
        } else {
            use rtnetlink::MulticastGroup;
            match rtnetlink::new_multicast_connection(&[MulticastGroup::Link]) {
                Ok((conn, handle, events)) => {
                    tasks.spawn(conn);
                    (Some(handle), Some(events))
                }
                Err(e) => {
                    warn!("tracking: cannot open rtnetlink ({e}); tracked interfaces read as down");
                    (None, None)
                }
            }
        };
        status.links = read_links(netlink.as_ref(), &links).await;
        status.files = read_files(&files, &HashMap::new());
        if !links.is_empty() || !files.is_empty() {
            let seen = (status.links.clone(), status.files.clone());
            tasks.spawn(poll_loop(
                netlink,
                link_events,
                links,
                files.clone(),
                seen,
                poll,
                etx.clone(),
            ));
        }
        drop(etx);
        let mut sent: BTreeMap<String, Verdict> = BTreeMap::new();
        let mut why = String::from("start");
        loop {
            for (instance, v) in plan.evaluate(&status) {
                if v == Verdict::Pending || sent.get(&instance) == Some(&v) {
                    continue;
                }
                let priority = match &v {
                    Verdict::Priority(p) => {
                        info!(%instance, priority = p, "tracking: {why}: effective priority {p}");
                        Some(*p)
                    }
                    Verdict::Fault(reason) => {
                        warn!(%instance, "tracking: {why}: FAULT ({reason})");
                        None
                    }
                    Verdict::Pending => unreachable!(),
                };
                if tx
                    .send(TrackUpdate {
                        instance: instance.clone(),
                        priority,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                sent.insert(instance, v);
            }
            let Some(ev) = erx.recv().await else { return };
            why = match ev {
                Event::Script { name, outcome } => {
                    let ok = outcome == ScriptOutcome::Exited(0);
                    let c = counters.get_mut(&name).expect("one counter per script");
                    if !c.record(ok) {
                        continue;
                    }
                    status.scripts.insert(name.clone(), c.state());
                    let what = if ok {
                        "succeeded".to_string()
                    } else {
                        format!("failed ({})", describe(&outcome))
                    };
                    info!(script = %name, "VRRP_Script({name}) {what}");
                    format!("script {name} {what}")
                }
                Event::Links(l) => {
                    let changed = changes(&status.links, &l, |up| if *up { "up" } else { "down" });
                    status.links = l;
                    format!("interface {changed}")
                }
                Event::Files(f) => {
                    let changed = changes(&status.files, &f, |v| v.to_string());
                    status.files = f;
                    format!("track_file {changed}")
                }
            };
        }
    }
}

/// "eth0 down, eth1 up" for the entries that differ.
fn changes<V: PartialEq, S: std::fmt::Display>(
    old: &HashMap<String, V>,
    new: &HashMap<String, V>,
    show: impl Fn(&V) -> S,
) -> String {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k} {}", show(v)))
        .collect();
    out.sort();
    out.join(", ")
}

fn describe(o: &ScriptOutcome) -> String {
    match o {
        ScriptOutcome::Exited(c) => format!("exit {c}"),
        ScriptOutcome::Signalled(s) => format!("signal {s}"),
        ScriptOutcome::TimedOut => "timed out".into(),
        ScriptOutcome::SpawnFailed(e) => format!("could not run: {e}"),
    }
}

async fn script_loop(job: ScriptJob, tx: mpsc::Sender<Event>) {
    let mut tick = tokio::time::interval(job.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (outcome, _) = run_script(&job.command, job.ids, job.timeout).await;
        if tx
            .send(Event::Script {
                name: job.name.clone(),
                outcome,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// RTNLGRP_LINK notifications.
type LinkEvents = futures::channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Re-reads links and files every `every` and on every link event,
/// reporting changes from `seen`.
async fn poll_loop(
    netlink: Option<rtnetlink::Handle>,
    mut link_events: Option<LinkEvents>,
    links: Vec<String>,
    files: Vec<(String, String)>,
    seen: (HashMap<String, bool>, HashMap<String, i64>),
    every: Duration,
    tx: mpsc::Sender<Event>,
) {
    use futures::StreamExt;
    let (mut last_links, mut last_files) = seen;
    loop {
        let event = async {
            match link_events.as_mut() {
                Some(ev) => ev.next().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            open = event => if !open {
                link_events = None;
            },
        }
        let l = read_links(netlink.as_ref(), &links).await;
        if l != last_links {
            last_links = l.clone();
            if tx.send(Event::Links(l)).await.is_err() {
                return;
            }
        }
        let f = read_files(&files, &last_files);
        if f != last_files {
            last_files = f.clone();
            if tx.send(Event::Files(f)).await.is_err() {
                return;
            }
        }
    }
}

/// Whether each interface is up with carrier (IFF_UP and IFF_RUNNING, as
/// keepalived's IF_FLAGS_UP); a missing interface is down.
async fn read_links(
    netlink: Option<&rtnetlink::Handle>,
    names: &[String],
) -> HashMap<String, bool> {
    let mut out: HashMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
    let Some(handle) = netlink else { return out };
    let mut links = handle.link().get().execute();
    while let Ok(Some(l)) = links.try_next().await {
        let name = l.attributes.iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        });
        if let Some(n) = name
            && let Some(up) = out.get_mut(&n)
        {
            let f = l.header.flags;
            use rtnetlink::packet_route::link::LinkFlags;
            *up = f.contains(LinkFlags::Up) && f.contains(LinkFlags::Running);
        }
    }
    out
}

/// Each file's value; an unreadable file reads 0, an out-of-range value
/// keeps the previous one (keepalived ignores it).
fn read_files(files: &[(String, String)], last: &HashMap<String, i64>) -> HashMap<String, i64> {
    files
        .iter()
        .map(|(name, path)| {
            let v = match std::fs::read(path) {
                Ok(b) => {
                    let text = String::from_utf8_lossy(&b[..b.len().min(127)]).into_owned();
                    parse_track_value(&text).unwrap_or_else(|| {
                        warn!(file = %path, "track_file {name}: invalid number {:?}; ignored", text.trim());
                        last.get(name).copied().unwrap_or(0)
                    })
                }
                Err(_) => 0,
            };
            (name.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(o: Object, weight: i32, reverse: bool) -> Entry {
        Entry {
            object: o,
            weight,
            reverse,
        }
    }
    fn script(n: &str) -> Object {
        Object::Script(n.into())
    }
    fn iface(n: &str) -> Object {
        Object::Interface(n.into())
    }
    fn file(n: &str) -> Object {
        Object::File(n.into())
    }
    fn plan(base: u8, entries: Vec<Entry>) -> InstancePlan {
        InstancePlan {
            instance: "VI".into(),
            base,
            group: None,
            entries,
        }
    }
    fn st(
        scripts: &[(&str, Option<bool>)],
        links: &[(&str, bool)],
        files: &[(&str, i64)],
    ) -> Status {
        Status {
            scripts: scripts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            links: links.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            files: files.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }
    fn eval(p: &InstancePlan, s: &Status) -> Verdict {
        evaluate_instance(p, s)
    }

    #[test]
    fn script_weights_as_keepalived() {
        let ok = st(&[("s", Some(true))], &[], &[]);
        let bad = st(&[("s", Some(false))], &[], &[]);
        // weight > 0: added while OK.
        let p = plan(100, vec![entry(script("s"), 10, false)]);
        assert_eq!(
            (eval(&p, &ok), eval(&p, &bad)),
            (Verdict::Priority(110), Verdict::Priority(100))
        );
        // weight < 0: subtracted while failed.
        let p = plan(100, vec![entry(script("s"), -10, false)]);
        assert_eq!(
            (eval(&p, &ok), eval(&p, &bad)),
            (Verdict::Priority(100), Verdict::Priority(90))
        );
        // reverse: the direction flips (not the status).
        let p = plan(100, vec![entry(script("s"), 10, true)]);
        assert_eq!(
            (eval(&p, &ok), eval(&p, &bad)),
            (Verdict::Priority(90), Verdict::Priority(100))
        );
        let p = plan(100, vec![entry(script("s"), -10, true)]);
        assert_eq!(
            (eval(&p, &ok), eval(&p, &bad)),
            (Verdict::Priority(100), Verdict::Priority(110))
        );
        // weight 0: FAULT on failure; reverse: FAULT on success.
        let p = plan(100, vec![entry(script("s"), 0, false)]);
        assert_eq!(eval(&p, &ok), Verdict::Priority(100));
        assert_eq!(eval(&p, &bad), Verdict::Fault("script s failed".into()));
        let p = plan(100, vec![entry(script("s"), 0, true)]);
        assert_eq!(
            eval(&p, &ok),
            Verdict::Fault("script s is OK (reverse)".into())
        );
        assert_eq!(eval(&p, &bad), Verdict::Priority(100));
    }

    #[test]
    fn clamping_and_owner() {
        let ok = st(&[("a", Some(true)), ("b", Some(false))], &[], &[]);
        let p = plan(250, vec![entry(script("a"), 50, false)]);
        assert_eq!(eval(&p, &ok), Verdict::Priority(254));
        let p = plan(10, vec![entry(script("b"), -100, false)]);
        assert_eq!(eval(&p, &ok), Verdict::Priority(1));
        let p = plan(255, vec![entry(script("b"), -100, false)]);
        assert_eq!(eval(&p, &ok), Verdict::Priority(255));
        // An owner still faults.
        let p = plan(255, vec![entry(script("b"), 0, false)]);
        assert!(matches!(eval(&p, &ok), Verdict::Fault(_)));
    }

    #[test]
    fn interfaces() {
        let p = plan(
            100,
            vec![
                entry(iface("eth0"), 0, false),
                entry(iface("eth1"), -20, false),
            ],
        );
        assert_eq!(
            eval(&p, &st(&[], &[("eth0", true), ("eth1", true)], &[])),
            Verdict::Priority(100)
        );
        assert_eq!(
            eval(&p, &st(&[], &[("eth0", true), ("eth1", false)], &[])),
            Verdict::Priority(80)
        );
        assert_eq!(
            eval(&p, &st(&[], &[("eth1", true)], &[])),
            Verdict::Fault("interface eth0 is down".into())
        );
    }

    #[test]
    fn files() {
        let f = |v: i64| st(&[], &[], &[("f", v)]);
        // value × weight, reverse negates, clamped to 253; -254 is FAULT.
        let p = plan(100, vec![entry(file("f"), 2, false)]);
        assert_eq!(eval(&p, &f(5)), Verdict::Priority(110));
        assert_eq!(eval(&p, &f(-20)), Verdict::Priority(60));
        assert_eq!(eval(&p, &f(1000)), Verdict::Priority(254));
        assert!(matches!(eval(&p, &f(-127)), Verdict::Fault(_)));
        assert_eq!(eval(&p, &f(-126)), Verdict::Priority(1));
        let p = plan(100, vec![entry(file("f"), 2, true)]);
        assert_eq!(eval(&p, &f(5)), Verdict::Priority(90));
        // weight 0: non-zero value is FAULT; reverse: zero is FAULT.
        let p = plan(100, vec![entry(file("f"), 0, false)]);
        assert_eq!(
            (eval(&p, &f(0)), eval(&p, &f(3))),
            (
                Verdict::Priority(100),
                Verdict::Fault("track_file f has value 3".into())
            )
        );
        let p = plan(100, vec![entry(file("f"), 0, true)]);
        assert!(matches!(eval(&p, &f(0)), Verdict::Fault(_)));
        assert_eq!(eval(&p, &f(7)), Verdict::Priority(100));
        // A missing value reads 0.
        assert!(matches!(eval(&p, &st(&[], &[], &[])), Verdict::Fault(_)));
    }

    #[test]
    fn unknown_scripts_hold_weight_zero_back_and_count_nothing_weighted() {
        let s = st(&[("z", None), ("w", None)], &[], &[]);
        assert_eq!(
            eval(&plan(100, vec![entry(script("w"), 10, false)]), &s),
            Verdict::Priority(100)
        );
        assert_eq!(
            eval(&plan(100, vec![entry(script("w"), -10, false)]), &s),
            Verdict::Priority(100)
        );
        assert_eq!(
            eval(&plan(100, vec![entry(script("z"), 0, false)]), &s),
            Verdict::Pending
        );
        // FAULT wins over pending.
        let p = plan(
            100,
            vec![entry(script("z"), 0, false), entry(iface("eth0"), 0, false)],
        );
        assert!(matches!(eval(&p, &s), Verdict::Fault(_)));
    }

    #[test]
    fn updates_drive_the_state_machine() {
        use crate::config::VrrpState;
        use crate::vrrp::fsm::{Fsm, FsmConfig, State};
        use crate::vrrp::packet::Version;
        let mut fsm = Fsm::new(FsmConfig {
            version: Version::V2,
            priority: 100,
            advert_int: Duration::from_secs(1),
            nopreempt: false,
            preempt_delay: Duration::ZERO,
            primary_ip: "10.0.0.1".parse().unwrap(),
        });
        let t = Duration::ZERO;
        fsm.handle(
            t,
            Input::Startup {
                initial_state: VrrpState::Backup,
            },
        );
        let fault = TrackUpdate {
            instance: "VI".into(),
            priority: None,
        };
        for i in fault.inputs() {
            fsm.handle(t, i);
        }
        assert_eq!(fsm.state(), State::Fault);
        let back = TrackUpdate {
            instance: "VI".into(),
            priority: Some(50),
        };
        for i in back.inputs() {
            fsm.handle(t, i);
        }
        assert_eq!((fsm.state(), fsm.priority()), (State::Backup, 50));
        // Leaving FAULT with the new priority: the down timer has its skew.
        let skew = Duration::from_nanos(206 * 3_906_250);
        assert_eq!(fsm.next_deadline(), Some(3 * Duration::from_secs(1) + skew));
    }

    #[test]
    fn rise_and_fall() {
        let mut s = VrrpScript::new("s".into());
        s.rise = 3;
        s.fall = 2;
        let mut c = ScriptCounter::new(&s);
        assert_eq!(c.state(), None);
        // The first result decides at once.
        assert!(c.record(true));
        assert_eq!(c.state(), Some(true));
        // fall = 2 failures in a row to fail; a success in between resets.
        assert!(!c.record(false));
        assert!(!c.record(true));
        assert!(!c.record(false));
        assert!(c.record(false));
        assert_eq!(c.state(), Some(false));
        // rise = 3 successes in a row to recover.
        assert!(!c.record(true));
        assert!(!c.record(true));
        assert!(!c.record(false));
        assert!(!c.record(true));
        assert!(!c.record(true));
        assert!(c.record(true));
        assert_eq!(c.state(), Some(true));
        // First result a failure: failed at once.
        let mut c = ScriptCounter::new(&s);
        assert!(c.record(false));
        assert_eq!(c.state(), Some(false));
        // init_fail: failed before any run.
        s.init_fail = true;
        let c = ScriptCounter::new(&s);
        assert_eq!(c.state(), Some(false));
    }

    #[test]
    fn strtol_like_values() {
        for (s, v) in [
            ("42\n", Some(42)),
            ("  -7 ", Some(-7)),
            ("0x10", Some(16)),
            ("010", Some(8)),
            ("", Some(0)),
            ("abc", Some(0)),
            ("12abc", Some(12)),
            ("+3", Some(3)),
            ("0", Some(0)),
            ("2147483648", Some(2147483648)),
            ("2147483649", None),
            ("-2147483649", None),
        ] {
            assert_eq!(parse_track_value(s), v, "{s:?}");
        }
    }

    fn cfg(text: &str) -> Config {
        let l = crate::config::load_str(text, "t.conf", &Default::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.config
    }

    #[test]
    fn plan_from_config_defaults_and_sync_rules() {
        let c = cfg(r#"
vrrp_script chk_up {
  script "true"
  weight 10
}
vrrp_script chk_must {
  script "true"
}
track_file tf {
  file "/tmp/x"
}
vrrp_instance A {
  interface eth0
  virtual_router_id 1
  priority 100
  track_interface {
    eth1 weight -5
    eth2
  }
  track_script {
    chk_up
    chk_must
  }
  track_file {
    tf
  }
  virtual_ipaddress {
    10.0.0.1
  }
}
vrrp_instance B {
  interface eth0
  virtual_router_id 2
  priority 100
  dont_track_primary
  track_interface {
    eth1 weight -5
  }
  track_script {
    chk_up
    chk_must
  }
  track_file {
    tf
    tf weight 3
  }
  virtual_ipaddress {
    10.0.0.2
  }
}
vrrp_instance C {
  interface eth0
  virtual_router_id 3
  priority 100
  virtual_ipaddress {
    10.0.0.3
  }
}
vrrp_sync_group G {
  group {
    B
    C
  }
  track_script {
    chk_up
  }
}
"#);
        let p = TrackPlan::from_config(&c).unwrap();
        let a = &p.instances[0];
        assert_eq!(
            a.entries,
            vec![
                entry(iface("eth0"), 0, false),
                entry(iface("eth1"), -5, false),
                entry(iface("eth2"), 0, false),
                entry(script("chk_up"), 10, false),
                entry(script("chk_must"), 0, false),
                entry(file("tf"), 1, false),
            ]
        );
        // B in a sync group without sync_group_tracking_weight: weighted
        // interface -> 0, weighted script dropped, default-weight file -> 0,
        // explicitly weighted file dropped; the group's script applies with
        // its weight.
        let b = &p.instances[1];
        assert_eq!(b.group.as_deref(), Some("G"));
        assert_eq!(
            b.entries,
            vec![
                entry(iface("eth1"), 0, false),
                entry(script("chk_must"), 0, false),
                entry(file("tf"), 0, false),
                entry(script("chk_up"), 10, false),
            ]
        );
        assert_eq!(
            p.instances[2].entries,
            vec![
                entry(iface("eth0"), 0, false),
                entry(script("chk_up"), 10, false)
            ]
        );
        // A member's FAULT is the group's.
        let s = st(
            &[("chk_up", Some(true)), ("chk_must", Some(false))],
            &[("eth0", true), ("eth1", true), ("eth2", true)],
            &[("tf", 0)],
        );
        let v = p.evaluate(&s);
        assert_eq!(v["A"], Verdict::Fault("script chk_must failed".into()));
        assert_eq!(v["B"], Verdict::Fault("script chk_must failed".into()));
        assert_eq!(
            v["C"],
            Verdict::Fault("sync group G: B: script chk_must failed".into())
        );
        let s = st(
            &[("chk_up", Some(true)), ("chk_must", Some(true))],
            &[("eth0", true), ("eth1", false), ("eth2", true)],
            &[("tf", 4)],
        );
        let v = p.evaluate(&s);
        assert_eq!(v["A"], Verdict::Priority(100 - 5 + 10 + 4));
        assert!(matches!(&v["B"], Verdict::Fault(w) if w == "interface eth1 is down"));
        assert!(matches!(&v["C"], Verdict::Fault(_)));
    }

    #[test]
    fn unknown_names_are_errors() {
        let text = "vrrp_instance A {\n interface eth0\n virtual_router_id 1\n track_script {\n  nope\n }\n virtual_ipaddress {\n  10.0.0.1\n }\n}\n";
        let c = crate::config::load_str(text, "t.conf", &Default::default()).config;
        assert_eq!(
            TrackPlan::from_config(&c),
            Err(TrackError::UnknownScript {
                instance: "A".into(),
                name: "nope".into()
            })
        );
    }
}
