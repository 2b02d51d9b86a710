//! `cargo xtask lab`: seed 002's LVS-DR layout in network namespaces.
//!
//! ```text
//!                      dlab-sw (bridge br0)
//!   ┌──────────┬──────────┬─────┴────┬──────────┬──────────┐
//! client     dir1       dir2        rs1        rs2        rs3
//! .1         .2         .3          .10        .20        .30    (192.168.122.0/24)
//!                                   VIP .100 on lo, arp_ignore=1, arp_announce=2
//! ```
//! The addresses exist only inside these namespaces.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    build::cargo,
    cmd::{invoke, output, root},
    setup,
};

const SWITCH: &str = "dlab-sw";
const STATE_DIR: &str = "/run/director-lab";
const VIP: &str = "192.168.122.100";

struct Host {
    name: &'static str,
    addr: &'static str,
    real_server: bool,
}

const HOSTS: &[Host] = &[
    Host { name: "client", addr: "192.168.122.1", real_server: false },
    Host { name: "dir1", addr: "192.168.122.2", real_server: false },
    Host { name: "dir2", addr: "192.168.122.3", real_server: false },
    Host { name: "rs1", addr: "192.168.122.10", real_server: true },
    Host { name: "rs2", addr: "192.168.122.20", real_server: true },
    Host { name: "rs3", addr: "192.168.122.30", real_server: true },
];

pub fn up() -> Result<()> {
    setup::run()?;
    invoke(cargo().args(["build", "--package", "director", "--bins"]))?;
    fs::create_dir_all(STATE_DIR)?;

    if netns_exists(SWITCH) {
        println!("lab: topology exists, reusing it");
    } else {
        create_topology()?;
        println!("lab: created namespaces {}", HOSTS.iter().map(|h| ns(h.name)).collect::<Vec<_>>().join(" "));
    }

    let xtask = std::env::current_exe()?;
    for h in HOSTS.iter().filter(|h| h.real_server) {
        if !alive(h.name) {
            let bind = "0.0.0.0:80".to_string();
            spawn(h.name, &xtask, &["http-serve", "--bind", &bind, "--name", h.name])?;
        }
    }

    // Restart the directors so the lab always runs the binary just built.
    for who in ["dir1", "dir2", "sw"] {
        stop(who);
    }
    let director = root().join("target/debug/director");
    // A frame XDP_TX'd out of a veth is dropped unless the peer runs XDP
    // too: a director with no services on the switch ports passes them.
    let sw_sock = format!("{STATE_DIR}/sw.sock");
    let sw_pins = pins("sw");
    let sw_args = ["-f", "/dev/null", "--iface", "dir1", "--iface", "dir2", "--socket", &sw_sock, "--bpffs-dir", &sw_pins];
    spawn_in(SWITCH, "sw", &director, &sw_args)?;
    wait_for_log("sw", "ready", Duration::from_secs(20))?;
    // Seed 002's pair: dir1 is the VRRP master, dir2 the backup, with the
    // same services, so either forwards every connection the same way.
    let backup = Path::new(STATE_DIR).join("dir2.conf");
    fs::write(&backup, backup_config(&fs::read_to_string(root().join("conf/director.conf"))?)?)?;
    for who in ["dir1", "dir2"] {
        start_director(who)?;
    }
    for who in ["dir1", "dir2"] {
        wait_for_log(who, "ready", Duration::from_secs(30))?;
    }
    wait_for_log("dir1", "Entering MASTER STATE", Duration::from_secs(10))?;

    report()?;
    failover()
}

fn start_director(who: &str) -> Result<()> {
    let conf = match who {
        "dir1" => root().join("conf/director.conf"),
        _ => Path::new(STATE_DIR).join("dir2.conf"),
    };
    let (sock, who_pins) = (socket(who), pins(who));
    let conf = conf.to_str().context("non-UTF-8 path")?.to_string();
    let metrics = format!("127.0.0.1:{}", if who == "dir1" { 9612 } else { 9613 });
    let args = ["-f", &conf, "--iface", "eth0", "--socket", &sock, "--bpffs-dir", &who_pins, "--metrics-listen", &metrics];
    spawn(who, &root().join("target/debug/director"), &args)
}

/// The VRRP pair at work: dir1 stops, dir2 takes the VIP and forwards;
/// dir1 comes back and takes it back (it has the higher priority).
fn failover() -> Result<()> {
    println!("\nlab: failover: stopping dir1 (SIGTERM: it sends priority 0 and releases the VIP)");
    let stopped = Instant::now();
    stop("dir1");
    wait_for_log("dir2", "Entering MASTER STATE", Duration::from_secs(10))?;
    println!("  dir2 is master {:.0?} after the stop", stopped.elapsed());
    let before = forwarded("dir2");
    let seen = gets(30);
    println!("  30 requests to the VIP: {}", tally(&seen));
    println!("  dir2 forwarded {} of them", forwarded("dir2").saturating_sub(before));
    println!("\nlab: dir1 starts again and, with the higher priority, takes the VIP back");
    start_director("dir1")?;
    wait_for_log("dir1", "Entering MASTER STATE", Duration::from_secs(30))?;
    let seen = gets(30);
    println!("  30 requests to the VIP: {}", tally(&seen));
    println!("\nlab: stop it all with `cargo xtask lab --down`");
    Ok(())
}

/// dir2's configuration: conf/director.conf as the backup node, the way its
/// comments say the second director differs.
fn backup_config(master: &str) -> Result<String> {
    let mut out = master.to_string();
    for (from, to) in [("router_id director1", "router_id director2"), ("state MASTER", "state BACKUP"), ("priority 100", "priority 50")] {
        if !out.contains(from) {
            bail!("conf/director.conf has no `{from}` to turn into the backup's `{to}`");
        }
        out = out.replacen(from, to, 1);
    }
    Ok(out)
}

pub fn down() -> Result<()> {
    for h in HOSTS {
        stop(h.name);
    }
    stop("sw");
    // Stopped directors leave XDP attached (hitless restarts); detach it.
    let director = root().join("target/debug/director");
    for who in ["dir1", "dir2", "sw"] {
        if director.exists() {
            let _ = output(Command::new(&director).args(["--cleanup", "--bpffs-dir", &pins(who)]));
        }
    }
    for name in HOSTS.iter().map(|h| ns(h.name)).chain([SWITCH.to_string()]) {
        if netns_exists(&name) {
            invoke(Command::new("ip").args(["netns", "del", &name]))?;
        }
    }
    let _ = fs::remove_dir_all(STATE_DIR);
    println!("lab: down");
    Ok(())
}

fn create_topology() -> Result<()> {
    ip(&["netns", "add", SWITCH])?;
    ip(&["-n", SWITCH, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", SWITCH, "link", "set", "br0", "up"])?;
    for h in HOSTS {
        let n = ns(h.name);
        ip(&["netns", "add", &n])?;
        ip(&["link", "add", "eth0", "netns", &n, "type", "veth", "peer", "name", h.name, "netns", SWITCH])?;
        ip(&["-n", SWITCH, "link", "set", h.name, "master", "br0", "up"])?;
        ip(&["-n", &n, "link", "set", "lo", "up"])?;
        ip(&["-n", &n, "addr", "add", &format!("{}/24", h.addr), "dev", "eth0"])?;
        ip(&["-n", &n, "link", "set", "eth0", "up"])?;
        if h.name == "client" {
            // Frames from here are forwarded by XDP without passing a stack
            // that would complete offloaded checksums.
            output(Command::new("ip").args(["netns", "exec", &n, "ethtool", "-K", "eth0", "tx", "off"]))?;
        }
        if h.real_server {
            // LVS-DR real server set-up, exactly as seed 002 does it.
            ip(&["-n", &n, "addr", "add", &format!("{VIP}/32"), "dev", "lo"])?;
            sysctl(&n, "net/ipv4/conf/all/arp_ignore", "1")?;
            sysctl(&n, "net/ipv4/conf/all/arp_announce", "2")?;
        }
    }
    Ok(())
}

fn report() -> Result<()> {
    println!("\nlab: seed 002 LVS-DR topology, VIP {VIP}:80");
    for h in HOSTS {
        let role = match h.name {
            "client" => "client",
            "dir1" => "director, VRRP master (priority 100)",
            "dir2" => "director, VRRP backup (priority 50)",
            _ => "real server, HTTP on :80, VIP on lo",
        };
        println!("  {:<12} {:<16} {role}", ns(h.name), h.addr);
    }

    println!("\nlab: director log ({STATE_DIR}/dir1.log):");
    for line in fs::read_to_string(log_path("dir1"))?.lines() {
        println!("  {line}");
    }

    let link = output(Command::new("ip").args(["-n", &ns("dir1"), "-d", "link", "show", "eth0"]))?;
    let xdp = link.lines().find(|l| l.contains("prog/xdp")).map(str::trim).unwrap_or("no XDP program attached");
    println!("\nlab: dir1 eth0: {xdp}");


    println!("\nlab: real servers answer the client directly:");
    for h in HOSTS.iter().filter(|h| h.real_server) {
        println!("  GET http://{}/ -> {}", h.addr, get(h.addr));
    }
    // Next hops resolve within a refresh or two of the director starting.
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(VIP).starts_with("FAILED") && Instant::now() < deadline {
        sleep(Duration::from_millis(250));
    }
    println!("\nlab: 30 requests to the VIP through director (DR, rr):");
    let seen = gets(30);
    for (who, n) in &seen {
        println!("  {n:>3} answered by {who}");
    }
    println!("\nlab: directorctl list --stats (from dir1):");
    for line in ctl("dir1", &["list", "--stats"]).lines() {
        println!("  {line}");
    }
    println!("\nlab: VRRP, from each director's `directorctl status`:");
    for who in ["dir1", "dir2"] {
        for line in ctl(who, &["status"]).lines().filter(|l| l.starts_with("vrrp ")) {
            println!("  {who}: {line}");
        }
    }
    Ok(())
}

/// A GET from the client: the answering server's name, or why it failed.
fn get(addr: &str) -> String {
    let xtask = std::env::current_exe().unwrap_or_else(|_| "xtask".into());
    output(Command::new("ip").args(["netns", "exec", &ns("client")]).arg(&xtask).args(["http-get", &format!("{addr}:80")]))
        .map(|b| b.trim().to_string())
        .unwrap_or_else(|e| format!("FAILED: {e}"))
}

/// `n` GETs through the VIP, counted by who answered.
fn gets(n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        *seen.entry(get(VIP)).or_insert(0) += 1;
    }
    seen
}

fn tally(seen: &std::collections::BTreeMap<String, usize>) -> String {
    seen.iter().map(|(who, n)| format!("{n} by {who}")).collect::<Vec<_>>().join(", ")
}

fn ctl(who: &str, args: &[&str]) -> String {
    output(Command::new(root().join("target/debug/directorctl")).args(["--socket", &socket(who)]).args(args))
        .unwrap_or_else(|e| format!("FAILED: {e}"))
}

/// Connections a director has scheduled (`directorctl list --stats`).
fn forwarded(who: &str) -> u64 {
    let list = ctl(who, &["list", "--stats"]);
    list.lines().find(|l| l.starts_with("TCP")).and_then(|l| l.split_whitespace().nth(2)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Each lab director pins its data plane in its own bpffs directory.
fn pins(who: &str) -> String {
    format!("/sys/fs/bpf/director-lab-{who}")
}

fn socket(who: &str) -> String {
    format!("{STATE_DIR}/{who}.sock")
}

fn ns(host: &str) -> String {
    format!("dlab-{host}")
}

fn ip(args: &[&str]) -> Result<()> {
    output(Command::new("ip").args(args)).map(drop)
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    let script = format!("echo {value} > /proc/sys/{key}");
    output(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", &script])).map(drop)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn pid_path(host: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{host}.pid"))
}

fn log_path(host: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{host}.log"))
}

/// Starts `program` in the host's namespace in its own process group, with
/// its output in the lab's log directory.
fn spawn(host: &str, program: &Path, args: &[&str]) -> Result<()> {
    spawn_in(&ns(host), host, program, args)
}

fn spawn_in(netns: &str, host: &str, program: &Path, args: &[&str]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let log = fs::File::create(log_path(host))?;
    // nsenter --net, not `ip netns exec`: the latter remounts /sys, and the
    // directors' pins must land in the host's bpffs to outlive them.
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {} in {netns}", program.display()))?;
    fs::write(pid_path(host), child.id().to_string())?;
    Ok(())
}

fn pid(host: &str) -> Option<i32> {
    fs::read_to_string(pid_path(host)).ok()?.trim().parse().ok()
}

/// Running (a zombie child of ours, exited but not reaped, is not).
fn alive(host: &str) -> bool {
    pid(host).is_some_and(|p| {
        fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    })
}

/// SIGTERM to the host's process group, then wait for it to go.
fn stop(host: &str) {
    let Some(p) = pid(host) else { return };
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{p}")]).output();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(host) && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    let _ = fs::remove_file(pid_path(host));
}

fn wait_for_log(host: &str, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = fs::read_to_string(log_path(host)).unwrap_or_default();
        if log.contains(needle) {
            return Ok(());
        }
        if !alive(host) {
            bail!("director ({host}) exited:\n{log}");
        }
        if Instant::now() > deadline {
            bail!("director ({host}) did not report '{needle}' within {timeout:?}:\n{log}");
        }
        sleep(Duration::from_millis(100));
    }
}
