//! The pure checker state machine on a virtual clock.

mod check_support;

use std::net::SocketAddr;
use std::time::Duration;

use check_support::*;
use director::check::state::{SplitMix, warmup_bound};
use director::check::{Change, CheckResult, CheckerChange, RealServerState};
use director::config::Check;

const RS: &str = "10.0.0.11:80";

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn rs() -> SocketAddr {
    RS.parse().unwrap()
}

fn zero() -> impl FnMut() -> f64 {
    || 0.0
}

/// Runs the single checker of `st` at each due instant, answering with
/// `answer(n)` for the n-th run; returns (start instants, changes).
fn drive(
    st: &mut RealServerState,
    runs: usize,
    mut answer: impl FnMut(usize) -> CheckResult,
) -> (Vec<Duration>, Vec<(Duration, Change, String)>) {
    let mut starts = Vec::new();
    let mut changes = Vec::new();
    let mut now = Duration::ZERO;
    for n in 0..runs {
        now = st.next_due(now).expect("a checker is due");
        let due = st.take_due(now);
        assert_eq!(due, vec![0]);
        assert_eq!(st.next_due(now), None, "running checker is not due");
        starts.push(now);
        let (_, sc) = st.on_result(0, now, answer(n));
        if let Some(sc) = sc {
            changes.push((now, sc.change, sc.reason));
        }
    }
    (starts, changes)
}

#[test]
fn down_after_one_plus_retry_failures_at_expected_instants() {
    let mut c = tcp();
    c.common.retry = 2;
    c.common.delay_loop = s(6.0);
    c.common.delay_before_retry = s(1.0);
    let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
    assert!(st.alive());
    // ok, ok, fail, fail, fail(down), fail, ok(up)
    let plan = [true, true, false, false, false, false, true];
    let (starts, changes) = drive(&mut st, plan.len(), |n| {
        if plan[n] {
            CheckResult::ok()
        } else {
            CheckResult::fail("connect failed: connection refused")
        }
    });
    // ok at 0 → +6; ok at 6 → +6; fail at 12 → retry +1; fail at 13 → +1;
    // fail at 14 → down, +6; fail at 20 (down: no retries) → +6; ok at 26 → up.
    assert_eq!(
        starts,
        vec![s(0.0), s(6.0), s(12.0), s(13.0), s(14.0), s(20.0), s(26.0)]
    );
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].0, s(14.0));
    assert_eq!(changes[0].1, Change::Down);
    assert!(
        changes[0]
            .2
            .starts_with("TCP_CHECK 10.0.0.11:80 connect failed: connection refused"),
        "{}",
        changes[0].2
    );
    assert_eq!(changes[1].0, s(26.0));
    assert_eq!(changes[1].1, Change::Up);
    assert!(st.alive());
    assert_eq!(st.next_due(s(26.0)), Some(s(32.0)));
}

#[test]
fn retry_counter_resets_on_success() {
    let mut c = tcp();
    c.common.retry = 1;
    let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
    // fail, ok, fail, ok: never two consecutive failures → never down.
    let (_, changes) = drive(&mut st, 6, |n| {
        if n % 2 == 0 {
            CheckResult::fail("x")
        } else {
            CheckResult::ok()
        }
    });
    assert!(changes.is_empty(), "{changes:?}");
    assert!(st.alive());
}

#[test]
fn retry_zero_goes_down_on_first_failure_and_reports_retrying_otherwise() {
    let mut c = tcp();
    c.common.retry = 0;
    let mut st = RealServerState::new(rs(), &[c.clone()], false, Duration::ZERO, &mut zero());
    st.take_due(Duration::ZERO);
    let (cc, sc) = st.on_result(0, s(0.5), CheckResult::fail("boom"));
    assert_eq!(cc, CheckerChange::Down);
    assert_eq!(sc.unwrap().change, Change::Down);
    assert_eq!(
        st.next_due(s(0.5)),
        Some(s(6.5)),
        "delay_loop after the failure that took it down"
    );

    c.common.retry = 3;
    let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
    st.take_due(Duration::ZERO);
    let (cc, sc) = st.on_result(0, s(0.0), CheckResult::fail("boom"));
    assert_eq!(cc, CheckerChange::Retrying { attempt: 1, of: 3 });
    assert!(sc.is_none());
    assert_eq!(st.next_due(s(0.0)), Some(s(1.0)));
}

#[test]
fn alpha_starts_down_and_comes_up_on_first_success() {
    let mut c = tcp();
    c.common.alpha = true;
    c.common.retry = 3;
    let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
    assert!(!st.alive());
    // A failure while down: no retry, next in delay_loop, no change.
    st.take_due(Duration::ZERO);
    let (cc, sc) = st.on_result(0, s(0.0), CheckResult::fail("x"));
    assert_eq!(cc, CheckerChange::None);
    assert!(sc.is_none());
    assert_eq!(st.next_due(s(0.0)), Some(s(6.0)));
    st.take_due(s(6.0));
    let (cc, sc) = st.on_result(0, s(6.0), CheckResult::ok());
    assert_eq!(cc, CheckerChange::Up);
    let sc = sc.unwrap();
    assert_eq!(sc.change, Change::Up);
    assert!(sc.alive);
    assert_eq!(sc.reason, "TCP_CHECK 10.0.0.11:80 succeeded");
}

#[test]
fn server_is_alive_only_when_all_checkers_are_up() {
    let mut a = tcp();
    a.common.retry = 0;
    let mut b = checker(Check::Http(http(vec![url("/health")])));
    b.common.retry = 0;
    let mut st = RealServerState::new(rs(), &[a, b], false, Duration::ZERO, &mut zero());
    assert_eq!(st.take_due(Duration::ZERO), vec![0, 1]);
    let (_, sc) = st.on_result(
        1,
        s(0.1),
        CheckResult::fail("/health status 500, expected 200-299"),
    );
    let sc = sc.unwrap();
    assert_eq!(sc.change, Change::Down);
    assert_eq!(
        sc.reason,
        "HTTP_GET http://10.0.0.11:80/health status 500, expected 200-299"
    );
    // The other checker failing too: the server was already down, no change.
    let (cc, sc) = st.on_result(0, s(0.2), CheckResult::fail("x"));
    assert_eq!(cc, CheckerChange::Down);
    assert!(sc.is_none());
    // One comes back: still down.
    st.take_due(s(10.0));
    let (_, sc) = st.on_result(0, s(10.0), CheckResult::ok());
    assert!(sc.is_none());
    assert!(!st.alive());
    let (_, sc) = st.on_result(1, s(10.0), CheckResult::ok());
    assert_eq!(sc.unwrap().change, Change::Up);
    assert!(st.alive());
}

#[test]
fn warmup_spreads_first_checks_within_the_bound() {
    let mut c = tcp();
    c.common.warmup = Some(s(4.0));
    assert_eq!(warmup_bound(&c), s(4.0));
    let fracs = [0.0, 0.25, 0.5, 1.0];
    let mut i = 0;
    let cs = vec![c.clone(); 4];
    let st = RealServerState::new(rs(), &cs, false, s(100.0), &mut || {
        i += 1;
        fracs[i - 1]
    });
    let due: Vec<_> = st.checkers().iter().map(|c| c.next_due).collect();
    assert_eq!(due, vec![s(100.0), s(101.0), s(102.0), s(104.0)]);

    // warmup unset: up to delay_loop; a seeded PRNG spreads 1000 checkers.
    let mut c = tcp();
    c.common.warmup = None;
    c.common.delay_loop = s(10.0);
    let cs = vec![c; 1000];
    let mut rng = SplitMix(42);
    let st = RealServerState::new(rs(), &cs, false, Duration::ZERO, &mut || rng.next_f64());
    let mut buckets = [0u32; 10];
    for c in st.checkers() {
        assert!(c.next_due <= s(10.0));
        buckets[(c.next_due.as_secs_f64() as usize).min(9)] += 1;
    }
    for b in buckets {
        assert!((50..=150).contains(&b), "uneven spread {buckets:?}");
    }
    // Same seed, same schedule.
    let mut rng2 = SplitMix(42);
    let cs2 = vec![st.checkers()[0].checker.as_ref().clone(); 1000];
    let st2 = RealServerState::new(rs(), &cs2, false, Duration::ZERO, &mut || rng2.next_f64());
    assert!(
        st.checkers()
            .iter()
            .zip(st2.checkers())
            .all(|(a, b)| a.next_due == b.next_due)
    );
}

#[test]
fn misc_dynamic_weight() {
    let c = misc("/bin/check", true, None);
    let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
    st.take_due(Duration::ZERO);
    let (_, sc) = st.on_result(0, s(0.0), CheckResult::Ok { weight: Some(3) });
    let sc = sc.unwrap();
    assert_eq!(sc.change, Change::Weight);
    assert_eq!(sc.weight, Some(3));
    assert!(sc.alive);
    assert_eq!(st.weight(), Some(3));
    // Same weight again: nothing.
    st.take_due(s(6.0));
    let (_, sc) = st.on_result(0, s(6.0), CheckResult::Ok { weight: Some(3) });
    assert!(sc.is_none());
    // Down (retry 0), then up with a new weight: one Up carrying it.
    st.take_due(s(12.0));
    let (_, sc) = st.on_result(0, s(12.0), CheckResult::fail("exited with status 1"));
    assert_eq!(
        sc.unwrap().reason,
        "MISC_CHECK `/bin/check` exited with status 1"
    );
    st.take_due(s(18.0));
    let (_, sc) = st.on_result(0, s(18.0), CheckResult::Ok { weight: Some(7) });
    let sc = sc.unwrap();
    assert_eq!((sc.change, sc.weight), (Change::Up, Some(7)));
}

#[test]
fn reload_keeps_unchanged_checkers_state() {
    let mut a = tcp();
    a.common.retry = 0;
    let b = checker(Check::Http(http(vec![url("/")])));
    let mut st = RealServerState::new(
        rs(),
        &[a.clone(), b.clone()],
        false,
        Duration::ZERO,
        &mut zero(),
    );
    st.take_due(Duration::ZERO);
    st.on_result(0, s(1.0), CheckResult::fail("x"));
    st.on_result(1, s(1.0), CheckResult::ok());
    assert!(!st.alive());
    let id_a = st.checkers()[0].id;
    // Drop b, keep a (still down, same schedule), add a new one.
    let mut c = tcp();
    c.common.connect_port = Some(8080);
    let sc = st.update(&[c, a], false, s(2.0), &mut || 0.5);
    assert!(sc.is_none(), "still down");
    assert_eq!(st.checkers().len(), 2);
    assert_eq!(st.checkers()[1].id, id_a);
    assert!(!st.checkers()[1].up);
    assert_eq!(st.checkers()[1].next_due, s(7.0));
    assert_eq!(
        st.checkers()[0].next_due,
        s(5.0),
        "new checker: warmup 0.5 * delay_loop 6"
    );
    // Removing the down checker brings the server up.
    let c = st.checkers()[0].checker.as_ref().clone();
    let sc = st.update(&[c], false, s(3.0), &mut || 0.0).unwrap();
    assert_eq!(sc.change, Change::Up);
}

/// Every checker kind's transitions carry a reason that names the checker
/// and what it found (the line the scheduler logs for the state change).
#[test]
fn every_checker_kind_names_itself_in_its_reasons() {
    use director::config::{DnsCheck, FileCheck, SmtpCheck, UdpCheck};
    let cases: Vec<(Check, &str)> = vec![
        (Check::Tcp, "TCP_CHECK 10.0.0.11:80 connect failed: timed out"),
        (Check::Http(http(vec![url("/")])), "HTTP_GET http://10.0.0.11:80/ status 500, expected 200-299"),
        (Check::Ssl(http(vec![url("/")])), "SSL_GET https://10.0.0.11:80/ status 500, expected 200-299"),
        (misc("exit 1", false, None).check, "MISC_CHECK `exit 1` exited with status 1"),
        (Check::Smtp(SmtpCheck { helo_name: None }), "SMTP_CHECK 10.0.0.11:80 timed out after 5s"),
        (
            Check::Dns(DnsCheck { query_type: "A".into(), name: "x.test".into() }),
            "DNS_CHECK 10.0.0.11:80 A x.test rcode 3",
        ),
        (
            Check::Udp(UdpCheck {
                payload: None,
                require_reply: false,
                reply_pattern: None,
                min_reply_length: 0,
                max_reply_length: 255,
            }),
            "UDP_CHECK 10.0.0.11:80 port unreachable",
        ),
        (Check::Ping, "PING_CHECK 10.0.0.11 no echo reply within 5s"),
        (
            Check::File(FileCheck {
                track_file: "f".into(),
                dynamic: false,
                weight: Some(0),
                reverse: false,
                file: Some("/run/f".into()),
                base_weight: 1,
            }),
            "FILE_CHECK f (/run/f) value 1, expected 0",
        ),
    ];
    for (check, down) in cases {
        let mut c = checker(check);
        c.common.retry = 0;
        let name = director::check::state::describe(&c, rs());
        let why = down.strip_prefix(name.as_str()).expect(down).trim_start_matches(' ');
        let mut st = RealServerState::new(rs(), &[c], false, Duration::ZERO, &mut zero());
        let (_, changes) = drive(&mut st, 2, |n| if n == 0 { CheckResult::fail(why) } else { CheckResult::ok() });
        let reasons: Vec<(Change, String)> = changes.into_iter().map(|(_, c, r)| (c, r)).collect();
        assert_eq!(reasons, [(Change::Down, down.to_string()), (Change::Up, format!("{name} succeeded"))]);
    }
}
