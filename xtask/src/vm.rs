//! The IPVS test VM's kernel: Debian's linux-image package (the host
//! kernel has no IPVS), downloaded once, unpacked and run through depmod
//! under target/vm. tests/tests/ipvs_vm.rs builds the initramfs and boots it.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, bail};

use crate::cmd::{invoke, output, root};

/// Makes sure target/vm/kernel names an unpacked kernel; returns its directory.
pub fn prepare() -> Result<PathBuf> {
    let vm = root().join("target/vm");
    fs::create_dir_all(&vm)?;
    let marker = vm.join("kernel");
    if let Ok(dir) = fs::read_to_string(&marker) {
        let dir = PathBuf::from(dir.trim());
        if dir.join("ready").exists() {
            eprintln!("vm: kernel {} (cached)", dir.display());
            return Ok(dir);
        }
    }
    let package = newest_kernel_package()?;
    let dir = vm.join(&package);
    if !dir.join("ready").exists() {
        let deb = find_deb(&vm, &package)?.map_or_else(
            || -> Result<PathBuf> {
                invoke(Command::new("apt-get").args(["download", &package]).current_dir(&vm))?;
                find_deb(&vm, &package)?.context("apt-get download left no .deb")
            },
            Ok,
        )?;
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        invoke(Command::new("dpkg").arg("-x").arg(&deb).arg(&dir))?;
        let release = package.trim_start_matches("linux-image-");
        invoke(Command::new("depmod").arg("-b").arg(&dir).arg(release))?;
        fs::write(dir.join("ready"), "")?;
    }
    fs::write(&marker, dir.display().to_string())?;
    eprintln!("vm: kernel {}", dir.display());
    Ok(dir)
}

/// The highest-numbered linux-image-6.1.0-N-amd64 apt offers (bookworm's
/// kernel; the test VM's modules list is written for it). Refreshes apt's
/// lists once when they offer none.
fn newest_kernel_package() -> Result<String> {
    if let Ok(name) = newest_listed() {
        return Ok(name);
    }
    invoke(Command::new("apt-get").args(["update", "-qq"]))?;
    newest_listed()
}

fn newest_listed() -> Result<String> {
    let list = output(Command::new("apt-cache").args(["search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"]))?;
    let best = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|name| {
            let abi: u32 = name.strip_prefix("linux-image-6.1.0-")?.strip_suffix("-amd64")?.parse().ok()?;
            Some((abi, name.to_string()))
        })
        .max();
    match best {
        Some((_, name)) => Ok(name),
        None => bail!("apt offers no linux-image-6.1.0-*-amd64 package (run apt-get update?)"),
    }
}

fn find_deb(dir: &std::path::Path, package: &str) -> Result<Option<PathBuf>> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
            return Ok(Some(p));
        }
    }
    Ok(None)
}
