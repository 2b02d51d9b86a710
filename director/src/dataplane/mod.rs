//! Data planes: where the desired services end up. One trait, so XDP and
//! IPVS are driven and tested the same way.

pub mod ipvs;
pub mod maglev;
pub mod sched;
pub mod xdp;

use crate::state::DesiredState;

/// What one `apply` changed, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub services_added: usize,
    pub services_removed: usize,
    pub services_changed: usize,
    /// Ring slots rewritten, summed over services.
    pub slots_written: usize,
}

pub trait Dataplane {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Makes the data plane match `desired`, touching only what differs.
    /// No packet ever sees a half-built service.
    fn apply(&mut self, desired: &DesiredState) -> Result<ApplyReport, Self::Error>;
}
