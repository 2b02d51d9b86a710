//! What the XDP maps hold, and whether a set of services fits: checked up
//! front (by `--config-test`, and by a reload before anything changes), so
//! a limit is an error naming it, never a half-applied data plane.

use std::fmt;

use director_common::lb::{DEFAULT_RING_SLOTS, MAX_REALS, MAX_SERVICE_KEYS, MAX_SERVICES};
use serde::Serialize;

use super::pool::RingPool;

/// One limit of the XDP maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Services (rings and their counters).
    Services,
    /// SERVICES keys: (VIP, port, protocol).
    ServiceKeys,
    /// Distinct VIP addresses (the VIPS map).
    Vips,
    /// Real and sorry servers over every service.
    Reals,
    /// Maglev ring slots (the RINGS pool, counted in whole blocks).
    RingSlots,
}

impl Limit {
    pub const ALL: [Limit; 5] = [Limit::Services, Limit::ServiceKeys, Limit::Vips, Limit::Reals, Limit::RingSlots];

    pub fn name(self) -> &'static str {
        match self {
            Limit::Services => "services",
            Limit::ServiceKeys => "service_keys",
            Limit::Vips => "vips",
            Limit::Reals => "real_servers",
            Limit::RingSlots => "ring_slots",
        }
    }
}

/// A figure for each limit: its maximum ([`Limits`]) or its use ([`Usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PerLimit {
    pub services: u64,
    pub service_keys: u64,
    pub vips: u64,
    pub reals: u64,
    pub ring_slots: u64,
}

/// The maximum of each limit.
pub type Limits = PerLimit;
/// How much of each limit is in use.
pub type Usage = PerLimit;

impl PerLimit {
    pub const DEFAULT: Limits = Limits::with_ring_slots(DEFAULT_RING_SLOTS);

    pub const fn with_ring_slots(ring_slots: u32) -> Limits {
        PerLimit {
            services: MAX_SERVICES as u64,
            service_keys: MAX_SERVICE_KEYS as u64,
            vips: MAX_SERVICE_KEYS as u64,
            reals: MAX_REALS as u64,
            ring_slots: ring_slots as u64,
        }
    }

    pub fn get(&self, l: Limit) -> u64 {
        match l {
            Limit::Services => self.services,
            Limit::ServiceKeys => self.service_keys,
            Limit::Vips => self.vips,
            Limit::Reals => self.reals,
            Limit::RingSlots => self.ring_slots,
        }
    }
}

/// A limit that would be exceeded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CapacityError {
    pub limit: Limit,
    pub max: u64,
    /// Why more is needed, e.g. "service 65 of 65".
    pub detail: String,
}

impl fmt::Display for CapacityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit {
            Limit::Services => format!("at most {} services", self.max),
            Limit::ServiceKeys => format!("at most {} (VIP, port, protocol) keys", self.max),
            Limit::Vips => format!("at most {} VIP addresses", self.max),
            Limit::Reals => format!("at most {} real and sorry servers in total", self.max),
            Limit::RingSlots => format!("{} Maglev ring slots in all", self.max),
        };
        write!(f, "the XDP data plane holds {what} (limit `{}`): {}", self.limit.name(), self.detail)
    }
}

/// A service as the capacity check sees it.
#[derive(Clone, Debug)]
pub struct Need {
    pub vip: std::net::IpAddr,
    /// Real servers, the sorry server included.
    pub reals: u64,
    pub ring_size: u32,
}

/// Whether `services`, in order, fit into empty maps: the usage, or the
/// index of the first service that does not fit and the limit it crosses.
pub fn fit(limits: &Limits, services: &[Need]) -> Result<Usage, (usize, CapacityError)> {
    let mut pool = RingPool::new(limits.ring_slots.min(u64::from(u32::MAX)) as u32);
    let mut usage = Usage::default();
    let mut vips = std::collections::BTreeSet::new();
    for (i, s) in services.iter().enumerate() {
        let n = i + 1;
        usage.services += 1;
        usage.service_keys += 1;
        if vips.insert(s.vip) {
            usage.vips += 1;
        }
        usage.reals += s.reals;
        let over = |limit: Limit, detail: String| (i, CapacityError { limit, max: limits.get(limit), detail });
        if usage.services > limits.services {
            return Err(over(Limit::Services, format!("this is service {n}")));
        }
        if usage.service_keys > limits.service_keys {
            return Err(over(Limit::ServiceKeys, format!("this is key {n}")));
        }
        if usage.vips > limits.vips {
            return Err(over(Limit::Vips, format!("{} is VIP {}", s.vip, usage.vips)));
        }
        if usage.reals > limits.reals {
            return Err(over(Limit::Reals, format!("{} servers with this service's {}", usage.reals, s.reals)));
        }
        if pool.alloc(s.ring_size).is_none() {
            return Err(over(
                Limit::RingSlots,
                format!("no free block of {} slots left for this service's ring of {}", RingPool::block_of(s.ring_size), s.ring_size),
            ));
        }
    }
    usage.ring_slots = pool.used();
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::maglev::ring_size_for;

    fn need(i: usize, reals: u64) -> Need {
        Need { vip: std::net::IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), reals, ring_size: ring_size_for(reals as usize) }
    }

    #[test]
    fn production_sizes_fit_at_the_defaults() {
        // 1,024 services sharing 16,384 real servers.
        let services: Vec<Need> = (0..1024).map(|i| need(i, 16)).collect();
        let usage = fit(&Limits::DEFAULT, &services).unwrap();
        assert_eq!((usage.services, usage.reals), (1024, 16_384));
        // One service with every real server.
        assert!(fit(&Limits::DEFAULT, &[need(0, 16_384)]).is_ok());
    }

    #[test]
    fn the_first_service_over_a_limit_is_named() {
        let services: Vec<Need> = (0..1025).map(|i| need(i, 1)).collect();
        let (at, e) = fit(&Limits::DEFAULT, &services).unwrap_err();
        assert_eq!((at, e.limit), (1024, Limit::Services));
        assert!(e.to_string().contains("at most 1024 services"), "{e}");

        let (at, e) = fit(&Limits::DEFAULT, &[need(0, 16_000), need(1, 385)]).unwrap_err();
        assert_eq!((at, e.limit), (1, Limit::Reals));

        let small = Limits::with_ring_slots(4096);
        let (at, e) = fit(&small, &[need(0, 30), need(1, 1)]).unwrap_err();
        assert_eq!((at, e.limit), (1, Limit::RingSlots), "{e}");
    }
}
