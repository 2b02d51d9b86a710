//! The operator CLI. Argument parsing only; see `director::ctl`.

use clap::Parser;
use director::ctl::{self, Cli};

fn main() -> std::process::ExitCode {
    ctl::main(Cli::parse())
}
