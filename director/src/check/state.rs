//! The pure health-check state machine of one real server.
//!
//! No tokio, no clock: time is a [`VTime`] (a `Duration` since an epoch the
//! caller chooses), results are fed in with the instant they completed, and
//! [`RealServerState::next_due`] tells when the next check must start. The
//! scheduler in `check::mod` and the tests drive it the same way.
//!
//! keepalived's semantics (check_tcp.c `tcp_epilog`, shared by the others):
//! - a real server is alive when every one of its checkers is up;
//! - a checker that is up goes down after `retry + 1` consecutive failures:
//!   the first failure, then `retry` retries spaced by `delay_before_retry`;
//! - a checker that is down comes back up on its first success;
//! - a checker that is down is checked every `delay_loop` (no retries);
//! - `alpha` starts a checker down (else up);
//! - after a success, or after the failure that took it down, the next check
//!   is `delay_loop` later; after a failure that still retries, it is
//!   `delay_before_retry` later (both counted from the end of the check);
//! - the first check starts after a random delay in `[0, warmup]`
//!   (`warmup` unset = `delay_loop`); the randomness is injected.
//! - MISC_CHECK `misc_dynamic`: an exit code 2..=255 is a success that sets
//!   the real server's weight to `code - 2`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Check, Checker, CheckerKind};

/// Virtual time: the time since an epoch the caller chooses.
pub type VTime = Duration;

/// What one run of a checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Success; `weight` is the dynamic weight of a `misc_dynamic` MISC_CHECK.
    Ok {
        weight: Option<u32>,
    },
    Fail {
        reason: String,
    },
}

impl CheckResult {
    pub fn ok() -> Self {
        CheckResult::Ok { weight: None }
    }
    pub fn fail(reason: impl Into<String>) -> Self {
        CheckResult::Fail {
            reason: reason.into(),
        }
    }
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok { .. })
    }
}

/// What changed for the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The real server became alive (all its checkers are up).
    Up,
    /// The real server stopped being alive (one checker went down).
    Down,
    /// A `misc_dynamic` MISC_CHECK changed the weight; aliveness unchanged.
    Weight,
}

/// A change of a real server's state, caused by checker `checker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub change: Change,
    /// Index of the checker whose result caused it.
    pub checker: usize,
    pub kind: CheckerKind,
    /// Whether the real server is alive after the change.
    pub alive: bool,
    /// The dynamic weight (MISC_CHECK misc_dynamic), when one was reported.
    pub weight: Option<u32>,
    /// Human-readable cause, e.g. "HTTP_GET http://10.0.0.11:80/ status 500, expected 200-299".
    pub reason: String,
}

/// What a checker's own state did on a result (for logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerChange {
    None,
    Up,
    Down,
    /// A failure that will be retried in `delay_before_retry`.
    Retrying {
        attempt: u32,
        of: u32,
    },
}

/// The timing and state of one checker.
#[derive(Debug, Clone)]
pub struct CheckerState {
    pub checker: Arc<Checker>,
    /// "TCP_CHECK 10.0.0.11:80", "HTTP_GET http://10.0.0.11:80/", ...
    pub name: String,
    /// Stable id inside its real server (survives reloads).
    pub id: u64,
    pub up: bool,
    pub has_run: bool,
    pub retry_it: u32,
    pub next_due: VTime,
    pub in_flight: bool,
    pub weight: Option<u32>,
    /// The reason of the last transition (or of the last failure).
    pub last_reason: String,
}

impl CheckerState {
    fn retry(&self) -> u32 {
        self.checker.common.retry
    }
    fn delay_loop(&self) -> Duration {
        self.checker.common.delay_loop
    }
    fn delay_before_retry(&self) -> Duration {
        self.checker.common.delay_before_retry
    }
}

/// The warmup bound of a checker: `warmup`, or `delay_loop` when unset.
pub fn warmup_bound(c: &Checker) -> Duration {
    c.common.warmup.unwrap_or(c.common.delay_loop)
}

/// The state of every checker of one real server.
#[derive(Debug, Clone)]
pub struct RealServerState {
    rs: SocketAddr,
    checkers: Vec<CheckerState>,
    next_id: u64,
    /// `omega` of the virtual server: run quorum_down on shutdown (kept as a flag).
    pub omega: bool,
    alive: bool,
    weight: Option<u32>,
}

impl RealServerState {
    /// `rand` returns a number in `[0, 1]` per checker: its warmup fraction.
    pub fn new(
        rs: SocketAddr,
        checkers: &[Checker],
        omega: bool,
        now: VTime,
        rand: &mut dyn FnMut() -> f64,
    ) -> Self {
        let mut s = RealServerState {
            rs,
            checkers: Vec::new(),
            next_id: 0,
            omega,
            alive: true,
            weight: None,
        };
        for c in checkers {
            let cs = s.fresh(c, now, rand);
            s.checkers.push(cs);
        }
        s.alive = s.compute_alive();
        s
    }

    fn fresh(&mut self, c: &Checker, now: VTime, rand: &mut dyn FnMut() -> f64) -> CheckerState {
        let frac = rand().clamp(0.0, 1.0);
        let delay = warmup_bound(c).mul_f64(frac);
        let id = self.next_id;
        self.next_id += 1;
        CheckerState {
            name: describe(c, self.rs),
            checker: Arc::new(c.clone()),
            id,
            up: !c.common.alpha,
            has_run: false,
            retry_it: 0,
            next_due: now + delay,
            in_flight: false,
            weight: None,
            last_reason: String::new(),
        }
    }

    /// Replaces the checkers (a reload). A checker equal to one already
    /// there keeps its state and schedule; the others start fresh (with a
    /// warmup delay). Returns a change when aliveness changed.
    pub fn update(
        &mut self,
        checkers: &[Checker],
        omega: bool,
        now: VTime,
        rand: &mut dyn FnMut() -> f64,
    ) -> Option<StateChange> {
        self.omega = omega;
        let mut old: Vec<Option<CheckerState>> = std::mem::take(&mut self.checkers)
            .into_iter()
            .map(Some)
            .collect();
        let mut new = Vec::with_capacity(checkers.len());
        for c in checkers {
            let kept = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| *o.checker == *c))
                .and_then(|o| o.take());
            match kept {
                Some(k) => new.push(k),
                None => {
                    let f = self.fresh(c, now, rand);
                    new.push(f)
                }
            }
        }
        self.checkers = new;
        let was = self.alive;
        self.alive = self.compute_alive();
        if was == self.alive {
            return None;
        }
        Some(StateChange {
            change: if self.alive { Change::Up } else { Change::Down },
            checker: 0,
            kind: self
                .checkers
                .first()
                .map(|c| c.checker.kind())
                .unwrap_or(CheckerKind::Tcp),
            alive: self.alive,
            weight: self.weight,
            reason: "checkers changed by a reload".to_string(),
        })
    }

    fn compute_alive(&self) -> bool {
        self.checkers.iter().all(|c| c.up)
    }

    pub fn rs(&self) -> SocketAddr {
        self.rs
    }
    pub fn alive(&self) -> bool {
        self.alive
    }
    /// The last dynamic weight a `misc_dynamic` checker reported.
    pub fn weight(&self) -> Option<u32> {
        self.weight
    }
    pub fn checkers(&self) -> &[CheckerState] {
        &self.checkers
    }
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.checkers.iter().position(|c| c.id == id)
    }

    /// The earliest instant a checker that is not running is due, if any.
    /// `now` is only used to clamp: a due time in the past is returned as `now`.
    pub fn next_due(&self, now: VTime) -> Option<VTime> {
        self.checkers
            .iter()
            .filter(|c| !c.in_flight)
            .map(|c| c.next_due.max(now))
            .min()
    }

    /// The checkers due at `now`; they are marked running until their result.
    pub fn take_due(&mut self, now: VTime) -> Vec<usize> {
        let mut v = Vec::new();
        self.take_due_into(now, &mut v);
        v
    }

    /// Like [`take_due`](Self::take_due), into a reused buffer.
    pub fn take_due_into(&mut self, now: VTime, out: &mut Vec<usize>) {
        out.clear();
        for (i, c) in self.checkers.iter_mut().enumerate() {
            if !c.in_flight && c.next_due <= now {
                c.in_flight = true;
                out.push(i);
            }
        }
    }

    /// Feeds the result of checker `idx`, finished at `now`.
    pub fn on_result(
        &mut self,
        idx: usize,
        now: VTime,
        result: CheckResult,
    ) -> (CheckerChange, Option<StateChange>) {
        let c = &mut self.checkers[idx];
        c.in_flight = false;
        let mut delay = c.delay_loop();
        let mut cc = CheckerChange::None;
        let mut reason = String::new();
        let mut weight_changed = false;
        match result {
            CheckResult::Ok { weight } => {
                c.retry_it = 0;
                if !c.up {
                    c.up = true;
                    cc = CheckerChange::Up;
                    reason = format!("{} succeeded", c.name);
                    c.last_reason = reason.clone();
                }
                if weight.is_some() && weight != c.weight {
                    c.weight = weight;
                    weight_changed = true;
                    if reason.is_empty() {
                        reason = format!("{} set weight {}", c.name, weight.unwrap_or_default());
                    }
                }
            }
            CheckResult::Fail { reason: why } => {
                // HTTP reasons start with the path: "HTTP_GET http://ip:port" + "/x status 500".
                let sep = if why.starts_with('/') { "" } else { " " };
                let why = format!("{}{sep}{}", c.name, why);
                if (c.up || !c.has_run) && c.retry_it >= c.retry() {
                    c.retry_it = 0;
                    if c.up {
                        c.up = false;
                        cc = CheckerChange::Down;
                        reason = if c.retry() > 0 && c.has_run {
                            format!("{why} (after {} retries)", c.retry())
                        } else {
                            why.clone()
                        };
                        c.last_reason = reason.clone();
                    }
                } else if c.up {
                    delay = c.delay_before_retry();
                    c.retry_it += 1;
                    cc = CheckerChange::Retrying {
                        attempt: c.retry_it,
                        of: c.retry(),
                    };
                }
                if cc != CheckerChange::Down {
                    c.last_reason = why;
                }
            }
        }
        c.has_run = true;
        c.next_due = now + delay;
        let kind = c.checker.kind();
        let cw = c.weight;
        if weight_changed {
            self.weight = cw;
        }
        let was = self.alive;
        self.alive = self.compute_alive();
        let change = if was != self.alive {
            Some(if self.alive { Change::Up } else { Change::Down })
        } else if weight_changed {
            Some(Change::Weight)
        } else {
            None
        };
        let sc = change.map(|change| StateChange {
            change,
            checker: idx,
            kind,
            alive: self.alive,
            weight: if weight_changed { cw } else { None },
            reason,
        });
        (cc, sc)
    }
}

/// A short name of what a checker checks, used as the prefix of reasons.
pub fn describe(c: &Checker, rs: SocketAddr) -> String {
    let ip = c.common.connect_ip.unwrap_or(rs.ip());
    let port = c.common.connect_port.unwrap_or(rs.port());
    let addr = SocketAddr::new(ip, port);
    match &c.check {
        Check::Tcp => format!("TCP_CHECK {addr}"),
        Check::Http(h) | Check::Ssl(h) => {
            let (kw, scheme) = if matches!(c.check, Check::Ssl(_)) {
                ("SSL_GET", "https")
            } else {
                ("HTTP_GET", "http")
            };
            let _ = h;
            // The failure reasons of HTTP checkers start with the URL path.
            format!("{kw} {scheme}://{addr}")
        }
        Check::Misc(m) => match &m.misc_path {
            Some(s) => format!("MISC_CHECK `{}`", s.command),
            None => "MISC_CHECK".to_string(),
        },
        Check::Smtp(_) => format!("SMTP_CHECK {addr}"),
        Check::Dns(d) => format!("DNS_CHECK {addr} {} {}", d.query_type, d.name),
        Check::Udp(_) => format!("UDP_CHECK {addr}"),
        Check::Ping => format!("PING_CHECK {ip}"),
        Check::File(f) => match &f.file {
            Some(path) => format!("FILE_CHECK {} ({path})", f.track_file),
            None => format!("FILE_CHECK {}", f.track_file),
        },
    }
}

/// A tiny deterministic PRNG (splitmix64) for warmup fractions.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `[0, 1]`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / ((1u64 << 53) - 1) as f64
    }
}
