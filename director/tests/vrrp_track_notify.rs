//! The VRRP tracker with real scripts (`true`, `false`, one that hangs past
//! its timeout) and a real track file, and notify scripts that record their
//! arguments. Needs no network namespace; the run-as test needs root.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use director::config::{Config, GlobalDefs, Notify, RunAs, Script, load_str};
use director::vrrp::notify::{NotifyState, Subject, notify};
use director::vrrp::track::{InitFiles, TrackUpdate, Tracker, Tracking};
use tokio::sync::mpsc;

fn config(text: &str) -> Config {
    let l = load_str(text, "t.conf", &Default::default());
    assert!(!l.has_errors(), "{:?}", l.diagnostics);
    l.config
}

/// Waits for `instance`'s next update, failing after `within`.
async fn next_for(
    rx: &mut mpsc::UnboundedReceiver<TrackUpdate>,
    instance: &str,
    within: Duration,
) -> TrackUpdate {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(u)) if u.instance == instance => return u,
            Ok(Some(_)) => {}
            Ok(None) => panic!("tracker ended"),
            Err(_) => panic!("no update for {instance} within {within:?}"),
        }
    }
}

/// Waits until `instance` reports `priority`; returns what it reported before.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<TrackUpdate>,
    instance: &str,
    priority: Option<u8>,
    within: Duration,
) -> Vec<Option<u8>> {
    let deadline = Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let u = next_for(
            rx,
            instance,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await;
        if u.priority == priority {
            return before;
        }
        before.push(u.priority);
    }
}

fn instance(name: &str, vrid: u8, track: &str) -> String {
    format!(
        "vrrp_instance {name} {{\n interface lo\n dont_track_primary\n virtual_router_id {vrid}\n priority 100\n {track}\n virtual_ipaddress {{\n  10.9.9.{vrid}\n }}\n}}\n"
    )
}

#[tokio::test]
async fn scripts_weights_and_a_hanging_script_hitting_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("hang-finished");
    let text = format!(
        "vrrp_script ok {{\n script \"true\"\n weight 10\n}}\n\
         vrrp_script bad {{\n script \"false\"\n weight -20\n}}\n\
         vrrp_script hang {{\n script \"sh -c 'sleep 5; touch {m}'\"\n interval 1\n timeout 1\n}}\n{a}{b}",
        m = marker.display(),
        a = instance("A", 1, "track_script {\n  ok\n  bad\n }"),
        b = instance("B", 2, "track_script {\n  hang\n }"),
    );
    let tracker = Tracker::new(&config(&text), InitFiles::Start).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let tracking = Tracking::spawn(tx);
    tracking.set(tracker).await;
    // 100 + 10 (ok, positive weight while OK) - 20 (bad, negative while
    // failed); before their first run weighted scripts count nothing.
    let before = until(&mut rx, "A", Some(90), Duration::from_secs(5)).await;
    assert_eq!(before.first(), Some(&Some(100)), "{before:?}");
    assert!(
        before
            .iter()
            .all(|p| [Some(100), Some(110), Some(80)].contains(p)),
        "{before:?}"
    );
    // A weight-0 script that times out: FAULT, after the 1 s timeout.
    let b = next_for(&mut rx, "B", Duration::from_secs(5)).await;
    assert_eq!(b.priority, None);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    drop(tracking);
    // The timed-out script's process group was killed: it never finishes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!marker.exists(), "the hanging script survived its timeout");
}

/// A new value, whole: written beside the file and renamed over it, so a
/// poll never reads the empty file a plain write leaves for a moment.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn track_file_value_times_weight_and_fault_on_weight_zero() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("prio");
    let z = dir.path().join("zero");
    let text = format!(
        "track_file tf {{\n file \"{f}\"\n weight 5\n init_file 4\n}}\n\
         track_file tz {{\n file \"{z}\"\n weight 0\n}}\n{a}{b}",
        f = f.display(),
        z = z.display(),
        a = instance("A", 1, "track_file {\n  tf\n }"),
        b = instance("B", 2, "track_file {\n  tz\n }"),
    );
    let tracker = Tracker::new(&config(&text), InitFiles::Start).unwrap();
    // init_file created the file with its value.
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "4\n");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tracking = Tracking::spawn(tx);
    tracking.set(tracker).await;
    assert_eq!(
        next_for(&mut rx, "A", Duration::from_secs(3))
            .await
            .priority,
        Some(120)
    );
    // A missing file reads 0: fine for weight 0.
    assert_eq!(
        next_for(&mut rx, "B", Duration::from_secs(3))
            .await
            .priority,
        Some(100)
    );
    replace(&f, "-3\n");
    assert_eq!(
        next_for(&mut rx, "A", Duration::from_secs(4))
            .await
            .priority,
        Some(85)
    );
    replace(&z, "1\n");
    assert_eq!(
        next_for(&mut rx, "B", Duration::from_secs(4))
            .await
            .priority,
        None
    );
    replace(&z, "0\n");
    assert_eq!(
        next_for(&mut rx, "B", Duration::from_secs(4))
            .await
            .priority,
        Some(100)
    );
    drop(tracking);
}

fn recorder(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = dir.join(format!("{name}.out"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"$(id -u) $*\" >> {}\n", out.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn script(cmd: &str, args: &[&str]) -> Script {
    let mut argv = vec![cmd.to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    Script {
        command: argv.join(" "),
        argv,
        run_as: None,
    }
}

async fn read_when(path: &Path, lines: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.lines().count() >= lines || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn notify_scripts_get_keepalived_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let m = recorder(dir.path(), "master");
    let n = recorder(dir.path(), "any");
    let cfg = Notify {
        master: Some(script(&m, &["first arg"])),
        any: Some(script(&n, &[])),
        ..Notify::default()
    };
    let g = GlobalDefs::default();
    let uid = unsafe { libc::getuid() };
    notify(
        &cfg,
        &g,
        Subject::Instance("VI_1"),
        NotifyState::Master,
        150,
    )
    .await
    .unwrap();
    notify(&cfg, &g, Subject::Group("G1"), NotifyState::Fault, 99)
        .await
        .unwrap();
    notify(&cfg, &g, Subject::Instance("VI_1"), NotifyState::Stop, 0)
        .await
        .unwrap();
    assert_eq!(
        read_when(&dir.path().join("master.out"), 1).await,
        format!("{uid} first arg\n")
    );
    assert_eq!(
        read_when(&dir.path().join("any.out"), 3).await,
        format!(
            "{uid} INSTANCE VI_1 MASTER 150\n{uid} GROUP G1 FAULT 0\n{uid} INSTANCE VI_1 STOP 0\n"
        )
    );
}

#[tokio::test]
async fn notify_runs_as_script_user() {
    assert_eq!(unsafe { libc::getuid() }, 0, "run as root, as CI does");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let n = recorder(dir.path(), "any");
    let cfg = Notify {
        any: Some(script(&n, &[])),
        ..Notify::default()
    };
    let g = GlobalDefs {
        script_user: Some(RunAs {
            user: "nobody".into(),
            group: None,
        }),
        ..GlobalDefs::default()
    };
    // Fire and forget: the handle is dropped, the script still runs.
    drop(notify(
        &cfg,
        &g,
        Subject::Instance("VI_2"),
        NotifyState::Backup,
        100,
    ));
    let nobody = {
        let pw = unsafe { libc::getpwnam(c"nobody".as_ptr()) };
        assert!(!pw.is_null());
        unsafe { (*pw).pw_uid }
    };
    assert_eq!(
        read_when(&dir.path().join("any.out"), 1).await,
        format!("{nobody} INSTANCE VI_2 BACKUP 100\n")
    );
}

/// A reload that leaves the scripts alone changes no verdict: a weighted
/// script keeps its result (the priority stays), an `init_fail` one does
/// not fail again (no FAULT). A script that changed starts afresh.
#[tokio::test]
async fn a_reload_keeps_the_state_of_unchanged_scripts() {
    let text = |must: &str| {
        format!(
            "vrrp_script up {{\n script \"true\"\n weight 10\n interval 60\n}}\n\
             vrrp_script must {{\n script \"{must}\"\n init_fail\n interval 60\n}}\n{a}",
            a = instance("A", 1, "track_script {\n  up\n  must\n }"),
        )
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tracking = Tracking::spawn(tx);
    tracking.set(Tracker::new(&config(&text("true")), InitFiles::Start).unwrap()).await;
    // FAULT (init_fail) until both scripts have run once.
    let before = until(&mut rx, "A", Some(110), Duration::from_secs(5)).await;
    assert_eq!(before.first(), Some(&None), "{before:?}");
    // `set` returns once what changed is sent: nothing did.
    tracking.set(Tracker::new(&config(&text("true")), InitFiles::Reload).unwrap()).await;
    assert_eq!(rx.try_recv().ok(), None, "an unchanged reload changed a verdict");
    // A changed `must` starts afresh: init_fail's FAULT, then OK again.
    tracking.set(Tracker::new(&config(&text("/bin/true")), InitFiles::Reload).unwrap()).await;
    assert_eq!(rx.try_recv().ok().map(|u| u.priority), Some(None));
    assert!(until(&mut rx, "A", Some(110), Duration::from_secs(5)).await.is_empty());
}

/// keepalived writes `init_file` at start (when missing, or always with
/// `overwrite`); a reload only creates a missing file, never resetting a
/// value written since.
#[test]
fn a_reload_creates_a_missing_init_file_but_overwrites_none() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("prio");
    let cfg = config(&format!(
        "track_file tf {{\n file \"{f}\"\n init_file 4 overwrite\n}}\n{a}",
        f = f.display(),
        a = instance("A", 1, "track_file {\n  tf\n }"),
    ));
    Tracker::new(&cfg, InitFiles::Start).unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "4\n");
    std::fs::write(&f, "7\n").unwrap();
    Tracker::new(&cfg, InitFiles::Reload).unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "7\n", "a reload reset the file");
    std::fs::remove_file(&f).unwrap();
    Tracker::new(&cfg, InitFiles::Reload).unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "4\n");
    std::fs::write(&f, "7\n").unwrap();
    Tracker::new(&cfg, InitFiles::Start).unwrap();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "4\n", "overwrite at start");
}
