//! Health checkers with keepalived's semantics.
//!
//! - [`state`]: the pure per-real-server state machine (virtual clock).
//! - [`tcp`], [`http`] (HTTP_GET, SSL_GET, genhash), [`misc`], [`smtp`],
//!   [`udp`], [`dns`], [`ping`], [`file`]: one run of a checker, returning a
//!   [`CheckResult`].
//! - [`Checks`]: the scheduler. One tokio task per real server runs that
//!   server's checkers on their schedule and sends a [`Transition`] on an
//!   mpsc channel when the server goes up or down (or a `misc_dynamic`
//!   weight changes). [`Checks::set_targets`] replaces the set on reload,
//!   keeping the state of every unchanged checker.
//! - [`LatenessStats`]: optional record of how late each check starts
//!   ([`Checks::with_lateness`]), for the scale benchmark.

pub mod dns;
pub mod file;
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
use std::sync::atomic::{AtomicU64, Ordering};
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
/// A FILE_CHECK naming no defined `track_file` is left out, as keepalived
/// ignores it (the config diagnostics say so).
pub fn targets_from_config(cfg: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for vs in &cfg.virtual_servers {
        for rs in &vs.real_servers {
            let checkers: Vec<Checker> = rs
                .checkers
                .iter()
                .filter(|c| !matches!(&c.check, Check::File(f) if f.file.is_none()))
                .cloned()
                .collect();
            if checkers.is_empty() {
                continue;
            }
            out.push(Target {
                key: RsKey {
                    vs: vs.key.clone(),
                    rs: SocketAddr::new(rs.ip, rs.port),
                },
                checkers,
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
    // The larger futures (TLS, processes) are boxed so that this one stays
    // the size of a TCP_CHECK's: the scheduler allocates and moves one per
    // check, thousands a second.
    match &c.check {
        Check::Tcp => tcp::check(c, rs).await,
        Check::Http(h) => Box::pin(http::check(c, h, false, rs)).await,
        Check::Ssl(h) => Box::pin(http::check(c, h, true, rs)).await,
        Check::Misc(m) => Box::pin(misc::check(c, m)).await,
        Check::Smtp(s) => Box::pin(smtp::check(c, s, rs)).await,
        Check::Udp(u) => Box::pin(udp::check(c, u, rs)).await,
        Check::Dns(d) => Box::pin(dns::check(c, d, rs)).await,
        Check::Ping => Box::pin(ping::check(c, rs)).await,
        Check::File(f) => Box::pin(file::check(f)).await,
    }
}

/// Lateness of check starts: for every check run, `actual start - due`,
/// `due` being the instant the state machine scheduled it (its `next_due`)
/// and `actual start` the first poll of the check's future. Enabled with
/// [`Checks::with_lateness`]; without it the scheduler pays one branch per
/// check, with it one `Arc` clone and one relaxed atomic add.
///
/// A fixed histogram: buckets 0.1 ms wide up to 100 ms, 10 ms wide up to
/// 10 s, then one overflow bucket. Read it with [`snapshot`](Self::snapshot)
/// (and [`LatenessSnapshot::since`] for a window).
pub struct LatenessStats {
    buckets: Box<[AtomicU64]>,
}

const LATE_FINE: u64 = 1000; // 0.1 ms buckets: [0, 100 ms)
const LATE_COARSE: u64 = 990; // 10 ms buckets: [100 ms, 10 s)
const LATE_BUCKETS: usize = (LATE_FINE + LATE_COARSE + 1) as usize;

impl Default for LatenessStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LatenessStats {
    pub fn new() -> Self {
        LatenessStats {
            buckets: (0..LATE_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket(late: Duration) -> usize {
        let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
        let i = if us < LATE_FINE * 100 {
            us / 100
        } else {
            (LATE_FINE + (us - LATE_FINE * 100) / 10_000).min(LATE_FINE + LATE_COARSE)
        };
        i as usize
    }

    /// The upper bound of bucket `i` (the overflow bucket reports 10 s).
    fn upper(i: usize) -> Duration {
        let i = i as u64;
        if i < LATE_FINE {
            Duration::from_micros((i + 1) * 100)
        } else {
            let c = (i - LATE_FINE + 1).min(LATE_COARSE);
            Duration::from_micros(LATE_FINE * 100 + c * 10_000)
        }
    }

    pub fn record(&self, late: Duration) {
        self.buckets[Self::bucket(late)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// The counts of a [`LatenessStats`] at one instant.
#[derive(Debug, Clone)]
pub struct LatenessSnapshot {
    counts: Vec<u64>,
}

impl LatenessSnapshot {
    /// Checks recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The checks recorded after `earlier` (a snapshot of the same stats).
    pub fn since(&self, earlier: &LatenessSnapshot) -> LatenessSnapshot {
        LatenessSnapshot {
            counts: self
                .counts
                .iter()
                .zip(&earlier.counts)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// The `q` quantile (0..=1), as the upper bound of its bucket (so 0.1 ms
    /// resolution below 100 ms; 10 s means "10 s or more"). None when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LatenessStats::upper(i));
            }
        }
        None
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
    lateness: Option<Arc<LatenessStats>>,
}

impl Checks {
    /// `seed` drives the warmup spread (deterministic per real server).
    pub fn new(tx: mpsc::Sender<Transition>, seed: u64) -> Self {
        Checks {
            tasks: HashMap::new(),
            tx,
            seed,
            epoch: Instant::now(),
            lateness: None,
        }
    }

    /// Records the lateness of every check start into `stats` (see
    /// [`LatenessStats`]). Applies to the real servers started after it:
    /// call it before [`set_targets`](Self::set_targets).
    pub fn with_lateness(mut self, stats: Arc<LatenessStats>) -> Self {
        self.lateness = Some(stats);
        self
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
            self.lateness.clone(),
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
    lateness: Option<Arc<LatenessStats>>,
) {
    let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
    let mut due = Vec::new();
    let mut ctl_open = true;
    // One timer entry for the task's life, re-armed each turn.
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    loop {
        let now = epoch.elapsed();
        state.take_due_into(now, &mut due);
        for &i in &due {
            let cs = &state.checkers()[i];
            let c = Arc::clone(&cs.checker);
            let id = cs.id;
            let rs = key.rs;
            let late = lateness.as_ref().map(|l| (Arc::clone(l), cs.next_due));
            running.push(Box::pin(async move {
                if let Some((l, due)) = late {
                    l.record(epoch.elapsed().saturating_sub(due));
                }
                (id, run_check(&c, rs).await)
            }));
        }
        let wake = state
            .next_due(now)
            .map(|t| epoch + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        if sleep.deadline() != wake || sleep.is_elapsed() {
            sleep.as_mut().reset(wake);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CheckCommon;

    #[test]
    fn lateness_histogram_quantiles() {
        let s = LatenessStats::new();
        assert_eq!(s.snapshot().quantile(0.99), None);
        for us in [0, 50, 99, 100, 250] {
            s.record(Duration::from_micros(us));
        }
        let a = s.snapshot();
        assert_eq!(a.count(), 5);
        assert_eq!(a.quantile(0.0), Some(Duration::from_micros(100)));
        assert_eq!(a.quantile(0.6), Some(Duration::from_micros(100)));
        assert_eq!(a.quantile(0.8), Some(Duration::from_micros(200)));
        assert_eq!(a.quantile(1.0), Some(Duration::from_micros(300)));
        s.record(Duration::from_millis(150));
        s.record(Duration::from_secs(3600));
        let b = s.snapshot().since(&a);
        assert_eq!(b.count(), 2);
        assert_eq!(b.quantile(0.5), Some(Duration::from_millis(160)));
        assert_eq!(b.quantile(1.0), Some(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn lateness_is_recorded_and_small() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let srv = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        let checker = Checker {
            common: CheckCommon {
                connect_ip: None,
                connect_port: None,
                bindto: None,
                bind_if: None,
                bind_port: None,
                fwmark: None,
                connect_timeout: Duration::from_secs(2),
                retry: 1,
                delay_before_retry: Duration::from_millis(50),
                delay_loop: Duration::from_millis(100),
                warmup: Some(Duration::from_millis(50)),
                alpha: false,
                log_all_failures: false,
            },
            check: Check::Tcp,
        };
        let targets: Vec<Target> = (0..3u16)
            .map(|i| Target {
                key: RsKey {
                    vs: VsKey::Addr {
                        ip: "10.0.0.100".parse().unwrap(),
                        port: 80 + i,
                    },
                    rs: addr,
                },
                checkers: vec![checker.clone()],
                omega: false,
            })
            .collect();
        let (tx, _rx) = mpsc::channel(16);
        let stats = Arc::new(LatenessStats::new());
        let mut checks = Checks::new(tx, 7).with_lateness(Arc::clone(&stats));
        checks.set_targets(targets);
        // Warmup below 50 ms, then one check per 100 ms each: about 12
        // checks in 450 ms; at least the first one of each must be there.
        tokio::time::sleep(Duration::from_millis(450)).await;
        checks.shutdown().await;
        srv.abort();
        let snap = stats.snapshot();
        assert!(snap.count() >= 3, "{} checks recorded", snap.count());
        // Bounded: a check starts within one timer tick (1 ms) of its due
        // time on an idle runtime; the bound leaves room for a loaded host.
        let max = snap.quantile(1.0).unwrap();
        assert!(max <= Duration::from_millis(250), "max lateness {max:?}");
    }
}
