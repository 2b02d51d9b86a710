//! VRRP (RFC 3768 v2, RFC 5798 v3).
//!
//! Pure core, no sockets, no clocks:
//! - [`packet`]: advertisements on the wire (encode / decode) and the
//!   receive-side validation keepalived performs, with a metrics counter name
//!   for every reason an advert is dropped.
//! - [`fsm`]: the per-instance state machine (Initialize, Backup, Master and
//!   keepalived's Fault) driven by inputs stamped with a virtual time, and
//!   [`fsm::effective_priority`] for tracked scripts / interfaces / files.
//!
//! Run time:
//! - [`manager`]: the daemon's entry point: [`Vrrp::apply`] starts, restarts
//!   and stops instances from the configuration.
//! - [`instance`]: one task per instance; the VRRP timers live in its loop.
//! - [`socket`]: the raw IP socket (protocol 112).

pub mod fsm;
pub mod instance;
pub mod manager;
pub mod packet;
pub mod socket;
pub mod sync;

pub use fsm::{Action, Fsm, FsmConfig, Input, State, effective_priority};
pub use manager::{Vips, Vrrp};
pub use packet::{Advert, Auth, DecodeError, InstanceParams, Reject, RxMeta, Version};
