//! `build`, `test` and `run`: thin wrappers over cargo that make sure the
//! toolchain is there first.

use std::{os::unix::process::CommandExt, process::Command};

use anyhow::Result;

use crate::{
    cmd::{invoke, probe, root},
    setup, vm,
};

pub fn release() -> Result<()> {
    setup::run()?;
    invoke(cargo().args(["build", "--release", "--package", "director", "--bins"]))?;
    eprintln!("built {}/target/release/{{director,directorctl}}", root().display());
    Ok(())
}

/// Every suite in the default workspace members. nextest when available,
/// because it prints one summary for all test binaries.
pub fn test(extra: &[String]) -> Result<()> {
    setup::run()?;
    // The IPVS VM test boots this kernel.
    vm::prepare()?;
    test_runner(extra)
}

fn test_runner(extra: &[impl AsRef<std::ffi::OsStr>]) -> Result<()> {
    if probe(cargo().args(["nextest", "--version"])) {
        invoke(cargo().args(["nextest", "run", "--no-fail-fast"]).args(extra))
    } else {
        invoke(cargo().args(["test", "--no-fail-fast"]).args(extra))
    }
}

/// The IPVS VM test alone, with its kernel prepared first.
pub fn vm() -> Result<()> {
    setup::run()?;
    vm::prepare()?;
    // The test copies these into the guest; a test build alone leaves them stale.
    invoke(cargo().args(["build", "--package", "director", "--bins"]))?;
    test_runner(&["--package", "director-tests", "--test", "ipvs_vm"])
}

/// Builds and then replaces this process with `director ARGS`.
pub fn run(args: &[String]) -> Result<()> {
    setup::run()?;
    invoke(cargo().args(["build", "--package", "director", "--bins"]))?;
    let mut director = Command::new(root().join("target/debug/director"));
    if !args.iter().any(|a| a.starts_with("-f") || a.starts_with("--use-file")) {
        director.arg("-f").arg(root().join("conf/director.conf"));
    }
    Err(director.args(args).exec().into())
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}
