//! The reaper's view of the attempts it runs: each attempt's child and which other
//! processes belong to its tree.
//!
//! While the child lives, its tree is found by walking parent links down from it. A
//! process whose parent died is reparented to the reaper (a child subreaper) and the
//! link to its attempt is lost, whatever session it moved to (the CLI's Bash tool
//! runs commands in sessions of their own). Such an orphan is given back to its
//! attempt by, in order: having been seen in that attempt's tree before (every sample
//! remembers pid and start time of each member), the attempt cookie in its
//! environment (`BORG_ATTEMPT_UID`), or its process group (the child leads a group of
//! its own; a group id cannot be reused while a member lives). What is attributed to
//! no attempt is killed when the reaper ends.

use crate::supervise::procs::{self, ProcStat};
use std::collections::{BTreeMap, HashMap};

/// One attempt the reaper started.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The attempt cookie in the child's environment.
    pub uid: String,
    /// The child's pid while it is unreaped (its pid cannot be reused until then).
    pub child: Option<i32>,
    /// The child's pid, which is also its process group, kept after it is reaped.
    pub pgid: i32,
    /// Report `memory` once the tree passes this many KiB.
    pub max_rss_kb: Option<u64>,
    /// The largest resident memory of the tree seen, KiB.
    pub peak_kb: u64,
    /// `memory` was reported.
    pub memory_reported: bool,
}

impl Attempt {
    /// An attempt whose child `pid` was just started.
    pub fn new(uid: String, pid: i32, max_rss_kb: Option<u64>) -> Attempt {
        Attempt {
            uid,
            child: Some(pid),
            pgid: pid,
            max_rss_kb,
            peak_kb: 0,
            memory_reported: false,
        }
    }
}

/// One look at `/proc`: every process and the children of each.
pub struct Scan {
    procs: HashMap<i32, ProcStat>,
    children: HashMap<i32, Vec<i32>>,
}

impl Scan {
    /// Reads `/proc` once.
    pub fn take() -> Scan {
        let all = procs::all();
        let children = procs::children_map(&all);
        Scan {
            procs: all.into_iter().map(|p| (p.pid, p)).collect(),
            children,
        }
    }

    fn alive(&self, pid: i32) -> Option<&ProcStat> {
        self.procs.get(&pid).filter(|p| p.state != 'Z')
    }
}

/// Every attempt the reaper runs, and the processes known to belong to each.
pub struct Tracker {
    /// The reaper's own pid: orphans become its children.
    me: i32,
    /// Attempts by borg's id.
    pub attempts: BTreeMap<u64, Attempt>,
    /// Processes seen in an attempt's tree: (pid, start time) → attempt.
    known: HashMap<(i32, u64), u64>,
}

impl Tracker {
    /// A tracker for the reaper `me`.
    pub fn new(me: i32) -> Tracker {
        Tracker {
            me,
            attempts: BTreeMap::new(),
            known: HashMap::new(),
        }
    }

    /// The attempt whose unreaped child is `pid`, which was just reaped.
    pub fn child_reaped(&mut self, pid: i32) -> Option<u64> {
        let (&id, a) = self
            .attempts
            .iter_mut()
            .find(|(_, a)| a.child == Some(pid))?;
        a.child = None;
        Some(id)
    }

    /// Forgets what was learnt about a reaped process.
    pub fn forget(&mut self, pid: i32) {
        self.known.retain(|(p, _), _| *p != pid);
    }

    /// The attempt an orphan (a child of the reaper that is no attempt's child)
    /// belongs to, if any can be told.
    fn owner_of_orphan(&mut self, st: &ProcStat) -> Option<u64> {
        if let Some(&id) = self.known.get(&(st.pid, st.start_time)) {
            return self.attempts.contains_key(&id).then_some(id);
        }
        let by_cookie = procs::environ_value(st.pid, "BORG_ATTEMPT_UID")
            .and_then(|uid| self.attempts.iter().find(|(_, a)| a.uid == uid))
            .map(|(&id, _)| id);
        let id = by_cookie.or_else(|| {
            self.attempts
                .iter()
                .find(|(_, a)| a.pgid == st.pgid)
                .map(|(&id, _)| id)
        })?;
        self.known.insert((st.pid, st.start_time), id);
        Some(id)
    }

    /// The roots of an attempt's tree: its child while unreaped, and the orphans that
    /// belong to it.
    fn roots(&mut self, id: u64, scan: &Scan) -> Vec<i32> {
        let mut roots: Vec<i32> = self
            .attempts
            .get(&id)
            .and_then(|a| a.child)
            .into_iter()
            .collect();
        let orphans: Vec<ProcStat> = scan
            .children
            .get(&self.me)
            .into_iter()
            .flatten()
            .filter_map(|&p| scan.alive(p).copied())
            .filter(|p| !self.attempts.values().any(|a| a.child == Some(p.pid)))
            .collect();
        for o in orphans {
            if self.owner_of_orphan(&o) == Some(id) {
                roots.push(o.pid);
            }
        }
        roots
    }

    /// Every live process of an attempt's tree, remembered as its members.
    pub fn members(&mut self, id: u64, scan: &Scan) -> Vec<i32> {
        let mut out = Vec::new();
        for root in self.roots(id, scan) {
            out.push(root);
            out.extend(procs::descendants_in(&scan.children, root));
        }
        out.retain(|&p| scan.alive(p).is_some());
        for &p in &out {
            if let Some(st) = scan.procs.get(&p) {
                self.known.insert((p, st.start_time), id);
            }
        }
        out
    }

    /// Samples every attempt's tree: its resident memory (the peak is kept). Returns
    /// the attempts that just passed their limit, with their memory in KiB.
    pub fn sample(&mut self) -> Vec<(u64, u64)> {
        let scan = Scan::take();
        let ids: Vec<u64> = self.attempts.keys().copied().collect();
        let mut over = Vec::new();
        for id in ids {
            let rss: u64 = self.members(id, &scan).into_iter().map(procs::rss_kb).sum();
            let Some(a) = self.attempts.get_mut(&id) else {
                continue;
            };
            a.peak_kb = a.peak_kb.max(rss);
            if a.max_rss_kb.is_some_and(|m| rss > m) && !a.memory_reported {
                a.memory_reported = true;
                over.push((id, rss));
            }
        }
        // Forget processes that are gone, so the map does not grow over a long run.
        self.known
            .retain(|(p, start), _| scan.procs.get(p).is_some_and(|s| s.start_time == *start));
        over
    }
}
