//! MISC_CHECK: exit codes, misc_dynamic, timeouts that kill the whole group.

mod check_support;

use std::time::{Duration, Instant};

use check_support::*;
use director::check::misc::{ScriptOutcome, run_script};
use director::check::{CheckResult, run_check};
use director::config::{Check, RunAs};

fn rs() -> std::net::SocketAddr {
    "127.0.0.1:80".parse().unwrap()
}

/// Pids whose process group is `pgid` (zombies included), from /proc.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(2).and_then(|p| p.parse::<i32>().ok()) == Some(pgid) {
            out.push((pid, stat));
        }
    }
    out
}

fn is_zombie(stat: &str) -> bool {
    stat.rsplit_once(')')
        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
}

/// Waits (bounded) until no process of the group is left: none alive within
/// 2 s (SIGKILL is immediate), and none at all within 10 s. Grandchildren of
/// the check are not our children: once killed, their zombies belong to
/// PID 1, which reaps them on its own schedule (about 1.5 s in this sandbox).
async fn assert_group_gone(pgid: i32) {
    let start = Instant::now();
    loop {
        let m = group_members(pgid);
        let alive: Vec<_> = m.iter().filter(|(_, st)| !is_zombie(st)).collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "live processes of group {pgid} remain: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loop {
        let m = group_members(pgid);
        if m.is_empty() {
            return;
        }
        // A killed child of ours may be a zombie until tokio reaps its
        // orphans, which it does when it next handles a child: give it one.
        let me = std::process::id().to_string();
        let ours = m.iter().any(|(_, st)| {
            st.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)) == Some(me.as_str())
        });
        if ours {
            let _ = tokio::process::Command::new("true").status().await;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "processes of group {pgid} remain: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn exit_zero_is_ok_and_one_fails() {
    assert_eq!(
        run_check(&misc("exit 0", false, None), rs()).await,
        CheckResult::ok()
    );
    assert_eq!(
        run_check(&misc("exit 1", false, None), rs()).await,
        CheckResult::fail("exited with status 1")
    );
    // Without misc_dynamic any other code is a failure too.
    assert_eq!(
        run_check(&misc("exit 5", false, None), rs()).await,
        CheckResult::fail("exited with status 5")
    );
}

#[tokio::test]
async fn misc_dynamic_exit_5_is_weight_3() {
    assert_eq!(
        run_check(&misc("exit 5", true, None), rs()).await,
        CheckResult::Ok { weight: Some(3) }
    );
    assert_eq!(
        run_check(&misc("exit 2", true, None), rs()).await,
        CheckResult::Ok { weight: Some(0) }
    );
    assert_eq!(
        run_check(&misc("exit 0", true, None), rs()).await,
        CheckResult::ok()
    );
    assert_eq!(
        run_check(&misc("exit 1", true, None), rs()).await,
        CheckResult::fail("exited with status 1")
    );
}

#[tokio::test]
async fn hanging_script_is_killed_with_its_whole_group() {
    let t = Instant::now();
    let (out, pgid) = run_script("sleep 30 & sleep 30", None, Duration::from_millis(300)).await;
    let took = t.elapsed();
    assert_eq!(out, ScriptOutcome::TimedOut);
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_group_gone(pgid.expect("spawned")).await;

    // Through the checker: down with "timed out".
    let c = misc(
        "sleep 30 & sleep 30",
        false,
        Some(Duration::from_millis(300)),
    );
    // misc_timeout is whole seconds in keepalived.conf, but the model is a Duration.
    let t = Instant::now();
    match run_check(&c, rs()).await {
        CheckResult::Fail { reason } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn background_leftovers_are_killed_when_the_script_exits() {
    let (out, pgid) = run_script("sleep 30 & exit 0", None, Duration::from_secs(5)).await;
    assert_eq!(out, ScriptOutcome::Exited(0));
    assert_group_gone(pgid.unwrap()).await;
}

#[tokio::test]
async fn cancelled_check_kills_its_group() {
    let fut = run_script("sleep 31 & sleep 31", None, Duration::from_secs(60));
    // Find the group while it runs, then drop the future.
    let handle = tokio::spawn(fut);
    let deadline = Instant::now() + Duration::from_secs(5);
    let pgid = loop {
        // The sh child is in a group of its own, led by itself, with "sleep" children.
        let me = std::process::id() as i32;
        let found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = stat.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid: i32 = f.get(1)?.parse().ok()?;
            let pgrp: i32 = f.get(2)?.parse().ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            (ppid == me
                && pgrp == pid
                && cmdline.contains("sleep 31")
                && group_members(pgrp).len() >= 2)
                .then_some(pgrp)
        });
        if let Some(p) = found {
            break p;
        }
        assert!(Instant::now() < deadline, "script did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    handle.abort();
    let _ = handle.await;
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn runs_as_script_user() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipped");
        return;
    }
    let mut c = misc("test \"$(id -u)\" = 65534", false, None);
    if let Check::Misc(m) = &mut c.check {
        m.misc_path.as_mut().unwrap().run_as = Some(RunAs {
            user: "nobody".into(),
            group: None,
        });
    }
    assert_eq!(run_check(&c, rs()).await, CheckResult::ok());
}

/// notify_up/notify_down and the quorum scripts: the global `script_user`
/// resolved by the config, then the same uid/gid switch as MISC_CHECK.
#[tokio::test]
async fn notify_scripts_run_as_the_global_script_user() {
    let text = "global_defs {\n script_user nobody\n}\n\
        virtual_server 10.0.0.1 80 {\n protocol TCP\n quorum_down /bin/qd\n quorum_up \"/bin/qu x\" root\n\
        real_server 10.0.0.2 80 {\n notify_up /bin/up\n MISC_CHECK {\n misc_path /bin/m\n }\n }\n}\n";
    let loaded = director::config::load_str(text, "t.conf", &Default::default());
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let vs = &loaded.config.virtual_servers[0];
    let user = |s: &Option<director::config::Script>| s.as_ref().and_then(|s| s.run_as.as_ref()).map(|r| r.user.clone());
    assert_eq!(user(&vs.quorum_down).as_deref(), Some("nobody"));
    assert_eq!(user(&vs.quorum_up).as_deref(), Some("root"), "a script's own user wins");
    assert_eq!(user(&vs.real_servers[0].notify_up).as_deref(), Some("nobody"));
    let Check::Misc(m) = &vs.real_servers[0].checkers[0].check else { panic!() };
    assert_eq!(user(&m.misc_path).as_deref(), Some("nobody"));

    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the uid switch is not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let script = dir.path().join("notify.sh");
    let out = dir.path().join("uid");
    std::fs::write(&script, "#!/bin/sh\nid -u > \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = director::config::Script {
        command: format!("{} {}", script.display(), out.display()),
        argv: vec![script.display().to_string(), out.display().to_string()],
        run_as: vs.real_servers[0].notify_up.as_ref().unwrap().run_as.clone(),
    };
    director::check::misc::spawn_detached(&s, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(uid) = std::fs::read_to_string(&out)
            && !uid.is_empty()
        {
            assert_eq!(uid.trim(), "65534");
            break;
        }
        assert!(Instant::now() < deadline, "the notify script never wrote its uid");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn script_security_refuses_root_scripts_others_could_change() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: skipped");
        return;
    }
    use director::check::misc::{insecure, secure_script_ids};
    assert_eq!(insecure("/bin/sh"), None);
    assert_eq!(insecure("sh"), None, "found through PATH");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let why = insecure(script.to_str().unwrap()).expect("a world-writable script is insecure");
    assert!(why.contains("writable"), "{why}");
    let s = director::config::Script {
        command: script.display().to_string(),
        argv: vec![script.display().to_string()],
        run_as: None,
    };
    let e = secure_script_ids(&s, true).unwrap_err();
    assert!(e.contains("enable_script_security"), "{e}");
    assert_eq!(secure_script_ids(&s, false), Ok(None), "without the option it runs");
    // Run as another user, the path does not matter.
    let nobody = director::config::Script {
        run_as: Some(RunAs { user: "nobody".into(), group: None }),
        ..s
    };
    assert!(secure_script_ids(&nobody, true).unwrap().is_some());
}
