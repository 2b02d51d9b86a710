//! Weighted Maglev consistent hashing with minimal disruption.
//!
//! For a flow that has no connection-table entry, the XDP program reads
//! `table[hash(flow) % M]` and sends the flow to the real server whose id it
//! finds there. This module computes that table; it is pure (no I/O, clocks,
//! randomness or hash-map iteration order) for two reasons:
//!
//! - **Agreement.** After a failover the new master has no connection-table
//!   entries for flows the old master was forwarding. It keeps them on the same
//!   server only if it holds the same table, so the same inputs must give the
//!   same table, bit for bit, on both directors and across releases.
//! - **Minimal disruption.** A reload must not move established flows that are
//!   not pinned by a connection entry. So an update rewrites only the slots
//!   that have to change, and [`changed_slots`] hands the control plane exactly
//!   those.
//!
//! # Algorithm
//!
//! The ring has a prime number `M` of slots.
//!
//! 1. **Preferences.** Backend `b` has the Maglev permutation
//!    `perm_b(j) = (offset + j·skip) mod M` with `offset = h1(key) mod M` and
//!    `skip = h2(key) mod (M−1) + 1`; `M` prime makes it visit every slot once.
//!    Its inverse, `rank_b(slot) = (slot − offset)·skip⁻¹ mod M`, is how much
//!    `b` likes a slot (0 = most).
//! 2. **Targets.** Each backend with weight > 0 gets `t_b` slots, `Σ t_b = M`,
//!    apportioned by the Sainte-Laguë (Webster) highest-averages method: seat
//!    `k` of backend `b` has priority `w_b / (k − ½)`, ties to the lower id,
//!    and the `M` highest-priority seats are handed out.
//! 3. **Update** ([`rebuild`]) from the previous table:
//!    - slots whose value is not a backend with a non-zero target become free;
//!    - a backend owning more than its target frees the excess, the slots it
//!      likes least (largest rank) first;
//!    - free slots are filled the Maglev way: backends below target take turns
//!      in id order, each claiming the next still-free slot along its
//!      permutation (one cursor per backend, so the fill is `O(M log M)`), until
//!      every backend has its target.
//!
//!    [`build`] is `rebuild` from an all-[`EMPTY`] table, so a fresh table is a
//!    function of the backend set alone (not of its order).
//!
//! Every backend ends with exactly its target, and no slot changes unless its
//! owner vanished or is over target: no table with these counts can be
//! reached from `prev` by changing fewer slots.
//!
//! # What moves
//!
//! When `prev` is the table this module built for the previous backend set:
//!
//! - **Removing** a backend, or setting its weight to 0: exactly the slots it
//!   owned change, to backends whose targets grew. Nothing else moves.
//! - **Adding** a backend: only slots that move to it change; every other
//!   backend gives up `old − new target` slots, the ones it likes least.
//! - **Raising** the weight of `x`: every other target falls or stays; each
//!   other backend gives up exactly `old − new target` of its least-liked
//!   slots and `x` takes all of them. **Lowering** it is the mirror image: `x`
//!   gives up `old − new target` of its least-liked slots and the backends
//!   whose targets rose claim them along their permutations. In both cases
//!   exactly `|Δt_x|` slots change and every one of them has `x` on one side;
//!   there is no rounding spill-over between other backends.
//! - **No change**: no slot changes.
//!
//! # Why Sainte-Laguë rather than largest remainder
//!
//! Largest remainder (Hamilton) keeps every `|t_b − M·w_b/W| < 1`, but it is
//! not monotone: removing a backend or raising a weight can *lower* another
//! backend's target (the new-state and population paradoxes). With `M = 7` and weights `{0: 3, 1: 2, 2: 9, 3: 1}` it
//! gives targets `1, 1, 4, 1`; removing backend 1 gives `2, 5, 0`, so backend 3
//! loses a slot it owned and that slot moves between two survivors. At
//! `M = 65537` with 2..=200 random weights in 1..=100, this hit 0.7 % of
//! removals and 1.4 % of weight changes. Balinski and Young showed that the
//! methods free of these paradoxes are exactly the divisor methods, none of
//! which can always stay within one slot of the exact share; Sainte-Laguë is
//! the unbiased one. Its price is a looser bound on that deviation:
//! `|t_b − M·w_b/W| ≤ ½ + n·w_b/(2W)` for `n` weighted backends, which is below
//! `(1 + min(n, R))/2` slots where `R` is the ratio of the largest to the
//! smallest weight: at most 50.5 slots (0.08 % of 65537) for weights in
//! 1..=100, and about one slot when the weights are comparable.
//!
//! # History and agreement
//!
//! A table produced by a chain of `rebuild`s is generally *not* the table
//! `build` would give for the final backend set: minimal disruption means
//! remembering where flows went. Directors that must agree therefore have to
//! derive their tables from the same starting table and the same sequence of
//! backend sets (or copy the table from each other); a director that restarts
//! with `build` agrees with a peer that rebuilt along the way only on most
//! slots. Backend ids must also be stable: a slot holds an id, so an id reused
//! for another server keeps the old server's slots.
//!
//! The hash seeds, the tie-break rules and the fill order are part of that
//! agreement: changing any of them changes tables, which is what the golden
//! test guards.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Katran's ring size: the benchmarks use it to compare like with like.
pub const DEFAULT_RING_SIZE: u32 = 65537;

/// The largest prime below each power of two from 2^10 to 2^22: ring sizes
/// that fill their power-of-two block of the ring pool almost exactly.
pub const RING_LADDER: [u32; 13] =
    [1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573, 2097143, 4194301];

/// Slots per real server the ring is sized for: Maglev's shares are within
/// about 1% of the weights once the ring has ~100 slots per server.
pub const SLOTS_PER_REAL: u64 = 100;

/// The ring size for a service with `reals` configured real servers: the
/// smallest ladder size with `SLOTS_PER_REAL` slots each. It follows the
/// configuration, never health, so a flapping server never resizes a ring.
pub fn ring_size_for(reals: usize) -> u32 {
    let want = (reals as u64).saturating_mul(SLOTS_PER_REAL);
    RING_LADDER.iter().copied().find(|&m| u64::from(m) >= want).unwrap_or(RING_LADDER[RING_LADDER.len() - 1])
}

/// Value of a slot that has no usable server (no backend has weight > 0):
/// the program's NO_REAL.
pub const EMPTY: u32 = director_common::lb::NO_REAL;

/// Smallest ring: with `M = 2` every permutation would have skip 1.
pub const MIN_RING_SIZE: u32 = 3;
/// Largest ring accepted (64 MiB of `u32` slots), so that a bad size is an
/// error instead of an allocation failure.
pub const MAX_RING_SIZE: u32 = 1 << 24;

/// A real server as the ring sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    /// Stable identity of the server (the caller hashes e.g. `"10.0.0.1:80"`);
    /// it alone decides the server's slot preferences.
    pub key: u64,
    /// Value written into the slots the server owns; unique, never [`EMPTY`].
    pub id: u32,
    /// Relative share of the slots; 0 = quiescent (owns no slots).
    pub weight: u32,
}

/// Why no table can be built: the configuration is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("ring size {0} is outside {MIN_RING_SIZE}..={MAX_RING_SIZE}")]
    SizeOutOfRange(u32),
    #[error("ring size {0} is not prime")]
    SizeNotPrime(u32),
    #[error("backend id {0} is used more than once")]
    DuplicateId(u32),
    #[error("backend key {0:#018x} is used more than once")]
    DuplicateKey(u64),
    #[error("backend id {EMPTY} is reserved for empty slots")]
    ReservedId,
    #[error("previous table has {len} slots but the ring size is {size}")]
    PrevSizeMismatch { len: usize, size: u32 },
}

/// A fresh table of `size` slots for `backends`: a function of the set of
/// backends only, whatever their order.
pub fn build(backends: &[Backend], size: u32) -> Result<Vec<u32>, MaglevError> {
    check_size(size)?;
    let mut members = members(backends, size)?;
    Ok(assign(vec![EMPTY; size as usize], &mut members, size))
}

/// The table for `backends` that differs from `prev` in as few slots as
/// possible (see the module documentation for what moves).
///
/// `prev` may hold anything: ids that are no longer backends and [`EMPTY`]
/// slots are simply reassigned. It must have `size` slots, though: slot
/// numbers of rings of different sizes are unrelated, so a new size needs
/// [`build`].
pub fn rebuild(prev: &[u32], backends: &[Backend], size: u32) -> Result<Vec<u32>, MaglevError> {
    check_size(size)?;
    if prev.len() != size as usize {
        return Err(MaglevError::PrevSizeMismatch { len: prev.len(), size });
    }
    let mut members = members(backends, size)?;
    Ok(assign(prev.to_vec(), &mut members, size))
}

/// `(slot, new value)` for every slot where `new` differs from `old`, in slot
/// order: the only map entries the control plane has to rewrite. Slots past
/// the end of `old` count as different.
pub fn changed_slots<'a>(old: &'a [u32], new: &'a [u32]) -> impl Iterator<Item = (u32, u32)> + 'a {
    // Ring tables have at most MAX_RING_SIZE slots, so the index fits.
    new.iter()
        .enumerate()
        .filter(move |&(slot, value)| old.get(slot) != Some(value))
        .map(|(slot, &value)| (slot as u32, value))
}

/// Whether `n` is prime (trial division: at most 32,768 steps, run once per build).
pub fn is_prime(n: u32) -> bool {
    if n < 4 {
        return n >= 2;
    }
    let n = u64::from(n);
    n % 2 != 0 && (3..).step_by(2).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

fn check_size(size: u32) -> Result<(), MaglevError> {
    if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&size) {
        return Err(MaglevError::SizeOutOfRange(size));
    }
    if !is_prime(size) {
        return Err(MaglevError::SizeNotPrime(size));
    }
    Ok(())
}

/// A backend that owns slots (target > 0), with its permutation and fill cursor.
#[derive(Debug)]
struct Member {
    id: u32,
    target: u32,
    /// Slots it holds in the table being built.
    owned: u32,
    offset: u32,
    skip: u32,
    /// `skip⁻¹ mod M`, to turn a slot back into its rank.
    inv_skip: u32,
    /// Next slot along the permutation to try when claiming.
    cursor: u32,
}

impl Member {
    fn new(backend: &Backend, target: u32, size: u32) -> Self {
        let m = u64::from(size);
        let offset = (mix(backend.key ^ OFFSET_SEED) % m) as u32;
        let skip = (mix(backend.key ^ SKIP_SEED) % (m - 1) + 1) as u32;
        // Fermat: skip^(M−2) is the inverse of skip modulo the prime M.
        let inv_skip = pow_mod(u64::from(skip), m - 2, m) as u32;
        Member { id: backend.id, target, owned: 0, offset, skip, inv_skip, cursor: offset }
    }

    /// Position of `slot` in this member's permutation: 0 = most preferred.
    fn rank(&self, slot: u32, size: u32) -> u32 {
        let m = u64::from(size);
        let from_offset = (u64::from(slot) + m - u64::from(self.offset)) % m;
        (from_offset * u64::from(self.inv_skip) % m) as u32
    }

    /// Moves the cursor one step along the permutation. Cursor and skip are
    /// below M ≤ 2²⁴, so the sum cannot overflow; a subtraction instead of a
    /// division keeps the fill loop cheap.
    fn advance(&mut self, size: u32) {
        self.cursor += self.skip;
        if self.cursor >= size {
            self.cursor -= size;
        }
    }

    /// Takes the next free slot along the permutation. The caller guarantees
    /// one exists; the cursor then finds it within one turn of the ring.
    fn claim(&mut self, table: &mut [u32], size: u32) {
        loop {
            let slot = self.cursor as usize;
            self.advance(size);
            if table[slot] == EMPTY {
                table[slot] = self.id;
                self.owned += 1;
                return;
            }
        }
    }
}

// Seeds of the two key hashes: digits of π, so that h1 and h2 are unrelated.
const OFFSET_SEED: u64 = 0x243f_6a88_85a3_08d3;
const SKIP_SEED: u64 = 0x1319_8a2e_0370_7344;

/// The splitmix64 finaliser: a bijection on u64 with full avalanche.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `base^exp mod m` for `m < 2³²`, so every product fits in u64.
fn pow_mod(mut base: u64, mut exp: u64, m: u64) -> u64 {
    let mut result = 1 % m;
    base %= m;
    while exp > 0 {
        if exp & 1 == 1 {
            result = result * base % m;
        }
        base = base * base % m;
        exp >>= 1;
    }
    result
}

/// Validates `backends` and returns the ones that get slots, sorted by id.
fn members(backends: &[Backend], size: u32) -> Result<Vec<Member>, MaglevError> {
    let mut sorted: Vec<&Backend> = backends.iter().collect();
    sorted.sort_unstable_by_key(|b| b.id);
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0].id == pair[1].id) {
        return Err(MaglevError::DuplicateId(pair[0].id));
    }
    // EMPTY is the largest u32, so it can only be last.
    if sorted.last().is_some_and(|b| b.id == EMPTY) {
        return Err(MaglevError::ReservedId);
    }
    let mut keys: Vec<u64> = backends.iter().map(|b| b.key).collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(MaglevError::DuplicateKey(pair[0]));
    }

    let weighted: Vec<&Backend> = sorted.into_iter().filter(|b| b.weight > 0).collect();
    let targets = sainte_lague(&weighted, size);
    Ok(weighted
        .into_iter()
        .zip(targets)
        .filter(|&(_, target)| target > 0)
        .map(|(backend, target)| Member::new(backend, target, size))
        .collect())
}

/// Seat `nth` (1-based) of the backend at index `idx`, ordered by when the
/// Sainte-Laguë method awards it: `Greater` = earlier.
#[derive(Clone, Copy, Debug)]
struct Seat {
    weight: u32,
    nth: u32,
    id: u32,
    idx: usize,
}

impl Ord for Seat {
    fn cmp(&self, other: &Self) -> Ordering {
        // w_a/(n_a − ½) vs w_b/(n_b − ½), cross-multiplied to stay exact.
        let this = u128::from(self.weight) * (2 * u128::from(other.nth) - 1);
        let that = u128::from(other.weight) * (2 * u128::from(self.nth) - 1);
        this.cmp(&that).then(other.id.cmp(&self.id))
    }
}

impl PartialOrd for Seat {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Seat {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Seat {}

/// Slot targets of `weighted` (weights > 0, any order) summing to `size`: the
/// `size` earliest seats in [`Seat`] order. Seats form one fixed total order
/// in which a backend's seats depend only on its own weight and id, so adding,
/// removing or re-weighting one backend can only move seats to or from it.
fn sainte_lague(weighted: &[&Backend], size: u32) -> Vec<u32> {
    let total: u128 = weighted.iter().map(|b| u128::from(b.weight)).sum();
    if total == 0 {
        return vec![0; weighted.len()];
    }
    // Start from every seat whose priority reaches W/M, i.e. round(M·w/W): a
    // prefix of the seat order within n/2 seats of the answer, which is then
    // grown or trimmed one seat at a time from its end.
    let m = u128::from(size);
    let mut seats: Vec<u32> = weighted
        .iter()
        .map(|b| ((2 * m * u128::from(b.weight) + total) / (2 * total)) as u32) // ≤ size since w ≤ W
        .collect();
    let awarded: u64 = seats.iter().map(|&s| u64::from(s)).sum();
    let wanted = u64::from(size);
    let seat = |idx: usize, nth: u32| Seat { weight: weighted[idx].weight, nth, id: weighted[idx].id, idx };
    if awarded < wanted {
        let mut next: BinaryHeap<Seat> = (0..weighted.len()).map(|i| seat(i, seats[i] + 1)).collect();
        for _ in awarded..wanted {
            let Some(s) = next.pop() else { break };
            seats[s.idx] += 1;
            next.push(seat(s.idx, s.nth + 1));
        }
    } else {
        let mut last: BinaryHeap<Reverse<Seat>> =
            (0..weighted.len()).filter(|&i| seats[i] > 0).map(|i| Reverse(seat(i, seats[i]))).collect();
        for _ in wanted..awarded {
            let Some(Reverse(s)) = last.pop() else { break };
            seats[s.idx] -= 1;
            if s.nth > 1 {
                last.push(Reverse(seat(s.idx, s.nth - 1)));
            }
        }
    }
    seats
}

/// Turns `table` into the table for `members` (sorted by id), changing as few
/// slots as possible.
fn assign(mut table: Vec<u32>, members: &mut [Member], size: u32) -> Vec<u32> {
    let find = |members: &[Member], id: u32| members.binary_search_by_key(&id, |m| m.id).ok();

    // Slots of servers that are gone, quiescent or rounded down to nothing.
    // (A fresh build is all EMPTY: skip the search.)
    for value in table.iter_mut().filter(|v| **v != EMPTY) {
        match find(members, *value) {
            Some(i) => members[i].owned += 1,
            None => *value = EMPTY,
        }
    }

    // Over-target members free the slots they like least. Their slots are
    // gathered with their ranks into one buffer, one segment per member.
    let mut starts = Vec::with_capacity(members.len() + 1);
    let mut end = 0;
    starts.push(end);
    for m in members.iter() {
        if m.owned > m.target {
            end += m.owned as usize;
        }
        starts.push(end);
    }
    if end > 0 {
        let mut ranked = vec![(0u32, 0u32); end];
        let mut ends = starts.clone();
        for (slot, &value) in table.iter().enumerate() {
            if let Some(i) = find(members, value)
                && members[i].owned > members[i].target
            {
                let slot = slot as u32;
                ranked[ends[i]] = (members[i].rank(slot, size), slot);
                ends[i] += 1;
            }
        }
        for (i, m) in members.iter_mut().enumerate() {
            if m.owned > m.target {
                let segment = &mut ranked[starts[i]..starts[i + 1]];
                // Ranks are distinct within a member, so the split is unique.
                segment.select_nth_unstable(m.target as usize);
                for &(_, slot) in &segment[m.target as usize..] {
                    table[slot as usize] = EMPTY;
                }
                m.owned = m.target;
            }
        }
    }

    // Free slots now number Σ(target − owned) because Σ target = M (or there
    // are no members and every slot stays EMPTY), so each claim succeeds.
    let mut hungry: Vec<usize> = (0..members.len()).filter(|&i| members[i].owned < members[i].target).collect();
    while !hungry.is_empty() {
        hungry.retain(|&i| {
            let m = &mut members[i];
            m.claim(&mut table, size);
            m.owned < m.target
        });
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use std::collections::BTreeMap;

    fn counts(table: &[u32]) -> BTreeMap<u32, u32> {
        let mut counts = BTreeMap::new();
        for &v in table {
            *counts.entry(v).or_insert(0) += 1;
        }
        counts
    }

    fn backend(id: u32, weight: u32) -> Backend {
        Backend { key: mix(u64::from(id) ^ 0xabcd), id, weight }
    }

    /// 1..=max_n backends with distinct keys and ids and weights in min_w..=100.
    fn backends(max_n: usize, min_w: u32) -> impl Strategy<Value = Vec<Backend>> {
        (1..=max_n)
            .prop_flat_map(move |n| {
                (
                    proptest::collection::btree_set(any::<u64>(), n),
                    proptest::collection::btree_set(0..EMPTY, n),
                    proptest::collection::vec(min_w..=100u32, n),
                )
            })
            .prop_flat_map(|(keys, ids, weights)| {
                // btree_sets iterate sorted: shuffle so key order and id order are unrelated.
                let ids: Vec<u32> = ids.into_iter().collect();
                (Just(keys), Just(weights), Just(ids).prop_shuffle())
            })
            .prop_map(|(keys, weights, ids)| {
                keys.into_iter().zip(ids).zip(weights).map(|((key, id), weight)| Backend { key, id, weight }).collect()
            })
    }

    fn ring_size() -> impl Strategy<Value = u32> {
        prop_oneof![Just(3u32), Just(7), Just(257), Just(8191), Just(DEFAULT_RING_SIZE)]
    }

    /// Every weighted backend's share is within `tolerance` of its weight
    /// share, and within the Sainte-Laguë bound ½ + n·w/(2W) slots of M·w/W.
    fn check_shares(backends: &[Backend], table: &[u32], tolerance: f64) -> Result<(), TestCaseError> {
        let m = table.len() as f64;
        let counts = counts(table);
        let weighted: Vec<&Backend> = backends.iter().filter(|b| b.weight > 0).collect();
        let total: f64 = weighted.iter().map(|b| f64::from(b.weight)).sum();
        let n = weighted.len() as f64;
        prop_assert!(!counts.contains_key(&EMPTY));
        for b in backends {
            let count = f64::from(counts.get(&b.id).copied().unwrap_or(0));
            let exact = m * f64::from(b.weight) / total;
            prop_assert!((count / m - exact / m).abs() <= tolerance, "id {} owns {count}, share {exact}", b.id);
            let bound = 0.5 + n * f64::from(b.weight) / (2.0 * total) + 1e-9;
            prop_assert!((count - exact).abs() <= bound, "id {} owns {count}, share {exact}", b.id);
        }
        Ok(())
    }

    /// Slots that differ between the tables, as (old, new) values.
    fn moves(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
        changed_slots(old, new).map(|(slot, value)| (old[slot as usize], value)).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn shares_match_weights_at_default_size(bs in backends(200, 1)) {
            let table = build(&bs, DEFAULT_RING_SIZE)?;
            check_shares(&bs, &table, 0.01)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn shares_match_weights_on_a_small_ring(bs in backends(200, 1)) {
            // 8191 = 2¹³ − 1 is prime and big enough for the bound
            // (1 + min(n, R))/2 = 50.5 slots to stay within 1 % (0.62 %).
            let table = build(&bs, 8191)?;
            check_shares(&bs, &table, 0.01)?;
        }

        #[test]
        fn tiny_rings_stay_within_the_bound(
            bs in backends(40, 0), size in prop_oneof![Just(3u32), Just(5), Just(13), Just(31)],
        ) {
            let table = build(&bs, size)?;
            if bs.iter().any(|b| b.weight > 0) {
                check_shares(&bs, &table, 1.0)?;
            } else {
                prop_assert!(table.iter().all(|&v| v == EMPTY));
            }
        }

        #[test]
        fn removing_a_backend_moves_only_its_slots(
            bs in backends(200, 1), pick in any::<Index>(), size in ring_size(),
        ) {
            let gone = bs[pick.index(bs.len())].id;
            let old = build(&bs, size)?;
            let rest: Vec<Backend> = bs.iter().filter(|b| b.id != gone).cloned().collect();
            let new = rebuild(&old, &rest, size)?;
            let moved = moves(&old, &new);
            prop_assert_eq!(moved.len(), old.iter().filter(|&&v| v == gone).count());
            prop_assert!(moved.iter().all(|&(from, _)| from == gone));
            if !rest.is_empty() {
                check_shares(&rest, &new, 1.0)?;
            }
        }

        #[test]
        fn quiescing_a_backend_moves_only_its_slots(
            bs in backends(200, 1), pick in any::<Index>(), size in ring_size(),
        ) {
            let quiet = pick.index(bs.len());
            let old = build(&bs, size)?;
            let mut changed = bs.clone();
            changed[quiet].weight = 0;
            let new = rebuild(&old, &changed, size)?;
            let moved = moves(&old, &new);
            prop_assert!(!new.contains(&bs[quiet].id));
            prop_assert_eq!(moved.len(), old.iter().filter(|&&v| v == bs[quiet].id).count());
            prop_assert!(moved.iter().all(|&(from, _)| from == bs[quiet].id));
        }

        #[test]
        fn adding_a_backend_moves_slots_only_to_it(bs in backends(200, 1), extra in 1..=100u32, size in ring_size()) {
            let old = build(&bs, size)?;
            let id = (0..).find(|id| bs.iter().all(|b| b.id != *id)).unwrap_or(0);
            let key = bs.iter().map(|b| b.key).fold(0, |a, k| a ^ k.rotate_left(7)) ^ 1;
            prop_assume!(bs.iter().all(|b| b.key != key));
            let mut more = bs.clone();
            more.push(Backend { key, id, weight: extra });
            let new = rebuild(&old, &more, size)?;
            let moved = moves(&old, &new);
            prop_assert_eq!(moved.len(), new.iter().filter(|&&v| v == id).count());
            prop_assert!(moved.iter().all(|&(_, to)| to == id));
            check_shares(&more, &new, 1.0)?;
        }

        #[test]
        fn a_weight_change_moves_slots_only_to_or_from_that_backend(
            bs in backends(200, 1), pick in any::<Index>(), weight in 0..=100u32, size in ring_size(),
        ) {
            let x = pick.index(bs.len());
            let id = bs[x].id;
            let old = build(&bs, size)?;
            let mut changed = bs.clone();
            changed[x].weight = weight;
            let new = rebuild(&old, &changed, size)?;
            let moved = moves(&old, &new);
            let before = old.iter().filter(|&&v| v == id).count();
            let after = new.iter().filter(|&&v| v == id).count();
            prop_assert_eq!(moved.len(), before.abs_diff(after));
            if weight >= bs[x].weight {
                prop_assert!(moved.iter().all(|&(_, to)| to == id));
            } else {
                prop_assert!(moved.iter().all(|&(from, _)| from == id));
            }
            if changed.iter().any(|b| b.weight > 0) {
                check_shares(&changed, &new, 1.0)?;
            }
        }

        #[test]
        fn rebuilding_an_unchanged_set_changes_nothing(bs in backends(200, 0), size in ring_size()) {
            let table = build(&bs, size)?;
            prop_assert_eq!(&rebuild(&table, &bs, size)?, &table);
        }

        #[test]
        fn input_order_does_not_matter(
            (bs, shuffled) in backends(200, 0).prop_flat_map(|bs| (Just(bs.clone()), Just(bs).prop_shuffle())),
            size in ring_size(),
        ) {
            prop_assert_eq!(build(&bs, size)?, build(&shuffled, size)?);
        }

        #[test]
        fn rebuild_repairs_any_previous_table(
            bs in backends(50, 0),
            noise in proptest::collection::vec(any::<u32>(), 257),
            picks in proptest::collection::vec(any::<Index>(), 257),
        ) {
            // Half real ids, a quarter EMPTY, a quarter anything: counts match no target.
            let prev: Vec<u32> = noise.iter().zip(&picks).map(|(&n, p)| match n % 4 {
                0 => n,
                1 => EMPTY,
                _ => bs[p.index(bs.len())].id,
            }).collect();
            let new = rebuild(&prev, &bs, 257)?;
            prop_assert_eq!(counts(&new), counts(&build(&bs, 257)?));
            // Every value held more often than wanted must lose the surplus, and
            // nothing else changes: the fewest changes that reach these counts.
            let wanted = counts(&new);
            let had = counts(&prev);
            let surplus: u32 = had.iter().map(|(v, &n)| n.saturating_sub(wanted.get(v).copied().unwrap_or(0))).sum();
            prop_assert_eq!(changed_slots(&prev, &new).count(), surplus as usize);
            for (slot, _) in changed_slots(&prev, &new) {
                let owner = prev[slot as usize];
                prop_assert!(had[&owner] > wanted.get(&owner).copied().unwrap_or(0));
            }
        }

        #[test]
        fn changed_slots_yields_exactly_the_differences(
            old in proptest::collection::vec(0..3u32, 0..64), new in proptest::collection::vec(0..3u32, 0..64),
        ) {
            // Writing the changes over `old` gives `new`, and no write is redundant.
            let changes: Vec<(u32, u32)> = changed_slots(&old, &new).collect();
            let mut applied = old.clone();
            applied.resize(new.len(), EMPTY);
            for &(slot, value) in &changes {
                prop_assert_ne!(old.get(slot as usize), Some(&value));
                applied[slot as usize] = value;
            }
            prop_assert_eq!(applied, new);
            prop_assert!(changes.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    #[test]
    fn changed_slots_of_equal_length_tables() {
        let old = [1, 2, 3, 4, EMPTY];
        let new = [1, 5, 3, 6, 7];
        assert_eq!(changed_slots(&old, &new).collect::<Vec<_>>(), vec![(1, 5), (3, 6), (4, 7)]);
        assert_eq!(changed_slots(&new, &new).count(), 0);
    }

    #[test]
    fn build_is_deterministic() {
        let bs: Vec<Backend> = (0..100).map(|i| backend(i, 1 + i % 7)).collect();
        assert_eq!(build(&bs, DEFAULT_RING_SIZE), build(&bs, DEFAULT_RING_SIZE));
    }

    /// Exact tables for fixed configurations, computed by an independent
    /// reference implementation of the algorithm described above. If this
    /// fails, this code builds different tables from the previous release, and
    /// directors running the two would disagree after a failover.
    #[test]
    fn golden_tables() {
        let first = [backend(10, 1), backend(20, 2), backend(30, 3), backend(40, 0)];
        let table = build(&first, 13).unwrap_or_default();
        assert_eq!(table, [20, 30, 30, 10, 20, 20, 30, 30, 30, 20, 10, 30, 30]);
        let second = [backend(10, 4), backend(20, 2), backend(30, 0), backend(50, 1)];
        let table = rebuild(&table, &second, 13).unwrap_or_default();
        assert_eq!(table, [20, 50, 10, 10, 20, 20, 10, 10, 10, 20, 10, 10, 50]);

        let first: Vec<Backend> = (0..8).map(|i| backend(i, 1 + i % 5)).collect();
        let table = build(&first, 31).unwrap_or_default();
        assert_eq!(
            table,
            [0, 7, 3, 2, 7, 6, 4, 6, 2, 3, 5, 1, 3, 4, 0, 2, 4, 3, 4, 6, 2, 4, 2, 7, 4, 1, 3, 3, 1, 7, 4]
        );
        let second: Vec<Backend> = (1..9).map(|i| backend(i, 1 + (i * 7) % 5)).collect();
        let table = rebuild(&table, &second, 31).unwrap_or_default();
        assert_eq!(
            table,
            [6, 7, 7, 2, 7, 6, 4, 6, 2, 8, 5, 1, 3, 2, 1, 2, 4, 7, 4, 6, 2, 8, 2, 7, 4, 1, 3, 3, 1, 7, 4]
        );
    }

    #[test]
    fn no_weight_means_every_slot_is_empty() {
        assert_eq!(build(&[], 7), Ok(vec![EMPTY; 7]));
        let quiet = [backend(1, 0), backend(2, 0)];
        assert_eq!(build(&quiet, 7), Ok(vec![EMPTY; 7]));
        let full = build(&[backend(1, 5), backend(2, 1)], 7).unwrap_or_default();
        assert_eq!(rebuild(&full, &quiet, 7), Ok(vec![EMPTY; 7]));
    }

    #[test]
    fn bad_input_is_an_error() {
        let ok = [backend(1, 1)];
        for size in [0, 1, 2, MAX_RING_SIZE + 43] {
            assert_eq!(build(&ok, size), Err(MaglevError::SizeOutOfRange(size)));
        }
        for size in [4, 9, 65535, 65536, MAX_RING_SIZE] {
            assert_eq!(build(&ok, size), Err(MaglevError::SizeNotPrime(size)));
        }
        assert!(is_prime(MAX_RING_SIZE - 3)); // 16777213: the largest ring allowed
        assert!(build(&ok, MAX_RING_SIZE - 3).is_ok());
        let same_id = [backend(1, 1), Backend { key: 99, id: 1, weight: 0 }];
        assert_eq!(build(&same_id, 7), Err(MaglevError::DuplicateId(1)));
        let same_key = [Backend { key: 99, id: 1, weight: 1 }, Backend { key: 99, id: 2, weight: 0 }];
        assert_eq!(build(&same_key, 7), Err(MaglevError::DuplicateKey(99)));
        assert_eq!(build(&[backend(1, 1), Backend { key: 5, id: EMPTY, weight: 1 }], 7), Err(MaglevError::ReservedId));
        assert_eq!(rebuild(&[EMPTY; 5], &ok, 7), Err(MaglevError::PrevSizeMismatch { len: 5, size: 7 }));
        assert_eq!(rebuild(&[EMPTY; 7], &ok, 8), Err(MaglevError::SizeNotPrime(8)));
    }

    #[test]
    fn is_prime_matches_a_sieve() {
        let limit = 100_000;
        let mut sieve = vec![true; limit];
        sieve[0] = false;
        sieve[1] = false;
        for i in 2..limit {
            if sieve[i] {
                for j in (i * i..limit).step_by(i) {
                    sieve[j] = false;
                }
            }
        }
        for (n, &prime) in sieve.iter().enumerate() {
            assert_eq!(is_prime(n as u32), prime, "{n}");
        }
        // Largest u32 prime, a prime square near the top, Carmichael numbers, u32::MAX.
        assert!(is_prime(4_294_967_291));
        assert!(!is_prime(65521 * 65521));
        assert!(!is_prime(561) && !is_prime(41041) && !is_prime(u32::MAX));
    }

    #[test]
    fn rank_inverts_the_permutation() {
        for size in [3u32, 7, 257, DEFAULT_RING_SIZE] {
            for id in 0..20 {
                let mut m = Member::new(&backend(id, 1), 1, size);
                let mut seen = vec![false; size as usize];
                for j in 0..size {
                    let slot = m.cursor;
                    assert_eq!(m.rank(slot, size), j);
                    assert!(!std::mem::replace(&mut seen[slot as usize], true));
                    m.advance(size);
                }
            }
        }
    }

    #[test]
    fn sainte_lague_avoids_the_population_paradox() {
        // Largest remainder gives 1, 1, 4, 1 and then 2, 5, 0: backend 3 would lose its slot.
        let bs = [backend(0, 3), backend(1, 2), backend(2, 9), backend(3, 1)];
        let refs: Vec<&Backend> = bs.iter().collect();
        assert_eq!(sainte_lague(&refs, 7), vec![2, 1, 4, 0]);
        let without: Vec<&Backend> = bs.iter().filter(|b| b.id != 1).collect();
        assert_eq!(sainte_lague(&without, 7), vec![2, 5, 0]);
    }

    #[test]
    fn equal_weights_get_equal_shares() {
        let bs: Vec<Backend> = (0..1000).map(|i| backend(i, 3)).collect();
        let counts = counts(&build(&bs, DEFAULT_RING_SIZE).unwrap_or_default());
        assert_eq!(counts.len(), 1000);
        // 65537 = 1000·65 + 537: the 537 lowest ids get the extra slot.
        assert!(counts.iter().all(|(&id, &c)| c == if id < 537 { 66 } else { 65 }));
    }

    #[test]
    fn more_backends_than_slots() {
        let bs: Vec<Backend> = (0..10).map(|i| backend(i, 1)).collect();
        let table = build(&bs, 7).unwrap_or_default();
        assert_eq!(counts(&table), (0..7).map(|id| (id, 1)).collect());
    }

    /// The timing figure: 1,000 backends on the default ring (run with
    /// `--release -- --nocapture` to see it), and a reload that removes one.
    #[test]
    fn build_time_for_1000_backends() {
        let bs: Vec<Backend> = (0..1000).map(|i| backend(i, 1 + i % 100)).collect();
        let start = std::time::Instant::now();
        let table = build(&bs, DEFAULT_RING_SIZE);
        let built = start.elapsed();
        let table = table.unwrap_or_default();
        assert_eq!(table.len(), DEFAULT_RING_SIZE as usize);

        let rest: Vec<Backend> = bs.iter().filter(|b| b.id != 99).cloned().collect(); // weight 100
        let start = std::time::Instant::now();
        let rebuilt = rebuild(&table, &rest, DEFAULT_RING_SIZE);
        let rebuilt_in = start.elapsed();
        let changed = changed_slots(&table, &rebuilt.unwrap_or_default()).count();
        assert_eq!(changed, table.iter().filter(|&&v| v == 99).count());
        println!(
            "maglev: build of 1000 backends x {DEFAULT_RING_SIZE} slots {:.3} ms; \
             rebuild without backend 99 {:.3} ms, {changed} slots changed",
            built.as_secs_f64() * 1e3,
            rebuilt_in.as_secs_f64() * 1e3,
        );
        // Well under 100 ms in release builds; 1 s leaves room for a loaded machine.
        assert!(built.as_secs() < 1 && rebuilt_in.as_secs() < 1);
    }

    #[test]
    fn ring_sizes_are_primes_filling_their_block() {
        for (k, m) in (10..).zip(RING_LADDER) {
            assert!(is_prime(m), "{m}");
            assert!(m < 1 << k && m > (1 << k) - 32, "{m} for 2^{k}");
        }
        assert_eq!(ring_size_for(0), 1021);
        assert_eq!(ring_size_for(10), 1021);
        assert_eq!(ring_size_for(11), 2039);
        assert_eq!(ring_size_for(655), 65521);
        assert_eq!(ring_size_for(16_384), 2_097_143);
        assert_eq!(ring_size_for(usize::MAX), 4_194_301);
    }
}
