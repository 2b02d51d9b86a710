//! Next hops for real servers, through rtnetlink: the route towards each
//! real server (egress interface, gateway, preferred source), the
//! neighbour's MAC, and our own MAC on that interface. The daemon calls
//! `resolve` periodically, so a changed neighbour reaches the data plane
//! within one refresh.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr, UdpSocket},
};

use futures::TryStreamExt;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        link::LinkAttribute,
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
        route::{RouteAddress, RouteAttribute},
    },
};

use crate::state::NextHop;

pub struct Resolver {
    handle: Handle,
}

#[derive(Debug, thiserror::Error)]
#[error("rtnetlink: {0}")]
pub struct NeighError(String);

impl Resolver {
    /// Opens a netlink connection; its task runs on the current tokio runtime.
    pub fn new() -> Result<Self, NeighError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NeighError(e.to_string()))?;
        tokio::spawn(conn);
        Ok(Resolver { handle })
    }

    /// Next hops for the targets that can be reached now. For the others a
    /// datagram to the discard port makes the kernel resolve the neighbour,
    /// so a later call finds it.
    pub async fn resolve(&self, targets: &[IpAddr]) -> Result<BTreeMap<IpAddr, NextHop>, NeighError> {
        let macs = self.link_macs().await?;
        let neighbours = self.neighbours().await?;
        let mut out = BTreeMap::new();
        for &target in targets {
            let Some(route) = self.route(target).await? else { continue };
            let via = route.gateway.unwrap_or(target);
            let (Some(mac), Some(src_mac)) = (neighbours.get(&(route.oif, via)), macs.get(&route.oif)) else {
                poke(target);
                continue;
            };
            out.insert(target, NextHop { mac: *mac, src_mac: *src_mac, ifindex: route.oif, tun_src: route.pref_src });
        }
        Ok(out)
    }

    async fn route(&self, target: IpAddr) -> Result<Option<Route>, NeighError> {
        let len = if target.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(target, len)
            .map_err(|e| NeighError(e.to_string()))?
            .build();
        let mut routes = self.handle.route().get(msg).execute();
        // No route is an answer, not an error: the target is skipped.
        let Ok(Some(r)) = routes.try_next().await else { return Ok(None) };
        let mut route = Route { oif: 0, gateway: None, pref_src: None };
        for a in r.attributes {
            match a {
                RouteAttribute::Oif(i) => route.oif = i,
                RouteAttribute::Gateway(g) => route.gateway = ip(&g),
                RouteAttribute::PrefSource(s) => route.pref_src = ip(&s),
                _ => {}
            }
        }
        Ok((route.oif != 0).then_some(route))
    }

    async fn neighbours(&self) -> Result<HashMap<(u32, IpAddr), [u8; 6]>, NeighError> {
        let mut out = HashMap::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut dump = self.handle.neighbours().get().set_address_family(family).execute();
            while let Some(n) = dump.try_next().await.map_err(|e| NeighError(e.to_string()))? {
                if matches!(n.header.state, NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None) {
                    continue;
                }
                let (mut dst, mut mac) = (None, None);
                for a in &n.attributes {
                    match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => dst = Some(IpAddr::V4(*v4)),
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => dst = Some(IpAddr::V6(*v6)),
                        NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(l.as_slice()).ok(),
                        _ => {}
                    }
                }
                if let (Some(d), Some(m)) = (dst, mac) {
                    out.insert((n.header.ifindex, d), m);
                }
            }
        }
        Ok(out)
    }

    async fn link_macs(&self) -> Result<HashMap<u32, [u8; 6]>, NeighError> {
        let mut out = HashMap::new();
        let mut links = self.handle.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(|e| NeighError(e.to_string()))? {
            for a in &l.attributes {
                if let LinkAttribute::Address(m) = a
                    && let Ok(mac) = <[u8; 6]>::try_from(m.as_slice())
                {
                    out.insert(l.header.index, mac);
                }
            }
        }
        Ok(out)
    }

}

struct Route {
    oif: u32,
    gateway: Option<IpAddr>,
    pref_src: Option<IpAddr>,
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Makes the kernel resolve `target`'s neighbour entry.
fn poke(target: IpAddr) {
    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0".parse() } else { "[::]:0".parse() }.expect("literal");
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], SocketAddr::new(target, 9));
    }
}
