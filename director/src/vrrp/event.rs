//! An instance's transition, as the sync groups and the daemon hear of it.
//! Its own module so that [`super::sync`] need not depend on
//! [`super::instance`], which depends on it.

use super::fsm::State;

/// What an instance tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub instance: String,
    pub from: State,
    pub to: State,
    pub priority: u8,
    /// In FAULT because of this instance's own tracking (not a sync group's).
    pub own_fault: bool,
}
