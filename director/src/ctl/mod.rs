//! `directorctl`: the operator's CLI, a client of the daemon's control
//! socket (whose server is `daemon::control`).
//!
//! - `protocol`: the JSON-lines messages both ends share.
//! - `client`: directorctl's end.
//! - `ipvsadm`, `summary`: pure renderings of a status snapshot.
//! - `target`: parsing of `IP[:PORT]` and `VIP:PORT` arguments.
//!
//! Exit codes: 0 success; 1 the daemon refused or reported an error;
//! 2 usage error, or the daemon cannot be reached or gave a bad reply.

pub mod client;
pub mod ipvsadm;
pub mod protocol;
pub mod summary;
pub mod target;

use std::{
    io::{self, Write},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use self::{
    client::{Client, CtlError},
    ipvsadm::{Layout, ListOptions},
    protocol::{AdminAction, DEFAULT_SOCKET, RealTarget, Response},
};
use crate::status::Snapshot;

const EXIT_REFUSED: u8 = 1;
const EXIT_UNREACHABLE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "directorctl",
    version,
    about = "Operate a running director",
    after_help = "Exit status: 0 success; 1 the director refused or reported an error; \
                  2 usage error, or the director cannot be reached."
)]
pub struct Cli {
    /// The director's control socket.
    #[arg(long, global = true, value_name = "PATH", env = "DIRECTOR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Daemon, configuration, data plane and real-server health at a glance.
    Status {
        /// The full status snapshot as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Services and real servers in `ipvsadm -Ln`'s layout.
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Take a real server out of rotation, put it back, or change its weight.
    Rs {
        #[command(subcommand)]
        command: RsCommand,
    },
    /// Re-read the configuration file; on error the running one is kept.
    Reload {
        /// Check the file and print what a reload would change (services,
        /// real servers, weights, VRRP instances, VIPs); change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Configuration tools that need no running daemon.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

const LIST_HELP: &str = "\
Columns and number formats are ipvsadm's, and so is the first line
(\"IP Virtual Server version 1.2.1 (size=4096)\"), kept verbatim for scripts:
its numbers are IPVS's defaults, not properties of director.

What ipvsadm has no column for follows a real server's last column in
parentheses: (disabled), (health: down), (weight set by operator; configured N),
(sorry server: in use|standby). --ipvsadm drops these notes and, as keepalived
does with IPVS, lists a sorry server only while it is in use.

-c lists the XDP connection table. It is an LRU map: entries have no expiry
timer and no TCP state, so the expire column shows --:-- and state shows -.";

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Connections, packets and bytes (ipvsadm --stats).
    #[arg(long, conflicts_with_all = ["rate", "connections"])]
    stats: bool,
    /// Per-second rates, measured over one second (ipvsadm --rate).
    #[arg(long, conflicts_with_all = ["connections", "json"])]
    rate: bool,
    /// Connection-table entries (ipvsadm -Lnc).
    #[arg(short = 'c', long)]
    connections: bool,
    /// Exact numbers instead of K, M, G, T (ipvsadm --exact).
    #[arg(long)]
    exact: bool,
    /// Only what ipvsadm would print: no trailing notes.
    #[arg(long)]
    ipvsadm: bool,
    /// The status snapshot (with -c: the connection entries) as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum RsCommand {
    /// Weight 0 until `rs enable`: no new connections; established ones finish.
    Disable(RsTarget),
    /// Back to the configured weight.
    Enable(RsTarget),
    /// Use this weight instead of the configured one, until `rs enable`.
    Weight {
        #[command(flatten)]
        target: RsTarget,
        /// 0 to 65535, as in ipvsadm.
        #[arg(value_parser = clap::value_parser!(u32).range(0..=65535))]
        weight: u32,
    },
}

#[derive(Args, Debug)]
pub struct RsTarget {
    /// The real server: IP or IP:PORT, IPv6 as [addr]:port. Without a port:
    /// every port of that address.
    #[arg(value_name = "IP[:PORT]", value_parser = target::parse_real)]
    real: (IpAddr, Option<u16>),
    /// Only in this virtual server (default: in every one that has it).
    #[arg(long = "vs", value_name = "VIP:PORT", value_parser = target::parse_virtual)]
    virtual_server: Option<SocketAddr>,
}

impl RsTarget {
    fn to_protocol(&self) -> RealTarget {
        RealTarget { addr: self.real.0, port: self.real.1, virtual_server: self.virtual_server }
    }
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

/// Why a command did not succeed, and so its exit code.
enum Failure {
    /// The daemon answered with an error (exit 1).
    Refused(String),
    /// No usable answer (exit 2).
    Unreachable(CtlError),
}

impl From<CtlError> for Failure {
    fn from(e: CtlError) -> Self {
        Self::Unreachable(e)
    }
}

/// Runs `cli`; `config check` goes to `check_file` (the binary passes
/// `daemon::config_check`, so that this client needs no daemon code).
pub fn main(cli: Cli, check_file: impl FnOnce(&Path, Option<String>) -> u8) -> ExitCode {
    let socket = cli.socket.as_path();
    let result = match cli.command {
        CtlCommand::Config { command: ConfigCommand::Check { file, config_id } } => {
            return ExitCode::from(check_file(&file, config_id));
        }
        CtlCommand::Status { json } => status(socket, json),
        CtlCommand::List(args) => list(socket, &args),
        CtlCommand::Rs { command } => real_server(socket, &command),
        CtlCommand::Reload { dry_run } => reload(socket, dry_run),
    };
    match result {
        Ok(text) => {
            print(&text);
            ExitCode::SUCCESS
        }
        Err(Failure::Refused(message)) => {
            eprintln!("directorctl: {message}");
            ExitCode::from(EXIT_REFUSED)
        }
        Err(Failure::Unreachable(e)) => {
            eprintln!("directorctl: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

fn status(socket: &Path, json: bool) -> Result<String, Failure> {
    let snapshot = snapshot(&mut Client::connect(socket)?)?;
    Ok(if json { to_json(&snapshot) } else { summary::status(&snapshot) })
}

fn list(socket: &Path, args: &ListArgs) -> Result<String, Failure> {
    let mut client = Client::connect(socket)?;
    if args.connections {
        return match client.call(protocol::Command::Connections)? {
            Response::Connections { entries } if args.json => Ok(to_json(&entries)),
            Response::Connections { entries } => Ok(ipvsadm::connections(&entries)),
            Response::Error { message } => Err(Failure::Refused(message)),
            other => Err(unexpected("connection entries", &other)),
        };
    }
    let first = snapshot(&mut client)?;
    if args.json {
        return Ok(to_json(&first));
    }
    let mut opts = ListOptions { layout: Layout::Default, exact: args.exact, annotate: !args.ipvsadm };
    if args.stats {
        opts.layout = Layout::Stats;
    }
    if !args.rate {
        return Ok(ipvsadm::list(&first, &opts));
    }
    // The data plane keeps counters, not rate estimators: measure.
    let started = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let second = snapshot(&mut client)?;
    opts.layout = Layout::Rate { earlier: &first, elapsed: started.elapsed() };
    Ok(ipvsadm::list(&second, &opts))
}

fn real_server(socket: &Path, command: &RsCommand) -> Result<String, Failure> {
    let (target, action) = match command {
        RsCommand::Disable(t) => (t, AdminAction::Disable),
        RsCommand::Enable(t) => (t, AdminAction::Enable),
        RsCommand::Weight { target, weight } => (target, AdminAction::Weight(*weight)),
    };
    let command = protocol::Command::RealServer { target: target.to_protocol(), action };
    match client::request(socket, command)? {
        Response::Changed { changes } if changes.is_empty() => Ok("nothing to change\n".into()),
        Response::Changed { changes } => Ok(lines(&changes)),
        Response::Error { message } => Err(Failure::Refused(message)),
        other => Err(unexpected("a list of changes", &other)),
    }
}

fn reload(socket: &Path, dry_run: bool) -> Result<String, Failure> {
    match client::request(socket, protocol::Command::Reload { dry_run })? {
        Response::Reloaded { generation, warnings } => {
            Ok(format!("reloaded: configuration generation {generation}\n{}", lines(&warnings)))
        }
        Response::ReloadPlan { changes } if changes.iter().all(|c| c.starts_with('=')) => {
            Ok(format!("dry run: the reload would change nothing\n{}", lines(&changes)))
        }
        Response::ReloadPlan { changes } => Ok(format!("dry run: the reload would apply\n{}", lines(&changes))),
        Response::Error { message } => {
            Err(Failure::Refused(format!("reload failed; the running configuration is kept:\n{message}")))
        }
        other => Err(unexpected("a reload result", &other)),
    }
}

fn snapshot(client: &mut Client) -> Result<Snapshot, Failure> {
    match client.call(protocol::Command::Status)? {
        Response::Status { snapshot } => Ok(*snapshot),
        Response::Error { message } => Err(Failure::Refused(message)),
        other => Err(unexpected("a status snapshot", &other)),
    }
}

fn unexpected(wanted: &str, got: &Response) -> Failure {
    let got = match got {
        Response::Status { .. } => "a status snapshot",
        Response::Connections { .. } => "connection entries",
        Response::Changed { .. } => "a list of changes",
        Response::Reloaded { .. } => "a reload result",
        Response::ReloadPlan { .. } => "a reload plan",
        Response::Error { .. } => "an error",
    };
    Failure::Unreachable(CtlError::BadReply(format!("expected {wanted}, got {got}")))
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain data with string keys: serialization cannot fail.
    let mut text = serde_json::to_string_pretty(value).expect("status types serialize to JSON");
    text.push('\n');
    text
}

/// Write to stdout; a closed pipe (`directorctl list | head`) is not an error.
fn print(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
