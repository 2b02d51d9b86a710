//! `vrrp_sync_group`: members change state together, as keepalived's do.
//! Pure bookkeeping: it hears every instance's transitions and says which
//! siblings must follow.

use std::collections::{BTreeMap, BTreeSet};

use super::{event::Event, fsm::State};
use crate::config::VrrpSyncGroup;

/// What a sibling is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCmd {
    /// A sibling became master: a backup follows at once.
    Master,
    /// A sibling went from master to backup: a master follows.
    Backup,
    /// A sibling is in FAULT of its own (true), or none is any more (false).
    Fault(bool),
}

/// A sync group's new state (for its notify scripts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    pub group: String,
    pub state: State,
}

#[derive(Debug, Default)]
pub struct SyncGroups {
    group_of: BTreeMap<String, String>,
    groups: BTreeMap<String, Vec<String>>,
    /// The last state each instance reported, and each group's.
    states: BTreeMap<String, State>,
    group_states: BTreeMap<String, State>,
    /// Instances in FAULT because of their own tracking.
    own_faults: BTreeSet<String>,
}

impl SyncGroups {
    pub fn configure(&mut self, groups: &[VrrpSyncGroup]) {
        self.groups = groups.iter().map(|g| (g.name.clone(), g.members.clone())).collect();
        self.group_of = groups
            .iter()
            .flat_map(|g| g.members.iter().map(|m| (m.clone(), g.name.clone())))
            .collect();
        let known = &self.groups;
        self.group_states.retain(|g, _| known.contains_key(g));
    }

    /// An instance stopped.
    pub fn forget(&mut self, instance: &str) {
        self.states.remove(instance);
        self.own_faults.remove(instance);
    }

    /// One master makes all masters, a master demoted to backup demotes the
    /// others, and while any member is in FAULT on its own account, all are.
    pub fn on_event(&mut self, e: &Event) -> (Vec<(String, SyncCmd)>, Option<GroupChange>) {
        self.states.insert(e.instance.clone(), e.to);
        if e.own_fault {
            self.own_faults.insert(e.instance.clone());
        } else {
            self.own_faults.remove(&e.instance);
        }
        let Some(group) = self.group_of.get(&e.instance).cloned() else { return (Vec::new(), None) };
        let members = self.groups.get(&group).cloned().unwrap_or_default();
        let faulted = members.iter().any(|m| self.own_faults.contains(m));
        let mut cmds = Vec::new();
        for m in members {
            let state = self.states.get(&m).copied().unwrap_or(State::Initialize);
            let cmd = if faulted {
                (state != State::Fault).then_some(SyncCmd::Fault(true))
            } else if state == State::Fault {
                Some(SyncCmd::Fault(false))
            } else if m == e.instance || e.from == e.to {
                None
            } else {
                match (e.from, e.to) {
                    (_, State::Master) if state != State::Master => Some(SyncCmd::Master),
                    (State::Master, State::Backup) if state == State::Master => Some(SyncCmd::Backup),
                    _ => None,
                }
            };
            cmds.extend(cmd.map(|c| (m, c)));
        }
        let state = if faulted { State::Fault } else { e.to };
        let change = (self.group_states.insert(group.clone(), state) != Some(state)).then_some(GroupChange { group, state });
        (cmds, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> SyncGroups {
        let mut s = SyncGroups::default();
        s.configure(&[VrrpSyncGroup {
            name: "G".into(),
            members: vec!["A".into(), "B".into(), "C".into()],
            track_interface: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            notify: Default::default(),
            smtp_alert: None,
            sync_group_tracking_weight: false,
        }]);
        for m in ["A", "B", "C"] {
            s.on_event(&ev(m, State::Initialize, State::Backup, false));
        }
        s
    }

    fn ev(i: &str, from: State, to: State, own_fault: bool) -> Event {
        Event { instance: i.into(), from, to, priority: 100, own_fault }
    }

    fn cmds(v: &[(&str, SyncCmd)]) -> Vec<(String, SyncCmd)> {
        v.iter().map(|(m, c)| (m.to_string(), *c)).collect()
    }

    #[test]
    fn one_master_makes_all_masters_and_the_group_master() {
        let mut s = groups();
        let (c, g) = s.on_event(&ev("B", State::Backup, State::Master, false));
        assert_eq!(c, cmds(&[("A", SyncCmd::Master), ("C", SyncCmd::Master)]));
        assert_eq!(g, Some(GroupChange { group: "G".into(), state: State::Master }));
        // The followers' own transitions echo nothing back.
        let (c, g) = s.on_event(&ev("A", State::Backup, State::Master, false));
        assert_eq!(c, cmds(&[("C", SyncCmd::Master)]), "C has not reported yet");
        assert_eq!(g, None);
        s.on_event(&ev("C", State::Backup, State::Master, false));
        let (c, _) = s.on_event(&ev("C", State::Backup, State::Master, false));
        assert!(c.is_empty());
    }

    #[test]
    fn a_demoted_master_demotes_the_others() {
        let mut s = groups();
        for m in ["A", "B", "C"] {
            s.on_event(&ev(m, State::Backup, State::Master, false));
        }
        let (c, g) = s.on_event(&ev("A", State::Master, State::Backup, false));
        assert_eq!(c, cmds(&[("B", SyncCmd::Backup), ("C", SyncCmd::Backup)]));
        assert_eq!(g, Some(GroupChange { group: "G".into(), state: State::Backup }));
    }

    #[test]
    fn own_fault_faults_all_until_it_clears_and_sync_faults_do_not_hold_it() {
        let mut s = groups();
        let (c, g) = s.on_event(&ev("C", State::Backup, State::Fault, true));
        assert_eq!(c, cmds(&[("A", SyncCmd::Fault(true)), ("B", SyncCmd::Fault(true))]));
        assert_eq!(g.unwrap().state, State::Fault);
        // The siblings enter FAULT through the group, not on their own.
        let (c, _) = s.on_event(&ev("A", State::Backup, State::Fault, false));
        assert_eq!(c, cmds(&[("B", SyncCmd::Fault(true))]), "B has not reported yet");
        assert!(s.on_event(&ev("B", State::Backup, State::Fault, false)).0.is_empty());
        // C's tracking recovers: everyone leaves FAULT.
        let (c, g) = s.on_event(&ev("C", State::Fault, State::Backup, false));
        assert_eq!(c, cmds(&[("A", SyncCmd::Fault(false)), ("B", SyncCmd::Fault(false))]));
        assert_eq!(g.unwrap().state, State::Backup);
    }

    #[test]
    fn a_second_own_fault_keeps_the_group_in_fault() {
        let mut s = groups();
        s.on_event(&ev("A", State::Backup, State::Fault, true));
        s.on_event(&ev("B", State::Backup, State::Fault, false));
        s.on_event(&ev("C", State::Backup, State::Fault, false));
        // B's own tracking fails too while it is already in FAULT.
        s.on_event(&ev("B", State::Fault, State::Fault, true));
        let (c, g) = s.on_event(&ev("A", State::Fault, State::Backup, false));
        assert_eq!(c, cmds(&[("A", SyncCmd::Fault(true))]), "B still faults the group");
        assert_eq!(g, None);
    }

    #[test]
    fn instances_outside_groups_are_left_alone() {
        let mut s = groups();
        let (c, g) = s.on_event(&ev("X", State::Backup, State::Master, false));
        assert!(c.is_empty());
        assert_eq!(g, None);
    }
}
