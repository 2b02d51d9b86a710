//! Tracking: `track_script`, `track_interface` and `track_file` of VRRP
//! instances and sync groups, turned into each instance's effective
//! priority or FAULT exactly as keepalived 2.2.7 computes them
//! (vrrp_track.c, track_file.c).
//!
//! Pure: [`TrackPlan::from_config`] (which objects each instance tracks,
//! with which weight) and [`TrackPlan::evaluate`] (priority or FAULT from
//! the objects' current [`Status`]); [`ScriptCounter`] is the rise/fall
//! counter; a reload keeps the state of every object whose definition did
//! not change (keepalived does), so an unchanged reload changes no verdict.
//! I/O: [`Tracking`] runs the scripts of a [`Tracker`], reads links on every
//! link event (and every second) and files every second, and sends a
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
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::fsm::{Input, PRIORITY_OWNER, clamp_priority};
use super::notify::script_ids;
use crate::check::file::{parse_value, read_head};
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

/// What to do with `init_file`s (keepalived, track_file.c): at start a file
/// is written when missing or with `overwrite`; a reload only creates
/// missing ones, so it never resets a value someone wrote since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitFiles {
    Start,
    Reload,
}

/// What the configuration tracks: the plan, the scripts' resolved commands
/// and users, the files' paths. Give it to a running [`Tracking`].
#[derive(Debug)]
pub struct Tracker {
    plan: TrackPlan,
    scripts: Vec<ScriptJob>,
    files: Vec<(String, String)>,
}

/// A vrrp_script as it runs. Two equal jobs are the same script: a reload
/// keeps its state. Its weight is not here: it only changes what the
/// script's result means, which the plan says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ScriptJob {
    name: String,
    command: String,
    ids: Option<(u32, u32)>,
    interval: Duration,
    timeout: Duration,
    /// As the configuration starts it (rise, fall, init_fail).
    counter: ScriptCounter,
}

impl Tracker {
    /// Resolves the plan, the scripts' commands and users, and writes
    /// `init_file`s (keepalived does that at config load).
    pub fn new(cfg: &Config, init: InitFiles) -> Result<Tracker, TrackError> {
        let plan = TrackPlan::from_config(cfg)?;
        let mut objects: Vec<Object> = plan.objects().into_iter().collect();
        objects.sort();
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
                    let exists = std::path::Path::new(&path).exists();
                    if let Some(value) = f
                        .init_file
                        .as_ref()
                        .filter(|i| !exists || (i.overwrite && init == InitFiles::Start))
                        .map(|i| i.value)
                    {
                        std::fs::write(&path, format!("{value}\n")).map_err(|e| {
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
        })
    }
}

/// A script's state while it runs; `run` tells its results from those of
/// a loop a reload replaced.
#[derive(Debug, Clone)]
struct RunningScript {
    job: ScriptJob,
    counter: ScriptCounter,
    run: u64,
}

/// One run's result.
#[derive(Debug)]
struct ScriptResult {
    name: String,
    run: u64,
    outcome: ScriptOutcome,
}

/// What the tracker knows, carried across reconfigurations (pure: the
/// running task feeds it results and readings).
#[derive(Debug, Default)]
struct TrackState {
    plan: TrackPlan,
    status: Status,
    scripts: HashMap<String, RunningScript>,
    links: Vec<String>,
    files: Vec<(String, String)>,
    /// The verdict each instance was last given.
    sent: BTreeMap<String, Verdict>,
    runs: u64,
    /// Why each file that does not read as its value does not, as logged.
    file_errors: HashMap<String, String>,
}

impl TrackState {
    /// Tracks `t` from now on. A script whose job is unchanged keeps its
    /// counter and result (and its loop runs on); a new or changed one
    /// starts afresh and is returned, to be started with its run number. A
    /// file keeps its last value while its path is the same; instances keep
    /// their last verdict, so an unchanged reload changes none.
    fn reconfigure(&mut self, t: Tracker) -> Vec<(ScriptJob, u64)> {
        let Tracker {
            plan,
            scripts,
            files,
        } = t;
        let mut old = std::mem::take(&mut self.scripts);
        let mut start = Vec::new();
        for job in scripts {
            let running = match old.remove(&job.name) {
                Some(r) if r.job == job => r,
                _ => {
                    self.runs += 1;
                    start.push((job.clone(), self.runs));
                    RunningScript {
                        counter: job.counter.clone(),
                        job,
                        run: self.runs,
                    }
                }
            };
            self.scripts.insert(running.job.name.clone(), running);
        }
        self.status.scripts = self
            .scripts
            .iter()
            .map(|(n, r)| (n.clone(), r.counter.state()))
            .collect();
        let kept: HashSet<&(String, String)> = self.files.iter().filter(|f| files.contains(f)).collect();
        self.status.files.retain(|n, _| kept.iter().any(|(k, _)| k == n));
        self.files = files;
        self.links = plan
            .objects()
            .into_iter()
            .filter_map(|o| match o {
                Object::Interface(n) => Some(n),
                _ => None,
            })
            .collect();
        self.links.sort();
        let links = &self.links;
        self.status.links.retain(|n, _| links.contains(n));
        self.sent.retain(|i, _| plan.instances.iter().any(|p| &p.instance == i));
        self.plan = plan;
        start
    }

    /// Records a script's run; the reason to re-evaluate when its state
    /// changed. A result of a loop that was stopped or replaced is ignored.
    fn record(&mut self, r: &ScriptResult) -> Option<String> {
        let s = self.scripts.get_mut(&r.name).filter(|s| s.run == r.run)?;
        let ok = r.outcome == ScriptOutcome::Exited(0);
        if !s.counter.record(ok) {
            return None;
        }
        self.status.scripts.insert(r.name.clone(), s.counter.state());
        let name = &r.name;
        let what = if ok {
            "succeeded".to_string()
        } else {
            format!("failed ({})", describe(&r.outcome))
        };
        info!(script = %name, "VRRP_Script({name}) {what}");
        Some(format!("script {name} {what}"))
    }

    /// New link and file readings; the reason to re-evaluate when they differ.
    fn read(&mut self, links: HashMap<String, bool>, files: HashMap<String, i64>) -> Option<String> {
        let mut why = Vec::new();
        if links != self.status.links {
            why.push(format!(
                "interface {}",
                changes(&self.status.links, &links, |up| if *up { "up" } else { "down" })
            ));
            self.status.links = links;
        }
        if files != self.status.files {
            why.push(format!("track_file {}", changes(&self.status.files, &files, |v| v.to_string())));
            self.status.files = files;
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Logs why a file does not read as its value once, when that starts or
    /// changes, not at every poll; and when it reads again.
    fn file_errors(&mut self, errors: HashMap<String, String>) {
        for (name, why) in &errors {
            if self.file_errors.get(name) != Some(why) {
                warn!("track_file {name}: {why}");
            }
        }
        for name in self.file_errors.keys().filter(|n| !errors.contains_key(*n)) {
            if self.files.iter().any(|(f, _)| f == name) {
                info!("track_file {name}: reads its value again");
            }
        }
        self.file_errors = errors;
    }

    /// The instances whose verdict changed since they were last given one
    /// (a pending verdict is not given), now marked as given.
    fn verdicts(&mut self) -> Vec<(String, Verdict)> {
        let mut out = Vec::new();
        for (instance, v) in self.plan.evaluate(&self.status) {
            if v != Verdict::Pending && self.sent.get(&instance) != Some(&v) {
                self.sent.insert(instance.clone(), v.clone());
                out.push((instance, v));
            }
        }
        out
    }
}

/// The updates for changed verdicts, each logged with `why`.
fn to_updates(changed: Vec<(String, Verdict)>, why: &str) -> Vec<TrackUpdate> {
    changed
        .into_iter()
        .map(|(instance, v)| {
            let priority = match v {
                Verdict::Priority(p) => {
                    info!(%instance, priority = p, "tracking: {why}: effective priority {p}");
                    Some(p)
                }
                Verdict::Fault(reason) => {
                    warn!(%instance, "tracking: {why}: FAULT ({reason})");
                    None
                }
                Verdict::Pending => unreachable!("pending verdicts are not given"),
            };
            TrackUpdate { instance, priority }
        })
        .collect()
}

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running tracker: runs the scripts, watches links and files, and sends
/// a [`TrackUpdate`] whenever an instance's verdict changes. It stops when
/// dropped.
pub struct Tracking {
    requests: mpsc::UnboundedSender<(Tracker, oneshot::Sender<()>)>,
    _task: AbortOnDrop,
}

impl Tracking {
    /// Starts tracking nothing, on the current runtime; verdicts go to
    /// `updates`.
    pub fn spawn(updates: mpsc::UnboundedSender<TrackUpdate>) -> Tracking {
        let (requests, rx) = mpsc::unbounded_channel();
        Tracking {
            requests,
            _task: AbortOnDrop(tokio::spawn(track(updates, rx))),
        }
    }

    /// Tracks `t` from now on: a script, file or interface whose
    /// definition did not change keeps its state (rise/fall counter,
    /// result, value), and an instance whose verdict stays is sent nothing.
    /// Returns once the verdicts that changed are in `updates`.
    pub async fn set(&self, t: Tracker) {
        let (done, rx) = oneshot::channel();
        if self.requests.send((t, done)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn track(
    updates: mpsc::UnboundedSender<TrackUpdate>,
    mut requests: mpsc::UnboundedReceiver<(Tracker, oneshot::Sender<()>)>,
) {
    use rtnetlink::MulticastGroup;
    // Subscribed to link events, so a link going down is seen at once; the
    // periodic poll is the safety net.
    let (netlink, mut link_events, _conn) =
        match rtnetlink::new_multicast_connection(&[MulticastGroup::Link]) {
            Ok((conn, handle, events)) => (
                Some(handle),
                Some(events),
                Some(AbortOnDrop(tokio::spawn(conn))),
            ),
            Err(e) => {
                warn!("tracking: cannot open rtnetlink ({e}); tracked interfaces read as down");
                (None, None, None)
            }
        };
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let mut state = TrackState::default();
    let mut loops: HashMap<String, AbortOnDrop> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (why, done) = tokio::select! {
            req = requests.recv() => {
                let Some((t, done)) = req else { return };
                for (job, run) in state.reconfigure(t) {
                    let name = job.name.clone();
                    loops.insert(name, AbortOnDrop(tokio::spawn(script_loop(job, run, results_tx.clone()))));
                }
                loops.retain(|n, _| state.scripts.contains_key(n));
                reread(netlink.as_ref(), &mut state).await;
                ("configured".to_string(), Some(done))
            }
            Some(r) = results.recv() => match state.record(&r) {
                Some(why) => (why, None),
                None => continue,
            },
            open = link_event(&mut link_events) => {
                if !open {
                    link_events = None;
                }
                let Some(why) = reread(netlink.as_ref(), &mut state).await else { continue };
                (why, None)
            }
            _ = tick.tick() => {
                let Some(why) = reread(netlink.as_ref(), &mut state).await else { continue };
                (why, None)
            }
        };
        for u in to_updates(state.verdicts(), &why) {
            if updates.send(u).is_err() {
                return;
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
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

async fn script_loop(job: ScriptJob, run: u64, tx: mpsc::UnboundedSender<ScriptResult>) {
    let mut tick = tokio::time::interval(job.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (outcome, _) = run_script(&job.command, job.ids, job.timeout).await;
        let r = ScriptResult {
            name: job.name.clone(),
            run,
            outcome,
        };
        if tx.send(r).is_err() {
            return;
        }
    }
}

/// RTNLGRP_LINK notifications.
type LinkEvents = futures::channel::mpsc::UnboundedReceiver<(
    rtnetlink::packet_core::NetlinkMessage<rtnetlink::packet_route::RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// The next link event (false: the subscription ended); never without one.
async fn link_event(events: &mut Option<LinkEvents>) -> bool {
    use futures::StreamExt;
    match events.as_mut() {
        Some(ev) => ev.next().await.is_some(),
        None => std::future::pending().await,
    }
}

/// Reads the tracked links and files now; the reason to re-evaluate when
/// they changed.
async fn reread(netlink: Option<&rtnetlink::Handle>, state: &mut TrackState) -> Option<String> {
    let links = read_links(netlink, &state.links).await;
    let (files, errors) = read_files(&state.files, &state.status.files).await;
    state.file_errors(errors);
    state.read(links, files)
}

/// Whether each interface is up with carrier (IFF_UP and IFF_RUNNING, as
/// keepalived's IF_FLAGS_UP); a missing interface is down.
async fn read_links(
    netlink: Option<&rtnetlink::Handle>,
    names: &[String],
) -> HashMap<String, bool> {
    let mut out: HashMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
    let Some(handle) = netlink.filter(|_| !names.is_empty()) else { return out };
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

/// Each file's value, read off this thread (it keeps VRRP's time), and why
/// the files that do not read as their value do not: an unreadable or
/// refused file reads 0 (a missing one silently, as keepalived), an
/// out-of-range value keeps the previous one (keepalived ignores it).
async fn read_files(
    files: &[(String, String)],
    last: &HashMap<String, i64>,
) -> (HashMap<String, i64>, HashMap<String, String>) {
    if files.is_empty() {
        return Default::default();
    }
    let (files, last) = (files.to_vec(), last.clone());
    let fallback = (last.clone(), HashMap::new());
    tokio::task::spawn_blocking(move || {
        let mut values = HashMap::new();
        let mut errors = HashMap::new();
        for (name, path) in &files {
            let v = match read_head(path) {
                Ok(text) => parse_value(&text).unwrap_or_else(|| {
                    errors.insert(name.clone(), format!("{path}: invalid number {:?}; ignored", text.trim()));
                    last.get(name).copied().unwrap_or(0)
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => {
                    errors.insert(name.clone(), format!("{path}: {e}; reads 0"));
                    0
                }
            };
            values.insert(name.clone(), v);
        }
        (values, errors)
    })
    .await
    .unwrap_or(fallback)
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

    fn result(name: &str, run: u64, ok: bool) -> ScriptResult {
        let outcome = ScriptOutcome::Exited(if ok { 0 } else { 1 });
        ScriptResult { name: name.into(), run, outcome }
    }

    /// `up` (weight 10, fall 3) and `must` (weight 0, init_fail) on A;
    /// with `with_b`, B tracking lo.
    fn reload_cfg(must_command: &str, with_b: bool) -> Tracker {
        let b = if with_b {
            "vrrp_instance B {\n interface lo\n dont_track_primary\n virtual_router_id 2\n priority 50\n track_interface {\n  lo\n }\n virtual_ipaddress {\n  10.0.0.2\n }\n}\n"
        } else {
            ""
        };
        let text = format!(
            "vrrp_script up {{\n script \"true\"\n weight 10\n fall 3\n}}\n\
             vrrp_script must {{\n script \"{must_command}\"\n init_fail\n}}\n\
             vrrp_instance A {{\n interface lo\n dont_track_primary\n virtual_router_id 1\n priority 100\n track_script {{\n  up\n  must\n }}\n virtual_ipaddress {{\n  10.0.0.1\n }}\n}}\n{b}"
        );
        Tracker::new(&cfg(&text), InitFiles::Reload).unwrap()
    }

    #[test]
    fn an_unchanged_reconfigure_keeps_counters_results_and_verdicts() {
        let mut s = TrackState::default();
        let started = s.reconfigure(reload_cfg("true", true));
        let run = |s: &TrackState, n: &str| s.scripts[n].run;
        assert_eq!(started.iter().map(|(j, _)| j.name.as_str()).collect::<Vec<_>>(), ["must", "up"]);
        // init_fail: FAULT before `must` has run; B waits for its link.
        assert!(matches!(&s.verdicts()[..], [(a, Verdict::Fault(_)), (b, Verdict::Fault(_))] if a == "A" && b == "B"));
        s.read([("lo".to_string(), true)].into(), HashMap::new());
        assert_eq!(s.verdicts(), [("B".to_string(), Verdict::Priority(50))]);
        assert!(s.record(&result("up", run(&s, "up"), true)).is_some());
        assert!(s.record(&result("must", run(&s, "must"), true)).is_some());
        assert_eq!(s.verdicts(), [("A".to_string(), Verdict::Priority(110))]);
        // One failure of three: `up` is still OK.
        assert!(s.record(&result("up", run(&s, "up"), false)).is_none());
        let before = s.scripts["up"].counter.clone();

        // The same configuration again: nothing restarts, nothing changes.
        assert!(s.reconfigure(reload_cfg("true", true)).is_empty());
        assert_eq!(s.scripts["up"].counter, before);
        assert_eq!(s.verdicts(), []);
        // The failure before the reload counts: two more make three.
        assert!(s.record(&result("up", run(&s, "up"), false)).is_none());
        assert!(s.record(&result("up", run(&s, "up"), false)).is_some());
        assert_eq!(s.verdicts(), [("A".to_string(), Verdict::Priority(100))]);

        // `must` changed: it starts afresh (init_fail again), `up` goes on;
        // the replaced loop's last result is not the new `must`'s.
        let old_must = run(&s, "must");
        let started = s.reconfigure(reload_cfg("/bin/true", true));
        assert_eq!(started.iter().map(|(j, _)| j.name.as_str()).collect::<Vec<_>>(), ["must"]);
        assert_eq!(s.status.scripts["up"], Some(false));
        assert!(matches!(&s.verdicts()[..], [(a, Verdict::Fault(_))] if a == "A"));
        assert!(s.record(&result("must", old_must, true)).is_none());
        assert_eq!(s.status.scripts["must"], Some(false));

        // B removed: forgotten, so once it is back it is told its verdict.
        s.reconfigure(reload_cfg("/bin/true", false));
        assert!(!s.sent.contains_key("B") && !s.status.links.contains_key("lo"));
        s.reconfigure(reload_cfg("/bin/true", true));
        s.read([("lo".to_string(), true)].into(), HashMap::new());
        assert_eq!(s.verdicts(), [("B".to_string(), Verdict::Priority(50))]);
    }

    #[tokio::test]
    async fn a_refused_track_file_reads_0_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        std::fs::write(path("value"), "5\n").unwrap();
        let fifo = std::ffi::CString::new(path("fifo")).unwrap();
        // SAFETY: a valid C string; mkfifo(3) only creates the node.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // The reader is FILE_CHECK's (check::file::read_head, tested there):
        // a refused file reads 0 and says why, naming the file; a missing
        // one reads 0 silently.
        let files: Vec<(String, String)> =
            ["value", "fifo", "missing"].iter().map(|n| (n.to_string(), path(n))).collect();
        let (values, errors) = read_files(&files, &HashMap::new()).await;
        assert_eq!(values, [("value", 5), ("fifo", 0), ("missing", 0)].map(|(n, v)| (n.to_string(), v)).into());
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["fifo"]);
        assert!(errors["fifo"].starts_with(&format!("{}: not a regular file", path("fifo"))), "{errors:?}");
    }
}
