//! The running daemon: one task owns all state; the control socket, signals,
//! health checks, VRRP reports and timers feed it. Every change goes through
//! `reconcile`, which computes the desired state (`desired::compute`) and
//! applies the difference to the checkers and the planes; a reload is
//! checked whole first and rolled back if that apply fails.

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
    Args, diff,
    desired::{self, AdminOverrides, Desired, HealthMap},
    log_diagnostics,
    neigh::Resolver,
    planes::Planes,
    snapshot, state_file, summary, validate,
};
use crate::{
    alert::{self, Mailer},
    check::{self, Checks, Transition},
    config::{self, Config, LoadOptions, Script, Severity, SystemHost},
    ctl::protocol::{AdminAction, Command, RealTarget, Response},
    metrics::Metrics,
    state::NextHop,
    status::AdminState,
    vrrp::{
        self, Vrrp,
        notify::{self as vrrp_notify, NotifyState, Subject},
    },
};

/// How often next hops are re-resolved (and a changed neighbour applied).
const REFRESH: Duration = Duration::from_secs(2);

pub struct Daemon {
    pub(super) args: Args,
    pub(super) config: Config,
    pub(super) admin: AdminOverrides,
    pub(super) planes: Planes,
    /// What the planes were last made to match.
    pub(super) applied: Desired,
    /// Where `admin` is kept across restarts.
    state_file: std::path::PathBuf,
    pub(super) generation: u64,
    pub(super) reloads_ok: u64,
    pub(super) reloads_failed: u64,
    pub(super) last_reload_error: Option<String>,
    pub(super) started: Instant,
    resolver: Resolver,
    hops: BTreeMap<IpAddr, NextHop>,
    metrics: Arc<Metrics>,
    listener: Option<tokio::net::UnixListener>,
    metrics_listener: Option<tokio::net::TcpListener>,
    /// The VRRP instances; they hold the VIPs.
    pub(super) vrrp: Vrrp,
    vrrp_events: Option<mpsc::UnboundedReceiver<vrrp::Report>>,
    checks: Checks,
    transitions: Option<mpsc::Receiver<Transition>>,
    mailer: Option<Mailer>,
    /// Services whose alive weight is below their `quorum`; None until the
    /// first apply, so start-up itself runs no quorum script.
    quorum_lost: Option<desired::QuorumLost>,
    pub(super) health: HealthMap,
}

impl Daemon {
    /// Starts on `listener`, the control socket already bound, which
    /// makes the data plane this process's.
    pub async fn start(args: Args, config: Config, listener: tokio::net::UnixListener) -> Result<Self> {
        info!("{}: {}", args.file.display(), summary(&config));
        let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("metrics endpoint {}", args.metrics_listen))?;
        let planes = Planes::start(&args, &config)?;
        let resolver = Resolver::new()?;
        let (tx, transitions) = mpsc::channel(1024);
        let (vrrp_tx, vrrp_events) = mpsc::unbounded_channel();
        let witness = planes.xdp.as_ref().and_then(|x| {
            x.vrrp_witness().inspect_err(|e| warn!("VRRP runs without the XDP advert record: {e}")).ok()
        });
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
            state_file: args.state_file.clone().unwrap_or_else(|| state_file::default_path(&args.socket)),
            args,
            config,
            admin: AdminOverrides::new(),
            planes,
            applied: Desired::default(),
            generation: 1,
            reloads_ok: 0,
            reloads_failed: 0,
            last_reload_error: None,
            started: Instant::now(),
            resolver,
            hops: BTreeMap::new(),
            metrics: Arc::new(Metrics::new()),
        };
        match state_file::load(&daemon.state_file) {
            Ok(mut admin) => {
                let pruned = state_file::prune(&mut admin, &daemon.config);
                if !admin.is_empty() {
                    info!("{} administrative decision(s) restored from {}", admin.len(), daemon.state_file.display());
                }
                daemon.admin = admin;
                if pruned > 0 {
                    daemon.save_admin();
                }
            }
            Err(e) => match state_file::set_aside(&daemon.state_file) {
                // Kept for the operator: the next save would overwrite it.
                Some(kept) => warn!("{e}; starting without the saved administrative decisions (the file is kept as {})", kept.display()),
                None => warn!("{e}; starting without the saved administrative decisions"),
            },
        }
        daemon.refresh().await;
        Ok(daemon)
    }

    pub async fn run(mut self) -> Result<()> {
        let (tx, mut requests) = mpsc::channel::<(Command, oneshot::Sender<Response>)>(16);
        let listener = self.listener.take().context("control socket already served")?;
        tokio::spawn(super::control::serve(listener, tx));
        let metrics_listener = self.metrics_listener.take().context("metrics endpoint already served")?;
        crate::metrics::spawn(metrics_listener, Arc::clone(&self.metrics)).context("metrics endpoint thread")?;
        info!(socket = %self.args.socket.display(), metrics = %self.args.metrics_listen, "ready");
        super::notify::ready();

        let mut transitions = self.transitions.take().context("health checks already running")?;
        let mut vrrp_events = self.vrrp_events.take().context("VRRP already running")?;
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
                Some(t) = transitions.recv() => self.on_health(t).await,
                Some(e) = vrrp_events.recv() => self.on_vrrp(e).await,
                _ = hup.recv() => {
                    let _ = self.reload(false).await;
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
            Command::RealServer { target, action } => self.admin_change(&target, action).await,
            Command::Reload { dry_run: false } => match self.reload(false).await {
                Ok(warnings) => Response::Reloaded { generation: self.generation, warnings },
                Err(message) => Response::Error { message },
            },
            Command::Reload { dry_run: true } => match self.reload(true).await {
                Ok(changes) => Response::ReloadPlan { changes },
                Err(message) => Response::Error { message },
            },
        }
    }

    /// Re-reads the configuration, all or nothing: everything that can be
    /// checked (the file, the host's interfaces, every data-plane limit
    /// against what the planes hold now) is checked before anything
    /// changes; should the apply itself fail, the previous configuration
    /// is put back. A dry run stops after the checks and returns the plan.
    /// Ok: the warnings (or the plan); Err: every problem, one per line.
    async fn reload(&mut self, dry_run: bool) -> Result<Vec<String>, String> {
        let mut loaded = config::load_file(&self.args.file, &LoadOptions { config_id: self.args.config_id.clone() });
        let more = validate::run_checks(&loaded, self.planes.default, &SystemHost, Severity::Error);
        loaded.extend(more);
        if !dry_run {
            log_diagnostics(&loaded.diagnostics);
        }
        if loaded.has_errors() {
            let lines: Vec<String> = loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(ToString::to_string).collect();
            return self.refuse(dry_run, lines.join("\n"));
        }
        let mut admin = self.admin.clone();
        state_file::prune(&mut admin, &loaded.config);
        // The new file's real servers are checked and planned with their
        // next hops. The old ones stay: the running configuration still
        // needs them should this reload be refused, and refresh prunes.
        let new: Vec<IpAddr> = hop_targets(&loaded.config).into_iter().filter(|ip| !self.hops.contains_key(ip)).collect();
        if !new.is_empty() {
            match self.resolver.resolve(&new).await {
                Ok(hops) => self.hops.extend(hops),
                Err(e) => warn!("resolving next hops: {e}"),
            }
        }
        let health = self.health.clone();
        let next = self.compute(&loaded.config, &admin, &health);
        if let Some(x) = &self.planes.xdp
            && let Err(e) = x.check(&next.xdp)
        {
            return self.refuse(dry_run, format!("{}: {e}", self.args.file.display()));
        }
        let ifaces = match self.planes.xdp_interfaces(&self.args, &loaded.config) {
            Ok(names) => names.unwrap_or_default(),
            Err(e) => return self.refuse(dry_run, format!("{}: {e:#}", self.args.file.display())),
        };
        let attached = self.planes.attached_names();
        let gone: Vec<String> = attached.iter().filter(|a| !ifaces.contains(a)).cloned().collect();
        if dry_run {
            let mut plan = diff::describe(&self.applied, &next);
            plan.extend(diff::interfaces(&attached, &ifaces));
            return Ok(plan);
        }
        let added = match self.planes.attach(&ifaces) {
            Ok(added) => added,
            Err(e) => return self.refuse(false, format!("{}: {e:#}", self.args.file.display())),
        };
        let old = std::mem::replace(&mut self.config, loaded.config);
        let old_admin = std::mem::replace(&mut self.admin, admin);
        self.applied.vrrp = None;
        if let Err(e) = self.reconcile().await {
            let message = format!("applying {} failed, the previous configuration is back: {e:#}", self.args.file.display());
            self.config = old;
            self.admin = old_admin;
            if let Err(e) = self.planes.detach(&added) {
                error!("{e:#}");
            }
            self.applied.vrrp = None;
            if let Err(e) = self.reconcile().await {
                error!("re-applying the previous configuration failed too: {e:#}");
            }
            return self.refuse(false, message);
        }
        let mut warnings: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        if let Err(e) = self.planes.detach(&gone) {
            warn!("{e:#}");
            warnings.push(format!("{e:#}"));
        }
        self.save_admin();
        self.mailer = Mailer::from_config(&self.config);
        self.generation += 1;
        self.reloads_ok += 1;
        self.last_reload_error = None;
        info!(generation = self.generation, "reloaded {}: {}", self.args.file.display(), summary(&self.config));
        self.refresh().await;
        Ok(warnings)
    }

    /// A refused reload: logged, counted and kept for `status` (a dry run
    /// only answers).
    fn refuse(&mut self, dry_run: bool, message: String) -> Result<Vec<String>, String> {
        if !dry_run {
            error!("reload refused, the running configuration stays:\n{message}");
            self.reloads_failed += 1;
            self.last_reload_error = Some(message.clone());
            self.update_metrics();
        }
        Err(message)
    }

    async fn admin_change(&mut self, target: &RealTarget, action: AdminAction) -> Response {
        let before = self.admin.clone();
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
        if let Err(e) = self.reconcile().await {
            // Nothing claims a state the data plane does not have.
            self.admin = before;
            if let Err(again) = self.reconcile().await {
                error!("re-applying the previous administrative state failed: {again:#}");
            }
            self.update_metrics();
            return Response::Error { message: format!("applying the change failed, nothing changed: {e:#}") };
        }
        for c in &changes {
            info!("directorctl: {c}");
        }
        self.save_admin();
        self.update_metrics();
        Response::Changed { changes }
    }

    /// Re-resolves next hops and applies when anything changed.
    async fn refresh(&mut self) {
        match self.resolver.resolve(&hop_targets(&self.config)).await {
            Ok(hops) => self.hops = hops,
            Err(e) => warn!("resolving next hops: {e}"),
        }
        let retried = self.vrrp.retry(&self.config).await;
        for e in &retried {
            error!("{e} (retrying every {REFRESH:?})");
        }
        // A no-op unless next hops, the config, health or VRRP moved.
        if let Err(e) = self.reconcile().await {
            error!("applying the configuration failed: {e:#}");
        }
        self.update_metrics();
    }

    /// A checker decided a real server's fate (the check module logged why).
    async fn on_health(&mut self, t: Transition) {
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
        if let Err(e) = self.reconcile().await {
            error!("applying a health change failed: {e:#}");
        }
        self.update_metrics();
    }

    /// Everything the daemon programs, from every input, for `config`.
    fn compute(&mut self, config: &Config, admin: &AdminOverrides, health: &HealthMap) -> Desired {
        let routing = self.planes.routing(config);
        let interfaces = self.planes.interface_macs();
        let master_vmacs = self.vrrp.master_vmacs();
        let vrrp_watches = self.vrrp.watches();
        desired::compute(&desired::Inputs {
            config,
            admin,
            health,
            lost_before: self.quorum_lost.as_ref(),
            hops: &self.hops,
            routing,
            interfaces: &interfaces,
            master_vmacs: &master_vmacs,
            vrrp_watches: &vrrp_watches,
        })
    }

    /// The one apply step: computes the desired state and makes the VRRP
    /// manager, every plane and the health checkers match it, touching only
    /// what differs. An error leaves the planes' and the checkers' part of
    /// `applied` as it was, so the next call tries again.
    async fn reconcile(&mut self) -> Result<()> {
        let config = self.config.clone();
        let admin = self.admin.clone();
        let health = std::mem::take(&mut self.health);
        let mut want = self.compute(&config, &admin, &health);
        // VRRP first: the instances it starts decide the VRRP watch list and
        // the VMACs. Those that cannot start are retried on every refresh,
        // and fail this apply (a reload is then rolled back).
        let mut vrrp_errors = Vec::new();
        if want.vrrp != self.applied.vrrp {
            vrrp_errors = self.vrrp.apply(&config).await;
            self.applied.vrrp = want.vrrp.clone();
            want = self.compute(&config, &admin, &health);
        }
        // New targets enter the health input as their checkers will start.
        let seeded =
            (want.check_targets != self.applied.check_targets).then(|| desired::seed_health(&want.check_targets, &health));
        if let Some(h) = &seeded {
            want = self.compute(&config, &admin, h);
        }
        self.health = health;
        let was: BTreeSet<String> = self.applied.skipped.iter().map(|s| format!("{}: {}", s.what, s.why)).collect();
        for s in &want.skipped {
            let line = format!("{}: {}", s.what, s.why);
            if !was.contains(&line) {
                warn!("not forwarding to {line}");
            }
        }
        let xdp_changed = want.xdp != self.applied.xdp;
        // IPVS is reconciled every time: someone else may have changed it.
        let report = self.planes.apply(&config, &want.xdp, &want.ipvs, xdp_changed)?;
        if let Some(x) = self.planes.xdp.as_mut() {
            if want.local_macs != self.applied.local_macs {
                for (ifindex, macs) in &want.local_macs {
                    x.set_local_macs(*ifindex, macs).context("the destination MAC filter")?;
                }
            }
            if want.vrrp_watches != self.applied.vrrp_watches {
                x.set_vrrp_instances(&want.vrrp_watches).context("the XDP VRRP advert fast path")?;
            }
        }
        if report != Default::default() {
            info!(
                added = report.services_added,
                removed = report.services_removed,
                changed = report.services_changed,
                slots = report.slots_written,
                "data plane updated"
            );
        }
        if let Some(h) = seeded {
            // Only once the planes took it: a failed reload leaves the
            // checkers and what they know as they were. Unchanged targets
            // keep their state.
            self.health = h;
            self.checks.set_targets(want.check_targets.clone());
        }
        let lost = want.lost.clone();
        self.applied = want;
        self.track_quorum(lost);
        if !vrrp_errors.is_empty() {
            let lines: Vec<String> = vrrp_errors.iter().map(|e| format!("{e} (retrying every {REFRESH:?})")).collect();
            anyhow::bail!("{}", lines.join("\n"));
        }
        Ok(())
    }

    /// Writes the administrative decisions to the state file.
    fn save_admin(&self) {
        if let Err(e) = state_file::save(&self.state_file, &self.admin) {
            warn!("{e}: administrative decisions will not survive a restart");
        }
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

    /// A VRRP instance changed state: its sync group follows, and the
    /// instance's and group's alerts go out.
    async fn on_vrrp(&mut self, report: vrrp::Report) {
        let vrrp::Report { event: e, group } = report;
        if e.from != e.to
            && let Err(err) = self.reconcile().await
        {
            error!("applying a VRRP change failed: {err:#}");
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


/// Every address the configuration needs a next hop for.
fn hop_targets(config: &Config) -> Vec<IpAddr> {
    let all: BTreeSet<IpAddr> = config
        .virtual_servers
        .iter()
        .flat_map(|vs| vs.real_servers.iter().map(|r| r.ip).chain(vs.sorry_server.as_ref().map(|s| s.ip)))
        .collect();
    all.into_iter().collect()
}

/// Runs a notify_up/notify_down/quorum script as its user (see
/// `check::misc::spawn_detached`) without waiting for it, as keepalived.
fn notify(script: &Script, what: &str, script_security: bool) {
    if let Err(e) = check::misc::spawn_detached(script, script_security) {
        warn!("{what}: notify script {}: {e}", script.command);
    }
}
