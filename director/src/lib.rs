//! director: a keepalived-compatible load-balancer director.
//!
//! - `check`: health checkers (keepalived semantics) and their scheduler.
//! - `config`: keepalived.conf parsing into a typed model with diagnostics.
//! - `state`: the desired state every input feeds.
//! - `dataplane`: where services are programmed (XDP maps; IPVS later).
//! - `daemon`, `ctl`: the two binaries' logic.
pub mod alert;
pub mod check;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod dataplane;
pub mod metrics;
pub mod state;
pub mod status;
pub mod vrrp;
