//! A throwaway qemu VM running Debian's kernel (which has IPVS, unlike the
//! host's): `cargo xtask vm` unpacks the kernel under target/vm; this
//! builds a busybox initramfs around it with the programs a test names,
//! boots it without KVM, and returns what the guest printed on its console.

use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

/// Kernel modules the guest loads, dependencies first (from modules.dep).
pub const IPVS_MODULES: &[&str] = &[
    "crc32c_generic", "libcrc32c", "nf_defrag_ipv4", "nf_defrag_ipv6", "nf_conntrack", "ip_vs", "ip_vs_rr", "ip_vs_wrr",
    "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr", "ip_vs_dh", "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo",
    "ip_vs_ovf", "ip_vs_mh", "dummy", "veth", "bridge", "tunnel4", "ipip",
];

/// The kernel `cargo xtask vm` prepared: `<dir>/boot/vmlinuz-*` and
/// `<dir>/lib/modules/<release>` with modules.dep.
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub modules: PathBuf,
}

impl Kernel {
    /// Reads target/vm/kernel, the directory `cargo xtask vm` wrote.
    pub fn prepared(workspace: &Path) -> Result<Self> {
        let marker = workspace.join("target/vm/kernel");
        let dir = fs::read_to_string(&marker)
            .with_context(|| format!("{}: no test kernel; `cargo xtask vm` (or `cargo xtask test`) prepares it", marker.display()))?;
        let dir = PathBuf::from(dir.trim());
        let vmlinuz = only_entry(&dir.join("boot"), "vmlinuz-")?;
        let modules = only_entry(&dir.join("lib/modules"), "")?;
        Ok(Kernel { vmlinuz, modules })
    }
}

fn only_entry(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(e.path());
        }
    }
    ensure!(found.len() == 1, "expected one {prefix}* in {}, found {found:?}", dir.display());
    Ok(found.remove(0))
}

/// What goes into the guest besides busybox and the modules.
pub struct Image<'a> {
    /// Host programs, copied to /bin with their shared libraries.
    pub programs: Vec<PathBuf>,
    /// (host file, guest path) copied as they are.
    pub files: Vec<(PathBuf, String)>,
    /// Run by bash as the guest's only task; the VM powers off after it.
    pub script: &'a str,
}

/// Builds the initramfs in `work` and boots it; the console output, once
/// the guest has powered off (or `limit` has passed: then an error).
pub fn boot(kernel: &Kernel, image: &Image, work: &Path, limit: Duration) -> Result<String> {
    let root = work.join("root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    for d in ["bin", "sbin", "proc", "sys", "dev", "run", "tmp", "vm", "lib64", "usr"] {
        fs::create_dir_all(root.join(d))?;
    }
    std::os::unix::fs::symlink("../bin", root.join("usr/bin"))?;
    copy(Path::new("/bin/busybox"), &root.join("bin/busybox"))?;
    let mut libs = BTreeSet::new();
    for p in image.programs.iter().map(PathBuf::as_path).chain([Path::new("/bin/bash")]) {
        let name = p.file_name().context("program without a name")?;
        let dest = root.join("bin").join(name);
        // Debug builds carry hundreds of MB of debug info; the guest unpacks
        // every byte of its initramfs, so keep only the code.
        let status = Command::new("strip").arg("--strip-debug").arg("-o").arg(&dest).arg(p).status();
        if !status.is_ok_and(|s| s.success()) {
            copy(p, &dest)?;
        }
        libs.extend(shared_libraries(p)?);
    }
    for lib in &libs {
        let dest = root.join(lib.strip_prefix("/").unwrap_or(lib));
        fs::create_dir_all(dest.parent().context("library path")?)?;
        copy(lib, &dest)?;
    }
    for (host, guest) in &image.files {
        copy(host, &root.join(guest.trim_start_matches('/')))?;
    }
    let release = kernel.modules.file_name().context("modules dir")?.to_string_lossy().into_owned();
    let mut loads = String::new();
    for ko in module_order(&kernel.modules, IPVS_MODULES)? {
        let dest = root.join("lib/modules").join(&release).join(&ko);
        fs::create_dir_all(dest.parent().context("module path")?)?;
        copy(&kernel.modules.join(&ko), &dest)?;
        loads.push_str(&format!("insmod /lib/modules/{release}/{ko} || echo \"@@module-failed {ko}\"\n"));
    }
    fs::write(root.join("vm/scenario.sh"), image.script)?;
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc\nmount -t sysfs sys /sys\nmount -t devtmpfs dev /dev\n\
         dmesg -n 1\n\
         {loads}\
         echo @@boot-ms $(cut -d' ' -f1 /proc/uptime)\n\
         /bin/bash /vm/scenario.sh\n\
         poweroff -f\n"
    );
    fs::write(root.join("init"), init)?;
    fs::set_permissions(root.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    let cpio = work.join("initramfs.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("cd '{}' && find . | cpio -o -H newc --quiet > '{}'", root.display(), cpio.display()))
        .status()?;
    ensure!(status.success(), "cpio failed: {status}");

    let console = work.join("console.log");
    let mut qemu = Qemu(
        Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "1G", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults", "-serial"])
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&cpio)
            .args(["-append", "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64")?,
    );
    let started = Instant::now();
    loop {
        if let Some(status) = qemu.0.try_wait()? {
            let out = fs::read_to_string(&console).unwrap_or_default();
            if !status.success() {
                let mut err = String::new();
                let _ = qemu.0.stderr.take().map(|mut e| e.read_to_string(&mut err));
                bail!("qemu exited with {status}: {err}\nconsole:\n{out}");
            }
            return Ok(out);
        }
        if started.elapsed() > limit {
            let out = fs::read_to_string(&console).unwrap_or_default();
            bail!("the VM did not power off within {limit:?}; console so far:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills qemu if the test gives up on it (a no-op once it has exited).
struct Qemu(std::process::Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The libraries `ldd` names, the dynamic loader included.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output().context("ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')))
        .map(PathBuf::from)
        .collect())
}

/// The module files for `names` and everything they depend on, in load
/// order, from `modules.dep`.
pub fn module_order(modules: &Path, names: &[&str]) -> Result<Vec<String>> {
    let dep = fs::read_to_string(modules.join("modules.dep")).context("modules.dep (run depmod)")?;
    let deps: Vec<(String, Vec<String>)> = dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.to_string(), d.split_whitespace().map(String::from).collect()))
        .collect();
    let by_name = |n: &str| {
        deps.iter().find(|(m, _)| {
            let file = m.rsplit('/').next().unwrap_or(m);
            let stem = file.split(".ko").next().unwrap_or(file);
            stem.replace('-', "_") == n
        })
    };
    let mut order: Vec<String> = Vec::new();
    for n in names {
        let (m, d) = by_name(n).with_context(|| format!("module {n} is not in modules.dep"))?;
        // modules.dep lists a module's dependencies, the deepest last.
        for x in d.iter().rev().chain([m]) {
            if !order.contains(x) {
                order.push(x.clone());
            }
        }
    }
    Ok(order)
}
