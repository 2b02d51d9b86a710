//! Notify scripts on VRRP state changes, with keepalived's argument layout
//! (vrrp_notify.c): `notify_master` / `notify_backup` / `notify_fault` /
//! `notify_stop` run as written; `notify` runs with four more arguments,
//! `INSTANCE|GROUP <name> MASTER|BACKUP|FAULT|STOP <priority>` (priority 0
//! for a group).
//!
//! Like keepalived, scripts are executed directly (no shell) as
//! `script_user` or their own user (looked up when the configuration is
//! applied, never on the VRRP thread), and are not waited for: the driver gets
//! a handle it may await (keepalived waits up to 1 s for STOP scripts at
//! shutdown) or drop. They are not killed when they outlive the handle, so a
//! notify script may start a long-running service.

use std::time::Duration;

use tokio::process::Command;
use tracing::{info, warn};

use crate::check::misc::resolve_run_as;
use crate::config::{GlobalDefs, Notify, Script};

/// The state reported to the scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl NotifyState {
    /// The scripts' name for a state machine state; leaving Initialize's
    /// counterpart is stopping.
    pub fn of(state: super::State) -> NotifyState {
        match state {
            super::State::Master => NotifyState::Master,
            super::State::Backup => NotifyState::Backup,
            super::State::Fault => NotifyState::Fault,
            super::State::Initialize => NotifyState::Stop,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
        }
    }
}

/// Whose state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Instance(&'a str),
    Group(&'a str),
}

/// The uid/gid a script runs as: its own user, else the global
/// `script_user`, else ours (`None`).
pub fn script_ids(script: &Script, global: &GlobalDefs) -> Result<Option<(u32, u32)>, String> {
    // A lookup goes through NSS (LDAP, sssd...) and may block: on the VRRP
    // thread it would delay adverts.
    debug_assert_ne!(std::thread::current().name(), Some(super::manager::THREAD), "user lookup on the VRRP thread");
    script
        .run_as
        .as_ref()
        .or(global.script_user.as_ref())
        .map(resolve_run_as)
        .transpose()
}

/// A script with the user it runs as, looked up when it was configured.
#[derive(Debug, Clone)]
struct Ready {
    script: Script,
    ids: Result<Option<(u32, u32)>, String>,
}

/// The notify scripts of an instance or a sync group, ready to run. Made
/// off the VRRP thread: user lookups go through NSS and may block.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    master: Option<Ready>,
    backup: Option<Ready>,
    fault: Option<Ready>,
    stop: Option<Ready>,
    any: Option<Ready>,
}

impl Notifier {
    pub fn resolve(notify: &Notify, global: &GlobalDefs) -> Notifier {
        let ready = |s: &Option<Script>| s.as_ref().map(|s| Ready { ids: script_ids(s, global), script: s.clone() });
        Notifier {
            master: ready(&notify.master),
            backup: ready(&notify.backup),
            fault: ready(&notify.fault),
            stop: ready(&notify.stop),
            any: ready(&notify.any),
        }
    }

    /// The command lines to run for a transition, in keepalived's order:
    /// the state's own script, then `notify` with its four extra arguments.
    fn commands(&self, subject: Subject<'_>, state: NotifyState, priority: u8) -> Vec<(&Ready, Vec<String>)> {
        let own = match state {
            NotifyState::Master => &self.master,
            NotifyState::Backup => &self.backup,
            NotifyState::Fault => &self.fault,
            NotifyState::Stop => &self.stop,
        };
        let mut out: Vec<(&Ready, Vec<String>)> = own.iter().map(|r| (r, r.script.argv.clone())).collect();
        if let Some(r) = &self.any {
            let (kind, name, prio) = match subject {
                Subject::Instance(n) => ("INSTANCE", n, priority),
                Subject::Group(n) => ("GROUP", n, 0),
            };
            let mut argv = r.script.argv.clone();
            argv.extend([kind.to_string(), name.to_string(), state.as_str().to_string(), prio.to_string()]);
            out.push((r, argv));
        }
        out
    }

    /// Starts the transition's scripts and returns at once; the handle
    /// finishes when they have all exited (awaiting it is optional).
    pub fn run(&self, subject: Subject<'_>, state: NotifyState, priority: u8) -> tokio::task::JoinHandle<()> {
        let mut children = Vec::new();
        for (ready, argv) in self.commands(subject, state, priority) {
            let ids = match &ready.ids {
                Ok(ids) => *ids,
                Err(e) => {
                    warn!("notify {:?}: {e}; not run", ready.script.command);
                    continue;
                }
            };
            let Some((prog, args)) = argv.split_first() else {
                continue;
            };
            let mut cmd = Command::new(prog);
            cmd.args(args).stdin(std::process::Stdio::null());
            if let Some((uid, gid)) = ids {
                cmd.gid(gid).uid(uid);
            }
            match cmd.spawn() {
                Ok(c) => {
                    info!("notify: {}", argv.join(" "));
                    children.push((argv, c));
                }
                Err(e) => warn!("notify {:?}: could not run: {e}", argv.join(" ")),
            }
        }
        tokio::spawn(async move {
            for (argv, mut c) in children {
                match c.wait().await {
                    Ok(st) if st.success() => {}
                    Ok(st) => warn!("notify {:?}: {st}", argv.join(" ")),
                    Err(e) => warn!("notify {:?}: {e}", argv.join(" ")),
                }
            }
        })
    }
}

/// Looks the users up and runs the scripts: for a caller off the VRRP
/// thread (the daemon's sync-group scripts).
pub fn notify(
    notify: &Notify,
    global: &GlobalDefs,
    subject: Subject<'_>,
    state: NotifyState,
    priority: u8,
) -> tokio::task::JoinHandle<()> {
    Notifier::resolve(notify, global).run(subject, state, priority)
}

/// keepalived's wait for STOP scripts at shutdown.
pub const STOP_WAIT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn script(cmd: &str) -> Script {
        Script {
            command: cmd.into(),
            argv: cmd.split(' ').map(String::from).collect(),
            run_as: None,
        }
    }

    #[test]
    fn own_script_then_notify_with_keepalived_arguments() {
        let n = Notify {
            master: Some(script("/bin/m a b")),
            backup: None,
            fault: Some(script("/bin/f")),
            stop: None,
            any: Some(script("/bin/n x")),
        };
        let argv = |subject, state, prio| -> Vec<Vec<String>> {
            Notifier::resolve(&n, &GlobalDefs::default())
                .commands(subject, state, prio)
                .into_iter()
                .map(|(_, a)| a)
                .collect()
        };
        assert_eq!(
            argv(Subject::Instance("VI_1"), NotifyState::Master, 150),
            vec![
                vec!["/bin/m", "a", "b"],
                vec!["/bin/n", "x", "INSTANCE", "VI_1", "MASTER", "150"]
            ]
        );
        assert_eq!(
            argv(Subject::Instance("VI_1"), NotifyState::Backup, 100),
            vec![vec!["/bin/n", "x", "INSTANCE", "VI_1", "BACKUP", "100"]]
        );
        assert_eq!(
            argv(Subject::Group("G"), NotifyState::Fault, 100),
            vec![
                vec!["/bin/f"],
                vec!["/bin/n", "x", "GROUP", "G", "FAULT", "0"]
            ]
        );
        assert_eq!(
            argv(Subject::Instance("VI_1"), NotifyState::Stop, 0)[0][4],
            "STOP"
        );
        assert!(
            Notifier::default()
                .commands(Subject::Instance("x"), NotifyState::Master, 1)
                .is_empty()
        );
    }

    #[test]
    fn run_as_own_user_then_global_then_none() {
        let mut g = GlobalDefs::default();
        let mut s = script("/bin/true");
        assert_eq!(script_ids(&s, &g), Ok(None));
        g.script_user = Some(crate::config::RunAs {
            user: "0".into(),
            group: None,
        });
        assert_eq!(script_ids(&s, &g), Ok(Some((0, 0))));
        s.run_as = Some(crate::config::RunAs {
            user: "no-such-user-here".into(),
            group: None,
        });
        assert!(
            script_ids(&s, &g)
                .unwrap_err()
                .contains("no-such-user-here")
        );
    }
}
