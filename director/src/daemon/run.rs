//! The running daemon: one task owns all state; the control socket, signals
//! and timers feed it. Every change goes through `apply`, which rebuilds the
//! desired state and lets the data plane apply the diff.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot},
};
use tracing::{error, info, warn};

use super::{
    Args,
    desired::{self, AdminOverrides, Health, HealthMap},
    log_diagnostics,
    neigh::Resolver,
    planes::Planes,
    snapshot, summary,
};
use crate::{
    alert::{self, Mailer},
    check::{self, Checks, Transition},
    config::{self, Config, LoadOptions, Script, Severity},
    ctl::{
        self,
        protocol::{AdminAction, Command, RealTarget, Response},
    },
    metrics::Metrics,
    state::{DesiredState, NextHop},
    status::AdminState,
    vrrp::{
        self, Vrrp,
        notify::{self as vrrp_notify, NotifyState, Subject},
        track::{TrackUpdate, Tracker},
    },
};

/// How often next hops are re-resolved (and a changed neighbour applied).
const REFRESH: Duration = Duration::from_secs(2);

pub struct Daemon {
    pub(super) args: Args,
    pub(super) config: Config,
    pub(super) admin: AdminOverrides,
    pub(super) planes: Planes,
    pub(super) desired: DesiredState,
    pub(super) generation: u64,
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) last_reload_error: Option<String>,
    pub(super) started: Instant,
    resolver: Resolver,
    hops: BTreeMap<IpAddr, NextHop>,
    reported: BTreeSet<String>,
    metrics: Arc<Metrics>,
    listener: Option<tokio::net::UnixListener>,
    metrics_listener: Option<tokio::net::TcpListener>,
    /// The VRRP instances; they hold the VIPs.
    pub(super) vrrp: Vrrp,
    vrrp_events: Option<mpsc::Receiver<vrrp::instance::Event>>,
    /// Runs the configuration's track_script / track_interface / track_file.
    tracker: Option<tokio::task::JoinHandle<()>>,
    track_tx: mpsc::Sender<TrackUpdate>,
    track_rx: Option<mpsc::Receiver<TrackUpdate>>,
    checks: Checks,
    transitions: Option<mpsc::Receiver<Transition>>,
    mailer: Option<Mailer>,
    /// Services whose alive weight is below their `quorum`; None until the
    /// first apply, so start-up itself runs no quorum script.
    quorum_lost: Option<desired::QuorumLost>,
    pub(super) health: HealthMap,
}

impl Daemon {
    pub async fn start(args: Args, config: Config) -> Result<Self> {
        info!("{}: {}", args.file.display(), summary(&config));
        // The socket first: it refuses to start a second daemon before that
        // one could touch the running data plane.
        let listener = ctl::server::bind(&args.socket, ctl::server::DEFAULT_MODE)
            .with_context(|| format!("control socket {}", args.socket.display()))?;
        let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("metrics endpoint {}", args.metrics_listen))?;
        let planes = Planes::start(&args, &config)?;
        let resolver = Resolver::new()?;
        let (tx, transitions) = mpsc::channel(1024);
        let (vrrp_tx, vrrp_events) = mpsc::channel(256);
        let witness = planes.xdp.as_ref().and_then(|x| {
            x.vrrp_witness().inspect_err(|e| warn!("VRRP runs without the XDP advert record: {e}")).ok()
        });
        let (track_tx, track_rx) = mpsc::channel(256);
        // Seeds the checks' warmup spread; it need not be unpredictable.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let mut daemon = Daemon {
            checks: Checks::new(tx, seed),
            mailer: Mailer::from_config(&config),
            quorum_lost: None,
            transitions: Some(transitions),
            health: HealthMap::new(),
            listener: Some(listener),
            metrics_listener: Some(metrics_listener),
            vrrp: Vrrp::new(vrrp_tx, witness).context("netlink connection for the VRRP VIPs")?,
            vrrp_events: Some(vrrp_events),
            tracker: None,
            track_tx,
            track_rx: Some(track_rx),
            args,
            config,
            admin: AdminOverrides::new(),
            planes,
            desired: DesiredState::default(),
            generation: 1,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            started: Instant::now(),
            resolver,
            hops: BTreeMap::new(),
            reported: BTreeSet::new(),
            metrics: Arc::new(Metrics::new()),
        };
        daemon.apply_vrrp().await;
        daemon.set_check_targets();
        daemon.refresh().await;
        Ok(daemon)
    }

    pub async fn run(mut self) -> Result<()> {
        let (tx, mut requests) = mpsc::channel::<(Command, oneshot::Sender<Response>)>(16);
        let listener = self.listener.take().context("control socket already served")?;
        tokio::spawn(ctl::server::serve(listener, tx));
        let metrics_listener = self.metrics_listener.take().context("metrics endpoint already served")?;
        tokio::spawn(crate::metrics::serve(metrics_listener, Arc::clone(&self.metrics)));
        info!(socket = %self.args.socket.display(), metrics = %self.args.metrics_listen, "ready");
        super::notify::ready();

        let mut transitions = self.transitions.take().context("health checks already running")?;
        let mut vrrp_events = self.vrrp_events.take().context("VRRP already running")?;
        let mut track = self.track_rx.take().context("VRRP tracking already running")?;
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(REFRESH);
        loop {
            tokio::select! {
                Some((cmd, reply)) = requests.recv() => {
                    let response = self.handle(cmd).await;
                    let _ = reply.send(response);
                }
                Some(t) = transitions.recv() => self.on_health(t),
                Some(e) = vrrp_events.recv() => self.on_vrrp(e),
                Some(u) = track.recv() => self.vrrp.track(&u.instance, u.priority),
                _ = hup.recv() => {
                    let _ = self.reload().await;
                }
                _ = tick.tick() => {
                    self.refresh().await;
                    super::notify::watchdog();
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        // keepalived's order: masters send priority 0 and drop their VIPs,
        // so a backup takes over at once.
        self.vrrp.shutdown().await;
        info!(
            "stopping; the data plane keeps forwarding from {} (`director --cleanup` detaches it)",
            self.args.bpffs_dir.display()
        );
        let _ = std::fs::remove_file(&self.args.socket);
        Ok(())
    }

    async fn handle(&mut self, cmd: Command) -> Response {
        match cmd {
            Command::Status => Response::Status { snapshot: Box::new(snapshot::build(self, true)) },
            Command::Connections => Response::Connections { entries: snapshot::connections(self) },
            Command::RealServer { target, action } => self.admin_change(&target, action),
            Command::Reload => match self.reload().await {
                Ok(warnings) => Response::Reloaded { generation: self.generation, warnings },
                Err(message) => Response::Error { message },
            },
        }
    }

    /// Re-reads the configuration. On any error the running one stays.
    async fn reload(&mut self) -> Result<Vec<String>, String> {
        let loaded = config::load_file(&self.args.file, &LoadOptions { config_id: self.args.config_id.clone() });
        log_diagnostics(&loaded.diagnostics);
        if loaded.has_errors() {
            let lines: Vec<String> = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
            let message = lines.join("\n");
            error!("reload refused, the running configuration stays:\n{message}");
            self.reloads_failed += 1;
            self.last_reload_error = Some(message.clone());
            self.update_metrics();
            return Err(message);
        }
        self.config = loaded.config;
        self.mailer = Mailer::from_config(&self.config);
        self.generation += 1;
        self.reloads_ok += 1;
        self.last_reload_error = None;
        info!(generation = self.generation, "reloaded {}: {}", self.args.file.display(), summary(&self.config));
        self.apply_vrrp().await;
        self.set_check_targets();
        self.refresh().await;
        Ok(loaded.diagnostics.iter().map(ToString::to_string).collect())
    }

    fn admin_change(&mut self, target: &RealTarget, action: AdminAction) -> Response {
        let mut changes = Vec::new();
        for vs in &self.config.virtual_servers {
            let Some(addr) = desired::service_addr(vs) else { continue };
            if target.virtual_server.is_some_and(|v| (v.ip(), v.port()) != (addr.vip, addr.port)) {
                continue;
            }
            for rs in vs.real_servers.iter().filter(|rs| rs.ip == target.addr && target.port.is_none_or(|p| p == rs.port)) {
                let key = (addr, (rs.ip, rs.port));
                let before = desired::effective_weight(self.admin.get(&key), rs.weight);
                let (state, label) = match action {
                    AdminAction::Disable => (Some(AdminState::Disabled), "disabled".to_string()),
                    AdminAction::Enable => (None, "enabled".to_string()),
                    AdminAction::Weight(w) => (Some(AdminState::Weight(w)), format!("weight set to {w}")),
                };
                match state {
                    Some(s) => self.admin.insert(key, s),
                    None => self.admin.remove(&key),
                };
                let after = desired::effective_weight(self.admin.get(&key), rs.weight);
                changes.push(format!(
                    "{} in {addr}: weight {before} -> {after} ({label})",
                    std::net::SocketAddr::new(rs.ip, rs.port)
                ));
            }
        }
        if changes.is_empty() {
            let what = match target.port {
                Some(p) => std::net::SocketAddr::new(target.addr, p).to_string(),
                None => target.addr.to_string(),
            };
            let message = match target.virtual_server {
                Some(v) => format!("no real server {what} in virtual server {v}"),
                None => format!("no real server {what} in any virtual server"),
            };
            return Response::Error { message };
        }
        for c in &changes {
            info!("directorctl: {c}");
        }
        if let Err(e) = self.apply() {
            return Response::Error { message: format!("applying the change failed: {e:#}") };
        }
        self.update_metrics();
        Response::Changed { changes }
    }

    /// Re-resolves next hops and applies when anything changed.
    async fn refresh(&mut self) {
        let targets: BTreeSet<IpAddr> = self
            .config
            .virtual_servers
            .iter()
            .flat_map(|vs| vs.real_servers.iter().map(|r| r.ip).chain(vs.sorry_server.as_ref().map(|s| s.ip)))
            .collect();
        match self.resolver.resolve(&targets.into_iter().collect::<Vec<_>>()).await {
            Ok(hops) => self.hops = hops,
            Err(e) => warn!("resolving next hops: {e}"),
        }
        // A no-op unless next hops, the config or health moved.
        if let Err(e) = self.apply() {
            error!("applying the configuration failed: {e:#}");
        }
        let retried = self.vrrp.retry(&self.config).await;
        for e in &retried {
            error!("{e} (retrying every {REFRESH:?})");
        }
        self.watch_vrrp();
        self.update_metrics();
    }

    /// Health checkers for the configuration's real servers; unchanged ones
    /// keep their state across a reload.
    fn set_check_targets(&mut self) {
        let targets = check::targets_from_config(&self.config);
        let mut health = HealthMap::new();
        for t in &targets {
            let key = (t.key.vs.clone(), t.key.rs);
            let h = self.health.get(&key).copied().unwrap_or(Health { alive: check::initially_alive(&t.checkers), weight: None });
            health.insert(key, h);
        }
        self.health = health;
        self.checks.set_targets(targets);
    }

    /// A checker decided a real server's fate (the check module logged why).
    fn on_health(&mut self, t: Transition) {
        let key = (t.key.vs.clone(), t.key.rs);
        let Some(h) = self.health.get_mut(&key) else { return };
        let was = h.alive;
        h.alive = t.alive;
        if t.weight.is_some() {
            h.weight = t.weight;
        }
        if was != t.alive {
            let found = self.config.virtual_servers.iter().filter(|vs| vs.key == t.key.vs).find_map(|vs| {
                vs.real_servers.iter().find(|rs| std::net::SocketAddr::new(rs.ip, rs.port) == t.key.rs).map(|rs| (vs, rs))
            });
            if let Some((vs, rs)) = found {
                if let Some(script) = if t.alive { rs.notify_up.as_ref() } else { rs.notify_down.as_ref() } {
                    notify(script, &t.key.to_string(), self.config.global.enable_script_security);
                }
                if let Some(mailer) = self.mailer.clone().filter(|_| alert::wanted(&self.config, vs, rs)) {
                    let subject = mailer.realserver_subject(&t.key.rs.to_string(), &t.key.vs.to_string(), t.alive);
                    mailer.post(subject, format!("=> {} <=\n", t.reason));
                }
            }
        }
        if let Err(e) = self.apply() {
            error!("applying a health change failed: {e:#}");
        }
        self.update_metrics();
    }

    fn apply(&mut self) -> Result<()> {
        let (xdp_state, ipvs_state, skipped, lost) =
            self.planes.desired(&self.config, &self.admin, &self.health, self.quorum_lost.as_ref(), &self.hops);
        let state = DesiredState { services: xdp_state.services.iter().chain(&ipvs_state.services).cloned().collect() };
        let now: BTreeSet<String> = skipped.iter().map(|s| format!("{}: {}", s.what, s.why)).collect();
        for line in now.difference(&self.reported) {
            warn!("not forwarding to {line}");
        }
        self.reported = now;
        self.track_quorum(lost);
        // IPVS is reconciled every time: someone else may have changed it.
        if state == self.desired && self.planes.ipvs.is_none() {
            return Ok(());
        }
        let report = self.planes.apply(&self.config, &xdp_state, &ipvs_state, state != self.desired)?;
        if report == Default::default() && state == self.desired {
            return Ok(());
        }
        if report == Default::default() {
            info!("data plane already in sync");
            self.desired = state;
            return Ok(());
        }
        info!(
            added = report.services_added,
            removed = report.services_removed,
            changed = report.services_changed,
            slots = report.slots_written,
            "data plane updated"
        );
        self.desired = state;
        Ok(())
    }

    /// Runs quorum_up / quorum_down when a service loses or regains its
    /// `quorum` (with `hysteresis`), as keepalived does.
    fn track_quorum(&mut self, lost: desired::QuorumLost) {
        if let Some(before) = &self.quorum_lost {
            for vs in &self.config.virtual_servers {
                let Some(addr) = desired::service_addr(vs) else { continue };
                let what = addr.socket().to_string();
                match (before.contains(&addr), lost.contains(&addr)) {
                    (false, true) => {
                        warn!(
                            "virtual server {what}: quorum lost: alive weight below {} - {} (quorum - hysteresis)",
                            vs.quorum, vs.hysteresis
                        );
                        if let Some(s) = &vs.quorum_down {
                            notify(s, &what, self.config.global.enable_script_security);
                        }
                    }
                    (true, false) => {
                        info!(
                            "virtual server {what}: quorum back: alive weight at least {} + {} (quorum + hysteresis)",
                            vs.quorum, vs.hysteresis
                        );
                        if let Some(s) = &vs.quorum_up {
                            notify(s, &what, self.config.global.enable_script_security);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.quorum_lost = Some(lost);
    }

    /// Starts, restarts and stops VRRP instances to match the configuration,
    /// and restarts tracking, whose verdicts then arrive afresh.
    async fn apply_vrrp(&mut self) {
        if let Some(t) = self.tracker.take() {
            t.abort();
        }
        self.vrrp.clear_verdicts();
        match Tracker::new(&self.config) {
            Ok(t) => self.tracker = Some(t.spawn(self.track_tx.clone())),
            Err(e) => error!("VRRP tracking: {e}; instances run at their configured priority"),
        }
        for e in self.vrrp.apply(&self.config).await {
            error!("{e} (retrying every {REFRESH:?})");
        }
        self.watch_vrrp();
    }

    /// The destination MACs XDP forwards frames for on each interface: its
    /// own, and the VMACs of the instances this director is master of.
    fn update_local_macs(&mut self) {
        let Some(xdp) = self.planes.xdp.as_mut() else { return };
        let vmacs = self.vrrp.master_vmacs();
        for iface in &self.planes.interfaces {
            let (index, mac) = match crate::dataplane::xdp::link_mac(&iface.name) {
                Ok(m) => m,
                Err(e) => {
                    warn!("destination MAC filter: {e}");
                    continue;
                }
            };
            let mut macs = vec![mac];
            macs.extend(vmacs.iter().filter(|(i, _)| *i == index).map(|(_, m)| *m));
            if let Err(e) = xdp.set_local_macs(index, &macs) {
                warn!("destination MAC filter on {}: {e}", iface.name);
            }
        }
    }

    /// Tells the XDP program which instances run, so it records their
    /// adverts (and drops malformed and foreign ones on their interfaces).
    fn watch_vrrp(&mut self) {
        let Some(xdp) = self.planes.xdp.as_mut() else { return };
        if let Err(e) = xdp.set_vrrp_instances(&self.vrrp.watches()) {
            error!("XDP VRRP advert fast path: {e}");
        }
    }

    /// A VRRP instance changed state: its sync group follows, and the
    /// instance's and group's alerts go out.
    fn on_vrrp(&mut self, e: vrrp::instance::Event) {
        let group = self.vrrp.on_event(&e);
        if e.from != e.to {
            self.update_local_macs();
        }
        if e.from != e.to && e.to != vrrp::State::Initialize {
            let own = self.config.instances.iter().find(|i| i.name == e.instance).and_then(|i| i.smtp_alert);
            self.alert(false, &e.instance, e.to, own);
        }
        if let Some(g) = group {
            info!("VRRP_Group({}) Entering {} STATE", g.group, vrrp::instance::state_name(g.state));
            if let Some(sg) = self.config.sync_groups.iter().find(|s| s.name == g.group) {
                // A group reaches no STOP of its own: its members stop.
                if g.state != vrrp::State::Initialize {
                    let state = NotifyState::of(g.state);
                    vrrp_notify::notify(&sg.notify, &self.config.global, Subject::Group(&g.group), state, 0);
                }
                self.alert(true, &g.group, g.state, sg.smtp_alert);
            }
        }
        self.update_metrics();
    }

    fn alert(&self, group: bool, name: &str, state: vrrp::State, own: Option<bool>) {
        if let Some(mailer) = self.mailer.clone().filter(|_| alert::vrrp_wanted(&self.config, own)) {
            let (subject, body) = mailer.vrrp_alert(group, name, vrrp::instance::state_name(state));
            mailer.post(subject, body);
        }
    }

    fn update_metrics(&self) {
        self.metrics.update(&snapshot::build(self, false));
    }
}


/// Runs a notify_up/notify_down/quorum script as its user (see
/// `check::misc::spawn_detached`) without waiting for it, as keepalived.
fn notify(script: &Script, what: &str, script_security: bool) {
    if let Err(e) = check::misc::spawn_detached(script, script_security) {
        warn!("{what}: notify script {}: {e}", script.command);
    }
}
