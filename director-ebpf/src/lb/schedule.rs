//! Picking a real server for a new flow: persistence first, then the
//! service's Maglev ring, then the sorry server.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use director_common::{
    hash::flow_hash,
    lb::{FlowKey, NO_REAL, Persist, PersistKey, SVC_PERSISTENT, Service},
    stats::Reason,
};

use super::real;
use crate::maps::{PERSIST, RINGS};

#[inline(always)]
pub fn pick(svc: &Service, key: &FlowKey) -> Result<u32, Reason> {
    if svc.flags & SVC_PERSISTENT == 0 {
        return ring(svc, key);
    }
    let pkey = PersistKey { service: svc.id, client: masked(&key.src, &svc.persist_mask) };
    // SAFETY: a helper without side effects.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(e) = PERSIST.get_ptr_mut(&pkey) {
        // SAFETY: a live map value; a racing update at worst refreshes twice.
        unsafe {
            // As in IPVS, a persistent client keeps reaching a server even
            // at weight 0; only a removed server breaks the affinity.
            if now.wrapping_sub((*e).last_ns) <= svc.persist_timeout_ns && real((*e).real).is_some() {
                (*e).last_ns = now;
                return Ok((*e).real);
            }
        }
    }
    let id = ring(svc, key)?;
    let _ = PERSIST.insert(&pkey, &Persist { real: id, _pad: 0, last_ns: now }, 0);
    Ok(id)
}

#[inline(always)]
fn ring(svc: &Service, key: &FlowKey) -> Result<u32, Reason> {
    let size = svc.ring_size;
    if size == 0 {
        return Err(Reason::DropNoReal);
    }
    let slot = flow_hash(key, svc.hash_by) % size;
    let id = RINGS.get(svc.ring_base.wrapping_add(slot)).copied().unwrap_or(NO_REAL);
    if id != NO_REAL {
        return Ok(id);
    }
    if svc.sorry_real != NO_REAL {
        return Ok(svc.sorry_real);
    }
    Err(Reason::DropNoReal)
}

#[inline(always)]
fn masked(a: &[u32; 4], m: &[u32; 4]) -> [u32; 4] {
    [a[0] & m[0], a[1] & m[1], a[2] & m[2], a[3] & m[3]]
}
