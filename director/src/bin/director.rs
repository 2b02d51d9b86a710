//! The director daemon. Argument parsing only; see `director::daemon`.

use clap::Parser;
use director::daemon::{self, Args};

fn main() -> std::process::ExitCode {
    daemon::main(Args::parse())
}
