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


#[tokio::test]
async fn file_check_takes_the_server_down_and_up_as_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (state, weight) = (dir.path().join("state"), dir.path().join("weight"));
    std::fs::write(&state, "0\n").unwrap();
    // Through the config, as the daemon gets it: track_file blocks resolved
    // into the FILE_CHECKs (one boolean, one dynamic weight).
    let text = format!(
        "track_file state {{\n file {}\n weight 0\n}}\ntrack_file weight {{\n file {}\n weight 2\n}}\n\
         virtual_server 10.0.0.100 80 {{\n protocol TCP\n delay_loop 1\n\
         real_server 127.0.0.1 80 {{\n weight 5\n FILE_CHECK {{\n track_file state\n }}\n }}\n\
         real_server 127.0.0.2 80 {{\n weight 5\n FILE_CHECK {{\n track_file weight\n dynamic\n }}\n }}\n}}\n",
        state.display(),
        weight.display()
    );
    let loaded = director::config::load_str(&text, "t.conf", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let targets = director::check::targets_from_config(&loaded.config);
    assert_eq!(targets.len(), 2);
    // A FILE_CHECK naming an undefined track_file is ignored, as keepalived.
    let undefined = text.replace("track_file state\n }", "track_file nosuch\n }");
    let loaded2 = director::config::load_str(&undefined, "t.conf", &Default::default());
    assert!(!loaded2.has_errors(), "{:?}", loaded2.diagnostics);
    assert_eq!(director::check::targets_from_config(&loaded2.config).len(), 1);
    let (tx, mut rx) = mpsc::channel(16);
    let mut checks = Checks::new(tx, 3);
    checks.set_targets(targets);
    // Read at once, 0: up, nothing to say. The missing weight file reads
    // 0 as well: 5 + 0 × 2, which is reported once as its weight.
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((tr.key.rs.ip().to_string(), tr.change, tr.weight), ("127.0.0.2".into(), Change::Weight, Some(5)));

    // Non-zero with weight 0: down within one re-read (1 s), with the reason.
    let t = Instant::now();
    std::fs::write(&state, "1\n").unwrap();
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((tr.key.rs.ip().to_string(), tr.change, tr.alive), ("127.0.0.1".into(), Change::Down, false));
    assert_eq!(tr.reason, format!("FILE_CHECK state ({}) value 1, expected 0", state.display()));
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    // Deleted: reads 0, up again.
    std::fs::remove_file(&state).unwrap();
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((tr.change, tr.alive), (Change::Up, true));
    assert!(tr.reason.starts_with("FILE_CHECK state"), "{}", tr.reason);

    // dynamic: 5 + 3 × 2.
    std::fs::write(&weight, "3").unwrap();
    let tr = next(&mut rx, Duration::from_secs(3)).await;
    assert_eq!((tr.key.rs.ip().to_string(), tr.change, tr.weight), ("127.0.0.2".into(), Change::Weight, Some(11)));
    checks.shutdown().await;
}
