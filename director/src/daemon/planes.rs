//! Which data plane serves which service: `--dataplane xdp|ipvs|auto`,
//! `director_dataplane` per virtual_server, and services only IPVS can
//! serve (fwmark, SCTP).

use anyhow::{Context, Result};
use tracing::{error, info, warn};

use super::{Args, desired::Routing};
use crate::{
    config::{Config, DataplaneChoice, LvsTimeouts, Protocol, VirtualServer, VsKey},
    dataplane::{
        ApplyReport, Dataplane,
        ipvs::{Ipvs, IpvsError, Live, Timeouts},
        xdp::{self, XdpProgram},
    },
    state::DesiredState,
    status::InterfaceView,
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The XDP program only.
    Xdp,
    /// Kernel IPVS only, through its generic netlink family.
    Ipvs,
    /// XDP, or IPVS when XDP cannot be loaded or attached.
    Auto,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Xdp,
    Ipvs,
}

/// Where a virtual server goes, given the default data plane, and why
/// when that is not the default.
pub fn route(default: Kind, vs: &VirtualServer) -> (Kind, Option<&'static str>) {
    if matches!(vs.key, VsKey::Fwmark(_)) {
        return (Kind::Ipvs, Some("fwmark service"));
    }
    if vs.protocol == Protocol::Sctp {
        return (Kind::Ipvs, Some("SCTP service"));
    }
    match vs.director_dataplane {
        Some(DataplaneChoice::Ipvs) => (Kind::Ipvs, (default != Kind::Ipvs).then_some("director_dataplane ipvs")),
        Some(DataplaneChoice::Xdp) => (Kind::Xdp, (default != Kind::Xdp).then_some("director_dataplane xdp")),
        None => (default, None),
    }
}

pub struct Planes {
    pub xdp: Option<XdpProgram>,
    pub ipvs: Option<Ipvs>,
    /// Where services without `director_dataplane` go.
    pub default: Kind,
    pub interfaces: Vec<Attached>,
    /// Set once opening IPVS failed: not retried every refresh.
    ipvs_failed: bool,
}

impl Planes {
    pub fn start(args: &Args, config: &Config) -> Result<Self> {
        let mut planes = Planes { xdp: None, ipvs: None, default: Kind::Xdp, interfaces: Vec::new(), ipvs_failed: false };
        match args.dataplane {
            Mode::Xdp => {
                if let Err(e) = planes.start_xdp(args, config) {
                    // Neither this attempt's pins nor an older daemon's
                    // program may go on forwarding from maps nobody updates.
                    retire_xdp(&args.bpffs_dir);
                    return Err(e);
                }
            }
            Mode::Ipvs => {
                retire_xdp(&args.bpffs_dir);
                planes.default = Kind::Ipvs;
                planes.ipvs = Some(open_ipvs().context("--dataplane ipvs")?);
                info!("data plane: IPVS (--dataplane ipvs)");
            }
            Mode::Auto => {
                if let Err(e) = planes.start_xdp(args, config) {
                    warn!("XDP cannot run here ({e:#}); falling back to the IPVS data plane");
                    retire_xdp(&args.bpffs_dir);
                    planes.default = Kind::Ipvs;
                    planes.ipvs = Some(open_ipvs().context("IPVS, the fallback after XDP failed")?);
                    info!("data plane: IPVS (--dataplane auto, XDP unavailable)");
                }
            }
        }
        if planes.ipvs.is_none() && config.virtual_servers.iter().any(|vs| route(planes.default, vs).0 == Kind::Ipvs) {
            planes.ensure_ipvs();
        }
        Ok(planes)
    }

    fn start_xdp(&mut self, args: &Args, config: &Config) -> Result<()> {
        let names = super::interfaces(args, config)?;
        let opts = xdp::LoadOptions { pin_dir: Some(args.bpffs_dir.clone()), ..Default::default() };
        let prog = XdpProgram::load_with(opts).context("loading the XDP program")?;
        if prog.adopted() {
            info!("adopted the data plane pinned in {}: connections continue", args.bpffs_dir.display());
        }
        self.xdp = Some(prog);
        if let Err(e) = self.attach(&names) {
            self.xdp = None;
            self.interfaces.clear();
            return Err(e);
        }
        if let Some(prog) = self.xdp.as_mut() {
            // Links a previous daemon pinned on interfaces this configuration
            // no longer names would forward unwatched.
            for stale in prog.pinned_interfaces().into_iter().filter(|p| !names.contains(p)) {
                match prog.detach(&stale) {
                    Ok(()) => info!("detached the XDP program a previous daemon left on {stale}: the configuration no longer names it"),
                    Err(e) => warn!("detaching the XDP program left on {stale}: {e}"),
                }
            }
        }
        info!("data plane: XDP on {}", names.join(", "));
        Ok(())
    }

    /// The interfaces XDP should be on for `config`: `--iface`, or those
    /// its instances name; None without XDP.
    pub fn xdp_interfaces(&self, args: &Args, config: &Config) -> Result<Option<Vec<String>>> {
        if self.xdp.is_none() {
            return Ok(None);
        }
        super::interfaces(args, config).map(Some)
    }

    /// The interfaces XDP is attached to.
    pub fn attached_names(&self) -> Vec<String> {
        self.interfaces.iter().map(|i| i.view.name.clone()).collect()
    }

    /// Attaches XDP to each of `names` it is not on yet, all or none: on
    /// an error those attached here are detached again. Returns the new ones.
    pub fn attach(&mut self, names: &[String]) -> Result<Vec<String>> {
        let new: Vec<String> =
            names.iter().filter(|n| !self.interfaces.iter().any(|i| &i.view.name == *n)).cloned().collect();
        let mut added = Vec::new();
        for iface in &new {
            let Some(prog) = self.xdp.as_mut() else { return Ok(Vec::new()) };
            let attached = prog
                .attach(iface)
                .map_err(anyhow::Error::from)
                .and_then(|mode| Ok((mode, xdp::link_mac(iface)?)))
                .with_context(|| format!("attaching XDP to {iface}"));
            match attached {
                Ok((mode, (ifindex, mac))) => {
                    info!(iface = %iface, mode = %mode, "attached XDP program to {iface} ({mode} mode)");
                    self.interfaces.push(Attached { view: InterfaceView { name: iface.clone(), attach_mode: mode.to_string() }, ifindex, mac });
                    added.push(iface.clone());
                }
                Err(e) => {
                    let _ = prog.detach(iface);
                    if let Err(d) = self.detach(&added) {
                        warn!("{d:#}");
                    }
                    return Err(e);
                }
            }
        }
        Ok(added)
    }

    /// Detaches XDP from `names`.
    pub fn detach(&mut self, names: &[String]) -> Result<()> {
        let Some(prog) = self.xdp.as_mut() else { return Ok(()) };
        for iface in names {
            prog.detach(iface).with_context(|| format!("detaching XDP from {iface}"))?;
            self.interfaces.retain(|i| &i.view.name != iface);
            info!(iface = %iface, "detached XDP program from {iface}");
        }
        Ok(())
    }

    /// Opens IPVS for the services that need it; false (and one warning)
    /// when this kernel has none.
    fn ensure_ipvs(&mut self) -> bool {
        if self.ipvs.is_none() && !self.ipvs_failed {
            match open_ipvs() {
                Ok(i) => {
                    info!("IPVS data plane opened for the services that need it");
                    self.ipvs = Some(i);
                }
                Err(e) => {
                    warn!("{e:#}");
                    self.ipvs_failed = true;
                }
            }
        }
        self.ipvs.is_some()
    }

    /// Where services go now. Opens IPVS first when the configuration has
    /// services for it and it is not open yet.
    pub fn routing(&mut self, config: &Config) -> Routing {
        let needs_ipvs = config.virtual_servers.iter().any(|vs| route(self.default, vs).0 == Kind::Ipvs);
        let ipvs = !needs_ipvs || self.ensure_ipvs();
        Routing { default: self.default, xdp: self.xdp.is_some(), ipvs }
    }

    /// The attached interfaces' (ifindex, MAC), for the destination MAC filter.
    pub fn interface_macs(&self) -> Vec<(u32, [u8; 6])> {
        self.interfaces.iter().map(|i| (i.ifindex, i.mac)).collect()
    }

    /// Applies each plane's part. IPVS is applied every time: it is a diff
    /// against IPVS's live table, which someone else may have changed.
    pub fn apply(&mut self, config: &Config, xdp: &DesiredState, ipvs: &DesiredState, xdp_changed: bool) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        if let Some(x) = self.xdp.as_mut().filter(|_| xdp_changed) {
            report = x.apply(xdp)?;
        }
        if let Some(i) = self.ipvs.as_mut() {
            let t = config.global.lvs_timeouts;
            if t != LvsTimeouts::default() {
                // 0 leaves a timeout as the kernel has it.
                i.set_timeouts(Timeouts { tcp: t.tcp.unwrap_or(0), tcp_fin: t.tcpfin.unwrap_or(0), udp: t.udp.unwrap_or(0) })?;
            }
            let r = i.apply(ipvs)?;
            report.services_added += r.services_added;
            report.services_removed += r.services_removed;
            report.services_changed += r.services_changed;
        }
        Ok(report)
    }

    /// IPVS's table and counters, for directorctl and metrics.
    pub fn ipvs_live(&self) -> Option<Live> {
        let ipvs = self.ipvs.as_ref()?;
        match ipvs.read() {
            Ok(l) => Some(l),
            Err(e) => {
                warn!("reading IPVS: {e}");
                None
            }
        }
    }

    pub fn name(&self) -> String {
        match (&self.xdp, &self.ipvs) {
            (Some(_), Some(_)) => "xdp+ipvs".into(),
            (None, Some(_)) => "ipvs".into(),
            _ => "xdp".into(),
        }
    }
}

/// An interface XDP is attached to.
#[derive(Clone, Debug)]
pub struct Attached {
    pub view: InterfaceView,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// Detaches and unpins whatever XDP program an earlier daemon left under
/// `dir`: IPVS now serves, or the start failed, and that program's maps
/// would never change again.
pub fn retire_xdp(dir: &std::path::Path) {
    match XdpProgram::cleanup(dir) {
        Ok(detached) if !detached.is_empty() => {
            warn!("detached the XDP program left pinned in {} from {}: no daemon updates its maps", dir.display(), detached.join(", "));
        }
        Ok(_) => {}
        Err(e) => error!("removing the XDP program left pinned in {}: {e}; `director --cleanup` removes it", dir.display()),
    }
}

/// IPVS through netlink; loads ip_vs first if the kernel has it as a
/// module not yet loaded, as keepalived does.
fn open_ipvs() -> Result<Ipvs> {
    match Ipvs::open() {
        Err(IpvsError::NoIpvs) => {
            let loaded = std::process::Command::new("modprobe").arg("ip_vs").status().is_ok_and(|s| s.success());
            if loaded {
                info!("loaded the ip_vs kernel module");
            }
            Ok(Ipvs::open()?)
        }
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, load_str};

    #[test]
    fn fwmark_sctp_and_the_keyword_route_services() {
        let conf = "
virtual_server 10.0.0.1 80 { protocol TCP\n real_server 10.0.1.1 80 { } }
virtual_server 10.0.0.1 81 { protocol TCP\n director_dataplane ipvs\n lvs_sched lc\n real_server 10.0.1.1 81 { } }
virtual_server 10.0.0.1 82 { protocol TCP\n director_dataplane xdp\n real_server 10.0.1.1 82 { } }
virtual_server fwmark 3 { real_server 10.0.1.1 80 { } }
virtual_server 10.0.0.1 83 { protocol SCTP\n real_server 10.0.1.1 83 { } }
";
        let loaded = load_str(conf, "t.conf", &LoadOptions::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        let vs = &loaded.config.virtual_servers;
        let kinds = |d| vs.iter().map(|v| route(d, v).0).collect::<Vec<_>>();
        use Kind::*;
        assert_eq!(kinds(Xdp), [Xdp, Ipvs, Xdp, Ipvs, Ipvs]);
        assert_eq!(kinds(Ipvs), [Ipvs, Ipvs, Xdp, Ipvs, Ipvs]);
        assert_eq!(route(Xdp, &vs[1]).1, Some("director_dataplane ipvs"));
        assert_eq!(route(Ipvs, &vs[1]).1, None);
        // An lc service sent to IPVS draws no XDP-approximation warning.
        assert!(!loaded.diagnostics.iter().any(|d| d.to_string().contains("lvs_sched lc")), "{:?}", loaded.diagnostics);
    }
}
