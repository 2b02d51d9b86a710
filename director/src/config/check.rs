//! The verdict of `director --config-test` and `directorctl config check`
//! on a loaded configuration: pure (the caller loads the file, adds the
//! checks that need the host or the data planes, and prints), so both
//! commands answer alike and the verdict is testable without a file.

use super::{Loaded, Severity};

/// What to print and the exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Every diagnostic, the `notes`, then the verdict line (none with a dump).
    pub stderr: Vec<String>,
    /// The model as JSON, when dumped.
    pub stdout: Option<String>,
    /// 0 clean, 1 warnings only, 2 cannot run.
    pub exit: u8,
}

/// `notes`: facts the caller adds before the verdict (where services go).
pub fn report(loaded: &Loaded, notes: &[String], dump: bool) -> Report {
    let mut stderr: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    if !dump {
        stderr.extend(notes.iter().cloned());
        stderr.push(verdict(loaded));
        return Report { stderr, stdout: None, exit: loaded.exit_code() as u8 };
    }
    match serde_json::to_string_pretty(&loaded.config) {
        Ok(json) => Report { stderr, stdout: Some(json), exit: loaded.exit_code() as u8 },
        Err(e) => {
            stderr.push(format!("cannot serialise the configuration: {e}"));
            Report { stderr, stdout: None, exit: 2 }
        }
    }
}

fn verdict(loaded: &Loaded) -> String {
    let count = |s: Severity| loaded.diagnostics.iter().filter(|d| d.severity == s).count();
    match (count(Severity::Error), count(Severity::Warning)) {
        (0, 0) => "configuration OK".to_string(),
        (0, w) => format!("configuration usable, with {w} warning(s)"),
        (e, w) => format!("configuration has {e} error(s) and {w} warning(s); it cannot run"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    #[test]
    fn verdicts_and_exit_codes() {
        let check = |text: &str| report(&load_str(text, "t.conf", &LoadOptions::default()), &["note".into()], false);
        let ok = check("virtual_server 10.0.0.1 80 { protocol TCP\n lvs_sched wrr\n real_server 10.0.1.1 80 { } }\n");
        assert_eq!(ok, Report { stderr: vec!["note".into(), "configuration OK".into()], stdout: None, exit: 0 });
        let bad = check("virtual_server 10.0.0.1 80 { lvs_sched nosuch\n real_server 10.0.1.1 80 { } }\n");
        assert_eq!(bad.exit, 2);
        assert!(bad.stderr[0].starts_with("t.conf:1:"), "{:?}", bad.stderr);
        assert!(bad.stderr.last().unwrap().ends_with("it cannot run"), "{:?}", bad.stderr);
        let dumped = report(&load_str("global_defs { router_id x }\n", "t.conf", &LoadOptions::default()), &[], true);
        assert!(dumped.stdout.as_deref().is_some_and(|j| j.contains("\"router_id\"")), "{dumped:?}");
        assert!(dumped.stderr.is_empty(), "{dumped:?}");
    }
}
