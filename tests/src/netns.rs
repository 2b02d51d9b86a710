//! Network namespaces and veth links created by a test and removed when it
//! ends, pass or fail (Drop runs during unwinding).

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result, bail};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns`), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace whose name is unique to this process and call.
    pub fn new(tag: &str) -> Result<Self> {
        let name = format!("dt-{tag}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip ARGS` inside the namespace; fails with ip's stderr.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command inside the namespace and returns its output,
    /// whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .with_context(|| format!("running {program} in {}", self.name))
    }

    /// Runs `f` on a thread that has entered this namespace, so sockets,
    /// netlink and interface names inside `f` are the namespace's.
    pub fn enter<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        let file = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening namespace {}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on this thread only; the fd is valid for the call.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    bail!("setns {}: {}", self.name, std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in {} panicked", self.name))?
        })
    }

    /// A named thread that lives in this namespace (sockets it opens are
    /// the namespace's), for work that runs alongside the test.
    pub fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<std::thread::JoinHandle<Result<T>>> {
        let file = File::open(format!("/run/netns/{}", self.name))
            .with_context(|| format!("opening namespace {}", self.name))?;
        let ns = self.name.clone();
        Ok(std::thread::Builder::new().name(name.into()).spawn(move || {
            // SAFETY: setns on this thread only; the fd is valid for the call.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {ns}: {}", std::io::Error::last_os_error());
            }
            drop(file);
            f()
        })?)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A veth pair with one end in each namespace, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    run(
        "ip",
        &["link", "add", a_if, "netns", a.name(), "type", "veth", "peer", "name", b_if, "netns", b.name()],
    )?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Runs a command to completion; a non-zero exit is an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
