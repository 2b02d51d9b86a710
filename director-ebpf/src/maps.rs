//! Every map the program uses, declared in one place. Userspace finds them
//! by these names (see director/src/dataplane/xdp).

use aya_ebpf::{macros::map, maps::PerCpuArray};
use director_common::stats::{Counter, Reason};

/// Packets and bytes per verdict reason, per CPU.
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(Reason::COUNT, 0);
