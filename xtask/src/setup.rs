//! `cargo xtask setup`: idempotent install of everything the build and the
//! tests need. Each step says whether it found the thing or installed it.

use std::process::Command;

use anyhow::{Result, bail};

use crate::cmd::{invoke, output, probe};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the lab and the
/// tests drive: `prometheus` for `promtool check metrics`; keepalived as the
/// VRRP interop peer; nginx and dnsmasq as real servers for the checkers;
/// ipvsadm, qemu, busybox and cpio for the IPVS test VM.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "iproute2",
    "ethtool",
    "prometheus",
    "keepalived",
    "nginx",
    "dnsmasq",
    "ipvsadm",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    // depmod for the IPVS test VM's kernel modules.
    "kmod",
];

/// bpf-linker must link against the same LLVM major as the nightly rustc.
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

pub fn run() -> Result<()> {
    let mut installed = Vec::new();

    if !probe(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        step("nightly toolchain", "installing");
        invoke(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
        installed.push("nightly");
    } else {
        step("nightly toolchain", "present");
    }

    let components = output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if components.lines().any(|l| l.starts_with("rust-src")) {
        step("nightly rust-src", "present");
    } else {
        step("nightly rust-src", "installing");
        invoke(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
        installed.push("rust-src");
    }

    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        step(&format!("apt packages ({})", APT_PACKAGES.join(" ")), "present");
    } else {
        step(&format!("apt packages ({})", missing.join(" ")), "installing");
        invoke(Command::new("apt-get").args(["update", "-qq"]))?;
        // nginx, dnsmasq and keepalived would start as host services on
        // install; the tests start their own copies in namespaces instead.
        let _no_services = NoServiceStarts::install()?;
        invoke(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        installed.push("apt packages");
    }

    if probe(Command::new("bpf-linker").arg("--version")) {
        step("bpf-linker", "present");
    } else {
        step(&format!("bpf-linker {BPF_LINKER_VERSION} (llvm-22)"), "installing");
        invoke(Command::new("cargo")
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", LLVM_PREFIX))?;
        installed.push("bpf-linker");
    }
    if !probe(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker is still not on PATH; is ~/.cargo/bin on PATH?");
    }

    if installed.is_empty() {
        eprintln!("setup: nothing to install");
    } else {
        eprintln!("setup: installed {}", installed.join(", "));
    }
    Ok(())
}

fn step(what: &str, state: &str) {
    eprintln!("setup: {what}: {state}");
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|s| s.contains("install ok installed"))
        .unwrap_or(false)
}

/// A `policy-rc.d` that forbids service starts (Debian's mechanism), in place
/// for as long as this lives unless the machine already has one.
struct NoServiceStarts(Option<&'static str>);

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        if std::path::Path::new(Self::PATH).exists() {
            return Ok(NoServiceStarts(None));
        }
        std::fs::write(Self::PATH, "#!/bin/sh\nexit 101\n")?;
        std::fs::set_permissions(Self::PATH, std::fs::Permissions::from_mode(0o755))?;
        Ok(NoServiceStarts(Some(Self::PATH)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
