//! director: a keepalived-compatible load-balancer director.
//!
//! - `config`: keepalived.conf parsing into a typed model with diagnostics.
//! - `dataplane`: where services are programmed (XDP maps, IPVS later).
pub mod dataplane;
