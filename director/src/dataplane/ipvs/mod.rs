//! The IPVS data plane: the same desired state programmed into the kernel's
//! IPVS through its "IPVS" generic netlink family, as keepalived does
//! through libipvs. Every apply reads IPVS's table and sends only the
//! difference: no flush, so connections survive a reload, and destinations
//! someone else removed come back.

pub mod msg;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_generic::{
    GenlMessage,
    ctrl::{GenlCtrl, GenlCtrlCmd, nlas::GenlCtrlAttrs},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};

pub use self::msg::{DestConns, Timeouts};
use self::{
    msg::{IpvsMsg, cmd},
    table::{DestKey, Op, Stats, SvcKey, Table},
};
use super::{ApplyReport, Dataplane};
use crate::state::DesiredState;

#[derive(Debug, thiserror::Error)]
pub enum IpvsError {
    #[error("netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("the kernel has no IPVS (generic netlink family \"IPVS\" not found; is the ip_vs module loaded?)")]
    NoIpvs,
    #[error("IPVS {what}: {source}")]
    Kernel { what: String, source: std::io::Error },
    #[error("IPVS reply: {0}")]
    Decode(#[from] DecodeError),
}

/// IPVS as it is now, with its counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub table: Table,
    pub service_stats: BTreeMap<SvcKey, Stats>,
    pub dest_stats: BTreeMap<(SvcKey, DestKey), (DestConns, Stats)>,
}

pub struct Ipvs {
    sock: Socket,
    family: u16,
    seq: std::cell::Cell<u32>,
    /// Services this process has programmed: the only ones it removes.
    managed: BTreeSet<SvcKey>,
    timeouts: Option<Timeouts>,
}

impl Ipvs {
    /// Opens the netlink socket and finds the IPVS family.
    pub fn open() -> Result<Self, IpvsError> {
        let mut sock = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
        sock.bind_auto().map_err(IpvsError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(IpvsError::Socket)?;
        let mut ipvs = Ipvs { sock, family: 0, seq: Default::default(), managed: BTreeSet::new(), timeouts: None };
        ipvs.family = ipvs.resolve_family()?;
        Ok(ipvs)
    }

    /// IPVS's services and destinations, with counters.
    pub fn read(&self) -> Result<Live, IpvsError> {
        let mut live = Live::default();
        for m in self.dump(IpvsMsg { cmd: cmd::GET_SERVICE, attrs: vec![] })? {
            let (svc, stats) = msg::parse_service(&m)?;
            live.service_stats.insert(svc.key, stats);
            live.table.services.insert(svc.key, (svc, BTreeMap::new()));
        }
        let keys: Vec<SvcKey> = live.table.services.keys().copied().collect();
        for key in keys {
            for m in self.dump(msg::service_key(cmd::GET_DEST, &key))? {
                let (dest, conns, stats) = msg::parse_dest(&m, key.is_v6())?;
                live.dest_stats.insert((key, dest.key), (conns, stats));
                if let Some((_, dests)) = live.table.services.get_mut(&key) {
                    dests.insert(dest.key, dest);
                }
            }
        }
        Ok(live)
    }

    /// `lvs_timeouts`: set once, and again when they change.
    pub fn set_timeouts(&mut self, t: Timeouts) -> Result<(), IpvsError> {
        if self.timeouts != Some(t) {
            self.request(msg::timeouts(&t), "setting lvs_timeouts")?;
            self.timeouts = Some(t);
        }
        Ok(())
    }

    fn run(&self, op: &Op) -> Result<(), IpvsError> {
        let (m, what) = match op {
            Op::AddService(s) => (msg::service(cmd::NEW_SERVICE, s), format!("adding service {}", show(&s.key))),
            Op::EditService(s) => (msg::service(cmd::SET_SERVICE, s), format!("changing service {}", show(&s.key))),
            Op::DelService(k) => (msg::service_key(cmd::DEL_SERVICE, k), format!("removing service {}", show(k))),
            Op::AddDest(k, d) => (msg::dest(cmd::NEW_DEST, k, d), format!("adding {} to {}", dest_name(&d.key), show(k))),
            Op::EditDest(k, d) => (msg::dest(cmd::SET_DEST, k, d), format!("changing {} in {}", dest_name(&d.key), show(k))),
            Op::DelDest(k, d) => (msg::del_dest(k, d), format!("removing {} from {}", dest_name(d), show(k))),
        };
        tracing::info!("IPVS: {what}");
        self.request(m, &what)
    }

    fn next_seq(&self) -> u32 {
        let seq = self.seq.get().wrapping_add(1);
        self.seq.set(seq);
        seq
    }

    fn send<F>(&self, payload: F, family: u16, flags: u16) -> Result<u32, IpvsError>
    where
        F: netlink_packet_generic::GenlFamily + netlink_packet_core::Emitable + std::fmt::Debug,
    {
        let mut genl = GenlMessage::from_payload(payload);
        genl.set_resolved_family_id(family);
        genl.finalize();
        let seq = self.next_seq();
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(IpvsError::Socket)?;
        Ok(seq)
    }

    /// Replies to `seq` until its ack or the end of its dump.
    fn receive<F>(&self, seq: u32, what: &str) -> Result<Vec<F>, IpvsError>
    where
        F: netlink_packet_core::ParseableParametrized<[u8], netlink_packet_generic::GenlHeader>
            + netlink_packet_generic::GenlFamily
            + std::fmt::Debug,
    {
        let mut out = Vec::new();
        loop {
            let (buf, _) = self.sock.recv_from_full().map_err(IpvsError::Socket)?;
            let mut offset = 0;
            while offset < buf.len() {
                let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&buf[offset..])?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m.payload),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(code) => {
                            return Err(IpvsError::Kernel {
                                what: what.to_string(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            });
                        }
                    },
                    _ => {}
                }
            }
        }
    }

    fn request(&self, m: IpvsMsg, what: &str) -> Result<(), IpvsError> {
        let seq = self.send(m, self.family, NLM_F_REQUEST | NLM_F_ACK)?;
        self.receive::<IpvsMsg>(seq, what).map(drop)
    }

    fn dump(&self, m: IpvsMsg) -> Result<Vec<IpvsMsg>, IpvsError> {
        let seq = self.send(m, self.family, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.receive(seq, "reading the table")
    }

    fn resolve_family(&self) -> Result<u16, IpvsError> {
        let ctrl = GenlCtrl { cmd: GenlCtrlCmd::GetFamily, nlas: vec![GenlCtrlAttrs::FamilyName(msg::FAMILY_NAME.into())] };
        let seq = self.send(ctrl, netlink_packet_generic::constants::GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK)?;
        let replies = match self.receive::<GenlCtrl>(seq, "resolving the family") {
            Err(IpvsError::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Err(IpvsError::NoIpvs);
            }
            r => r?,
        };
        replies
            .iter()
            .flat_map(|r| &r.nlas)
            .find_map(|a| if let GenlCtrlAttrs::FamilyId(id) = a { Some(*id) } else { None })
            .ok_or(IpvsError::NoIpvs)
    }
}

impl Dataplane for Ipvs {
    type Error = IpvsError;

    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, IpvsError> {
        let want = table::desired_table(desired);
        let current = self.read()?.table;
        let ops = table::diff(&current, &want, &self.managed);
        let mut report = ApplyReport::default();
        // One refused request (a scheduler this kernel lacks, say) must not
        // hold back the other services: the rest go on, the first error is
        // returned, and the next apply tries again.
        let mut refused: BTreeSet<SvcKey> = BTreeSet::new();
        let mut first_error = None;
        for op in &ops {
            let key = op.service();
            if refused.contains(&key) {
                continue;
            }
            if let Err(e) = self.run(op) {
                tracing::warn!("{e}");
                if matches!(op, Op::AddService(_)) {
                    refused.insert(key);
                }
                first_error.get_or_insert(e);
                continue;
            }
            match op {
                Op::AddService(_) => report.services_added += 1,
                Op::DelService(_) => report.services_removed += 1,
                _ => report.services_changed += 1,
            }
        }
        self.managed = want.services.keys().copied().collect();
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

fn show(k: &SvcKey) -> String {
    match *k {
        SvcKey::Fwmark { mark, .. } => format!("fwmark {mark}"),
        SvcKey::Addr { proto, addr, port } => {
            let name = match proto {
                6 => "TCP".to_string(),
                17 => "UDP".to_string(),
                132 => "SCTP".to_string(),
                p => format!("protocol {p}"),
            };
            format!("{name} {}", std::net::SocketAddr::new(addr, port))
        }
    }
}

fn dest_name(d: &DestKey) -> String {
    std::net::SocketAddr::new(d.addr, d.port).to_string()
}
