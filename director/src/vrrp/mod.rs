//! VRRP (RFC 3768 v2, RFC 5798 v3), the pure core: no sockets, no clocks.
//!
//! - [`packet`]: advertisements on the wire (encode / decode) and the
//!   receive-side validation keepalived performs, with a metrics counter name
//!   for every reason an advert is dropped.
//! - [`fsm`]: the per-instance state machine (Initialize, Backup, Master and
//!   keepalived's Fault) driven by inputs stamped with a virtual time, and
//!   [`fsm::effective_priority`] for tracked scripts / interfaces / files.
//!
//! The daemon wires these to a raw IP socket (protocol 112), the VIP
//! add/remove code and gratuitous ARP / unsolicited NA senders.

pub mod fsm;
pub mod packet;

pub use fsm::{Action, Fsm, FsmConfig, Input, State, effective_priority};
pub use packet::{Advert, Auth, DecodeError, InstanceParams, Reject, RxMeta, Version};
