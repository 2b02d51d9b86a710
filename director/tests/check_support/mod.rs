//! Helpers shared by the check_* tests.
#![allow(dead_code)]

pub mod real;

use std::time::Duration;

use director::config::{Check, CheckCommon, Checker, HttpCheck, MiscCheck, Script, Url};

pub fn common() -> CheckCommon {
    CheckCommon {
        connect_ip: None,
        connect_port: None,
        bindto: None,
        bind_if: None,
        bind_port: None,
        fwmark: None,
        connect_timeout: Duration::from_secs(5),
        retry: 1,
        delay_before_retry: Duration::from_secs(1),
        delay_loop: Duration::from_secs(6),
        warmup: None,
        alpha: false,
        log_all_failures: false,
    }
}

pub fn checker(check: Check) -> Checker {
    Checker {
        common: common(),
        check,
    }
}

pub fn tcp() -> Checker {
    checker(Check::Tcp)
}

pub fn url(path: &str) -> Url {
    Url {
        path: path.to_string(),
        digest: None,
        status_code: vec![(200, 299)],
        virtualhost: None,
        regex: None,
        regex_no_match: false,
    }
}

pub fn http(urls: Vec<Url>) -> HttpCheck {
    HttpCheck {
        urls,
        ..Default::default()
    }
}

pub fn misc(cmd: &str, dynamic: bool, timeout: Option<Duration>) -> Checker {
    let mut c = checker(Check::Misc(MiscCheck {
        misc_path: Some(Script {
            command: cmd.to_string(),
            argv: cmd.split(' ').map(str::to_string).collect(),
            run_as: None,
        }),
        misc_timeout: timeout,
        misc_dynamic: dynamic,
        script_security: false,
    }));
    c.common.retry = 0;
    c
}
