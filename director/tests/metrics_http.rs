//! The Prometheus endpoint end to end: a hand-built snapshot, the HTTP
//! server on a loopback port, a real HTTP client, and a strict parser of the
//! text exposition format (plus `promtool check metrics` when installed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use director::metrics::{self, Metrics};
use director::status::{
    AdminState, DaemonView, InterfaceView, RealView, ReasonView, ServiceView, Snapshot, TrafficView,
    VrrpView,
};

// ---------------------------------------------------------------------------
// Snapshot fixtures

fn traffic(
    conns: u64,
    in_packets: u64,
    in_bytes: u64,
    out_packets: u64,
    out_bytes: u64,
) -> TrafficView {
    TrafficView {
        conns,
        in_packets,
        in_bytes,
        out_packets,
        out_bytes,
    }
}

fn real(
    addr: &str,
    port: u16,
    weights: (u32, u32),
    admin: AdminState,
    health: &str,
    t: TrafficView,
) -> RealView {
    RealView {
        addr: addr.parse().unwrap(),
        port,
        forward: "Route".into(),
        configured_weight: weights.0,
        effective_weight: weights.1,
        admin,
        health: health.into(),
        active_conns: t.conns / 2,
        inactive_conns: t.conns / 4,
        traffic: t,
    }
}

fn reason(reason: &str, action: &str, packets: u64, bytes: u64) -> ReasonView {
    ReasonView {
        reason: reason.into(),
        action: action.into(),
        packets,
        bytes,
    }
}

/// Two services, three real servers; `scale` multiplies every counter so a
/// second snapshot can show them growing.
fn snapshot(scale: u64) -> Snapshot {
    Snapshot {
        daemon: DaemonView {
            version: "0.1.0".into(),
            pid: 4242,
            config_file: "/etc/keepalived/keepalived.conf".into(),
            config_generation: 3,
            reloads_ok: 2,
            reloads_failed: 1,
            last_reload_error: Some("keepalived.conf:3:5: error: unknown keyword".into()),
            dataplane: "xdp".into(),
            interfaces: vec![InterfaceView {
                name: "eth0".into(),
                attach_mode: "native".into(),
            }],
            uptime_secs: 42,
            limits: Vec::new(),
        },
        services: vec![
            ServiceView {
                proto: "TCP".into(),
                vip: "10.0.0.100".parse().unwrap(),
                port: 80,
                sched: "wrr".into(),
                persistence_secs: None,
                persistence_mask: None,
                fwmark: None,
                reals: vec![
                    real(
                        "192.168.1.10",
                        80,
                        (100, 100),
                        AdminState::Enabled,
                        "up",
                        traffic(10 * scale, 1000 * scale, 64_000 * scale, 0, 0),
                    ),
                    real(
                        "192.168.1.11",
                        8080,
                        (50, 0),
                        AdminState::Disabled,
                        "down",
                        traffic(2 * scale, 200 * scale, 12_800 * scale, 0, 0),
                    ),
                ],
                sorry: None,
                traffic: traffic(12 * scale, 1200 * scale, 76_800 * scale, 0, 0),
            },
            ServiceView {
                proto: "UDP".into(),
                vip: "2001:db8::1".parse().unwrap(),
                port: 53,
                sched: "sh".into(),
                persistence_secs: Some(300),
                persistence_mask: None,
                fwmark: None,
                reals: vec![real(
                    "2001:db8::10",
                    53,
                    (10, 7),
                    AdminState::Weight(7),
                    "unknown",
                    traffic(
                        5 * scale,
                        50 * scale,
                        4_000 * scale,
                        40 * scale,
                        3_000 * scale,
                    ),
                )],
                sorry: None,
                traffic: traffic(
                    5 * scale,
                    50 * scale,
                    4_000 * scale,
                    40 * scale,
                    3_000 * scale,
                ),
            },
        ],
        reasons: vec![
            reason("fwd_dr", "fwd", 1250 * scale, 80_800 * scale),
            reason("pass_not_service", "pass", 77 * scale, 5_000 * scale),
            reason("drop_fragment", "drop", 3 * scale, 4_500 * scale),
        ],
        vrrp: vec![VrrpView {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            version: 2,
            state: "MASTER".into(),
            priority: 150,
            base_priority: 150,
            master: Some("10.0.0.1".parse().unwrap()),
            vips: vec!["10.0.0.100".parse().unwrap()],
            transitions: 2,
            adverts_sent: 30 * scale,
            adverts_received: 4 * scale,
            rejects: [("auth".to_string(), 3 * scale)].into(),
            send_errors: 0,
            late_timer_saves: 2,
        }],
    }
}

// ---------------------------------------------------------------------------
// A strict parser of text exposition format 0.0.4

/// One series' labels, by name.
type Labels = BTreeMap<String, String>;

#[derive(Debug)]
struct Family {
    kind: String,
    help: String,
}

#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
    samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
    }

    fn series(&self, name: &str) -> usize {
        self.samples.get(name).map_or(0, Vec::len)
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.starts_with("__")
}

/// Unescapes HELP text: only `\\` and `\n` are escapes there.
fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape \\{other:?} in HELP")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses `{name="value",...}` at the start of `s`; returns the labels and
/// the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in label value")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after label".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().map_err(|e| format!("bad value {s:?}: {e}"))
        }
        _ => Err(format!("bad value {s:?}")),
    }
}

/// Parses `text` strictly, and also enforces this project's conventions:
/// every family has HELP and TYPE before its samples, its samples are
/// contiguous and share one set of label names, counters and only counters
/// end in `_total`, no series appears twice.
fn parse_strict(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    if text.is_empty() {
        return Ok(exp);
    }
    let body = text
        .strip_suffix('\n')
        .ok_or("output does not end with a newline")?;
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut label_names: HashMap<String, Vec<String>> = HashMap::new();
    let mut series: HashSet<(String, Labels)> = HashSet::new();

    for (n, line) in body.split('\n').enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let (name, arg) = rest.split_once(' ').unwrap_or((rest, ""));
            match keyword {
                "HELP" | "TYPE" => {
                    if !is_metric_name(name) {
                        return Err(err(format!("bad metric name {name:?}")));
                    }
                    if current.as_deref() != Some(name) {
                        if let Some(prev) = current.take() {
                            finished.insert(prev);
                        }
                        if finished.contains(name) {
                            return Err(err(format!("{name} appears in two places")));
                        }
                        current = Some(name.to_string());
                    }
                    if exp.samples.contains_key(name) {
                        return Err(err(format!("{keyword} for {name} after its samples")));
                    }
                    if keyword == "HELP" {
                        let help = unescape_help(arg).map_err(err)?;
                        if help.is_empty() || helps.insert(name.into(), help).is_some() {
                            return Err(err(format!("empty or second HELP for {name}")));
                        }
                    } else {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                            return Err(err(format!("bad type {arg:?}")));
                        }
                        if exp.families.contains_key(name) {
                            return Err(err(format!("second TYPE for {name}")));
                        }
                        let help = helps
                            .get(name)
                            .cloned()
                            .ok_or_else(|| err(format!("TYPE before HELP for {name}")))?;
                        exp.families.insert(
                            name.into(),
                            Family {
                                kind: arg.into(),
                                help,
                            },
                        );
                    }
                }
                _ => return Err(err("unexpected comment".into())),
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            return Err(err("blank line or malformed comment".into()));
        }

        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(err)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }

        let family = exp
            .families
            .get(name)
            .ok_or_else(|| err(format!("sample of {name} without TYPE")))?;
        if current.as_deref() != Some(name) {
            return Err(err(format!("samples of {name} are not contiguous")));
        }
        if (family.kind == "counter") != name.ends_with("_total") {
            return Err(err(format!(
                "{name}: counters, and only counters, end in _total"
            )));
        }
        if family.kind == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(err("negative or NaN counter".into()));
        }
        let names: Vec<String> = labels.keys().cloned().collect();
        if label_names
            .entry(name.into())
            .or_insert_with(|| names.clone())
            != &names
        {
            return Err(err(format!("{name}: label names differ between series")));
        }
        if !series.insert((name.into(), labels.clone())) {
            return Err(err("duplicate series".into()));
        }
        exp.samples
            .entry(name.into())
            .or_default()
            .push((labels, value));
    }
    if let Some(name) = helps.keys().find(|n| !exp.families.contains_key(*n)) {
        return Err(format!("HELP without TYPE for {name}"));
    }
    Ok(exp)
}

/// `promtool check metrics`, when promtool is installed (Debian's
/// `prometheus` package ships it). Exit 0 means it parsed and linted clean.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed; strict Rust-side parse only");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- input ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Parses strictly and runs promtool; panics with the text on failure.
fn check(text: &str) -> Exposition {
    let exp = parse_strict(text).unwrap_or_else(|e| panic!("{e}\n--- input ---\n{text}"));
    promtool_check(text);
    exp
}

// ---------------------------------------------------------------------------
// The server and clients

async fn start(metrics: Arc<Metrics>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(metrics::serve(listener, metrics));
    addr
}

struct Reply {
    status: u16,
    content_type: String,
    allow: Option<String>,
    body: String,
}

/// GETs (or sends `method` to) `path` with ureq, off the async runtime.
async fn fetch(addr: SocketAddr, method: &'static str, path: &str) -> Reply {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut resp = match method {
            "GET" => agent.get(&url).call(),
            "HEAD" => agent.head(&url).call(),
            "DELETE" => agent.delete(&url).call(),
            _ => unreachable!("unsupported method {method}"),
        }
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, allow) = (header("content-type").unwrap_or_default(), header("allow"));
        Reply {
            status: resp.status().as_u16(),
            content_type,
            allow,
            body: resp.body_mut().read_to_string().unwrap(),
        }
    })
    .await
    .unwrap()
}

async fn scrape(addr: SocketAddr) -> Exposition {
    let reply = fetch(addr, "GET", "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    check(&reply.body)
}

/// Sends raw bytes and returns the whole raw response.
async fn raw(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&request).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Tests

const TCP80: [(&str, &str); 3] = [("vip", "10.0.0.100"), ("port", "80"), ("proto", "TCP")];
const UDP53: [(&str, &str); 3] = [("vip", "2001:db8::1"), ("port", "53"), ("proto", "UDP")];

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_the_snapshot() {
    let m = Arc::new(Metrics::new());
    m.update(&snapshot(1));
    let exp = scrape(start(Arc::clone(&m)).await).await;

    // Every family is there, typed, with help.
    let expected = [
        ("director_vs_packets_total", "counter"),
        ("director_vs_bytes_total", "counter"),
        ("director_vs_connections_total", "counter"),
        ("director_rs_packets_total", "counter"),
        ("director_rs_bytes_total", "counter"),
        ("director_rs_connections_total", "counter"),
        ("director_rs_active_connections", "gauge"),
        ("director_rs_inactive_connections", "gauge"),
        ("director_rs_configured_weight", "gauge"),
        ("director_rs_effective_weight", "gauge"),
        ("director_rs_up", "gauge"),
        ("director_rs_admin_disabled", "gauge"),
        ("director_packets_total", "counter"),
        ("director_bytes_total", "counter"),
        ("director_config_generation", "gauge"),
        ("director_config_reloads_total", "counter"),
        ("director_config_last_reload_success", "gauge"),
        ("director_xdp_attach_mode", "gauge"),
        ("director_build_info", "gauge"),
        ("director_start_time_seconds", "gauge"),
        ("director_vrrp_state", "gauge"),
        ("director_vrrp_priority", "gauge"),
        ("director_vrrp_transitions_total", "counter"),
        ("director_vrrp_adverts_sent_total", "counter"),
        ("director_vrrp_adverts_received_total", "counter"),
        ("director_vrrp_advert_errors_total", "counter"),
        ("director_vrrp_late_timer_saves_total", "counter"),
    ];
    let got: Vec<(&str, &str)> = exp
        .families
        .iter()
        .map(|(n, f)| (n.as_str(), f.kind.as_str()))
        .collect();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(got, want);
    assert!(exp.families.values().all(|f| f.help.ends_with('.')));

    // Virtual servers.
    assert_eq!(exp.series("director_vs_connections_total"), 2);
    assert_eq!(
        exp.value(
            "director_vs_packets_total",
            &with(&TCP80, &[("direction", "in")])
        ),
        1200.0
    );
    assert_eq!(
        exp.value(
            "director_vs_packets_total",
            &with(&TCP80, &[("direction", "out")])
        ),
        0.0
    );
    assert_eq!(
        exp.value(
            "director_vs_bytes_total",
            &with(&TCP80, &[("direction", "in")])
        ),
        76_800.0
    );
    assert_eq!(exp.value("director_vs_connections_total", &TCP80), 12.0);
    assert_eq!(
        exp.value(
            "director_vs_packets_total",
            &with(&UDP53, &[("direction", "out")])
        ),
        40.0
    );
    assert_eq!(
        exp.value(
            "director_vs_bytes_total",
            &with(&UDP53, &[("direction", "out")])
        ),
        3_000.0
    );

    // Real servers.
    let up = with(&TCP80, &[("rip", "192.168.1.10"), ("rport", "80")]);
    let disabled = with(&TCP80, &[("rip", "192.168.1.11"), ("rport", "8080")]);
    let unknown = with(&UDP53, &[("rip", "2001:db8::10"), ("rport", "53")]);
    assert_eq!(exp.series("director_rs_connections_total"), 3);
    assert_eq!(
        exp.value(
            "director_rs_packets_total",
            &with(&up, &[("direction", "in")])
        ),
        1000.0
    );
    assert_eq!(
        exp.value(
            "director_rs_bytes_total",
            &with(&up, &[("direction", "in")])
        ),
        64_000.0
    );
    assert_eq!(exp.value("director_rs_connections_total", &up), 10.0);
    assert_eq!(exp.value("director_rs_active_connections", &up), 5.0);
    assert_eq!(exp.value("director_rs_inactive_connections", &up), 2.0);
    assert_eq!(exp.value("director_rs_configured_weight", &up), 100.0);
    assert_eq!(exp.value("director_rs_effective_weight", &up), 100.0);
    assert_eq!(exp.value("director_rs_up", &up), 1.0);
    assert_eq!(exp.value("director_rs_admin_disabled", &up), 0.0);

    assert_eq!(exp.value("director_rs_configured_weight", &disabled), 50.0);
    assert_eq!(exp.value("director_rs_effective_weight", &disabled), 0.0);
    assert_eq!(exp.value("director_rs_up", &disabled), 0.0);
    assert_eq!(exp.value("director_rs_admin_disabled", &disabled), 1.0);

    // An admin weight override is not "disabled"; unknown health has no `up`.
    assert_eq!(exp.value("director_rs_effective_weight", &unknown), 7.0);
    assert_eq!(exp.value("director_rs_admin_disabled", &unknown), 0.0);
    assert_eq!(exp.get("director_rs_up", &unknown), None);
    assert_eq!(exp.series("director_rs_up"), 2);

    // Verdict reasons.
    assert_eq!(
        exp.value(
            "director_packets_total",
            &[("reason", "fwd_dr"), ("action", "fwd")]
        ),
        1250.0
    );
    assert_eq!(
        exp.value(
            "director_bytes_total",
            &[("reason", "fwd_dr"), ("action", "fwd")]
        ),
        80_800.0
    );
    assert_eq!(
        exp.value(
            "director_packets_total",
            &[("reason", "drop_fragment"), ("action", "drop")]
        ),
        3.0
    );
    assert_eq!(exp.series("director_packets_total"), 3);

    // Daemon.
    assert_eq!(exp.value("director_config_generation", &[]), 3.0);
    assert_eq!(
        exp.value("director_config_reloads_total", &[("result", "success")]),
        2.0
    );
    assert_eq!(
        exp.value("director_config_reloads_total", &[("result", "failure")]),
        1.0
    );
    assert_eq!(exp.value("director_config_last_reload_success", &[]), 0.0);
    assert_eq!(
        exp.value(
            "director_xdp_attach_mode",
            &[("interface", "eth0"), ("mode", "native")]
        ),
        1.0
    );
    assert_eq!(
        exp.value("director_build_info", &[("version", "0.1.0")]),
        1.0
    );
    let vi = ("instance", "VI_1");
    assert_eq!(exp.value("director_vrrp_state", &[vi, ("state", "MASTER")]), 1.0);
    assert_eq!(exp.value("director_vrrp_state", &[vi, ("state", "BACKUP")]), 0.0);
    assert_eq!(exp.value("director_vrrp_priority", &[vi]), 150.0);
    assert_eq!(exp.value("director_vrrp_transitions_total", &[vi]), 2.0);
    assert_eq!(exp.value("director_vrrp_adverts_sent_total", &[vi]), 30.0);
    assert_eq!(exp.value("director_vrrp_adverts_received_total", &[vi]), 4.0);
    assert_eq!(exp.value("director_vrrp_advert_errors_total", &[vi, ("reason", "auth")]), 3.0);
    assert_eq!(exp.value("director_vrrp_late_timer_saves_total", &[vi]), 2.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = exp.value("director_start_time_seconds", &[]);
    assert!(
        (now - 42.0 - start).abs() <= 3.0,
        "start {start}, now {now}"
    );

    // render() is what the endpoint serves.
    assert_eq!(parse_strict(&m.render()).unwrap().samples, exp.samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_follow_updates_and_removed_services_disappear() {
    let m = Arc::new(Metrics::new());
    let addr = start(Arc::clone(&m)).await;
    m.update(&snapshot(1));
    let first = scrape(addr).await;

    let mut second = snapshot(3);
    second.services.retain(|s| s.port != 53);
    second.daemon.last_reload_error = None;
    second.daemon.reloads_ok = 3;
    second.daemon.config_generation = 4;
    m.update(&second);
    let exp = scrape(addr).await;

    let tcp_in = with(&TCP80, &[("direction", "in")]);
    assert_eq!(first.value("director_vs_packets_total", &tcp_in), 1200.0);
    assert_eq!(exp.value("director_vs_packets_total", &tcp_in), 3600.0);
    assert_eq!(exp.value("director_vs_connections_total", &TCP80), 36.0);
    let up = with(&TCP80, &[("rip", "192.168.1.10"), ("rport", "80")]);
    assert_eq!(
        exp.value(
            "director_rs_bytes_total",
            &with(&up, &[("direction", "in")])
        ),
        192_000.0
    );
    assert_eq!(
        exp.value(
            "director_packets_total",
            &[("reason", "fwd_dr"), ("action", "fwd")]
        ),
        3750.0
    );
    assert_eq!(exp.value("director_config_generation", &[]), 4.0);
    assert_eq!(
        exp.value("director_config_reloads_total", &[("result", "success")]),
        3.0
    );
    assert_eq!(exp.value("director_config_last_reload_success", &[]), 1.0);

    // The UDP service and its real server are gone from every family.
    for series in exp.samples.values() {
        for (labels, _) in series {
            assert_ne!(
                labels.get("vip").map(String::as_str),
                Some("2001:db8::1"),
                "{labels:?}"
            );
        }
    }
    assert_eq!(exp.series("director_vs_connections_total"), 1);
    assert_eq!(exp.series("director_rs_connections_total"), 2);
    assert_eq!(first.series("director_rs_connections_total"), 3);

    // Removing the last service removes the families, not just the series.
    let mut empty = second.clone();
    empty.services.clear();
    m.update(&empty);
    let exp = scrape(addr).await;
    assert!(!exp.families.contains_key("director_vs_packets_total"));
    assert!(!exp.families.contains_key("director_rs_up"));
    assert_eq!(exp.value("director_config_generation", &[]), 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_reported_before_the_first_update() {
    let m = Arc::new(Metrics::new());
    assert_eq!(m.render(), "");
    let reply = fetch(start(m).await, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn start_time_is_steady_across_updates_and_moves_on_restart() {
    let m = Metrics::new();
    let mut snap = snapshot(1);
    let start = |m: &Metrics| {
        parse_strict(&m.render())
            .unwrap()
            .value("director_start_time_seconds", &[])
    };
    m.update(&snap);
    let first = start(&m);
    // One more second of uptime within the same wall-clock second: a one
    // second wobble, not a new start.
    snap.daemon.uptime_secs = 43;
    m.update(&snap);
    assert_eq!(start(&m), first);
    // A restarted daemon (uptime back to 2) started 40 seconds later.
    snap.daemon.uptime_secs = 2;
    m.update(&snap);
    assert!((start(&m) - first - 40.0).abs() <= 2.0);
}

#[tokio::test]
async fn duplicate_entries_yield_one_series() {
    let m = Metrics::new();
    let mut snap = snapshot(1);
    let mut dup = snap.services[0].clone();
    dup.traffic.conns = 999;
    snap.services.push(dup);
    let real = snap.services[1].reals[0].clone();
    snap.services[1].reals.push(real);
    snap.reasons.push(reason("fwd_dr", "fwd", 1, 1));
    m.update(&snap);
    let exp = check(&m.render());
    assert_eq!(exp.value("director_vs_connections_total", &TCP80), 12.0);
    assert_eq!(exp.series("director_vs_connections_total"), 2);
    assert_eq!(exp.series("director_rs_connections_total"), 3);
    assert_eq!(
        exp.value(
            "director_packets_total",
            &[("reason", "fwd_dr"), ("action", "fwd")]
        ),
        1250.0
    );
}

#[tokio::test]
async fn label_values_are_escaped() {
    let m = Metrics::new();
    let mut snap = snapshot(1);
    let odd = "0.1.0 \"dev\" C:\\build\nline2";
    snap.daemon.version = odd.into();
    snap.daemon.interfaces.push(InterfaceView {
        name: "vlan.10@eth0".into(),
        attach_mode: "skb".into(),
    });
    m.update(&snap);
    let text = m.render();
    assert!(
        text.contains(r#"director_build_info{version="0.1.0 \"dev\" C:\\build\nline2"} 1"#),
        "{text}"
    );
    let exp = check(&text);
    assert_eq!(exp.value("director_build_info", &[("version", odd)]), 1.0);
    assert_eq!(
        exp.value(
            "director_xdp_attach_mode",
            &[("interface", "vlan.10@eth0"), ("mode", "skb")]
        ),
        1.0
    );
}

#[tokio::test]
async fn large_counters_keep_their_digits_up_to_2_pow_53() {
    let m = Metrics::new();
    let mut snap = snapshot(1);
    snap.reasons[0].bytes = 1 << 53;
    m.update(&snap);
    let text = m.render();
    assert!(
        text.contains(r#"director_bytes_total{reason="fwd_dr",action="fwd"} 9007199254740992"#),
        "{text}"
    );
    check(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_index_404_405_and_head() {
    let m = Arc::new(Metrics::new());
    m.update(&snapshot(1));
    let addr = start(m).await;

    let index = fetch(addr, "GET", "/").await;
    assert_eq!(index.status, 200);
    assert!(index.content_type.starts_with("text/html"));
    assert!(
        index.body.contains(r#"<a href="/metrics">"#),
        "{}",
        index.body
    );

    // A query string does not change the route.
    let with_query = fetch(addr, "GET", "/metrics?name[]=director_rs_up").await;
    assert_eq!(with_query.status, 200);
    assert!(with_query.body.contains("director_rs_up{"));

    for path in ["/metrics/", "/favicon.ico", "/metricsx", "/../metrics"] {
        assert_eq!(fetch(addr, "GET", path).await.status, 404, "{path}");
    }

    let delete = fetch(addr, "DELETE", "/metrics").await;
    assert_eq!(delete.status, 405);
    assert_eq!(delete.allow.as_deref(), Some("GET, HEAD"));

    let head = raw(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
    let (headers, body) = head.split_once("\r\n\r\n").unwrap();
    assert!(body.is_empty(), "{body}");
    let length: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 1000);

    // HTTP/1.0 needs no Host; a bare-LF request is accepted.
    let old = raw(addr, b"GET /metrics HTTP/1.0\n\n".to_vec()).await;
    assert_eq!(status_line(&old), "HTTP/1.1 200 OK");
    assert!(old.contains("director_vs_packets_total{"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let m = Arc::new(Metrics::new());
    m.update(&snapshot(1));
    let addr = start(m).await;
    let bad: [&[u8]; 10] = [
        b"GARBAGE\r\n\r\n",
        b"GET /metrics\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1 extra\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"G(T /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for request in bad {
        let response = raw(addr, request.to_vec()).await;
        assert_eq!(
            status_line(&response),
            "HTTP/1.1 400 Bad Request",
            "{}",
            String::from_utf8_lossy(request)
        );
    }
    // Closing in the middle of a request head.
    let response = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() {
    let m = Arc::new(Metrics::new());
    m.update(&snapshot(1));
    let addr = start(m).await;
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 16 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let response = raw(addr, request).await;
    assert_eq!(
        status_line(&response),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    // The server is still there.
    scrape(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_do_not_block_others_and_time_out() {
    let m = Arc::new(Metrics::new());
    m.update(&snapshot(1));
    let addr = start(m).await;

    // Three clients connect and send nothing (one sends half a request).
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(b"GET /metr").unwrap();

    let began = Instant::now();
    for _ in 0..3 {
        scrape(addr).await;
    }
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "scrapes took {:?}",
        began.elapsed()
    );

    // The silent ones are answered 408 and closed once the read deadline
    // (5 s) passes.
    let answers = tokio::task::spawn_blocking(move || {
        let mut answers = Vec::new();
        for mut s in silent.into_iter().chain([partial]) {
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            answers.push(status_line(&out).to_string());
        }
        answers
    })
    .await
    .unwrap();
    assert!(began.elapsed() < Duration::from_secs(12));
    assert!(
        answers.iter().all(|a| a == "HTTP/1.1 408 Request Timeout"),
        "{answers:?}"
    );
}

#[test]
fn default_listen_is_loopback() {
    assert!(metrics::DEFAULT_LISTEN.ip().is_loopback());
    assert_eq!(metrics::DEFAULT_LISTEN.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(
        metrics::DEFAULT_LISTEN.port(),
        9477,
        "claimed by the immuclient exporter"
    );
}

/// The parser itself must reject what Prometheus would reject, or the
/// tests above prove nothing.
#[test]
fn strict_parser_rejects_bad_exposition() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n";
    assert!(parse_strict(ok).is_ok());
    let bad = [
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1",
        "a_total 1\n",
        "# TYPE a_total counter\na_total 1\n",
        "# HELP a A.\n# TYPE a counter\na 1\n",
        "# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"1\"} 2\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{y=\"1\"} 2\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"\\q\"} 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{1x=\"1\"} 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total one\n",
        "# HELP 1a_total A.\n# TYPE 1a_total counter\n1a_total 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n# HELP b B.\n# TYPE b gauge\nb 1\na_total{x=\"2\"} 1\n",
        "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n\n",
    ];
    for text in bad {
        assert!(parse_strict(text).is_err(), "accepted: {text:?}");
    }
}
