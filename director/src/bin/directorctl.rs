//! The operator CLI. Argument parsing only; see `director::ctl`.

use clap::Parser;
use director::{
    ctl::{self, Cli},
    daemon,
};

fn main() -> std::process::ExitCode {
    ctl::main(Cli::parse(), |file, config_id| daemon::config_check(file, config_id, false))
}
