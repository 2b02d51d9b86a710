//! The daemon's wiring: configuration, the data planes, signals.

pub mod control;
pub mod desired;
pub mod neigh;
mod notify;
pub mod planes;
mod run;
mod snapshot;
pub mod state_file;
pub mod validate;
pub mod diff;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tracing::{error, warn};

use crate::{
    config::{self, Config, Diagnostic, LoadOptions, Severity},
};

/// Command-line options. `-f`, `-t`, `-i` and `-l` follow keepalived's
/// spelling so existing unit files and habits keep working.
#[derive(Parser, Debug)]
#[command(name = "director", version, about = "keepalived-compatible load-balancer director with an XDP data plane")]
pub struct Args {
    /// Configuration file (keepalived.conf dialect).
    #[arg(short = 'f', long = "use-file", value_name = "FILE", default_value = "/etc/keepalived/keepalived.conf")]
    pub file: PathBuf,
    /// Check the configuration and exit: 0 clean, 1 warnings only, 2 cannot run.
    #[arg(short = 't', long)]
    pub config_test: bool,
    /// Print the typed configuration as JSON and exit (same exit codes as -t).
    #[arg(long)]
    pub dump_config: bool,
    /// Configuration id for `@id` lines (default: the short hostname).
    #[arg(short = 'i', long, value_name = "ID")]
    pub config_id: Option<String>,
    /// Interface to attach XDP to; repeatable. Defaults to the interfaces the
    /// vrrp_instances name.
    #[arg(long = "iface", value_name = "IFACE")]
    pub ifaces: Vec<String>,
    /// The control socket directorctl talks to.
    #[arg(long, value_name = "PATH", default_value = crate::ctl::protocol::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// bpffs directory for the program's maps and links: they outlive the
    /// daemon, so a restart or upgrade does not interrupt forwarding.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/director")]
    pub bpffs_dir: PathBuf,
    /// Where `directorctl rs disable/enable/weight` decisions are kept across
    /// restarts [default: admin-state.json beside the control socket].
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Detach the XDP program and remove its pins (see --bpffs-dir), then exit.
    #[arg(long)]
    pub cleanup: bool,
    #[command(subcommand)]
    pub tool: Option<Tool>,
    /// Data plane: `xdp`, `ipvs` (kernel IPVS through netlink), or `auto`
    /// (XDP, falling back to IPVS when XDP cannot attach). A
    /// virtual_server's `director_dataplane` overrides it for that service.
    #[arg(long, value_enum, default_value_t = planes::Mode::Auto)]
    pub dataplane: planes::Mode,
    /// Where the Prometheus endpoint listens.
    #[arg(long, value_name = "ADDR:PORT", default_value_t = crate::metrics::DEFAULT_LISTEN)]
    pub metrics_listen: std::net::SocketAddr,
}

/// keepalived's companion tools, built in.
#[derive(clap::Subcommand, Debug)]
pub enum Tool {
    /// Print the MD5 digest of a page, as an HTTP_GET/SSL_GET `digest` expects
    /// (keepalived's genhash).
    Genhash {
        /// Server address.
        #[arg(short = 's', long = "server")]
        server: std::net::IpAddr,
        #[arg(short = 'p', long = "port", default_value_t = 80)]
        port: u16,
        /// Path of the page.
        #[arg(short = 'u', long = "url")]
        url: String,
        /// Use TLS (SSL_GET).
        #[arg(short = 'S', long = "use-ssl")]
        ssl: bool,
        /// Host header (virtualhost).
        #[arg(short = 'V', long = "use-virtualhost")]
        vhost: Option<String>,
    },
}

pub fn main(args: Args) -> ExitCode {
    init_logging();
    if let Some(Tool::Genhash { server, port, url, ssl, vhost }) = &args.tool {
        return genhash(std::net::SocketAddr::new(*server, *port), url, *ssl, vhost.as_deref());
    }
    if args.config_test || args.dump_config {
        return ExitCode::from(check(&args));
    }
    if args.cleanup {
        return match crate::dataplane::xdp::XdpProgram::cleanup(&args.bpffs_dir) {
            Ok(ifaces) => {
                tracing::info!("detached XDP from [{}] and removed the pins in {}", ifaces.join(", "), args.bpffs_dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                error!("cleanup: {e}");
                ExitCode::from(2)
            }
        };
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::from(2)
        }
    }
}

fn genhash(addr: std::net::SocketAddr, url: &str, ssl: bool, vhost: Option<&str>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("genhash: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(crate::check::genhash(addr, url, ssl, vhost)) {
        Ok(md5) => {
            println!("MD5SUM = {md5}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("genhash {addr}{url}: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(args: &Args) -> u8 {
    config_check(&args.file, args.config_id.clone(), args.dump_config)
}

/// `--config-test` / `--dump-config` / `directorctl config check`: the
/// file, plus the checks run at start-up and reload (host ones warn: the
/// file may be meant for another machine), judged by `config::check`.
pub fn config_check(file: &Path, config_id: Option<String>, dump: bool) -> u8 {
    let mut loaded = config::load_file(file, &LoadOptions { config_id });
    let more = validate::run_checks(&loaded, planes::Kind::Xdp, &config::SystemHost, Severity::Warning);
    loaded.extend(more);
    let notes: Vec<String> = loaded
        .config
        .virtual_servers
        .iter()
        .filter_map(|vs| match planes::route(planes::Kind::Xdp, vs) {
            (planes::Kind::Ipvs, Some(why)) => Some(format!("virtual_server {}: IPVS data plane ({why})", vs.key)),
            _ => None,
        })
        .collect();
    let report = config::check::report(&loaded, &notes, dump);
    for line in &report.stderr {
        eprintln!("{line}");
    }
    if let Some(json) = &report.stdout {
        println!("{json}");
    }
    report.exit
}

fn run(args: Args) -> Result<()> {
    let mut loaded = config::load_file(&args.file, &LoadOptions { config_id: args.config_id.clone() });
    let default = if args.dataplane == planes::Mode::Ipvs { planes::Kind::Ipvs } else { planes::Kind::Xdp };
    // A missing interface at start-up is retried, as keepalived does.
    let more = validate::run_checks(&loaded, default, &config::SystemHost, Severity::Warning);
    loaded.extend(more);
    log_diagnostics(&loaded.diagnostics);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        // The socket first: it refuses to start a second daemon before that
        // one could touch the running data plane.
        let listener = control::bind(&args.socket, control::DEFAULT_MODE)
            .with_context(|| format!("control socket {}", args.socket.display()))?;
        let (socket, bpffs) = (args.socket.clone(), args.bpffs_dir.clone());
        let started = if loaded.has_errors() {
            Err(anyhow!("{}: the configuration has errors; not starting", args.file.display()))
        } else {
            run::Daemon::start(args, loaded.config, listener).await
        };
        match started {
            Ok(daemon) => daemon.run().await,
            Err(e) => {
                // No daemon will update an older daemon's pinned maps now.
                planes::retire_xdp(&bpffs);
                let _ = std::fs::remove_file(&socket);
                Err(e)
            }
        }
    })
}

pub(crate) fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match d.severity {
            Severity::Error => error!("{d}"),
            Severity::Warning => warn!("{d}"),
        }
    }
}

/// One line an operator can check at a glance.
pub(crate) fn summary(config: &Config) -> String {
    let rs: usize = config.virtual_servers.iter().map(|vs| vs.real_servers.len()).sum();
    let vips: usize = config.instances.iter().map(|i| i.virtual_ipaddress.len()).sum();
    format!(
        "{} virtual server(s) with {rs} real server(s), {} vrrp_instance(s) with {vips} VIP(s)",
        config.virtual_servers.len(),
        config.instances.len()
    )
}

pub(crate) fn interfaces(args: &Args, config: &Config) -> Result<Vec<String>> {
    if !args.ifaces.is_empty() {
        return Ok(args.ifaces.clone());
    }
    let from_config: BTreeSet<String> =
        config.instances.iter().filter_map(|i| i.interface.clone()).collect();
    if from_config.is_empty() {
        bail!("no interface to attach to: pass --iface IFACE or name one in a vrrp_instance");
    }
    Ok(from_config.into_iter().collect())
}

/// Logs to stderr; under systemd (JOURNAL_STREAM set) without timestamps,
/// since journald adds its own.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
