//! VRRP (RFC 3768 v2, RFC 5798 v3).
//!
//! Pure core, no sockets, no clocks:
//! - [`packet`]: advertisements on the wire (encode / decode) and the
//!   receive-side validation keepalived performs, with a metrics counter name
//!   for every reason an advert is dropped.
//! - [`fsm`]: the per-instance state machine (Initialize, Backup, Master and
//!   keepalived's Fault) driven by inputs stamped with a virtual time, and
//!   [`fsm::effective_priority`] for tracked scripts / interfaces / files.
//! - [`sync`]: `vrrp_sync_group` bookkeeping.
//!
//! Run time:
//! - [`manager`]: the daemon's entry point: [`Vrrp::apply`] starts, restarts
//!   and stops instances from the configuration. Instances, sync groups and
//!   tracking run on a thread and runtime of their own, so the daemon's
//!   blocking work never delays an advert.
//! - [`instance`]: one task per instance; the VRRP timers live in its loop.
//!   Its transitions are [`Event`]s.
//! - [`socket`]: the raw IP socket (protocol 112).
//!
//! The I/O an instance calls:
//! - [`addr`]: VIPs added / removed through rtnetlink (label, scope, brd,
//!   peer, flags);
//! - [`announce`]: gratuitous ARP / unsolicited NA frames, their sender and
//!   the `garp_master_*` schedule;
//! - [`vmac`]: the `use_vmac` macvlan;
//! - [`track`]: tracked scripts, interfaces and files, and the effective
//!   priority / FAULT they imply;
//! - [`notify`]: `notify_*` scripts with keepalived's arguments;
//! - [`witness`]: what an instance asks of a data plane that sees adverts
//!   on time when the VRRP thread does not (the XDP plane implements it).

pub mod addr;
pub mod announce;
pub mod event;
pub mod fsm;
pub mod instance;
pub mod manager;
pub mod notify;
pub mod packet;
pub mod socket;
pub mod sync;
pub mod track;
pub mod vmac;
pub mod witness;

pub use event::Event;
pub use fsm::{Action, Fsm, FsmConfig, Input, State, effective_priority};
pub use manager::{Report, Setup, Vrrp};
pub use packet::{Advert, Auth, DecodeError, InstanceParams, Reject, RxMeta, Version};
