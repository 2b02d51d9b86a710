//! `cargo xtask bench`: builds and runs the benchmark binary in release mode.
//! It prints one `bench <scenario> <metric>=<n>` line per scenario.

use anyhow::Result;

use crate::{build::cargo, cmd::invoke, setup};

pub fn run() -> Result<()> {
    setup::run()?;
    invoke(cargo().args(["run", "--release", "--package", "director-tests", "--bin", "bench"]))
}
