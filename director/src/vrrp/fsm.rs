//! The VRRP state machine (RFC 5798 §6.4, RFC 3768 §6.4) plus keepalived's
//! FAULT state, on an injected virtual clock.
//!
//! Pure: the caller feeds [`Input`]s stamped with `now` (a `Duration` since
//! any fixed epoch, e.g. `epoch.elapsed()`), performs the returned
//! [`Action`]s in order, and calls [`Fsm::handle`] with [`Input::Timer`]
//! once `now >= next_deadline()`. A timer input before the deadline is a
//! no-op, so spurious wake-ups are harmless.
//!
//! Where keepalived differs from the RFCs, this follows keepalived:
//! - FAULT (tracking failed / interface down): VIPs released, no adverts,
//!   adverts ignored; leaving it goes to BACKUP (MASTER for an owner).
//! - A master that hears a lower-priority advert answers at once with its
//!   own ("forcing new election") instead of silently discarding it.
//! - `state MASTER` below priority 255 starts as BACKUP but listens for one
//!   advert interval (+ skew) only, not the full Master_Down_Interval; a
//!   running master is still heard, so it does not flap.
//! - `preempt_delay`: no preemption earlier than `preempt_delay` after the
//!   instance started (or left FAULT). While the delay runs, a lower-priority
//!   master is followed, but the master-down timer is capped at the end of
//!   the delay, so preemption happens exactly when it ends.
//! - An entering master sends an advert before its gratuitous ARPs; actions
//!   are emitted in that order: `SendAdvert`, then `BecomeMaster`.

use std::net::IpAddr;
use std::time::Duration;

use super::packet::{Version, interval_wire};
use crate::config::{VrrpInstance, VrrpState};

/// Priority of the address owner: master at once, never preempted.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority a master sends when it stops ("master is leaving").
pub const PRIORITY_STOP: u8 = 0;

/// RFC states plus keepalived's FAULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

/// What the state machine needs from the instance configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub version: Version,
    /// Configured (base) priority; 255 = address owner.
    pub priority: u8,
    /// Our Advertisement_Interval. v2: truncated to whole seconds (1-255);
    /// v3: rounded to centiseconds (1-4095).
    pub advert_int: Duration,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    /// Our primary address: the source of our adverts, compared with a
    /// master's source on equal priorities.
    pub primary_ip: IpAddr,
}

impl FsmConfig {
    /// From the typed config; `primary_ip` is the interface's primary address
    /// (or `unicast_src_ip` / `mcast_src_ip` when configured).
    pub fn from_config(inst: &VrrpInstance, primary_ip: IpAddr) -> Self {
        FsmConfig {
            version: Version::from_u8(inst.version).unwrap_or(Version::V2),
            priority: inst.priority,
            advert_int: inst.advert_int,
            nopreempt: inst.nopreempt,
            preempt_delay: inst.preempt_delay,
            primary_ip,
        }
    }
}

/// An event for the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Leave Initialize. `initial_state` is the configured `state`.
    Startup { initial_state: VrrpState },
    /// Leave Initialize as master at once: this instance was master a
    /// moment ago and was restarted by a reload that changed it, so the
    /// peers must not see the master go (they re-elect on our adverts).
    ResumeMaster,
    /// A validated advert (see `packet::receive`) for this instance.
    /// `max_advert_int` is the advertised interval (`Advert::interval`);
    /// only v3 uses it.
    AdvertReceived {
        priority: u8,
        src_ip: IpAddr,
        max_advert_int: Duration,
    },
    /// The clock reached (or passed) `next_deadline()`.
    Timer,
    /// The instance is stopping (daemon exit, instance removed on reload).
    Shutdown,
    /// New effective priority (see [`effective_priority`]). Clamped to
    /// 1..=254; ignored for an owner (priority 255 never changes).
    PriorityChanged(u8),
    /// Fault(true): tracking failed / interface down. Fault(false): cleared.
    Fault(bool),
    /// A `vrrp_sync_group` sibling became master: a backup follows at once
    /// (keepalived's sync-group semantics), without waiting for its timer.
    SyncMaster,
    /// A sync-group sibling went from master to backup: a master follows,
    /// sending no priority-0 advert (the peer group is taking over).
    SyncBackup,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (and our own Advertisement_Interval).
    SendAdvert { priority: u8 },
    /// Add the VIPs, then send gratuitous ARPs / unsolicited NAs; notify master.
    BecomeMaster,
    /// Remove the VIPs if held; notify backup.
    BecomeBackup,
    /// Remove the VIPs if held; notify fault.
    EnterFault,
    /// Send an advert with priority 0 (master leaving, fast takeover).
    SendPriorityZero,
    /// Instance stopped: remove the VIPs if held; notify stop.
    Stop,
}

/// One VRRP instance's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: FsmConfig,
    /// Normalised Advertisement_Interval.
    adv_int: Duration,
    state: State,
    /// Effective priority.
    priority: u8,
    master_adver_int: Duration,
    deadline: Option<Duration>,
    fault: bool,
    preempt_after: Duration,
}

/// An interval as the protocol can carry it (see [`FsmConfig::advert_int`]).
pub fn normalize_interval(version: Version, d: Duration) -> Duration {
    let w = u64::from(interval_wire(version, d));
    match version {
        Version::V2 => Duration::from_secs(w),
        Version::V3 => Duration::from_millis(w * 10),
    }
}

/// keepalived's effective priority: `base` plus each tracked object's
/// weight, applied the keepalived way — a positive weight is added while the
/// object is OK, a negative one while it has failed — clamped to 1..=254.
/// `tracked` is `(weight, ok)` with `reverse` already applied by the caller.
/// A failed object with weight 0 means FAULT: `None`. An owner (255) keeps
/// 255 whatever the weights (it can still be in FAULT).
pub fn effective_priority(base: u8, tracked: &[(i32, bool)]) -> Option<u8> {
    if tracked.iter().any(|&(w, ok)| w == 0 && !ok) {
        return None;
    }
    let delta: i64 = tracked
        .iter()
        .map(|&(w, ok)| match (w > 0, ok) {
            (true, true) | (false, false) => i64::from(w),
            _ => 0,
        })
        .sum();
    Some(clamp_priority(base, delta))
}

/// keepalived's `vrrp_set_effective_priority`: `base + delta` clamped to
/// 1..=254; an owner (255) keeps 255.
pub fn clamp_priority(base: u8, delta: i64) -> u8 {
    if base == PRIORITY_OWNER {
        return PRIORITY_OWNER;
    }
    (i64::from(base) + delta).clamp(1, 254) as u8
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let adv_int = normalize_interval(cfg.version, cfg.advert_int);
        let priority = cfg.priority;
        Fsm {
            cfg,
            adv_int,
            state: State::Initialize,
            priority,
            master_adver_int: adv_int,
            deadline: None,
            fault: false,
            preempt_after: Duration::ZERO,
        }
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The effective priority adverts carry.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn is_owner(&self) -> bool {
        self.cfg.priority == PRIORITY_OWNER
    }

    /// Our Advertisement_Interval (normalised).
    pub fn advert_interval(&self) -> Duration {
        self.adv_int
    }

    /// Master_Adver_Interval: ours, or (v3) the current master's.
    pub fn master_adver_int(&self) -> Duration {
        self.master_adver_int
    }

    /// Skew_Time. v3: `((256 - priority) * Master_Adver_Interval) / 256` in
    /// whole centiseconds; v2: `(256 - priority) / 256` seconds.
    pub fn skew_time(&self) -> Duration {
        let n = u64::from(256 - u16::from(self.priority));
        match self.cfg.version {
            // (256 - p) / 256 s is an exact number of nanoseconds.
            Version::V2 => Duration::from_nanos(n * 3_906_250),
            Version::V3 => {
                let cs = self.master_adver_int.as_millis() as u64 / 10;
                Duration::from_millis(n * cs / 256 * 10)
            }
        }
    }

    /// Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_int + self.skew_time()
    }

    /// When to feed [`Input::Timer`]: the Adver_Timer (Master) or the
    /// Master_Down_Timer (Backup); `None` in Initialize and Fault.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Feed one input at virtual time `now`; returns the actions to perform.
    pub fn handle(&mut self, now: Duration, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Startup { initial_state } => {
                if self.state == State::Initialize {
                    if self.fault {
                        self.state = State::Fault;
                        out.push(Action::EnterFault);
                    } else {
                        self.run(now, initial_state == VrrpState::Master, &mut out);
                    }
                }
            }
            Input::ResumeMaster => {
                if self.state == State::Initialize {
                    self.master_adver_int = self.adv_int;
                    if self.fault {
                        self.state = State::Fault;
                        out.push(Action::EnterFault);
                    } else {
                        self.become_master(now, &mut out);
                    }
                }
            }
            Input::Shutdown => {
                match self.state {
                    State::Master => out.extend([Action::SendPriorityZero, Action::Stop]),
                    State::Backup | State::Fault => out.push(Action::Stop),
                    State::Initialize => {}
                }
                self.state = State::Initialize;
                self.deadline = None;
            }
            Input::Timer => {
                if self.deadline.is_some_and(|d| now >= d) {
                    match self.state {
                        State::Master => {
                            out.push(Action::SendAdvert {
                                priority: self.priority,
                            });
                            self.deadline = Some(now + self.adv_int);
                        }
                        State::Backup => self.become_master(now, &mut out),
                        State::Initialize | State::Fault => self.deadline = None,
                    }
                }
            }
            Input::AdvertReceived {
                priority,
                src_ip,
                max_advert_int,
            } => match self.state {
                State::Backup => self.backup_rx(now, priority, max_advert_int),
                State::Master => self.master_rx(now, priority, src_ip, max_advert_int, &mut out),
                State::Initialize | State::Fault => {}
            },
            Input::PriorityChanged(p) => {
                let p = if self.is_owner() {
                    PRIORITY_OWNER
                } else {
                    p.clamp(1, 254)
                };
                if p != self.priority {
                    self.priority = p;
                    if self.state == State::Master {
                        // Tell the backups now: a lowered master may be
                        // preempted without waiting for the next advert.
                        out.push(Action::SendAdvert { priority: p });
                        self.deadline = Some(now + self.adv_int);
                    }
                }
            }
            Input::Fault(true) => {
                self.fault = true;
                match self.state {
                    State::Master => out.extend([Action::SendPriorityZero, Action::EnterFault]),
                    State::Backup => out.push(Action::EnterFault),
                    State::Initialize | State::Fault => {}
                }
                if matches!(self.state, State::Master | State::Backup) {
                    self.state = State::Fault;
                    self.deadline = None;
                }
            }
            Input::Fault(false) => {
                self.fault = false;
                if self.state == State::Fault {
                    self.run(now, false, &mut out);
                }
            }
            Input::SyncMaster => {
                if self.state == State::Backup {
                    self.become_master(now, &mut out);
                }
            }
            Input::SyncBackup => {
                if self.state == State::Master && !self.is_owner() {
                    self.state = State::Backup;
                    self.deadline = Some(now + self.master_down_interval());
                    out.push(Action::BecomeBackup);
                }
            }
        }
        out
    }

    /// Leave Initialize / Fault (RFC §6.4.1).
    fn run(&mut self, now: Duration, want_master: bool, out: &mut Vec<Action>) {
        self.master_adver_int = self.adv_int;
        self.preempt_after = now + self.cfg.preempt_delay;
        if self.is_owner() {
            self.become_master(now, out);
            return;
        }
        self.state = State::Backup;
        out.push(Action::BecomeBackup);
        let wait = if want_master {
            self.master_adver_int + self.skew_time()
        } else {
            self.master_down_interval()
        };
        self.deadline = Some(now + wait);
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.state = State::Master;
        out.push(Action::SendAdvert {
            priority: self.priority,
        });
        out.push(Action::BecomeMaster);
        self.deadline = Some(now + self.adv_int);
    }

    fn adopt_interval(&mut self, max_advert_int: Duration) {
        if self.cfg.version == Version::V3 {
            self.master_adver_int = normalize_interval(Version::V3, max_advert_int);
        }
    }

    /// RFC 5798 §6.4.2 (Backup), with keepalived's preempt_delay.
    fn backup_rx(&mut self, now: Duration, priority: u8, max_advert_int: Duration) {
        if priority == PRIORITY_STOP {
            self.deadline = Some(now + self.skew_time());
            return;
        }
        let delaying = !self.cfg.nopreempt && now < self.preempt_after;
        let preempt = !self.cfg.nopreempt && !delaying;
        if !preempt || priority >= self.priority {
            self.adopt_interval(max_advert_int);
            let mut at = now + self.master_down_interval();
            if delaying && priority < self.priority {
                at = at.min(self.preempt_after);
            }
            self.deadline = Some(at);
        }
        // Else: a lower-priority master and we may preempt: discard, let the
        // Master_Down_Timer expire.
    }

    /// RFC 5798 §6.4.3 (Master).
    fn master_rx(
        &mut self,
        now: Duration,
        priority: u8,
        src_ip: IpAddr,
        max_advert_int: Duration,
        out: &mut Vec<Action>,
    ) {
        if priority == PRIORITY_STOP {
            out.push(Action::SendAdvert {
                priority: self.priority,
            });
            self.deadline = Some(now + self.adv_int);
            return;
        }
        if priority > self.priority
            || (priority == self.priority && ip_greater(src_ip, self.cfg.primary_ip))
        {
            self.adopt_interval(max_advert_int);
            self.state = State::Backup;
            self.deadline = Some(now + self.master_down_interval());
            out.push(Action::BecomeBackup);
        } else {
            // keepalived: "lower priority, forcing new election".
            out.push(Action::SendAdvert {
                priority: self.priority,
            });
            self.deadline = Some(now + self.adv_int);
        }
    }
}

/// Numeric comparison of primary addresses (same family in practice; an
/// IPv6 address compares greater than any IPv4 one).
fn ip_greater(a: IpAddr, b: IpAddr) -> bool {
    a > b
}
