//! Health checkers with keepalived's semantics.
//!
//! - [`state`]: the pure per-real-server state machine (virtual clock).
//! - [`tcp`], [`http`] (HTTP_GET, SSL_GET, genhash), [`misc`], [`smtp`],
//!   [`udp`], [`dns`], [`ping`]: one run of a checker, returning a [`CheckResult`].
//! - [`Checks`]: the scheduler. One tokio task per real server runs that
//!   server's checkers on their schedule and sends a [`Transition`] on an
//!   mpsc channel when the server goes up or down (or a `misc_dynamic`
//!   weight changes). [`Checks::set_targets`] replaces the set on reload,
//!   keeping the state of every unchanged checker.

pub mod dns;
pub mod http;
pub mod misc;
pub mod ping;
pub mod smtp;
pub mod state;
pub mod tcp;
pub mod udp;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use http::{HttpError, genhash};
pub use state::{
    Change, CheckResult, CheckerChange, RealServerState, SplitMix, StateChange, VTime,
};

use crate::config::{Check, Checker, CheckerKind, Config, VsKey};

/// Identifies a real server of a virtual server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RsKey {
    pub vs: VsKey,
    pub rs: SocketAddr,
}

impl std::fmt::Display for RsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} real server {}", self.vs, self.rs)
    }
}

/// The checkers of one real server.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub key: RsKey,
    pub checkers: Vec<Checker>,
    /// The virtual server's `omega` (kept for quorum_down handling).
    pub omega: bool,
}

/// A real server changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub key: RsKey,
    pub change: Change,
    /// Alive after the change (all its checkers up).
    pub alive: bool,
    /// `misc_dynamic` weight, when the change carries one.
    pub weight: Option<u32>,
    /// e.g. "HTTP_GET http://10.0.0.11:80/ status 500, expected 200-299".
    pub reason: String,
    /// The checker that caused it.
    pub kind: CheckerKind,
    pub checker: usize,
    pub omega: bool,
}

/// The targets of a configuration: every real server that has checkers.
pub fn targets_from_config(cfg: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        for rs in &vs.real_servers {
            if rs.checkers.is_empty() {
                continue;
            }
            out.push(Target {
                key: RsKey {
                    vs: vs.key.clone(),
                    rs: SocketAddr::new(rs.ip, rs.port),
                },
                checkers: rs.checkers.clone(),
                omega: vs.omega,
            });
        }
    }
    out
}

/// Whether a real server with these checkers starts alive (no `alpha` checker).
pub fn initially_alive(checkers: &[Checker]) -> bool {
    checkers.iter().all(|c| !c.common.alpha)
}

/// Runs one check of `c` against real server `rs`.
pub async fn run_check(c: &Checker, rs: SocketAddr) -> CheckResult {
    match &c.check {
        Check::Tcp => tcp::check(c, rs).await,
        Check::Http(h) => http::check(c, h, false, rs).await,
        Check::Ssl(h) => http::check(c, h, true, rs).await,
        Check::Misc(m) => misc::check(c, m).await,
        Check::Smtp(s) => smtp::check(c, s, rs).await,
        Check::Udp(u) => udp::check(c, u, rs).await,
        Check::Dns(d) => dns::check(c, d, rs).await,
        Check::Ping => ping::check(c, rs).await,
        // FILE_CHECK needs the `track_file` block it names: not implemented
        // yet, reported up so that it never takes a server down.
        Check::File(_) => CheckResult::ok(),
    }
}

enum Ctl {
    Update { checkers: Vec<Checker>, omega: bool },
}

struct RsHandle {
    checkers: Vec<Checker>,
    omega: bool,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

/// The scheduler of every checker. Must be used inside a tokio runtime.
pub struct Checks {
    tasks: HashMap<RsKey, RsHandle>,
    tx: mpsc::Sender<Transition>,
    seed: u64,
    epoch: Instant,
}

impl Checks {
    /// `seed` drives the warmup spread (deterministic per real server).
    pub fn new(tx: mpsc::Sender<Transition>, seed: u64) -> Self {
        Checks {
            tasks: HashMap::new(),
            tx,
            seed,
            epoch: Instant::now(),
        }
    }

    /// Replaces the set of targets: new real servers start (after their
    /// warmup), removed ones stop, changed ones keep their unchanged checkers.
    pub fn set_targets(&mut self, targets: Vec<Target>) {
        let mut keep: HashMap<RsKey, ()> = HashMap::with_capacity(targets.len());
        for t in targets {
            if t.checkers.is_empty() {
                continue; // nothing to check: stopped below if it ran
            }
            keep.insert(t.key.clone(), ());
            match self.tasks.get_mut(&t.key) {
                Some(h) if !h.task.is_finished() => {
                    if h.checkers != t.checkers || h.omega != t.omega {
                        h.checkers = t.checkers.clone();
                        h.omega = t.omega;
                        let _ = h.ctl.send(Ctl::Update {
                            checkers: t.checkers,
                            omega: t.omega,
                        });
                    }
                }
                _ => {
                    let h = self.spawn(t);
                    // A finished task (cannot normally happen) is replaced.
                    self.tasks.insert(h.0, h.1);
                }
            }
        }
        self.tasks.retain(|k, h| {
            let stay = keep.contains_key(k);
            if !stay {
                tracing::debug!(target: "director::check", "{k}: checks stopped");
                h.task.abort();
            }
            stay
        });
    }

    fn spawn(&self, t: Target) -> (RsKey, RsHandle) {
        let mut h = std::hash::DefaultHasher::new();
        t.key.hash(&mut h);
        let mut rng = SplitMix(self.seed ^ h.finish());
        let epoch = self.epoch;
        let now = epoch.elapsed();
        let state =
            RealServerState::new(t.key.rs, &t.checkers, t.omega, now, &mut || rng.next_f64());
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(rs_task(
            t.key.clone(),
            state,
            ctl_rx,
            self.tx.clone(),
            epoch,
            rng,
        ));
        (
            t.key,
            RsHandle {
                checkers: t.checkers,
                omega: t.omega,
                ctl: ctl_tx,
                task,
            },
        )
    }

    /// The real servers being checked.
    pub fn keys(&self) -> impl Iterator<Item = &RsKey> {
        self.tasks.keys()
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every check (running MISC_CHECK scripts are killed).
    pub async fn shutdown(mut self) {
        for (_, h) in self.tasks.drain() {
            h.task.abort();
            let _ = h.task.await;
        }
    }
}

impl Drop for Checks {
    fn drop(&mut self) {
        for h in self.tasks.values() {
            h.task.abort();
        }
    }
}

type Running = Pin<Box<dyn std::future::Future<Output = (u64, CheckResult)> + Send>>;

async fn rs_task(
    key: RsKey,
    mut state: RealServerState,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    tx: mpsc::Sender<Transition>,
    epoch: Instant,
    mut rng: SplitMix,
) {
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut due = Vec::new();
    let mut ctl_open = true;
    loop {
        let now = epoch.elapsed();
        state.take_due_into(now, &mut due);
        for &i in &due {
            let cs = &state.checkers()[i];
            let c = Arc::clone(&cs.checker);
            let id = cs.id;
            let rs = key.rs;
            running.push(Box::pin(async move { (id, run_check(&c, rs).await) }));
        }
        let wake = state
            .next_due(now)
            .map(|t| epoch + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let sleep = tokio::time::sleep_until(wake);
        tokio::pin!(sleep);
        let sc = tokio::select! {
            _ = &mut sleep => None,
            Some((id, res)) = running.next(), if !running.is_empty() => {
                match state.index_of(id) {
                    Some(i) => {
                        let now = epoch.elapsed();
                        let fail = match &res { CheckResult::Fail { reason } => Some(reason.clone()), _ => None };
                        let (cc, sc) = state.on_result(i, now, res);
                        log_checker(&key, &state, i, cc, fail.as_deref());
                        sc
                    }
                    None => None, // removed by a reload while running
                }
            }
            msg = ctl.recv(), if ctl_open => match msg {
                Some(Ctl::Update { checkers, omega }) => {
                    let now = epoch.elapsed();
                    state.update(&checkers, omega, now, &mut || rng.next_f64())
                }
                None => { ctl_open = false; None }
            },
        };
        if let Some(sc) = sc {
            let t = Transition {
                key: key.clone(),
                change: sc.change,
                alive: sc.alive,
                weight: sc.weight,
                reason: sc.reason,
                kind: sc.kind,
                checker: sc.checker,
                omega: state.omega,
            };
            match t.change {
                Change::Up => {
                    tracing::info!(target: "director::check", "{}: UP: {}", t.key, t.reason)
                }
                Change::Down => {
                    tracing::info!(target: "director::check", "{}: DOWN: {}", t.key, t.reason)
                }
                Change::Weight => tracing::info!(
                    target: "director::check",
                    "{}: weight {}: {}",
                    t.key,
                    t.weight.unwrap_or_default(),
                    t.reason
                ),
            }
            if tx.send(t).await.is_err() {
                return; // nobody listens any more
            }
        }
    }
}

fn log_checker(
    key: &RsKey,
    state: &RealServerState,
    i: usize,
    cc: CheckerChange,
    fail: Option<&str>,
) {
    let c = &state.checkers()[i];
    match cc {
        CheckerChange::Up => tracing::info!(target: "director::check", "{key}: {} up", c.name),
        CheckerChange::Down => {
            tracing::info!(target: "director::check", "{key}: checker down: {}", c.last_reason)
        }
        CheckerChange::Retrying { attempt, of } => tracing::info!(
            target: "director::check",
            "{key}: {} failed ({}), retry {attempt} of {of}",
            c.name,
            fail.unwrap_or("")
        ),
        CheckerChange::None => {
            if let Some(f) = fail {
                if c.checker.common.log_all_failures {
                    tracing::info!(target: "director::check", "{key}: {} still failing: {f}", c.name);
                } else {
                    tracing::debug!(target: "director::check", "{key}: {} still failing: {f}", c.name);
                }
            }
        }
    }
}
