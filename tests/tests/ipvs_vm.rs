//! The IPVS data plane against a real IPVS: a qemu VM boots Debian's kernel
//! with director, directorctl and ipvsadm inside, runs tests/vm/scenario.sh
//! and prints each step's output on the console; this test checks it.
//! The kernel comes from `cargo xtask vm` (run by `cargo xtask test`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use director_tests::{
    files::{TempDir, workspace_bin},
    vm::{self, Image, Kernel},
};

/// Boot plus scenario take about 30 s under TCG here; generous for a busy CI.
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn ipvs_data_plane_in_a_vm() -> Result<()> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kernel = Kernel::prepared(&ws)?;
    let vmdir = ws.join("tests/vm");
    let work = TempDir::under(&ws.join("target/vm"), &format!("run-{}", std::process::id()))?;
    let image = Image {
        programs: vec![workspace_bin("director")?, workspace_bin("directorctl")?, which("ipvsadm")?, which("ip")?],
        files: ["a.conf", "b.conf", "c.conf"].iter().map(|f| (vmdir.join(f), format!("/vm/{f}"))).collect(),
        script: &std::fs::read_to_string(vmdir.join("scenario.sh"))?,
    };
    let started = Instant::now();
    let console = vm::boot(&kernel, &image, &work.0, LIMIT)?;
    eprintln!("vm: booted, ran the scenario and powered off in {:.1} s", started.elapsed().as_secs_f64());
    let out = Sections::parse(&console);
    let show = || format!("console:\n{console}");
    ensure!(out.done, "the scenario did not finish; {}", show());
    ensure!(!console.contains("@@module-failed"), "a kernel module did not load; {}", show());
    if let Some(boot) = console.lines().find_map(|l| l.strip_prefix("@@boot-ms ")) {
        eprintln!("vm: guest up after {boot} s");
    }

    // Start-up programs every service: each scheduler, DR/NAT/TUN, fwmark,
    // IPv6, persistence with granularity, weight 0, the sorry server.
    out.ok("started")?;
    out.expect("ipvsadm_ln", &vmdir.join("expected/ipvsadm_ln.txt"))?;
    out.expect("ipvsadm_persistent", &vmdir.join("expected/ipvsadm_persistent.txt"))?;
    // lvs_timeouts.
    ensure!(out.get("ipvsadm_timeout")?.trim() == "Timeout (tcp tcpfin udp): 900 60 120", "{}", out.get("ipvsadm_timeout")?);
    // directorctl shows IPVS's own table, column for column.
    same(&out, "directorctl_list", "ipvsadm_ln")?;
    ensure!(out.get("status")?.contains("ipvs"), "status does not name the IPVS data plane:\n{}", out.get("status")?);

    // A reload is a diff: the connection entry made before it survives.
    out.ok("conn_before")?;
    let entries = |name| -> Result<Vec<String>> {
        Ok(out
            .get(name)?
            .lines()
            .filter(|l| l.contains("10.0.0.1:1 "))
            // pro expire state source virtual destination: drop the timer.
            .map(|l| l.split_whitespace().enumerate().filter(|(i, _)| *i != 1).map(|(_, w)| w).collect::<Vec<_>>().join(" "))
            .collect())
    };
    let before = entries("conns_before")?;
    ensure!(!before.is_empty(), "no connection entry to 10.0.0.1:1 before the reload:\n{}", out.get("conns_before")?);
    out.ok("reload")?;
    let after = entries("conns_after")?;
    for e in &before {
        ensure!(after.contains(e), "connection entry `{e}` did not survive the reload:\n{}", out.get("conns_after")?);
    }
    out.expect("ipvsadm_reloaded", &vmdir.join("expected/ipvsadm_reloaded.txt"))?;

    // rs disable: weight 0 everywhere 10.1.0.11 serves, shown alike by both.
    out.ok("disable")?;
    out.expect("ipvsadm_disabled", &vmdir.join("expected/ipvsadm_disabled.txt"))?;
    same(&out, "list_disabled", "ipvsadm_disabled")?;
    out.ok("enable")?;

    // Someone deletes a destination behind director's back: it comes back.
    // (Under load a refresh may put it back before anyone looks, so the
    // proof that it was gone is the re-add in director's log, below.)
    out.ok("external_delete")?;
    out.ok("recovered")?;
    eprintln!("vm: deleted destination re-added {}", out.get("recovered")?.trim());
    out.expect("ipvsadm_final", &vmdir.join("expected/ipvsadm_reloaded.txt"))?;
    same(&out, "list_final", "ipvsadm_final")?;
    // Prometheus reads IPVS's counters: the connection to 10.0.0.1:1 counts.
    out.ok("metrics_counted")?;
    let metrics = out.get("metrics")?;
    ensure!(
        metrics.lines().any(|l| l.starts_with("director_vs_connections_total{") && l.contains("vip=\"10.0.0.1\"") && l.contains("port=\"1\"") && !l.ends_with(" 0")),
        "no connection counted for 10.0.0.1:1 in the metrics:\n{metrics}"
    );
    let log = out.get("director_log")?;
    ensure!(!log.contains("ERROR"), "director logged errors:\n{log}");
    // The XDP program a stopped daemon left pinned on d0 is gone once IPVS
    // serves, and the log says so.
    let xdp_log = out.get("xdp_log")?;
    out.ok("xdp_started").with_context(|| format!("the XDP daemon's log:\n{xdp_log}"))?;
    out.ok("xdp_pinned").with_context(|| format!("the XDP daemon's log:\n{xdp_log}"))?;
    out.ok("xdp_retired")?;
    ensure!(log.contains("detached the XDP program left pinned"), "{log}");
    // Added at start and re-added after `ipvsadm -d`, and nothing else:
    // no churn in steady state.
    ensure!(log.matches("IPVS: adding 10.1.0.21:8080").count() == 2, "{log}");

    // --dataplane auto where XDP cannot attach: IPVS, said clearly, and the
    // table adopted as it is.
    out.ok("fallback")?;
    let log = out.get("fallback_log")?;
    ensure!(log.contains("falling back to the IPVS data plane"), "{log}");
    ensure!(!log.contains("IPVS: "), "the restarted daemon changed IPVS instead of adopting it:\n{log}");
    same(&out, "ipvsadm_restarted", "ipvsadm_final")?;

    // Real traffic between namespaces inside the VM, through IPVS by NAT and
    // by DR; the counters directorctl shows are IPVS's.
    out.ok("traffic_reload")?;
    for step in ["traffic_nat", "traffic_dr"] {
        out.ok(step)?;
        ensure!(out.get(step)?.lines().any(|l| l.trim() == "hello-from-rs"), "{step}: {}", out.get(step)?);
    }
    out.ok("traffic_counted")?;
    let stats = out.get("traffic_stats")?;
    for real in ["10.2.0.2:8080", "10.2.0.2:80"] {
        let conns = stats.lines().find(|l| l.contains(&format!("-> {real} "))).and_then(|l| l.split_whitespace().nth(2));
        ensure!(conns == Some("1"), "{real}: one connection expected in\n{stats}");
    }
    same(&out, "traffic_list", "traffic_stats")?;
    eprintln!("vm: traffic through IPVS (NAT, DR):\n{}", out.get("traffic_stats")?);

    // A failing TCP_CHECK takes its server out of IPVS; the healthy one stays.
    out.ok("health_down")?;
    let pool = out.get("health_ipvsadm")?;
    ensure!(!pool.contains("10.2.0.3:8080") && pool.contains("10.2.0.2:8080"), "{pool}");
    eprintln!("vm: failed real server left IPVS {}", out.get("health_down")?.trim());
    Ok(())
}

/// `@@begin NAME` ... `@@end NAME rc=N` blocks of the console.
struct Sections {
    text: BTreeMap<String, (String, Option<i32>)>,
    done: bool,
}

impl Sections {
    fn parse(console: &str) -> Self {
        let mut text = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut done = false;
        for line in console.lines().map(|l| l.trim_end_matches('\r')) {
            if let Some(name) = line.strip_prefix("@@begin ") {
                current = Some((name.to_string(), String::new()));
            } else if let Some(rest) = line.strip_prefix("@@end ") {
                let rc = rest.split_once(" rc=").and_then(|(_, rc)| rc.parse().ok());
                if let Some((name, body)) = current.take() {
                    text.insert(name, (body, rc));
                }
            } else if line == "@@done" {
                done = true;
            } else if let Some((_, body)) = current.as_mut() {
                body.push_str(line);
                body.push('\n');
            }
        }
        Sections { text, done }
    }

    fn get(&self, name: &str) -> Result<&str> {
        self.text.get(name).map(|(t, _)| t.as_str()).with_context(|| format!("no `{name}` step in the console"))
    }

    fn ok(&self, name: &str) -> Result<()> {
        let (body, rc) = self.text.get(name).with_context(|| format!("no `{name}` step in the console"))?;
        ensure!(*rc == Some(0), "step `{name}` failed (rc {rc:?}):\n{body}\ndirector's log:\n{}", self.get("director_log").unwrap_or(""));
        Ok(())
    }

    fn expect(&self, name: &str, file: &Path) -> Result<()> {
        self.ok(name)?;
        let want = std::fs::read_to_string(file).with_context(|| file.display().to_string())?;
        let got = self.get(name)?;
        ensure!(got == want, "`{name}` differs from {}:\n--- got\n{got}--- want\n{want}", file.display());
        Ok(())
    }
}

fn same(out: &Sections, a: &str, b: &str) -> Result<()> {
    out.ok(a)?;
    ensure!(out.get(a)? == out.get(b)?, "`{a}` and `{b}` differ:\n--- {a}\n{}--- {b}\n{}", out.get(a)?, out.get(b)?);
    Ok(())
}

fn which(name: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not installed (cargo xtask setup installs it)"))
}
