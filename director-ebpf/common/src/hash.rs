//! The flow hash that picks a ring slot. The program and userspace share it,
//! so tests can predict which real a packet reaches.

use crate::lb::{FlowKey, hash_by};

const SEED: u32 = 0x5bd1_e995;

/// Murmur3's 32-bit block step.
#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
    (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// Murmur3's finaliser: every input bit affects every output bit.
#[inline(always)]
fn finish(mut h: u32, len: u32) -> u32 {
    h ^= len;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn addr(h: u32, a: &[u32; 4]) -> u32 {
    mix(mix(mix(mix(h, a[0]), a[1]), a[2]), a[3])
}

/// The hash of `key` restricted to the fields `by` names (see `hash_by`).
#[inline(always)]
pub fn flow_hash(key: &FlowKey, by: u8) -> u32 {
    match by {
        hash_by::SOURCE => finish(addr(SEED, &key.src), 16),
        hash_by::DEST => finish(addr(SEED, &key.dst), 16),
        _ => {
            let h = addr(addr(SEED, &key.src), &key.dst);
            let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
            finish(mix(mix(h, ports), u32::from(key.proto)), 40)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: u32, sport: u16) -> FlowKey {
        FlowKey { src: [src, 0, 0, 0], dst: [0x6464_7ac0, 0, 0, 0], sport, dport: 80, proto: 6, ..Default::default() }
    }

    #[test]
    fn source_hash_ignores_ports_and_flow_hash_does_not() {
        let (a, b) = (key(1, 1000), key(1, 2000));
        assert_eq!(flow_hash(&a, hash_by::SOURCE), flow_hash(&b, hash_by::SOURCE));
        assert_ne!(flow_hash(&a, hash_by::FLOW), flow_hash(&b, hash_by::FLOW));
    }

    #[test]
    fn flow_hash_spreads_evenly_over_a_ring() {
        const SLOTS: u32 = 101;
        let mut counts = [0u32; SLOTS as usize];
        for port in 0..50_500u32 {
            counts[(flow_hash(&key(0x0a00_0001, port as u16), hash_by::FLOW) % SLOTS) as usize] += 1;
        }
        // 500 expected per slot; a decent hash stays well within ±25%.
        assert!(counts.iter().all(|&c| (375..=625).contains(&c)), "{counts:?}");
    }
}
