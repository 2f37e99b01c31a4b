//! Version history per target: what counts as a deployment and as a rollback (pure), and the
//! small state file that makes the history survive an exporter restart.
//!
//! A change of build is a rollback when it moves to an *older release* (`order.rs`): by semver
//! precedence when both versions are semver, else by build date when both have one, else when
//! the build was served before.

mod order;
mod state;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use order::Basis;
pub use state::{Recovery, SaveError, State};

/// Builds remembered per target to recognise a return to one of them.
const REMEMBERED_VERSIONS: usize = 64;

/// A deployed build. Two builds are the same build when version and commit are the same;
/// `build_date` only helps to order releases whose versions are not semver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    #[serde(default)]
    pub commit: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub build_date: String,
}

impl Build {
    fn same_build(&self, other: &Build) -> bool {
        self.version == other.version && self.commit == other.commit
    }
}

/// What one observation of a target's build meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first build ever seen for this target: not a deployment.
    First,
    Unchanged,
    /// A change to a newer release, or to one that cannot be told older.
    Deployed(Basis),
    /// A change to an older release.
    RolledBack(Basis),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub current: Option<Build>,
    /// Builds served before `current`, oldest first, without repeats.
    #[serde(default)]
    pub previous: Vec<Build>,
    #[serde(default)]
    pub changes: u64,
    #[serde(default)]
    pub rollbacks: u64,
    /// Unix seconds of the last change.
    #[serde(default)]
    pub last_change: Option<f64>,
}

impl History {
    /// Records that `build` is served at `now` (Unix seconds).
    pub fn observe(&mut self, build: Build, now: f64) -> Change {
        let Some(current) = self.current.take() else {
            self.current = Some(build);
            return Change::First;
        };
        if current.same_build(&build) {
            self.current = Some(current);
            return Change::Unchanged;
        }
        let seen_before = self.previous.iter().any(|b| b.same_build(&build));
        let step = order::step(&current, &build, seen_before);
        self.previous
            .retain(|b| !b.same_build(&build) && !b.same_build(&current));
        self.previous.push(current);
        if self.previous.len() > REMEMBERED_VERSIONS {
            self.previous.remove(0);
        }
        self.current = Some(build);
        self.changes += 1;
        self.last_change = Some(now);
        if step.older {
            self.rollbacks += 1;
            Change::RolledBack(step.basis)
        } else {
            Change::Deployed(step.basis)
        }
    }
}
