//! The RINGS array as a pool of power-of-two blocks (a buddy allocator):
//! every service's ring lives in one block, so rings of different sizes
//! share one preallocated array, and freed blocks merge back.

use std::collections::BTreeSet;

/// Free blocks by order (a block of order k holds 2^k slots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingPool {
    slots: u32,
    free: Vec<BTreeSet<u32>>,
}

impl RingPool {
    /// A pool of `slots` slots, all free. Slots beyond the largest power
    /// of two that fits are carved into smaller blocks, so none is wasted.
    pub fn new(slots: u32) -> Self {
        let mut pool = RingPool { slots, free: vec![BTreeSet::new(); 33] };
        let mut base = 0u32;
        for k in (0..32).rev() {
            let size = 1u64 << k;
            while u64::from(slots - base) >= size {
                pool.free[k].insert(base);
                base += size as u32;
            }
        }
        pool
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// The block a ring of `size` slots occupies: its power of two.
    pub fn block_of(size: u32) -> u32 {
        size.max(1).next_power_of_two()
    }

    /// Slots in use, counted by block.
    pub fn used(&self) -> u64 {
        let free: u64 = self.free.iter().enumerate().map(|(k, set)| set.len() as u64 * (1u64 << k)).sum();
        u64::from(self.slots) - free
    }

    /// The base of a free block for a ring of `size` slots; None when no
    /// block that large is free.
    pub fn alloc(&mut self, size: u32) -> Option<u32> {
        let order = Self::block_of(size).trailing_zeros() as usize;
        let from = (order..self.free.len()).find(|&k| !self.free[k].is_empty())?;
        let base = self.free[from].pop_first()?;
        // Split down: the upper halves stay free.
        for k in (order..from).rev() {
            self.free[k].insert(base + (1u32 << k));
        }
        Some(base)
    }

    /// Gives back the block `alloc(size)` returned at `base`; buddies merge.
    pub fn free(&mut self, base: u32, size: u32) {
        let mut order = Self::block_of(size).trailing_zeros() as usize;
        let mut base = base;
        while order + 1 < self.free.len() {
            let buddy = base ^ (1u32 << order);
            if !self.free[order].remove(&buddy) {
                break;
            }
            base = base.min(buddy);
            order += 1;
        }
        self.free[order].insert(base);
    }

    /// Marks the block of a ring found in pinned maps as used; false when
    /// that block is not wholly free (a corrupt or foreign layout).
    pub fn reserve(&mut self, base: u32, size: u32) -> bool {
        let order = Self::block_of(size).trailing_zeros() as usize;
        if base % (1u32 << order) != 0 {
            return false;
        }
        // The free block that contains it, split until it is exactly it.
        let Some((mut k, mut at)) = (order..self.free.len()).find_map(|k| {
            let aligned = base & !((1u64 << k) - 1) as u32;
            self.free[k].contains(&aligned).then_some((k, aligned))
        }) else {
            return false;
        };
        self.free[k].remove(&at);
        while k > order {
            k -= 1;
            let half = 1u32 << k;
            if base >= at + half {
                self.free[k].insert(at);
                at += half;
            } else {
                self.free[k].insert(at + half);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_and_merge_back() {
        let mut p = RingPool::new(1 << 12);
        let a = p.alloc(1021).unwrap();
        let b = p.alloc(3).unwrap();
        let c = p.alloc(2039).unwrap();
        assert_eq!(p.used(), 1024 + 4 + 2048);
        // No overlap: blocks are aligned to their size.
        assert_eq!(a % 1024, 0);
        assert_eq!(c % 2048, 0);
        assert!(b >= a + 1024 || b + 4 <= a);
        assert_eq!(p.alloc(4093), None, "4096 slots are no longer free in one block");
        for (base, size) in [(a, 1021), (b, 3), (c, 2039)] {
            p.free(base, size);
        }
        assert_eq!(p, RingPool::new(1 << 12), "everything merged back");
        assert_eq!(p.alloc(4093), Some(0));
    }

    #[test]
    fn an_odd_pool_is_carved_into_blocks() {
        let mut p = RingPool::new(3 * 1024);
        assert!(p.alloc(2039).is_some());
        assert!(p.alloc(1021).is_some());
        assert_eq!(p.alloc(3), None);
        assert_eq!(p.used(), 3 * 1024);
    }

    #[test]
    fn reserve_rebuilds_what_alloc_handed_out() {
        let mut live = RingPool::new(1 << 16);
        let rings: Vec<(u32, u32)> =
            [1021u32, 65, 8191, 3, 2039, 1021].iter().map(|&s| (live.alloc(s).unwrap(), s)).collect();
        let mut adopted = RingPool::new(1 << 16);
        for &(base, size) in &rings {
            assert!(adopted.reserve(base, size), "{base}+{size}");
        }
        assert_eq!(adopted, live);
        assert!(!adopted.reserve(rings[0].0, 1021), "already in use");
        assert!(!adopted.reserve(5, 1021), "misaligned");
    }
}
