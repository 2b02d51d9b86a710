//! Project automation. Every install step the project needs lives here, so a
//! fresh machine needs nothing but `cargo xtask test` or `cargo xtask lab`.

mod bench;
mod build;
mod cmd;
mod http;
mod lab;
mod setup;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "director project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install whatever is missing: nightly rust-src, LLVM 22, bpf-linker, test tools.
    Setup,
    /// Build the XDP program and the binaries (release).
    Build,
    /// Run setup, then every test suite (unit, packet fixtures, root netns).
    Test {
        /// Extra arguments for the test runner (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build and run `director ARGS` (defaults to -f conf/director.conf).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Bring up seed 002's LVS-DR topology in namespaces and start director in it.
    Lab {
        /// Stop everything the lab started and remove its namespaces.
        #[arg(long)]
        down: bool,
    },
    /// Print benchmark figures (`bench <scenario> <metric>=<n>` lines).
    Bench,
    /// Prepare the IPVS test VM's kernel (Debian's, under target/vm) and run
    /// the VM test (tests/tests/ipvs_vm.rs).
    Vm,
    /// A tiny HTTP server for lab real servers (used inside namespaces).
    #[command(hide = true)]
    HttpServe {
        #[arg(long)]
        bind: String,
        #[arg(long)]
        name: String,
    },
    /// A tiny HTTP GET for the lab client (used inside namespaces).
    #[command(hide = true)]
    HttpGet { addr: String },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Build => build::release(),
        Task::Test { args } => build::test(&args),
        Task::Run { args } => build::run(&args),
        Task::Lab { down: false } => lab::up(),
        Task::Lab { down: true } => lab::down(),
        Task::Bench => bench::run(),
        Task::Vm => build::vm(),
        Task::HttpServe { bind, name } => http::serve(&bind, &name),
        Task::HttpGet { addr } => http::get(&addr).map(|body| print!("{body}")),
    }
}
