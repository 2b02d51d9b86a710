//! A reload that changes nothing leaves VRRP alone (root): a director
//! master tracking an `init_fail` vrrp_script (FAULT until its first
//! success) is reloaded with the same file. The script keeps its state, as
//! under keepalived, so the master never enters FAULT and keeps the VIP;
//! a tracker started afresh would fault it until the script ran again.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use director_tests::{
    files::TempDir,
    vrrp_lab::{Cast, Instance, Kind, Lan, Version, node_ip},
};

#[test]
fn an_unchanged_reload_keeps_a_tracked_master_master() -> Result<()> {
    let lan = Lan::new("rl", &[Kind::Director])?;
    let dir = TempDir::new("vrrp-reload")?;
    lan.explain(run(&lan, &dir))
}

fn run(lan: &Lan, dir: &TempDir) -> Result<()> {
    let d = &lan.nodes[0];
    let runs = dir.0.join("runs");
    let conf = Instance::new(Version::V2, Cast::Multicast, true, 150).conf(node_ip(0), &[]);
    let conf = conf.trim_end().strip_suffix('}').unwrap_or(&conf).to_string()
        + "    track_script {\n        chk\n    }\n}\n";
    let script = format!(
        "vrrp_script chk {{\n    script \"/bin/sh -c 'echo run >> {}'\"\n    interval 1\n    init_fail\n}}\n",
        runs.display()
    );
    d.write_conf(&(script + &conf))?;
    d.start()?;
    lan.wait_holder(&d.name, Duration::from_secs(15))?;
    let ran = || std::fs::read_to_string(&runs).map_or(0, |s| s.lines().count());
    let faults = || d.log_lines("Entering FAULT STATE").len();
    ensure!(ran() >= 1, "the master holds the VIP before its init_fail script succeeded");
    let before = faults();

    let out = d.ctl(&["reload"])?;
    ensure!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stderr));
    // Two more runs after the reload: a fresh tracker would have faulted
    // the instance at its start and cleared it at the first of them.
    let at_reload = ran();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ran() < at_reload + 2 {
        ensure!(Instant::now() < deadline, "the script stopped running after the reload ({} runs)", ran());
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(faults() == before, "an unchanged reload sent the master into FAULT: {:?}", d.log_lines("Entering FAULT STATE"));
    ensure!(d.vrrp_state()? == "MASTER", "after the reload the instance is {}", d.vrrp_state()?);
    lan.wait_holder(&d.name, Duration::from_secs(1))?;
    Ok(())
}
