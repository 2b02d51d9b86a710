//! `directorctl`: the operator's CLI.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::daemon;

#[derive(Parser, Debug)]
#[command(name = "directorctl", version, about = "Operate a running director")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Configuration tools that need no running daemon.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Check a configuration file: exit 0 clean, 1 warnings only, 2 cannot run.
    Check {
        file: PathBuf,
        /// Configuration id for `@id` lines (default: the short hostname).
        #[arg(short = 'i', long, value_name = "ID")]
        config_id: Option<String>,
    },
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Config { command: ConfigCommand::Check { file, config_id } } => {
            ExitCode::from(daemon::config_check(&file, config_id, false))
        }
    }
}
