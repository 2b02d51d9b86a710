//! The daemon's state as a `status::Snapshot`, for directorctl and metrics.

use std::{collections::HashMap, net::SocketAddr};

use director_common::lb::{CONN_FORWARD, PROTO_TCP};

use super::{desired, run::Daemon};
use crate::{
    ctl::protocol::ConnView,
    dataplane::xdp::{TrafficOf, addr_from_words},
    state::Method,
    status::{AdminState, DaemonView, ReasonView, RealView, ServiceView, Snapshot, TrafficView},
};

/// Connection entries listed at most, so a huge table cannot stall the daemon.
const MAX_LISTED: usize = 100_000;

/// `with_conns` counts each real server's connections by walking the
/// connection table: done for directorctl, not for every metrics refresh.
pub fn build(d: &Daemon, with_conns: bool) -> Snapshot {
    let conns = if with_conns { conns_per_real(d) } else { HashMap::new() };
    let mut services = Vec::new();
    for vs in &d.config.virtual_servers {
        let Some(addr) = desired::service_addr(vs) else { continue };
        let ids = d.xdp.service_ids(&addr);
        let spec = d.desired.services.iter().find(|s| s.addr == addr);
        let traffic = |of| d.xdp.traffic(of).map(to_view).unwrap_or_default();
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
            reals,
            sorry,
            traffic: ids.map(|i| traffic(TrafficOf::Service(i.ring))).unwrap_or_default(),
        });
    }
    let reasons = d
        .xdp
        .stats()
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
            dataplane: "xdp".into(),
            interfaces: d.interfaces.clone(),
            uptime_secs: d.started.elapsed().as_secs(),
        },
        services,
        reasons,
        vrrp: d.vrrp.status(),
    }
}

/// Connection-table entries in the client's direction.
pub fn connections(d: &Daemon) -> Vec<ConnView> {
    let mut out = Vec::new();
    for (key, conn) in d.xdp.maps.conns.iter().filter_map(Result::ok) {
        if conn.kind != CONN_FORWARD {
            continue;
        }
        let Ok(real) = d.xdp.maps.reals.get(&conn.real, 0) else { continue };
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

fn conns_per_real(d: &Daemon) -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    for (_, conn) in d.xdp.maps.conns.iter().filter_map(Result::ok).take(MAX_LISTED) {
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
