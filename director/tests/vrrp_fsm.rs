//! The VRRP state machine on a virtual clock: every RFC 5798 §6.4 transition
//! plus keepalived's FAULT, preempt_delay and nopreempt, with exact times.

use std::net::IpAddr;
use std::time::Duration;

use director::config::VrrpState;
use director::vrrp::fsm::{Action, Fsm, FsmConfig, Input, State, effective_priority};
use director::vrrp::packet::Version;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}
const NS: Duration = Duration::from_nanos(1);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg(version: Version, priority: u8) -> FsmConfig {
    FsmConfig {
        version,
        priority,
        advert_int: Duration::from_secs(1),
        nopreempt: false,
        preempt_delay: Duration::ZERO,
        primary_ip: ip("10.0.0.2"),
    }
}

fn started(c: FsmConfig, initial: VrrpState) -> (Fsm, Vec<Action>) {
    let mut f = Fsm::new(c);
    let a = f.handle(
        Duration::ZERO,
        Input::Startup {
            initial_state: initial,
        },
    );
    (f, a)
}

fn advert(priority: u8, src: &str) -> Input {
    Input::AdvertReceived {
        priority,
        src_ip: ip(src),
        max_advert_int: Duration::from_secs(1),
    }
}

fn advert_int(priority: u8, src: &str, int: Duration) -> Input {
    Input::AdvertReceived {
        priority,
        src_ip: ip(src),
        max_advert_int: int,
    }
}

/// A v2 backup at priority 100 that became master at its master-down time.
fn master_v2(priority: u8) -> (Fsm, Duration) {
    let (mut f, _) = started(cfg(Version::V2, priority), VrrpState::Backup);
    let t = f.next_deadline().unwrap();
    let a = f.handle(t, Input::Timer);
    assert_eq!(
        a,
        vec![Action::SendAdvert { priority }, Action::BecomeMaster]
    );
    (f, t)
}

// v2 Skew_Time for priority 100: (256-100)/256 s = 0.609375 s.
const SKEW_V2_100: Duration = us(609_375);

#[test]
fn init_to_backup_arms_master_down_timer() {
    let (f, a) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert_eq!(a, vec![Action::BecomeBackup]);
    assert_eq!(f.state(), State::Backup);
    assert_eq!(f.skew_time(), SKEW_V2_100);
    assert_eq!(f.master_down_interval(), ms(3000) + SKEW_V2_100);
    assert_eq!(f.next_deadline(), Some(ms(3000) + SKEW_V2_100));
}

#[test]
fn owner_255_is_master_at_once_and_advertises_every_interval() {
    let (mut f, a) = started(cfg(Version::V2, 255), VrrpState::Backup);
    assert_eq!(
        a,
        vec![Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
    assert_eq!(f.state(), State::Master);
    assert_eq!(f.next_deadline(), Some(ms(1000)));
    assert!(f.handle(ms(1000) - NS, Input::Timer).is_empty());
    assert_eq!(
        f.handle(ms(1000), Input::Timer),
        vec![Action::SendAdvert { priority: 255 }]
    );
    assert_eq!(f.next_deadline(), Some(ms(2000)));
    // Tracking cannot lower an owner.
    assert!(f.handle(ms(1500), Input::PriorityChanged(50)).is_empty());
    assert_eq!(f.priority(), 255);
    // Another 254 router does not displace it; it answers at once.
    assert_eq!(
        f.handle(ms(1600), advert(254, "10.0.0.9")),
        vec![Action::SendAdvert { priority: 255 }]
    );
    assert_eq!(f.state(), State::Master);
}

#[test]
fn state_master_below_255_listens_one_interval_first() {
    let (mut f, a) = started(cfg(Version::V2, 100), VrrpState::Master);
    assert_eq!(a, vec![Action::BecomeBackup]);
    let t = ms(1000) + SKEW_V2_100;
    assert_eq!(f.next_deadline(), Some(t));
    assert_eq!(
        f.handle(t, Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
}

#[test]
fn backup_becomes_master_exactly_at_master_down() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    let t = ms(3000) + SKEW_V2_100;
    assert!(f.handle(t - NS, Input::Timer).is_empty());
    assert_eq!(f.state(), State::Backup);
    assert_eq!(
        f.handle(t, Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
    assert_eq!(f.state(), State::Master);
    assert_eq!(f.next_deadline(), Some(t + ms(1000)));
    // A late timer (the caller overslept) advertises once and re-arms from now.
    let late = t + ms(5000);
    assert_eq!(
        f.handle(late, Input::Timer),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(f.next_deadline(), Some(late + ms(1000)));
}

#[test]
fn backup_stays_backup_while_adverts_arrive() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    for s in 1..=20u64 {
        let now = ms(s * 1000);
        assert!(f.handle(now - NS, Input::Timer).is_empty());
        // Equal priority counts as a master too (RFC: ">= local priority").
        let p = if s % 2 == 0 { 200 } else { 100 };
        assert!(f.handle(now, advert(p, "10.0.0.1")).is_empty());
        assert_eq!(f.next_deadline(), Some(now + ms(3000) + SKEW_V2_100));
    }
    assert_eq!(f.state(), State::Backup);
    // Then the master goes silent.
    let t = ms(20_000) + ms(3000) + SKEW_V2_100;
    assert_eq!(
        f.handle(t, Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
}

#[test]
fn master_steps_down_on_higher_priority() {
    let (mut f, t) = master_v2(100);
    let now = t + ms(300);
    assert_eq!(
        f.handle(now, advert(150, "10.0.0.1")),
        vec![Action::BecomeBackup]
    );
    assert_eq!(f.state(), State::Backup);
    assert_eq!(f.next_deadline(), Some(now + ms(3000) + SKEW_V2_100));
}

#[test]
fn master_stays_on_lower_priority_and_answers() {
    let (mut f, t) = master_v2(100);
    let now = t + ms(300);
    assert_eq!(
        f.handle(now, advert(50, "10.0.0.200")),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(f.state(), State::Master);
    assert_eq!(f.next_deadline(), Some(now + ms(1000)));
}

#[test]
fn equal_priority_higher_ip_wins() {
    // Ours is 10.0.0.2. A higher address takes over...
    let (mut f, t) = master_v2(100);
    assert_eq!(
        f.handle(t + ms(1), advert(100, "10.0.0.3")),
        vec![Action::BecomeBackup]
    );
    assert_eq!(f.state(), State::Backup);
    // ...a lower one does not.
    let (mut f, t) = master_v2(100);
    assert_eq!(
        f.handle(t + ms(1), advert(100, "10.0.0.1")),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(f.state(), State::Master);
    // Numeric, not textual: 10.0.0.10 > 10.0.0.2.
    let (mut f, t) = master_v2(100);
    assert_eq!(
        f.handle(t + ms(1), advert(100, "10.0.0.10")),
        vec![Action::BecomeBackup]
    );
}

#[test]
fn equal_priority_tie_break_ipv6() {
    let mut c = cfg(Version::V3, 100);
    c.primary_ip = ip("fe80::2");
    let (mut f, _) = started(c.clone(), VrrpState::Backup);
    let t = f.next_deadline().unwrap();
    f.handle(t, Input::Timer);
    assert_eq!(f.state(), State::Master);
    assert_eq!(
        f.handle(t + ms(1), advert(100, "fe80::1")),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(
        f.handle(t + ms(2), advert(100, "fe80::1:0")),
        vec![Action::BecomeBackup]
    );
}

#[test]
fn priority_zero_gives_fast_takeover_after_skew() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    f.handle(ms(1000), advert(200, "10.0.0.1"));
    let now = ms(1500);
    assert!(f.handle(now, advert(0, "10.0.0.1")).is_empty());
    assert_eq!(f.next_deadline(), Some(now + SKEW_V2_100));
    assert!(f.handle(now + SKEW_V2_100 - NS, Input::Timer).is_empty());
    assert_eq!(
        f.handle(now + SKEW_V2_100, Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
}

#[test]
fn priority_zero_v3_skew_in_centiseconds() {
    let (mut f, _) = started(cfg(Version::V3, 100), VrrpState::Backup);
    // (256-100) * 100 cs / 256 = 60.9 → 60 cs.
    assert_eq!(f.skew_time(), ms(600));
    assert_eq!(f.next_deadline(), Some(ms(3600)));
    f.handle(ms(200), advert(0, "10.0.0.1"));
    assert_eq!(f.next_deadline(), Some(ms(800)));
    assert_eq!(
        f.handle(ms(800), Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
}

#[test]
fn master_answers_priority_zero_at_once() {
    let (mut f, t) = master_v2(100);
    let now = t + ms(100);
    assert_eq!(
        f.handle(now, advert(0, "10.0.0.9")),
        vec![Action::SendAdvert { priority: 100 }]
    );
    assert_eq!(f.next_deadline(), Some(now + ms(1000)));
    assert_eq!(f.state(), State::Master);
}

// v2 Skew_Time for priority 150: 106/256 s.
const SKEW_V2_150: Duration = Duration::from_nanos(106 * 3_906_250);

#[test]
fn preempt_higher_backup_ignores_lower_master() {
    let (mut f, _) = started(cfg(Version::V2, 150), VrrpState::Backup);
    for s in 1..=3 {
        assert!(f.handle(ms(s * 1000), advert(100, "10.0.0.1")).is_empty());
    }
    // Lower adverts were discarded: the startup timer still runs.
    let t = ms(3000) + SKEW_V2_150;
    assert_eq!(f.next_deadline(), Some(t));
    assert_eq!(
        f.handle(t, Input::Timer),
        vec![Action::SendAdvert { priority: 150 }, Action::BecomeMaster]
    );
}

#[test]
fn nopreempt_higher_backup_follows_lower_master() {
    let mut c = cfg(Version::V2, 150);
    c.nopreempt = true;
    let (mut f, _) = started(c, VrrpState::Backup);
    for s in 1..=60 {
        let now = ms(s * 1000);
        assert!(f.handle(now - NS, Input::Timer).is_empty());
        assert!(f.handle(now, advert(100, "10.0.0.1")).is_empty());
        assert_eq!(f.next_deadline(), Some(now + ms(3000) + SKEW_V2_150));
    }
    assert_eq!(f.state(), State::Backup);
}

#[test]
fn preempt_delay_preempts_exactly_when_it_ends() {
    let mut c = cfg(Version::V2, 150);
    c.preempt_delay = ms(10_000);
    let (mut f, _) = started(c, VrrpState::Backup);
    for s in 1..=9u64 {
        let now = ms(s * 1000);
        assert!(f.handle(now - NS, Input::Timer).is_empty(), "at {s}s");
        f.handle(now, advert(100, "10.0.0.1"));
        let expect = (now + ms(3000) + SKEW_V2_150).min(ms(10_000));
        assert_eq!(f.next_deadline(), Some(expect));
    }
    assert!(f.handle(ms(10_000) - NS, Input::Timer).is_empty());
    assert_eq!(
        f.handle(ms(10_000), Input::Timer),
        vec![Action::SendAdvert { priority: 150 }, Action::BecomeMaster]
    );
}

#[test]
fn preempt_delay_does_not_delay_failover_or_higher_masters() {
    let mut c = cfg(Version::V2, 150);
    c.preempt_delay = ms(60_000);
    let (mut f, _) = started(c, VrrpState::Backup);
    // A higher master is followed normally.
    f.handle(ms(1000), advert(200, "10.0.0.1"));
    assert_eq!(f.next_deadline(), Some(ms(4000) + SKEW_V2_150));
    // A silent master is replaced at master-down, delay or not.
    assert_eq!(
        f.handle(ms(4000) + SKEW_V2_150, Input::Timer),
        vec![Action::SendAdvert { priority: 150 }, Action::BecomeMaster]
    );
}

#[test]
fn fault_in_and_out_from_backup() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert_eq!(
        f.handle(ms(500), Input::Fault(true)),
        vec![Action::EnterFault]
    );
    assert_eq!(f.state(), State::Fault);
    assert_eq!(f.next_deadline(), None);
    assert!(f.handle(ms(600), Input::Fault(true)).is_empty());
    assert!(f.handle(ms(700), advert(200, "10.0.0.1")).is_empty());
    assert!(f.handle(ms(100_000), Input::Timer).is_empty());
    assert_eq!(f.state(), State::Fault);
    assert_eq!(
        f.handle(ms(200_000), Input::Fault(false)),
        vec![Action::BecomeBackup]
    );
    assert_eq!(f.state(), State::Backup);
    assert_eq!(
        f.next_deadline(),
        Some(ms(200_000) + ms(3000) + SKEW_V2_100)
    );
}

#[test]
fn fault_from_master_sends_priority_zero() {
    let (mut f, t) = master_v2(100);
    assert_eq!(
        f.handle(t + ms(1), Input::Fault(true)),
        vec![Action::SendPriorityZero, Action::EnterFault]
    );
    assert_eq!(f.state(), State::Fault);
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn fault_before_startup_starts_in_fault() {
    let mut f = Fsm::new(cfg(Version::V2, 255));
    assert!(f.handle(Duration::ZERO, Input::Fault(true)).is_empty());
    assert_eq!(
        f.handle(
            ms(1),
            Input::Startup {
                initial_state: VrrpState::Master
            }
        ),
        vec![Action::EnterFault]
    );
    assert_eq!(f.state(), State::Fault);
    // An owner leaving FAULT is master at once.
    assert_eq!(
        f.handle(ms(5000), Input::Fault(false)),
        vec![Action::SendAdvert { priority: 255 }, Action::BecomeMaster]
    );
    assert_eq!(f.next_deadline(), Some(ms(6000)));
}

#[test]
fn shutdown_as_master_sends_priority_zero() {
    let (mut f, t) = master_v2(100);
    assert_eq!(
        f.handle(t + ms(1), Input::Shutdown),
        vec![Action::SendPriorityZero, Action::Stop]
    );
    assert_eq!(f.state(), State::Initialize);
    assert_eq!(f.next_deadline(), None);
    assert!(f.handle(t + ms(10_000), Input::Timer).is_empty());
    // Backup and Fault just stop; Initialize does nothing.
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert_eq!(f.handle(ms(1), Input::Shutdown), vec![Action::Stop]);
    assert!(f.handle(ms(2), Input::Shutdown).is_empty());
    // And it can start again.
    assert_eq!(
        f.handle(
            ms(3),
            Input::Startup {
                initial_state: VrrpState::Backup
            }
        ),
        vec![Action::BecomeBackup]
    );
}

#[test]
fn startup_twice_is_ignored() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert!(
        f.handle(
            ms(5),
            Input::Startup {
                initial_state: VrrpState::Master
            }
        )
        .is_empty()
    );
    assert_eq!(f.next_deadline(), Some(ms(3000) + SKEW_V2_100));
}

#[test]
fn v3_backup_adopts_master_interval() {
    let (mut f, _) = started(cfg(Version::V3, 100), VrrpState::Backup);
    assert_eq!(f.master_adver_int(), ms(1000));
    f.handle(ms(100), advert_int(200, "10.0.0.1", ms(500)));
    assert_eq!(f.master_adver_int(), ms(500));
    // Skew: 156 * 50 / 256 = 30 cs; MDI = 3 * 0.5 + 0.3 = 1.8 s.
    assert_eq!(f.skew_time(), ms(300));
    assert_eq!(f.next_deadline(), Some(ms(1900)));
    // Taking over, we advertise our own interval again.
    assert_eq!(
        f.handle(ms(1900), Input::Timer),
        vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]
    );
    assert_eq!(f.next_deadline(), Some(ms(2900)));
}

#[test]
fn v3_master_stepping_down_adopts_interval() {
    let (mut f, _) = started(cfg(Version::V3, 100), VrrpState::Backup);
    f.handle(ms(3600), Input::Timer);
    assert_eq!(f.state(), State::Master);
    assert_eq!(
        f.handle(ms(4000), advert_int(120, "10.0.0.1", ms(2000))),
        vec![Action::BecomeBackup]
    );
    // 3 * 2 s + (156 * 200 / 256 = 121 cs).
    assert_eq!(f.master_adver_int(), ms(2000));
    assert_eq!(f.next_deadline(), Some(ms(4000) + ms(6000) + ms(1210)));
}

#[test]
fn v3_intervals_are_centiseconds() {
    let mut c = cfg(Version::V3, 100);
    c.advert_int = ms(234); // rounds to 23 cs
    let f = Fsm::new(c);
    assert_eq!(f.advert_interval(), ms(230));
    let (mut f, _) = started(cfg(Version::V3, 100), VrrpState::Backup);
    // A master's 50 s (impossible on the wire) is bounded to 40.95 s.
    f.handle(ms(1), advert_int(200, "10.0.0.1", ms(50_000)));
    assert_eq!(f.master_adver_int(), ms(40_950));
}

#[test]
fn v2_uses_whole_seconds_and_ignores_advertised_interval() {
    let mut c = cfg(Version::V2, 100);
    c.advert_int = ms(2500); // v2 cannot carry this: 2 s
    let (mut f, _) = started(c, VrrpState::Backup);
    assert_eq!(f.advert_interval(), ms(2000));
    // Skew does not scale with the interval in v2.
    assert_eq!(f.skew_time(), SKEW_V2_100);
    assert_eq!(f.next_deadline(), Some(ms(6000) + SKEW_V2_100));
    f.handle(ms(1000), advert_int(200, "10.0.0.1", ms(7000)));
    assert_eq!(f.master_adver_int(), ms(2000));
    assert_eq!(f.next_deadline(), Some(ms(7000) + SKEW_V2_100));
    // Sub-second v2 config becomes 1 s.
    let mut c = cfg(Version::V2, 100);
    c.advert_int = ms(300);
    assert_eq!(Fsm::new(c).advert_interval(), ms(1000));
}

#[test]
fn priority_change_as_master_advertises_at_once() {
    let (mut f, t) = master_v2(100);
    let now = t + ms(250);
    assert_eq!(
        f.handle(now, Input::PriorityChanged(80)),
        vec![Action::SendAdvert { priority: 80 }]
    );
    assert_eq!(f.next_deadline(), Some(now + ms(1000)));
    assert!(f.handle(now, Input::PriorityChanged(80)).is_empty());
    // Clamped for a non-owner.
    f.handle(now, Input::PriorityChanged(0));
    assert_eq!(f.priority(), 1);
    f.handle(now, Input::PriorityChanged(255));
    assert_eq!(f.priority(), 254);
}

#[test]
fn raised_backup_preempts_lower_master() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    f.handle(ms(1000), advert(120, "10.0.0.1"));
    assert!(f.handle(ms(1500), Input::PriorityChanged(130)).is_empty());
    // The master's 120 is now lower: discarded, the timer from 1 s runs out.
    // (Skew was computed at priority 100 when the timer was reset.)
    assert!(f.handle(ms(2000), advert(120, "10.0.0.1")).is_empty());
    let t = ms(1000) + ms(3000) + SKEW_V2_100;
    assert_eq!(f.next_deadline(), Some(t));
    assert_eq!(
        f.handle(t, Input::Timer),
        vec![Action::SendAdvert { priority: 130 }, Action::BecomeMaster]
    );
}

#[test]
fn lowered_master_is_preempted_by_backup() {
    // Two routers on one virtual clock, adverts delivered instantly.
    let mut a = Fsm::new(cfg(Version::V2, 150));
    let mut cb = cfg(Version::V2, 120);
    cb.primary_ip = ip("10.0.0.3");
    let mut b = Fsm::new(cb);
    let mut now = Duration::ZERO;
    let start = Input::Startup {
        initial_state: VrrpState::Backup,
    };
    let mut acts = vec![(0usize, a.handle(now, start)), (1, b.handle(now, start))];
    let src = [ip("10.0.0.2"), ip("10.0.0.3")];
    let mut lowered = false;
    for _ in 0..200 {
        // Deliver every SendAdvert to the other router.
        while let Some((who, list)) = acts.pop() {
            for act in list {
                let p = match act {
                    Action::SendAdvert { priority } => priority,
                    Action::SendPriorityZero => 0,
                    _ => continue,
                };
                let input = Input::AdvertReceived {
                    priority: p,
                    src_ip: src[who],
                    max_advert_int: ms(1000),
                };
                let other = if who == 0 { &mut b } else { &mut a };
                acts.push((1 - who, other.handle(now, input)));
            }
        }
        if !lowered && now >= ms(20_000) {
            // A's tracked script fails: 150 - 50 = 100 < 120.
            lowered = true;
            acts.push((0, a.handle(now, Input::PriorityChanged(100))));
            continue;
        }
        let next = [a.next_deadline(), b.next_deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
        now = next;
        acts.push((0, a.handle(now, Input::Timer)));
        acts.push((1, b.handle(now, Input::Timer)));
        if now < ms(20_000) && now > ms(4000) {
            assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
        }
        if now > ms(25_000) {
            break;
        }
    }
    assert_eq!((a.state(), b.state()), (State::Backup, State::Master));
}

#[test]
fn effective_priority_rules() {
    // No tracking: the base.
    assert_eq!(effective_priority(100, &[]), Some(100));
    // Positive weights count while OK, negative ones while failed.
    assert_eq!(
        effective_priority(100, &[(10, true), (20, false)]),
        Some(110)
    );
    assert_eq!(
        effective_priority(100, &[(-30, false), (-5, true)]),
        Some(70)
    );
    // Clamped to 1..=254.
    assert_eq!(effective_priority(250, &[(50, true)]), Some(254));
    assert_eq!(effective_priority(10, &[(-100, false)]), Some(1));
    assert_eq!(
        effective_priority(1, &[(-254, false), (-254, false)]),
        Some(1)
    );
    assert_eq!(
        effective_priority(254, &[(i32::MAX, true), (i32::MAX, true)]),
        Some(254)
    );
    // Weight 0 failing: FAULT; weight 0 OK: no effect.
    assert_eq!(effective_priority(100, &[(0, true)]), Some(100));
    assert_eq!(effective_priority(100, &[(10, true), (0, false)]), None);
    // The owner is not moved by weights, but can fault.
    assert_eq!(effective_priority(255, &[(-50, false)]), Some(255));
    assert_eq!(effective_priority(255, &[(0, false)]), None);
}

#[test]
fn from_config_reads_the_instance() {
    use director::config::{LoadOptions, load_str};
    use director::vrrp::packet::{Auth, InstanceParams};
    let text = "vrrp_instance VI_1 {\n state BACKUP\n interface eth0\n virtual_router_id 51\n priority 150\n advert_int 2\n nopreempt\n preempt_delay 30\n authentication {\n  auth_type PASS\n  auth_pass 0123456789\n }\n virtual_ipaddress {\n  10.0.0.100\n  10.0.0.101/24\n }\n}\n";
    let loaded = load_str(text, "vrrp_fsm.conf", &LoadOptions::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let inst = &loaded.config.instances[0];
    let c = FsmConfig::from_config(inst, ip("10.0.0.2"));
    assert_eq!(c.version, Version::V2);
    assert_eq!(c.priority, 150);
    assert_eq!(c.advert_int, ms(2000));
    assert!(c.nopreempt);
    assert_eq!(c.preempt_delay, ms(30_000));
    assert_eq!(Fsm::new(c).master_down_interval(), ms(6000) + SKEW_V2_150);
    let p = InstanceParams::from_config(inst, &loaded.config.global).unwrap();
    assert_eq!(p.vrid, 51);
    assert_eq!(p.auth, Auth::Simple(*b"01234567"));
    assert_eq!(p.vips, vec![ip("10.0.0.100"), ip("10.0.0.101")]);
    // What we send, the other side accepts.
    let adv = p.advert(150, ms(2000));
    let bytes = adv.encode(ip("10.0.0.2"), ip("224.0.0.18")).unwrap();
    let rx = director::vrrp::packet::RxMeta {
        src: ip("10.0.0.2"),
        dst: ip("224.0.0.18"),
        ttl: 255,
    };
    assert_eq!(
        director::vrrp::packet::receive(&bytes, &rx, &p).unwrap(),
        adv
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn arb_input() -> impl Strategy<Value = Input> {
        prop_oneof![
            any::<bool>().prop_map(|m| Input::Startup {
                initial_state: if m {
                    VrrpState::Master
                } else {
                    VrrpState::Backup
                }
            }),
            (any::<u8>(), any::<[u8; 4]>(), 0u64..60_000).prop_map(|(p, o, i)| {
                Input::AdvertReceived {
                    priority: p,
                    src_ip: IpAddr::from(o),
                    max_advert_int: ms(i),
                }
            }),
            Just(Input::Timer),
            Just(Input::Timer),
            Just(Input::Shutdown),
            any::<u8>().prop_map(Input::PriorityChanged),
            any::<bool>().prop_map(Input::Fault),
        ]
    }

    proptest! {
        /// Arbitrary input sequences: no panic, and the invariants hold.
        #[test]
        fn invariants(
            v3 in any::<bool>(), prio in 1u8..=255, int_ms in 1u64..300_000,
            nopreempt in any::<bool>(), delay in 0u64..20_000,
            steps in prop::collection::vec((0u64..5_000, arb_input()), 0..200),
        ) {
            let c = FsmConfig {
                version: if v3 { Version::V3 } else { Version::V2 },
                priority: prio,
                advert_int: ms(int_ms),
                nopreempt,
                preempt_delay: ms(delay),
                primary_ip: ip("10.0.0.2"),
            };
            let mut f = Fsm::new(c);
            let mut now = Duration::ZERO;
            for (dt, input) in steps {
                // A faithful driver: timers fire at their deadlines on the way.
                let target = now + ms(dt);
                let mut fired = vec![];
                while let Some(d) = f.next_deadline().filter(|&d| d <= target) {
                    now = d;
                    fired.push(Input::Timer);
                    let before = f.state();
                    let acts = f.handle(now, Input::Timer);
                    prop_assert!(before != State::Backup || f.state() == State::Master);
                    prop_assert!(!acts.is_empty());
                    prop_assert!(fired.len() < 100_000);
                }
                now = target;
                let before = f.state();
                let acts = f.handle(now, input);
                let st = f.state();
                // A deadline exactly in the running states, never in the past.
                match st {
                    State::Master | State::Backup => {
                        let d = f.next_deadline().unwrap();
                        prop_assert!(d >= now);
                        if st == State::Master {
                            prop_assert!(d <= now + f.advert_interval());
                        } else {
                            // The running timer keeps the skew it was armed with; a
                            // priority change only moves the next one.
                            let mai = f.master_adver_int();
                            prop_assert!(d <= now + 3 * mai + mai.max(ms(1000)));
                        }
                    }
                    State::Initialize | State::Fault => prop_assert!(f.next_deadline().is_none()),
                }
                prop_assert!(f.priority() >= 1);
                prop_assert_eq!(f.priority() == 255, prio == 255);
                // Entering master always announces; leaving it releases.
                if st == State::Master && before != State::Master {
                    prop_assert!(acts.contains(&Action::BecomeMaster));
                    let announce = Action::SendAdvert { priority: f.priority() };
                    prop_assert!(acts.contains(&announce));
                }
                if before == State::Master && st != State::Master {
                    prop_assert!(acts.iter().any(|a| matches!(
                        a, Action::BecomeBackup | Action::EnterFault | Action::Stop
                    )));
                }
                // Intervals stay on the wire grid.
                let m = f.master_adver_int().as_millis();
                if v3 {
                    prop_assert!(m.is_multiple_of(10) && (10..=40_950).contains(&m));
                } else {
                    prop_assert!(m.is_multiple_of(1000) && (1000..=255_000).contains(&m));
                }
                if !v3 {
                    prop_assert_eq!(f.master_adver_int(), f.advert_interval());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// vrrp_sync_group: members follow each other

#[test]
fn sync_master_makes_a_backup_master_at_once() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert_eq!(f.state(), State::Backup);
    let a = f.handle(ms(200), Input::SyncMaster);
    assert_eq!(a, vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]);
    assert_eq!(f.state(), State::Master);
    assert_eq!(f.next_deadline(), Some(ms(1200)), "adverts every advert_int from now");
}

#[test]
fn sync_master_leaves_fault_and_master_alone() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    f.handle(ms(10), Input::Fault(true));
    assert!(f.handle(ms(20), Input::SyncMaster).is_empty());
    assert_eq!(f.state(), State::Fault);
    let (mut m, _) = started(cfg(Version::V2, 255), VrrpState::Master);
    assert_eq!(m.state(), State::Master);
    assert!(m.handle(ms(20), Input::SyncMaster).is_empty());
}

#[test]
fn sync_backup_demotes_a_master_without_priority_zero() {
    let (mut f, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    f.handle(ms(100), Input::SyncMaster);
    let a = f.handle(ms(500), Input::SyncBackup);
    assert_eq!(a, vec![Action::BecomeBackup]);
    assert_eq!(f.state(), State::Backup);
    // Master_Down_Interval for priority 100, v2: 3 s + 156/256 s.
    assert_eq!(f.next_deadline(), Some(ms(500) + ms(3000) + us(609_375)));
    // A backup ignores it.
    assert!(f.handle(ms(600), Input::SyncBackup).is_empty());
}

#[test]
fn sync_backup_never_demotes_the_address_owner() {
    let (mut f, _) = started(cfg(Version::V2, 255), VrrpState::Master);
    assert!(f.handle(ms(100), Input::SyncBackup).is_empty());
    assert_eq!(f.state(), State::Master);
}

// ---------------------------------------------------------------------------
// A reload restarts a changed master: it resumes as master at once

#[test]
fn resume_master_becomes_master_at_once() {
    let mut f = Fsm::new(cfg(Version::V2, 100));
    let a = f.handle(ms(5), Input::ResumeMaster);
    assert_eq!(a, vec![Action::SendAdvert { priority: 100 }, Action::BecomeMaster]);
    assert_eq!(f.state(), State::Master);
    assert_eq!(f.next_deadline(), Some(ms(1005)));
    // A higher-priority peer still wins the next election.
    let a = f.handle(ms(300), Input::AdvertReceived { priority: 200, src_ip: ip("10.0.0.9"), max_advert_int: ms(1000) });
    assert_eq!(a, vec![Action::BecomeBackup]);
}

#[test]
fn resume_master_in_fault_stays_in_fault_and_only_from_initialize() {
    let mut f = Fsm::new(cfg(Version::V2, 100));
    f.handle(ms(1), Input::Fault(true));
    assert_eq!(f.handle(ms(2), Input::ResumeMaster), vec![Action::EnterFault]);
    assert_eq!(f.state(), State::Fault);
    let (mut b, _) = started(cfg(Version::V2, 100), VrrpState::Backup);
    assert!(b.handle(ms(3), Input::ResumeMaster).is_empty());
    assert_eq!(b.state(), State::Backup);
}
