//! How each keepalived `lvs_sched` maps onto the XDP data plane, which
//! schedules with weighted Maglev consistent hashing and pins flows in a
//! connection table. Where that differs from IPVS, `note` says how, and
//! `--config-test` warns.

use director_common::lb::hash_by;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Which packet fields feed the ring hash.
    pub hash_by: u8,
    pub weights: Weights,
    /// How the XDP behaviour differs from IPVS; None when it is the same.
    pub note: Option<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weights {
    /// Slots in proportion to weight.
    Proportional,
    /// Every server with weight > 0 counts the same (rr ignores weights).
    Equal,
    /// Only the highest-weight server gets slots (fo, ovf).
    HighestOnly,
}

/// The plan for a scheduler name; None for a name keepalived would reject.
pub fn plan(sched: &str) -> Option<Plan> {
    use Weights::*;
    let p = |hash_by, weights, note| Some(Plan { hash_by, weights, note });
    match sched {
        // Per-flow consistent hashing gives the same shares over many
        // flows, just not strictly in turn: no warning for that.
        "rr" => p(hash_by::FLOW, Equal, None),
        "wrr" => p(hash_by::FLOW, Proportional, None),
        "lc" | "wlc" | "sed" | "nq" => p(hash_by::FLOW, Proportional, Some("least-connection scheduling needs per-server connection counts that XDP does not keep; weighted consistent hashing is used instead (`director_dataplane ipvs` in this virtual_server gives IPVS's exact behaviour)")),
        "sh" => p(hash_by::SOURCE, Proportional, None),
        "mh" => p(hash_by::SOURCE, Proportional, None),
        "dh" => p(hash_by::DEST, Proportional, None),
        "lblc" | "lblcr" => p(hash_by::DEST, Proportional, Some("locality-based scheduling is approximated by destination hashing (dh): no per-server load check (`director_dataplane ipvs` in this virtual_server gives IPVS's exact behaviour)")),
        "fo" => p(hash_by::FLOW, HighestOnly, None),
        "ovf" => p(hash_by::FLOW, HighestOnly, Some("ovf overflow to the next server needs connection counts; XDP behaves as fo (highest weight only) (`director_dataplane ipvs` in this virtual_server gives IPVS's exact behaviour)")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keepalived_scheduler_has_a_plan() {
        for s in ["rr", "wrr", "lc", "wlc", "sh", "mh", "dh", "sed", "nq", "fo", "ovf", "lblc", "lblcr"] {
            assert!(plan(s).is_some(), "{s}");
        }
        assert!(plan("bogus").is_none());
    }

    #[test]
    fn exact_schedulers_have_no_note_and_approximations_do() {
        for s in ["rr", "wrr", "sh", "mh", "dh", "fo"] {
            assert_eq!(plan(s).unwrap().note, None, "{s}");
        }
        for s in ["lc", "wlc", "sed", "nq", "ovf", "lblc", "lblcr"] {
            assert!(plan(s).unwrap().note.is_some(), "{s}");
        }
    }
}
