//! Golden tests for the keepalived.conf loader.
//!
//! Every `tests/fixtures/config/*.conf` is loaded (config id `node1`) and
//! its diagnostics, rendered as `FILE:LINE:COL: severity: message` with paths
//! relative to the fixture directory, must match the `.diag` file next to
//! it byte for byte; the first line of a `.diag` is `exit: N`.
//! Run with `UPDATE_GOLDEN=1` to rewrite the goldens (then review them).
//!
//! The repository root is `$DIRECTOR_REPO` if set, else the parent of this
//! crate, so the same file runs from a scratch crate too.

use std::path::{Path, PathBuf};

use director::config::{LoadOptions, load_file, load_str, testgen};

fn repo() -> PathBuf {
    let root = std::env::var_os("DIRECTOR_REPO").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        PathBuf::from,
    );
    std::fs::canonicalize(&root).unwrap_or(root)
}

fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files
}

/// The golden text for one config: exit code, then one diagnostic a line.
fn render(path: &Path, dir: &Path) -> String {
    let loaded = load_file(
        path,
        &LoadOptions {
            config_id: Some("node1".to_string()),
        },
    );
    let prefix = format!("{}/", dir.display());
    let mut out = format!("exit: {}\n", loaded.exit_code());
    for d in &loaded.diagnostics {
        out.push_str(&d.to_string().replace(&prefix, ""));
        out.push('\n');
    }
    out
}

#[test]
fn fixtures_match_goldens() {
    let dir = repo().join("tests/fixtures/config");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let files = conf_files(&dir);
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    let mut failures = Vec::new();
    for conf in &files {
        let got = render(conf, &dir);
        let golden = conf.with_extension("diag");
        if update {
            std::fs::write(&golden, &got)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", golden.display()));
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "--- {}\n--- want:\n{want}--- got:\n{got}",
                golden.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden(s) differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn example_configs_are_clean() {
    let dir = repo().join("conf");
    let files = conf_files(&dir);
    assert!(!files.is_empty(), "no example configs in {}", dir.display());
    for conf in files {
        let loaded = load_file(
            &conf,
            &LoadOptions {
                config_id: Some("node1".to_string()),
            },
        );
        // The fwmark example is for the IPVS data plane; until that lands,
        // its one warning says so.
        if conf.ends_with("fwmark-persistence.conf") {
            assert_eq!(loaded.exit_code(), 1, "{}", conf.display());
            assert!(loaded.diagnostics.iter().all(|d| d.message.contains("IPVS data plane")));
            continue;
        }
        let msgs: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            loaded.exit_code(),
            0,
            "{} is not clean:\n{}",
            conf.display(),
            msgs.join("\n")
        );
    }
}

#[test]
fn director_conf_is_the_lab_layout() {
    let loaded = load_file(&repo().join("conf/director.conf"), &LoadOptions::default());
    let config = &loaded.config;
    let vi = &config.instances[0];
    assert_eq!(
        (
            vi.name.as_str(),
            vi.interface.as_deref(),
            vi.virtual_router_id,
            vi.priority
        ),
        ("VI_1", Some("eth0"), 80, 100)
    );
    assert_eq!(vi.virtual_ipaddress[0].addr.to_string(), "192.168.122.100");
    let vs = &config.virtual_servers[0];
    assert_eq!(vs.key.to_string(), "192.168.122.100:80");
    assert_eq!(vs.lvs_method, director::config::LvsMethod::Dr);
    let ips: Vec<String> = vs
        .real_servers
        .iter()
        .map(|r| format!("{}:{}", r.ip, r.port))
        .collect();
    assert_eq!(
        ips,
        [
            "192.168.122.10:80",
            "192.168.122.20:80",
            "192.168.122.30:80"
        ]
    );
    for rs in &vs.real_servers {
        let c = &rs.checkers[0].common;
        assert_eq!(
            (
                c.connect_timeout.as_secs(),
                c.retry,
                c.delay_before_retry.as_secs(),
                c.delay_loop.as_secs()
            ),
            (3, 3, 3, 6)
        );
    }
}

#[test]
fn five_thousand_real_servers_parse_cleanly() {
    let text = testgen::many_real_servers(5000);
    let loaded = load_str(&text, "generated.conf", &LoadOptions::default());
    assert!(
        loaded.diagnostics.is_empty(),
        "{:?}",
        loaded.diagnostics.first()
    );
    assert_eq!(loaded.config.virtual_servers[0].real_servers.len(), 5000);
}

#[test]
fn duplicate_real_servers_are_found_among_thousands() {
    let mut text = testgen::many_real_servers(2000);
    // Repeat the first real server at the end of the virtual server.
    let first = "    real_server 10.0.0.0 80 {\n        weight 1\n    }\n";
    text.truncate(text.len() - 2);
    text.push_str(first);
    text.push_str("}\n");
    let loaded = load_str(&text, "generated.conf", &LoadOptions::default());
    assert_eq!(loaded.diagnostics.len(), 1, "{:?}", loaded.diagnostics);
    assert!(
        loaded.diagnostics[0]
            .message
            .contains("already defined at 6:17"),
        "{}",
        loaded.diagnostics[0]
    );
}
