//! A witness of the adverts on the wire that does not depend on the VRRP
//! thread being on time. The XDP data plane is one: its program records
//! every valid advert for an instance we run before any socket sees it, so
//! the record stays current while the daemon is starved of CPU. An instance
//! consults it before declaring the master down: a record younger than
//! Master_Down_Interval from a master that outranks us means we were late,
//! not the master dead.

use std::{net::IpAddr, time::Duration};

use super::{Auth, Version};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

/// One VRRP instance as a witness must know it. Its adverts are recorded
/// only when the VRRP socket would hear them too: this version and (v2)
/// this authentication, and the socket's TTL and source rules
/// (`packet::validate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpWatch {
    /// The interface the instance's adverts arrive on (its `interface`).
    pub ifindex: u32,
    pub family: Family,
    pub vrid: u8,
    pub version: Version,
    /// v2 only; `Auth::None` for v3.
    pub auth: Auth,
    /// `unicast_peer` entries (address, min_ttl, max_ttl); empty for a
    /// multicast instance, whose adverts must all carry TTL 255.
    pub unicast_peers: Vec<(IpAddr, Option<u8>, Option<u8>)>,
    /// `check_unicast_src`: adverts from other sources are not heard.
    pub check_unicast_src: bool,
}

impl VrrpWatch {
    /// A multicast instance: no unicast peers, so TTL 255 only.
    pub fn multicast(ifindex: u32, family: Family, vrid: u8, version: Version, auth: Auth) -> VrrpWatch {
        VrrpWatch { ifindex, family, vrid, version, auth, unicast_peers: Vec::new(), check_unicast_src: false }
    }
}

/// The latest valid advert a witness saw for an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAdvert {
    pub priority: u8,
    /// The sender (IP source address).
    pub src: IpAddr,
    /// The advertised interval (v2 whole seconds, v3 centiseconds).
    pub interval: Duration,
    /// How long ago it arrived.
    pub age: Duration,
    /// Valid adverts recorded for the instance since it was first watched.
    pub count: u64,
}

impl SeenAdvert {
    /// Whether this advert, read in time, would have reset a Backup's
    /// Master_Down_Timer (RFC 5798 §6.4.2): it arrived within `master_down`,
    /// its priority is not 0 (a master resigning), and either we do not
    /// preempt or it is at least our priority. When true, the master is
    /// alive and a takeover would be false. A witness does not verify the
    /// checksum, so only an advert from `heard_from`, the sender the VRRP
    /// socket accepted last, counts.
    pub fn keeps_backup(&self, heard_from: Option<IpAddr>, master_down: Duration, our_priority: u8, preempt: bool) -> bool {
        heard_from == Some(self.src)
            && self.age < master_down
            && self.priority != 0
            && (!preempt || self.priority >= our_priority)
    }
}

pub type WitnessError = Box<dyn std::error::Error + Send + Sync>;

/// Read by the instance tasks on the VRRP thread, so a read must not wait
/// for the daemon.
pub trait Witness: Send + Sync {
    /// The latest valid advert recorded for an instance, None when none
    /// arrived since it was watched.
    fn last_advert(&self, ifindex: u32, family: Family, vrid: u8) -> Result<Option<SeenAdvert>, WitnessError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_backup_follows_the_backup_rules_of_rfc_5798() {
        let seen = |priority, age_ms| SeenAdvert {
            priority,
            src: "10.0.0.2".parse().unwrap(),
            interval: Duration::from_secs(1),
            age: Duration::from_millis(age_ms),
            count: 1,
        };
        let down = Duration::from_millis(3_609);
        let master = Some("10.0.0.2".parse().unwrap());
        assert!(seen(150, 1_000).keeps_backup(master, down, 100, true), "a higher master, fresh");
        assert!(seen(100, 1_000).keeps_backup(master, down, 100, true), "an equal master, fresh");
        assert!(!seen(150, 3_609).keeps_backup(master, down, 100, true), "too old: the master is down");
        assert!(!seen(0, 10).keeps_backup(master, down, 100, true), "priority 0: the master resigned");
        assert!(!seen(50, 10).keeps_backup(master, down, 100, true), "a lower master is preempted");
        assert!(seen(50, 10).keeps_backup(master, down, 100, false), "but not with nopreempt");
        let other = Some("10.0.0.9".parse().unwrap());
        assert!(!seen(255, 10).keeps_backup(other, down, 100, true), "not the sender the socket heard");
        assert!(!seen(255, 10).keeps_backup(None, down, 100, true), "the socket heard no one yet");
    }
}
