//! Counter updates. Per-CPU slots need no atomics.

use director_common::stats::Reason;

use crate::maps::STATS;

#[inline(always)]
pub fn count(reason: Reason, bytes: usize) {
    if let Some(c) = STATS.get_ptr_mut(reason as u32) {
        // SAFETY: the slot belongs to this CPU and the program is not preempted.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes as u64;
        }
    }
}
