//! The daemon's state as a `status::Snapshot`, for directorctl and metrics.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use director_common::lb::{CONN_FORWARD, PROTO_TCP};

use super::{desired, planes, run::Daemon};
use crate::{
    ctl::protocol::ConnView,
    dataplane::{
        ipvs::{self, Live},
        xdp::{TrafficOf, XdpProgram, addr_from_words, capacity::Limit},
    },
    state::{Method, ServiceAddr},
    status::{AdminState, DaemonView, ReasonView, RealView, ServiceView, Snapshot, TrafficView},
};

/// Connection entries listed at most, so a huge table cannot stall the daemon.
const MAX_LISTED: usize = 100_000;

/// `with_conns` counts each real server's connections by walking the
/// connection table: done for directorctl, not for every metrics refresh.
/// Services on IPVS are shown from IPVS's own table and counters.
pub fn build(d: &Daemon, with_conns: bool) -> Snapshot {
    let xdp = d.planes.xdp.as_ref();
    let conns = match xdp {
        Some(x) if with_conns => conns_per_real(x),
        _ => HashMap::new(),
    };
    let live = d.planes.ipvs_live();
    let mut services = Vec::new();
    for vs in &d.config.virtual_servers {
        let Some(addr) = desired::service_addr(vs) else { continue };
        let on_ipvs = planes::route(d.planes.default, vs).0 == planes::Kind::Ipvs;
        let persistence_mask = vs.persistence_timeout.and(vs.persistence_granularity).and_then(mask);
        let fwmark = match addr.proto {
            crate::state::Proto::Fwmark(m) => Some(m),
            _ => None,
        };
        if let (true, Some(live)) = (on_ipvs, live.as_ref()) {
            if let Some(view) = ipvs_view(d, vs, &addr, live) {
                services.push(ServiceView { persistence_mask, fwmark, ..view });
            }
            continue;
        }
        let ids = xdp.and_then(|x| x.service_ids(&addr));
        let spec = d.applied.services().find(|s| s.addr == addr);
        let traffic = |of| xdp.and_then(|x| x.traffic(of).ok()).map(to_view).unwrap_or_default();
        let reals = vs
            .real_servers
            .iter()
            .map(|rs| {
                let id = ids.as_ref().and_then(|i| i.reals.get(&(rs.ip, rs.port)).copied());
                let applied = spec.and_then(|s| s.reals.iter().find(|r| (r.addr, r.port) == (rs.ip, rs.port)));
                let t = id.map(|i| traffic(TrafficOf::Real(i))).unwrap_or_default();
                RealView {
                    addr: rs.ip,
                    port: rs.port,
                    forward: forward(applied.map(|r| r.method)).into(),
                    configured_weight: rs.weight,
                    effective_weight: applied.map_or(0, |r| r.weight),
                    admin: d.admin.get(&(addr, (rs.ip, rs.port))).copied().unwrap_or(AdminState::Enabled),
                    health: match d.health.get(&(vs.key.clone(), SocketAddr::new(rs.ip, rs.port))) {
                        Some(h) if h.alive => "up",
                        Some(_) => "down",
                        None => "unknown",
                    }
                    .into(),
                    active_conns: id.and_then(|i| conns.get(&i).copied()).unwrap_or(0),
                    inactive_conns: 0,
                    traffic: t,
                }
            })
            .collect();
        let sorry = spec.and_then(|s| s.sorry.as_ref()).map(|r| RealView {
            addr: r.addr,
            port: r.port,
            forward: forward(Some(r.method)).into(),
            configured_weight: 1,
            effective_weight: 1,
            admin: AdminState::Enabled,
            health: "unknown".into(),
            active_conns: ids.as_ref().and_then(|i| i.sorry).and_then(|i| conns.get(&i).copied()).unwrap_or(0),
            inactive_conns: 0,
            traffic: ids.as_ref().and_then(|i| i.sorry).map(|i| traffic(TrafficOf::Real(i))).unwrap_or_default(),
        });
        services.push(ServiceView {
            proto: addr.proto.to_string(),
            vip: addr.vip,
            port: addr.port,
            sched: vs.lvs_sched.clone(),
            persistence_secs: vs.persistence_timeout.map(u64::from),
            persistence_mask,
            fwmark,
            reals,
            sorry,
            traffic: ids.map(|i| traffic(TrafficOf::Service(i.ring))).unwrap_or_default(),
        });
    }
    let reasons = xdp
        .and_then(|x| x.stats().ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(r, c)| ReasonView { reason: r.name().into(), action: r.action().into(), packets: c.packets, bytes: c.bytes })
        .collect();
    Snapshot {
        daemon: DaemonView {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            config_file: d.args.file.display().to_string(),
            config_generation: d.generation,
            reloads_ok: d.reloads_ok,
            reloads_failed: d.reloads_failed,
            last_reload_error: d.last_reload_error.clone(),
            dataplane: d.planes.name(),
            interfaces: d.planes.interfaces.iter().map(|a| a.view.clone()).collect(),
            limits: xdp.map(limits).unwrap_or_default(),
            uptime_secs: d.started.elapsed().as_secs(),
        },
        services,
        reasons,
        vrrp: d.vrrp.status(),
    }
}

/// Connection-table entries in the client's direction (XDP's; IPVS lists
/// its own with `ipvsadm -Lnc`).
pub fn connections(d: &Daemon) -> Vec<ConnView> {
    let mut out = Vec::new();
    let Some(xdp) = d.planes.xdp.as_ref() else { return out };
    for (key, conn) in xdp.maps.conns.iter().filter_map(Result::ok) {
        if conn.kind != CONN_FORWARD {
            continue;
        }
        let Ok(real) = xdp.maps.reals.get(&conn.real, 0) else { continue };
        let port = |p: u16| u16::from_be(p);
        out.push(ConnView {
            proto: if key.proto == PROTO_TCP { "TCP" } else { "UDP" }.into(),
            source: SocketAddr::new(addr_from_words(&key.src, key.family), port(key.sport)),
            virtual_addr: SocketAddr::new(addr_from_words(&key.dst, key.family), port(key.dport)),
            destination: SocketAddr::new(
                addr_from_words(&real.addr, real.family),
                if real.port == 0 { port(key.dport) } else { port(real.port) },
            ),
        });
        if out.len() >= MAX_LISTED {
            break;
        }
    }
    out
}

fn conns_per_real(xdp: &XdpProgram) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for (_, conn) in xdp.maps.conns.iter().filter_map(Result::ok).take(MAX_LISTED) {
        if conn.kind == CONN_FORWARD {
            *out.entry(conn.real).or_insert(0) += 1;
        }
    }
    out
}

fn forward(m: Option<Method>) -> &'static str {
    match m {
        Some(Method::Dr) | None => "Route",
        Some(Method::Tun) => "Tunnel",
        Some(Method::Nat) => "Masq",
    }
}

fn to_view(t: director_common::lb::TrafficCounter) -> TrafficView {
    TrafficView { conns: t.conns, in_packets: t.packets, in_bytes: t.bytes, out_packets: 0, out_bytes: 0 }
}

/// A service as IPVS has it: its destinations (the sorry server among them
/// while in use), weights, connection counts and counters, so that
/// `directorctl list` and `ipvsadm -Ln` agree line for line.
fn ipvs_view(d: &Daemon, vs: &crate::config::VirtualServer, addr: &ServiceAddr, live: &Live) -> Option<ServiceView> {
    let key = ipvs::table::svc_key(addr);
    let (svc, dests) = live.table.services.get(&key)?;
    let reals = dests
        .values()
        .map(|dest| {
            let rs = vs.real_servers.iter().find(|r| (r.ip, r.port) == (dest.key.addr, dest.key.port));
            let (conns, stats) = live.dest_stats.get(&(key, dest.key)).copied().unwrap_or_default();
            RealView {
                addr: dest.key.addr,
                port: dest.key.port,
                forward: match dest.fwd {
                    ipvs::table::FWD_MASQ => "Masq",
                    ipvs::table::FWD_TUNNEL => "Tunnel",
                    ipvs::table::FWD_DROUTE => "Route",
                    _ => "Local",
                }
                .into(),
                configured_weight: rs.map_or(dest.weight, |r| r.weight),
                effective_weight: dest.weight,
                admin: d.admin.get(&(*addr, (dest.key.addr, dest.key.port))).copied().unwrap_or(AdminState::Enabled),
                health: match d.health.get(&(vs.key.clone(), SocketAddr::new(dest.key.addr, dest.key.port))) {
                    Some(h) if h.alive => "up",
                    Some(_) => "down",
                    None => "unknown",
                }
                .into(),
                active_conns: conns.active.into(),
                inactive_conns: conns.inactive.into(),
                traffic: ipvs_traffic(stats),
            }
        })
        .collect();
    let persistent = svc.flags & ipvs::table::SVC_F_PERSISTENT != 0;
    Some(ServiceView {
        proto: addr.proto.to_string(),
        vip: addr.vip,
        port: addr.port,
        sched: svc.sched.clone(),
        persistence_secs: persistent.then_some(u64::from(svc.timeout)),
        persistence_mask: None,
        fwmark: None,
        reals,
        sorry: None,
        traffic: ipvs_traffic(live.service_stats.get(&key).copied().unwrap_or_default()),
    })
}

fn ipvs_traffic(s: ipvs::table::Stats) -> TrafficView {
    TrafficView { conns: s.conns, in_packets: s.in_packets, in_bytes: s.in_bytes, out_packets: s.out_packets, out_bytes: s.out_bytes }
}

/// ipvsadm's " mask" column: an IPv4 mask unless all ones, an IPv6 prefix
/// length unless 128.
fn mask(m: IpAddr) -> Option<String> {
    match m {
        IpAddr::V4(m) if m != std::net::Ipv4Addr::BROADCAST => Some(m.to_string()),
        IpAddr::V6(m) if u128::from(m) != u128::MAX => Some(u128::from(m).leading_ones().to_string()),
        _ => None,
    }
}

fn limits(xdp: &XdpProgram) -> Vec<crate::status::LimitView> {
    let (usage, max) = xdp.usage();
    Limit::ALL
        .iter()
        .map(|&l| crate::status::LimitView { name: l.name().into(), used: usage.get(l), max: max.get(l) })
        .collect()
}
