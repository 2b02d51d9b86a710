//! Counter updates. Per-CPU slots need no atomics.

use director_common::{lb::TrafficCounter, stats::Reason};

use crate::maps::{REAL_STATS, SERVICE_STATS, STATS};

#[inline(always)]
pub fn count(reason: Reason, bytes: usize) {
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: the slot belongs to this CPU and XDP is not preempted.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
        }
    }
}

/// Traffic to a service and the real server it went to; `new` when the
/// packet opened a flow.
#[inline(always)]
pub fn traffic(service: u32, real: u32, bytes: usize, new: bool) {
    add(SERVICE_STATS.get_ptr_mut(service), bytes, new);
    add(REAL_STATS.get_ptr_mut(real), bytes, new);
}

#[inline(always)]
fn add(c: Option<*mut TrafficCounter>, bytes: usize, new: bool) {
    if let Some(c) = c {
        // SAFETY: as above, a per-CPU slot.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
            (*c).conns += new as u64;
        }
    }
}
