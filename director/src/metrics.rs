//! The Prometheus endpoint: the daemon's [`Snapshot`] as text exposition
//! format 0.0.4, served over a small HTTP/1.1 listener.
//!
//! The daemon calls [`Metrics::update`] whenever it refreshes its snapshot;
//! a scrape renders the latest one. Every value comes from the snapshot, so
//! `/metrics` and `directorctl status` can never disagree.
//!
//! Cumulative counts (packets, bytes, connections, reloads) are the data
//! plane's and the daemon's own counters. They are exposed as Prometheus
//! counters by a custom [`Collector`] that reports the snapshot's values as
//! they are, rather than through `IntCounterVec::inc_by(delta)`: no previous
//! values to keep, nothing to double count, and a counter that goes back to
//! zero (a service removed and re-added, a restarted daemon) is a reset that
//! `rate()` already handles. The same collector produces the gauges, and a
//! series whose service or server has left the snapshot simply stops being
//! reported.
//!
//! Choices worth knowing when reading the output:
//! - Traffic counters carry a `direction` label, `in` or `out`, as ipvsadm's
//!   InPkts/OutPkts do. XDP sees only the inbound direction except for NAT
//!   replies, so `out` is zero for DR and TUN services.
//! - `director_rs_up` is 1 for a server whose health is `up`, 0 for `down`,
//!   and absent while its health is unknown (no checker configured yet): an
//!   alert on `director_rs_up == 0` then fires only on real failures.
//! - The sorry server is not a real server in these metrics; its traffic is
//!   in its service's counters and in `director_packets_total{reason=...}`.
//! - `director_start_time_seconds` is derived from the snapshot's uptime and
//!   the wall clock; it is kept steady across updates unless it moves by more
//!   than a second (a restart, a clock step).
//! - Nothing is reported before the first update.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::status::{AdminState, Snapshot, TrafficView};

/// Where the endpoint listens unless configured otherwise: loopback only,
/// since the metrics name every VIP and real server.
///
/// The port: 9477, the first choice, is the immuclient exporter's in the
/// Prometheus wiki's "Default port allocations" list; 9612 is marked FREE
/// in the most recent copy of that list we could read. The 9100-9999 range
/// was reported fully allocated in 2023, so check the live list before
/// registering a port there.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9612));

/// The text format's content type, with the charset the text is in.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The Prometheus metrics of one daemon, fed from its snapshots.
pub struct Metrics {
    registry: Registry,
    latest: Arc<Mutex<Option<Arc<Latest>>>>,
    /// The last rendering and the snapshot it came from: every scrape until
    /// the next `update` gets it without rendering again (a rendering costs
    /// ~0.35 s of CPU at 10,000 real servers, ~11 MB; 64 scrapers would
    /// otherwise pay it 64 times per snapshot).
    rendered: Mutex<Option<(Arc<Latest>, String)>>,
}

/// What a scrape renders: the last snapshot given to `update`.
struct Latest {
    snapshot: Snapshot,
    /// Unix seconds.
    start_time: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let latest = Arc::new(Mutex::new(None));
        let registry = Registry::new();
        let collector = SnapshotCollector {
            families: Families::new(),
            latest: Arc::clone(&latest),
        };
        // Only fails on duplicate descriptors, which a fresh registry with
        // one collector of distinct names cannot have.
        registry
            .register(Box::new(collector))
            .expect("a fresh registry accepts the snapshot collector");
        Metrics { registry, latest, rendered: Mutex::new(None) }
    }

    /// Makes `snap` what the next scrape reports.
    pub fn update(&self, snap: &Snapshot) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let estimate = now.saturating_sub(snap.daemon.uptime_secs);
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        // Whole-second uptime against the wall clock wobbles by one second;
        // keep the earlier value so the series does not flap.
        let start_time = match latest.as_ref() {
            Some(prev) if prev.start_time.abs_diff(estimate) <= 1 => prev.start_time,
            _ => estimate,
        };
        *latest = Some(Arc::new(Latest {
            snapshot: snap.clone(),
            start_time,
        }));
    }

    /// The latest snapshot in text exposition format 0.0.4, rendered once
    /// per snapshot.
    pub fn render(&self) -> String {
        let Some(latest) = self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return self.encode();
        };
        let mut rendered = self.rendered.lock().unwrap_or_else(PoisonError::into_inner);
        match rendered.as_ref() {
            Some((of, text)) if Arc::ptr_eq(of, &latest) => text.clone(),
            _ => {
                // Should an update land meanwhile, the text is newer than
                // its key: the next scrape renders again.
                let text = self.encode();
                *rendered = Some((latest, text.clone()));
                text
            }
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding fails only on an empty family, which `gather` prunes.
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!("metrics: cannot encode: {e}");
            out.clear();
        }
        out
    }
}

/// One metric family's description and type.
struct Family {
    desc: Desc,
    kind: MetricType,
}

impl Family {
    fn new(name: &str, help: &str, labels: &[&str], kind: MetricType) -> Family {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        // Names and help texts are the constants below; the test suite
        // renders every family.
        let desc = Desc::new(name.into(), help.into(), labels, HashMap::new())
            .expect("metric names and labels are valid");
        Family { desc, kind }
    }

    fn counter(name: &str, help: &str, labels: &[&str]) -> Family {
        Family::new(name, help, labels, MetricType::COUNTER)
    }

    fn gauge(name: &str, help: &str, labels: &[&str]) -> Family {
        Family::new(name, help, labels, MetricType::GAUGE)
    }
}

const VS: &[&str] = &["vip", "port", "proto"];
const VS_DIR: &[&str] = &["vip", "port", "proto", "direction"];
const RS: &[&str] = &["vip", "port", "proto", "rip", "rport"];
const RS_DIR: &[&str] = &["vip", "port", "proto", "rip", "rport", "direction"];

struct Families {
    vs_packets: Family,
    vs_bytes: Family,
    vs_connections: Family,
    rs_packets: Family,
    rs_bytes: Family,
    rs_connections: Family,
    rs_active: Family,
    rs_inactive: Family,
    rs_configured_weight: Family,
    rs_effective_weight: Family,
    rs_up: Family,
    rs_admin_disabled: Family,
    packets: Family,
    bytes: Family,
    config_generation: Family,
    config_reloads: Family,
    config_last_reload_success: Family,
    xdp_attach_mode: Family,
    xdp_limit: Family,
    xdp_used: Family,
    build_info: Family,
    start_time: Family,
    vrrp_state: Family,
    vrrp_priority: Family,
    vrrp_transitions: Family,
    vrrp_adverts_sent: Family,
    vrrp_adverts_received: Family,
    vrrp_advert_errors: Family,
    vrrp_late_timer_saves: Family,
}

impl Families {
    fn new() -> Families {
        Families {
            vs_packets: Family::counter(
                "director_vs_packets_total",
                "Packets of a virtual server, by direction (out is NAT replies only).",
                VS_DIR,
            ),
            vs_bytes: Family::counter(
                "director_vs_bytes_total",
                "Bytes of a virtual server, by direction (out is NAT replies only).",
                VS_DIR,
            ),
            vs_connections: Family::counter(
                "director_vs_connections_total",
                "Connections a virtual server has scheduled.",
                VS,
            ),
            rs_packets: Family::counter(
                "director_rs_packets_total",
                "Packets forwarded to (in) or translated back from (out, NAT) a real server.",
                RS_DIR,
            ),
            rs_bytes: Family::counter(
                "director_rs_bytes_total",
                "Bytes forwarded to (in) or translated back from (out, NAT) a real server.",
                RS_DIR,
            ),
            rs_connections: Family::counter(
                "director_rs_connections_total",
                "Connections scheduled to a real server.",
                RS,
            ),
            rs_active: Family::gauge(
                "director_rs_active_connections",
                "Established connections the connection table pins to a real server.",
                RS,
            ),
            rs_inactive: Family::gauge(
                "director_rs_inactive_connections",
                "Other (not established) connections the connection table pins to a real server.",
                RS,
            ),
            rs_configured_weight: Family::gauge(
                "director_rs_configured_weight",
                "A real server's weight in the configuration.",
                RS,
            ),
            rs_effective_weight: Family::gauge(
                "director_rs_effective_weight",
                "A real server's weight in the data plane after admin and health decisions (0: no new connections).",
                RS,
            ),
            rs_up: Family::gauge(
                "director_rs_up",
                "1 if a real server's health check passes, 0 if it fails; absent while its health is unknown.",
                RS,
            ),
            rs_admin_disabled: Family::gauge(
                "director_rs_admin_disabled",
                "1 if a real server was disabled with directorctl rs disable, else 0.",
                RS,
            ),
            packets: Family::counter(
                "director_packets_total",
                "Packets the XDP program handled, by verdict reason and action (pass, drop, fwd).",
                &["reason", "action"],
            ),
            bytes: Family::counter(
                "director_bytes_total",
                "Bytes the XDP program handled, by verdict reason and action (pass, drop, fwd).",
                &["reason", "action"],
            ),
            xdp_limit: Family::gauge(
                "director_xdp_limit",
                "The XDP data plane's capacity, by limit (services, service_keys, vips, real_servers, ring_slots).",
                &["limit"],
            ),
            xdp_used: Family::gauge(
                "director_xdp_used",
                "How much of each XDP data plane limit is in use (see director_xdp_limit).",
                &["limit"],
            ),
            config_generation: Family::gauge(
                "director_config_generation",
                "Generation of the loaded configuration, bumped by every successful (re)load.",
                &[],
            ),
            config_reloads: Family::counter(
                "director_config_reloads_total",
                "Configuration reloads, by result (success, failure).",
                &["result"],
            ),
            config_last_reload_success: Family::gauge(
                "director_config_last_reload_success",
                "1 if the last configuration reload succeeded, 0 if it failed.",
                &[],
            ),
            xdp_attach_mode: Family::gauge(
                "director_xdp_attach_mode",
                "The XDP program's attach mode (native, skb) on an interface; always 1.",
                &["interface", "mode"],
            ),
            build_info: Family::gauge(
                "director_build_info",
                "The running director's version; always 1.",
                &["version"],
            ),
            start_time: Family::gauge(
                "director_start_time_seconds",
                "When the daemon started, in seconds since the Unix epoch.",
                &[],
            ),
            vrrp_state: Family::gauge(
                "director_vrrp_state",
                "1 for a VRRP instance's current state (INIT, BACKUP, MASTER, FAULT), 0 for the others.",
                &["instance", "state"],
            ),
            vrrp_priority: Family::gauge(
                "director_vrrp_priority",
                "A VRRP instance's effective priority (configured priority after tracking).",
                &["instance"],
            ),
            vrrp_transitions: Family::counter(
                "director_vrrp_transitions_total",
                "State changes of a VRRP instance.",
                &["instance"],
            ),
            vrrp_adverts_sent: Family::counter(
                "director_vrrp_adverts_sent_total",
                "VRRP advertisements a VRRP instance sent (one per destination).",
                &["instance"],
            ),
            vrrp_adverts_received: Family::counter(
                "director_vrrp_adverts_received_total",
                "Valid VRRP advertisements a VRRP instance received.",
                &["instance"],
            ),
            vrrp_advert_errors: Family::counter(
                "director_vrrp_advert_errors_total",
                "Received VRRP advertisements dropped, by reason (ttl, auth, interval, ...).",
                &["instance", "reason"],
            ),
            vrrp_late_timer_saves: Family::counter(
                "director_vrrp_late_timer_saves_total",
                "Master_Down_Timer expiries the XDP advert record showed to be the daemon running late (no takeover).",
                &["instance"],
            ),
        }
    }

    fn all(&self) -> [&Family; 29] {
        [
            &self.vs_packets,
            &self.vs_bytes,
            &self.vs_connections,
            &self.rs_packets,
            &self.rs_bytes,
            &self.rs_connections,
            &self.rs_active,
            &self.rs_inactive,
            &self.rs_configured_weight,
            &self.rs_effective_weight,
            &self.rs_up,
            &self.rs_admin_disabled,
            &self.packets,
            &self.bytes,
            &self.config_generation,
            &self.config_reloads,
            &self.config_last_reload_success,
            &self.xdp_attach_mode,
            &self.xdp_limit,
            &self.xdp_used,
            &self.build_info,
            &self.start_time,
            &self.vrrp_state,
            &self.vrrp_priority,
            &self.vrrp_transitions,
            &self.vrrp_adverts_sent,
            &self.vrrp_adverts_received,
            &self.vrrp_advert_errors,
            &self.vrrp_late_timer_saves,
        ]
    }
}

/// Reports the latest snapshot; registered once in `Metrics::new`.
struct SnapshotCollector {
    families: Families,
    latest: Arc<Mutex<Option<Arc<Latest>>>>,
}

impl Collector for SnapshotCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.families.all().into_iter().map(|f| &f.desc).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Hold the lock only to take the Arc; building happens outside it.
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match latest {
            Some(latest) => self.build(&latest),
            None => Vec::new(),
        }
    }
}

impl SnapshotCollector {
    fn build(&self, latest: &Latest) -> Vec<MetricFamily> {
        let f = &self.families;
        let snap = &latest.snapshot;
        let d = &snap.daemon;

        let mut vs_packets = Series::new(&f.vs_packets);
        let mut vs_bytes = Series::new(&f.vs_bytes);
        let mut vs_connections = Series::new(&f.vs_connections);
        let mut rs_packets = Series::new(&f.rs_packets);
        let mut rs_bytes = Series::new(&f.rs_bytes);
        let mut rs_connections = Series::new(&f.rs_connections);
        let mut rs_active = Series::new(&f.rs_active);
        let mut rs_inactive = Series::new(&f.rs_inactive);
        let mut rs_configured_weight = Series::new(&f.rs_configured_weight);
        let mut rs_effective_weight = Series::new(&f.rs_effective_weight);
        let mut rs_up = Series::new(&f.rs_up);
        let mut rs_admin_disabled = Series::new(&f.rs_admin_disabled);

        for svc in &snap.services {
            // A fwmark service (proto "FWM") has no port: its mark stands there.
            let vs = [svc.vip.to_string(), svc.fwmark.map_or(svc.port.into(), u64::from).to_string(), svc.proto.clone()];
            // A service seen twice would yield duplicate series, which make
            // Prometheus reject the whole scrape: the first one wins.
            if !vs_connections.add(&vs, svc.traffic.conns) {
                continue;
            }
            add_traffic(&mut vs_packets, &mut vs_bytes, &vs, &svc.traffic);

            for real in &svc.reals {
                let rs = [
                    vs[0].clone(),
                    vs[1].clone(),
                    vs[2].clone(),
                    real.addr.to_string(),
                    real.port.to_string(),
                ];
                if !rs_connections.add(&rs, real.traffic.conns) {
                    continue;
                }
                add_traffic(&mut rs_packets, &mut rs_bytes, &rs, &real.traffic);
                rs_active.add(&rs, real.active_conns);
                rs_inactive.add(&rs, real.inactive_conns);
                rs_configured_weight.add(&rs, real.configured_weight.into());
                rs_effective_weight.add(&rs, real.effective_weight.into());
                let up = match real.health.as_str() {
                    "up" => Some(1),
                    "down" => Some(0),
                    _ => None,
                };
                if let Some(up) = up {
                    rs_up.add(&rs, up);
                }
                rs_admin_disabled.add(&rs, u64::from(real.admin == AdminState::Disabled));
            }
        }

        let mut packets = Series::new(&f.packets);
        let mut bytes = Series::new(&f.bytes);
        for r in &snap.reasons {
            let labels = [r.reason.clone(), r.action.clone()];
            if packets.add(&labels, r.packets) {
                bytes.add(&labels, r.bytes);
            }
        }

        let mut config_generation = Series::new(&f.config_generation);
        config_generation.add(&[], d.config_generation);
        let mut config_reloads = Series::new(&f.config_reloads);
        config_reloads.add(&["success".into()], d.reloads_ok);
        config_reloads.add(&["failure".into()], d.reloads_failed);
        let mut config_last_reload_success = Series::new(&f.config_last_reload_success);
        config_last_reload_success.add(&[], u64::from(d.last_reload_error.is_none()));

        let mut xdp_attach_mode = Series::new(&f.xdp_attach_mode);
        for iface in &d.interfaces {
            xdp_attach_mode.add(&[iface.name.clone(), iface.attach_mode.clone()], 1);
        }

        let mut xdp_limit = Series::new(&f.xdp_limit);
        let mut xdp_used = Series::new(&f.xdp_used);
        for l in &d.limits {
            xdp_limit.add(std::slice::from_ref(&l.name), l.max);
            xdp_used.add(std::slice::from_ref(&l.name), l.used);
        }

        let mut build_info = Series::new(&f.build_info);
        build_info.add(std::slice::from_ref(&d.version), 1);
        let mut start_time = Series::new(&f.start_time);
        start_time.add(&[], latest.start_time);

        let mut vrrp_state = Series::new(&f.vrrp_state);
        let mut vrrp_priority = Series::new(&f.vrrp_priority);
        let mut vrrp_transitions = Series::new(&f.vrrp_transitions);
        let mut vrrp_adverts_sent = Series::new(&f.vrrp_adverts_sent);
        let mut vrrp_adverts_received = Series::new(&f.vrrp_adverts_received);
        let mut vrrp_advert_errors = Series::new(&f.vrrp_advert_errors);
        let mut vrrp_late_timer_saves = Series::new(&f.vrrp_late_timer_saves);
        for v in &snap.vrrp {
            let inst = [v.name.clone()];
            if !vrrp_priority.add(&inst, v.priority.into()) {
                continue;
            }
            for state in ["INIT", "BACKUP", "MASTER", "FAULT"] {
                vrrp_state.add(&[v.name.clone(), state.into()], u64::from(v.state == state));
            }
            vrrp_transitions.add(&inst, v.transitions);
            vrrp_adverts_sent.add(&inst, v.adverts_sent);
            vrrp_adverts_received.add(&inst, v.adverts_received);
            vrrp_late_timer_saves.add(&inst, v.late_timer_saves);
            for (reason, n) in &v.rejects {
                vrrp_advert_errors.add(&[v.name.clone(), reason.clone()], *n);
            }
        }

        [
            vs_packets,
            vs_bytes,
            vs_connections,
            rs_packets,
            rs_bytes,
            rs_connections,
            rs_active,
            rs_inactive,
            rs_configured_weight,
            rs_effective_weight,
            rs_up,
            rs_admin_disabled,
            packets,
            bytes,
            config_generation,
            config_reloads,
            config_last_reload_success,
            xdp_attach_mode,
            xdp_limit,
            xdp_used,
            build_info,
            start_time,
            vrrp_state,
            vrrp_priority,
            vrrp_transitions,
            vrrp_adverts_sent,
            vrrp_adverts_received,
            vrrp_advert_errors,
            vrrp_late_timer_saves,
        ]
        .into_iter()
        .map(Series::finish)
        .collect()
    }
}

fn add_traffic(packets: &mut Series, bytes: &mut Series, labels: &[String], t: &TrafficView) {
    for (direction, p, b) in [
        ("in", t.in_packets, t.in_bytes),
        ("out", t.out_packets, t.out_bytes),
    ] {
        let mut l = labels.to_vec();
        l.push(direction.to_string());
        packets.add(&l, p);
        bytes.add(&l, b);
    }
}

/// The samples of one family being built, without duplicate label sets.
struct Series<'a> {
    family: &'a Family,
    seen: HashSet<Vec<String>>,
    metrics: Vec<proto::Metric>,
}

impl<'a> Series<'a> {
    fn new(family: &'a Family) -> Series<'a> {
        Series {
            family,
            seen: HashSet::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds one sample; false (and nothing added) if these label values are
    /// already present.
    fn add(&mut self, values: &[String], value: u64) -> bool {
        debug_assert_eq!(values.len(), self.family.desc.variable_labels.len());
        if !self.seen.insert(values.to_vec()) {
            return false;
        }
        let labels = self
            .family
            .desc
            .variable_labels
            .iter()
            .zip(values)
            .map(|(name, value)| {
                let mut pair = proto::LabelPair::default();
                pair.set_name(name.clone());
                pair.set_value(value.clone());
                pair
            })
            .collect();
        let mut metric = proto::Metric::from_label(labels);
        // Counts above 2^53 lose precision here, as they do in Prometheus.
        let value = value as f64;
        match self.family.kind {
            MetricType::COUNTER => {
                let mut c = proto::Counter::default();
                c.set_value(value);
                metric.set_counter(c);
            }
            _ => {
                let mut g = proto::Gauge::default();
                g.set_value(value);
                metric.set_gauge(g);
            }
        }
        self.metrics.push(metric);
        true
    }

    fn finish(self) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(self.family.desc.fq_name.clone());
        mf.set_help(self.family.desc.help.clone());
        mf.set_field_type(self.family.kind);
        mf.set_metric(self.metrics);
        mf
    }
}

// ---------------------------------------------------------------------------
// HTTP
//
// A hand-written HTTP/1.1 responder rather than hyper: the endpoint answers
// two GET paths with `Connection: close`, and the bounds that matter here
// (request size, read deadline, connection count) are a few lines each,
// where hyper would add hyper, http, http-body and hyper-util to the daemon.

/// Longest request head (request line and headers) accepted.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Time a client has to send its whole request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed straight away.
const MAX_CONNECTIONS: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long, and how much, to read from a client after responding, so that
/// closing with unread input does not reset the connection before the
/// client has read the response.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 * 1024;

const INDEX_HTML: &str = "<!DOCTYPE html>\n<html><head><title>director</title></head>\n\
<body><h1>director</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

/// Runs [`serve`] on a thread of its own, with its own current-thread
/// runtime (as VRRP has), for as long as the process lives: however hard
/// the endpoint is scraped (at 10,000 real servers every response is
/// ~11 MB), the daemon's main loop is not kept waiting, nor the scrapes by
/// it. Must be called from within a tokio runtime (the listener's).
pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        let served = tokio::runtime::Builder::new_current_thread().enable_all().build().and_then(|rt| {
            rt.block_on(async move {
                serve(TcpListener::from_std(listener)?, metrics).await;
                Ok(())
            })
        });
        if let Err(e) = served {
            tracing::error!("metrics: the endpoint's thread stopped: {e}");
        }
    })?;
    Ok(())
}

/// Serves `/metrics` (and a small index page at `/`) on `listener` until
/// the future is dropped. Each connection gets its own task, one request
/// and `Connection: close`; a client that connects and sends nothing holds
/// only its own task, until READ_TIMEOUT (then 408). Request heads over
/// MAX_REQUEST_BYTES get 431, malformed ones 400, other paths 404, methods
/// other than GET and HEAD 405.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("metrics: {peer}: too many connections, closing");
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &metrics).await {
                tracing::debug!("metrics: {peer}: {e}");
            }
            drop(slot);
        });
    }
}

struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    allow: Option<&'static str>,
    body: String,
    /// HEAD: headers as for GET, no body.
    head_only: bool,
}

impl Response {
    fn new(
        status: u16,
        reason: &'static str,
        content_type: &'static str,
        body: String,
    ) -> Response {
        Response {
            status,
            reason,
            content_type,
            allow: None,
            body,
            head_only: false,
        }
    }

    fn error(status: u16, reason: &'static str) -> Response {
        Response::new(
            status,
            reason,
            "text/plain; charset=utf-8",
            format!("{status} {reason}\n"),
        )
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let response = match timeout(READ_TIMEOUT, read_head(&mut stream, &mut buf)).await {
        Err(_) => Response::error(408, "Request Timeout"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::Incomplete)) => Response::error(400, "Bad Request"),
        Ok(Ok(Head::TooLarge)) => Response::error(431, "Request Header Fields Too Large"),
        Ok(Ok(Head::Complete(len))) => match parse_request(&buf[..len]) {
            Some(req) => route(&req, metrics),
            None => Response::error(400, "Bad Request"),
        },
    };
    match timeout(WRITE_TIMEOUT, respond(&mut stream, &response)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "response not taken in time",
        )),
    }
}

enum Head {
    /// The head ends at this offset.
    Complete(usize),
    /// The client closed before sending anything.
    Closed,
    /// The client closed in the middle of a request.
    Incomplete,
    TooLarge,
}

async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Head> {
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Head::Closed
            } else {
                Head::Incomplete
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        match head_end(buf) {
            Some(end) if end <= MAX_REQUEST_BYTES => return Ok(Head::Complete(end)),
            Some(_) => return Ok(Head::TooLarge),
            None if buf.len() >= MAX_REQUEST_BYTES => return Ok(Head::TooLarge),
            None => {}
        }
    }
}

/// The offset just past the blank line ending a request head (CRLF CRLF,
/// or bare LF LF, which RFC 9112 lets a server accept).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Request<'a> {
    method: &'a str,
    path: &'a str,
}

/// Parses a request head; None if it is malformed.
fn parse_request(head: &[u8]) -> Option<Request<'_>> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    // RFC 9112 2.2: ignore empty lines before the request line.
    let request_line = lines.by_ref().find(|l| !l.is_empty())?;

    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || method.is_empty() || !method.bytes().all(is_tchar) {
        return None;
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    // Origin form, or absolute form as a proxy would send it.
    let target = match target.strip_prefix("http://") {
        Some(rest) => &rest[rest.find('/')?..],
        None => target,
    };
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);

    let mut hosts = 0;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, _value) = line.split_once(':')?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return None;
        }
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host header.
    if (http11 && hosts != 1) || hosts > 1 {
        return None;
    }
    Some(Request { method, path })
}

/// RFC 9110's token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn route(req: &Request<'_>, metrics: &Metrics) -> Response {
    let mut response = match req.path {
        "/metrics" => Response::new(200, "OK", CONTENT_TYPE, metrics.render()),
        "/" => Response::new(
            200,
            "OK",
            "text/html; charset=utf-8",
            INDEX_HTML.to_string(),
        ),
        _ => return Response::error(404, "Not Found"),
    };
    match req.method {
        "GET" => {}
        "HEAD" => response.head_only = true,
        _ => {
            response = Response::error(405, "Method Not Allowed");
            response.allow = Some("GET, HEAD");
        }
    }
    response
}

async fn respond(stream: &mut TcpStream, r: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.reason,
        r.content_type,
        r.body.len()
    );
    if let Some(allow) = r.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !r.head_only {
        stream.write_all(r.body.as_bytes()).await?;
    }
    stream.shutdown().await?;
    linger(stream).await;
    Ok(())
}

/// Reads and discards what the client still sends, up to a bound, so the
/// close that follows is a FIN rather than a reset that could destroy the
/// response in flight.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut total = 0;
    let drain = async {
        while total < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = timeout(LINGER_TIME, drain).await;
}
