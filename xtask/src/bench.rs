//! `cargo xtask bench`: builds and runs the benchmark binary in release mode.
//! It prints one `bench <scenario> <metric>=<n>` line per scenario.

use anyhow::Result;

use crate::{build::cargo, cmd::invoke, setup};

pub fn run() -> Result<()> {
    setup::run()?;
    // vrrp_failover runs the daemon itself, found next to the bench binary.
    invoke(cargo().args(["build", "--release", "--package", "director", "--bins"]))?;
    invoke(cargo().args(["run", "--release", "--package", "director-tests", "--bin", "bench"]))
}
