//! MISC_CHECK: run `misc_path` through `/bin/sh -c` in its own process group.
//!
//! - exit 0: success; exit 1: failure;
//! - `misc_dynamic`: exit 2..=255 is a success with weight `code - 2`
//!   (without it, any non-zero code is a failure);
//! - `misc_timeout` (default: `delay_loop`) elapsed: SIGKILL to the whole
//!   group, reap the script, failure;
//! - when the script exits, whatever it left running in its group is killed
//!   too, so no process of a check outlives it;
//! - `user` / global `script_user` (resolved into the config), else the
//!   `keepalived_script` user when it exists, as keepalived: setgid/setuid
//!   before exec. notify_up/notify_down and quorum_up/quorum_down use the
//!   same resolution ([`spawn_detached`]);
//! - `enable_script_security`: a script that would run as root is refused
//!   when its path could be changed by another user ([`insecure`]).

use std::ffi::CString;
use std::time::Duration;

use tokio::process::Command;

use super::state::CheckResult;
use crate::config::{Checker, MiscCheck, RunAs, Script};

/// Resolves a user (and optional group) to (uid, gid).
pub fn resolve_run_as(r: &RunAs) -> Result<(u32, u32), String> {
    let user = CString::new(r.user.as_str()).map_err(|_| format!("bad user name {:?}", r.user))?;
    let (uid, mut gid) = unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            user.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() {
            match r.user.parse::<u32>() {
                Ok(n) => (n, n),
                Err(_) => return Err(format!("unknown user {:?}", r.user)),
            }
        } else {
            (pw.pw_uid, pw.pw_gid)
        }
    };
    if let Some(g) = &r.group {
        let group = CString::new(g.as_str()).map_err(|_| format!("bad group name {g:?}"))?;
        unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut buf = vec![0 as libc::c_char; 16384];
            let mut out: *mut libc::group = std::ptr::null_mut();
            let rc = libc::getgrnam_r(
                group.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            );
            if rc != 0 || out.is_null() {
                gid = g
                    .parse::<u32>()
                    .map_err(|_| format!("unknown group {g:?}"))?;
            } else {
                gid = gr.gr_gid;
            }
        }
    }
    Ok((uid, gid))
}

/// The (uid, gid) a script runs as: its own user (or the global
/// `script_user` the config resolved into it), else `keepalived_script`
/// when that user exists; None runs it as the daemon's own user.
pub fn script_ids(script: &Script) -> Result<Option<(u32, u32)>, String> {
    match &script.run_as {
        Some(r) => resolve_run_as(r).map(Some),
        None => Ok(resolve_run_as(&RunAs {
            user: "keepalived_script".into(),
            group: None,
        })
        .ok()),
    }
}

/// `script_ids`, refusing with `enable_script_security` a script that
/// would run as root from a path someone else could change.
pub fn secure_script_ids(script: &Script, security: bool) -> Result<Option<(u32, u32)>, String> {
    let ids = script_ids(script)?;
    // SAFETY: geteuid(2) cannot fail.
    let as_root = ids.map_or(unsafe { libc::geteuid() } == 0, |(uid, _)| uid == 0);
    if security && as_root {
        let program = script.argv.first().map(String::as_str).unwrap_or("");
        if let Some(why) = insecure(program) {
            return Err(format!("not run as root: {why} (enable_script_security)"));
        }
    }
    Ok(ids)
}

/// Why running `program` as root is unsafe, as keepalived's
/// enable_script_security judges it: the file or a directory above it is
/// not owned by root, or is writable by its group or by others.
pub fn insecure(program: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let found = if program.contains('/') {
        Some(std::path::PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = found.and_then(|p| p.canonicalize().ok()) else {
        return Some(format!("{program} not found"));
    };
    for p in path.ancestors() {
        let m = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", p.display())),
        };
        if m.uid() != 0 {
            return Some(format!("{} is owned by uid {}", p.display(), m.uid()));
        }
        if m.mode() & 0o022 != 0 {
            return Some(format!("{} is writable by its group or others", p.display()));
        }
    }
    None
}

fn run_as_ids(cmd: &mut Command, ids: Option<(u32, u32)>) {
    if let Some((uid, gid)) = ids {
        // std drops supplementary groups (setgroups(0)) when run as root.
        cmd.gid(gid).uid(uid);
    }
}

/// Starts a notify script (its argv, no shell) as its user and lets it
/// run: keepalived neither waits for these nor bounds them. The child is
/// reaped by a task of the current runtime.
pub fn spawn_detached(script: &Script, security: bool) -> Result<(), String> {
    let Some((program, args)) = script.argv.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(false);
    run_as_ids(&mut cmd, secure_script_ids(script, security)?);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}

/// Kills the process group when dropped (the check was cancelled, or ended).
struct GroupGuard(Option<i32>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) on a negative pid signals that process group only.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The result of one script run (also used by tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptOutcome {
    Exited(i32),
    Signalled(i32),
    TimedOut,
    SpawnFailed(String),
}

/// Runs `command` via `/bin/sh -c` in a new process group, bounded by
/// `timeout`; returns how it ended and the process group id it had.
pub async fn run_script(
    command: &str,
    run_as: Option<(u32, u32)>,
    timeout: Duration,
) -> (ScriptOutcome, Option<i32>) {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    run_as_ids(&mut cmd, run_as);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (ScriptOutcome::SpawnFailed(e.to_string()), None),
    };
    let pgid = child.id().map(|p| p as i32);
    let mut guard = GroupGuard(pgid);
    let out = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => {
            use std::os::unix::process::ExitStatusExt;
            match (st.code(), st.signal()) {
                (Some(c), _) => ScriptOutcome::Exited(c),
                (None, Some(s)) => ScriptOutcome::Signalled(s),
                _ => ScriptOutcome::Exited(-1),
            }
        }
        Ok(Err(e)) => ScriptOutcome::SpawnFailed(format!("wait failed: {e}")),
        Err(_) => {
            guard.kill();
            // Reap the shell: SIGKILL cannot be ignored, so this is prompt.
            let _ = child.wait().await;
            ScriptOutcome::TimedOut
        }
    };
    // Leftovers of the group (background jobs) go too.
    guard.kill();
    (out, pgid)
}

/// Runs one MISC_CHECK.
pub async fn check(c: &Checker, m: &MiscCheck) -> CheckResult {
    let Some(script) = &m.misc_path else {
        return CheckResult::fail("has no misc_path");
    };
    let run_as = match secure_script_ids(script, m.script_security) {
        Ok(ids) => ids,
        Err(e) => return CheckResult::fail(e),
    };
    let timeout = m.misc_timeout.unwrap_or(c.common.delay_loop);
    let (out, _) = run_script(&script.command, run_as, timeout).await;
    judge(m, &out, timeout)
}

/// Maps a script outcome to a check result.
pub fn judge(m: &MiscCheck, out: &ScriptOutcome, timeout: Duration) -> CheckResult {
    match *out {
        ScriptOutcome::Exited(0) => CheckResult::ok(),
        ScriptOutcome::Exited(c) if m.misc_dynamic && (2..=255).contains(&c) => CheckResult::Ok {
            weight: Some((c - 2) as u32),
        },
        ScriptOutcome::Exited(c) => CheckResult::fail(format!("exited with status {c}")),
        ScriptOutcome::Signalled(s) => CheckResult::fail(format!("killed by signal {s}")),
        ScriptOutcome::TimedOut => CheckResult::fail(format!("timed out after {timeout:?}")),
        ScriptOutcome::SpawnFailed(ref e) => CheckResult::fail(format!("could not run: {e}")),
    }
}
