//! The scheduler: transitions on the channel, reloads, scale.

mod check_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use check_support::*;
use director::check::{Change, Checks, RsKey, Target, Transition};
use director::config::VsKey;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn key(rs: SocketAddr) -> RsKey {
    RsKey {
        vs: VsKey::Addr {
            ip: "10.0.0.100".parse().unwrap(),
            port: 80,
        },
        rs,
    }
}

fn fast_tcp() -> director::config::Checker {
    let mut c = tcp();
    c.common.delay_loop = Duration::from_millis(100);
    c.common.delay_before_retry = Duration::from_millis(50);
    c.common.connect_timeout = Duration::from_millis(500);
    c.common.retry = 1;
    c.common.warmup = Some(Duration::ZERO);
    c
}

async fn next(rx: &mut mpsc::Receiver<Transition>, within: Duration) -> Transition {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("a transition in time")
        .expect("channel open")
}

async fn accept_forever(l: TcpListener) {
    while let Ok((s, _)) = l.accept().await {
        drop(s);
    }
}

#[tokio::test]
async fn down_then_up_then_reload_keeps_state() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(accept_forever(l));
    let (tx, mut rx) = mpsc::channel(16);
    let mut checks = Checks::new(tx, 1);
    let target = Target {
        key: key(addr),
        checkers: vec![fast_tcp()],
        omega: false,
    };
    checks.set_targets(vec![target.clone()]);
    assert_eq!(checks.len(), 1);
    // Up from the start (no alpha): nothing is sent while it stays up.
    assert!(
        tokio::time::timeout(Duration::from_millis(350), rx.recv())
            .await
            .is_err()
    );

    srv.abort();
    let _ = srv.await;
    let t = Instant::now();
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(tr.change, Change::Down);
    assert!(!tr.alive);
    assert_eq!(tr.key, key(addr));
    assert!(tr.reason.contains("refused"), "{}", tr.reason);
    // Failure, retry after 50 ms, down: within one delay_loop + retry + slack.
    assert!(
        t.elapsed() < Duration::from_millis(600),
        "{:?}",
        t.elapsed()
    );

    // A reload with the same checkers keeps it down (no Up, no restart).
    checks.set_targets(vec![target.clone()]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );

    // The port listens again: Up on the first success.
    let l = TcpListener::bind(addr).await.unwrap();
    let srv = tokio::spawn(accept_forever(l));
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(tr.change, Change::Up);
    assert!(tr.alive);

    // A target left without checkers stops too.
    checks.set_targets(vec![Target {
        checkers: vec![],
        ..target.clone()
    }]);
    assert!(checks.is_empty());
    // Removing the target stops its checks.
    checks.set_targets(vec![target.clone()]);
    assert_eq!(checks.len(), 1);
    checks.set_targets(vec![]);
    assert!(checks.is_empty());
    srv.abort();
    assert!(
        tokio::time::timeout(Duration::from_millis(400), rx.recv())
            .await
            .is_err()
    );
    checks.shutdown().await;
}

#[tokio::test]
async fn alpha_target_comes_up_and_misc_dynamic_weight_is_sent() {
    let (tx, mut rx) = mpsc::channel(16);
    let mut checks = Checks::new(tx, 7);
    let mut c = misc("exit 5", true, Some(Duration::from_secs(2)));
    c.common.alpha = true;
    c.common.delay_loop = Duration::from_millis(100);
    c.common.warmup = Some(Duration::ZERO);
    let rs: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(!director::check::initially_alive(std::slice::from_ref(&c)));
    checks.set_targets(vec![Target {
        key: key(rs),
        checkers: vec![c.clone()],
        omega: true,
    }]);
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(
        (tr.change, tr.alive, tr.weight, tr.omega),
        (Change::Up, true, Some(3), true)
    );
    // Reload to a script exiting 9: same server, new checker → weight 7.
    let mut c2 = c.clone();
    if let director::config::Check::Misc(m) = &mut c2.check {
        m.misc_path.as_mut().unwrap().command = "exit 9".into();
    }
    c2.common.alpha = false;
    checks.set_targets(vec![Target {
        key: key(rs),
        checkers: vec![c2],
        omega: true,
    }]);
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!(
        (tr.change, tr.alive, tr.weight),
        (Change::Weight, true, Some(7))
    );
    checks.shutdown().await;
}


