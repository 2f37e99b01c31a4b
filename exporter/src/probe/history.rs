//! Version history per target: what counts as a deployment and as a rollback (pure), and the
//! small state file that makes the history survive an exporter restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Versions remembered per target to recognise a rollback.
const REMEMBERED_VERSIONS: usize = 64;

/// A deployed build: two builds differ when either the version or the commit differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    #[serde(default)]
    pub commit: String,
}

/// What one observation of a target's build meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The first build ever seen for this target: not a deployment.
    First,
    Unchanged,
    Deployed,
    /// A change back to a build seen before.
    RolledBack,
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
        if current == build {
            self.current = Some(current);
            return Change::Unchanged;
        }
        let seen_before = self.previous.contains(&build);
        self.previous.retain(|b| *b != build && *b != current);
        self.previous.push(current);
        if self.previous.len() > REMEMBERED_VERSIONS {
            self.previous.remove(0);
        }
        self.current = Some(build);
        self.changes += 1;
        self.last_change = Some(now);
        if seen_before {
            self.rollbacks += 1;
            Change::RolledBack
        } else {
            Change::Deployed
        }
    }
}

/// The persisted histories of every target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub targets: BTreeMap<String, History>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid JSON ({source}); move it away to start a new history")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl State {
    /// Loads the state; a missing file is an empty history.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes atomically (temporary file, fsync, rename), so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write_error = |source| StateError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_error)?;
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let json = serde_json::to_vec_pretty(self).map_err(|e| write_error(e.into()))?;
        let mut file = std::fs::File::create(&temp).map_err(write_error)?;
        file.write_all(&json).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        std::fs::rename(&temp, path).map_err(write_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(version: &str) -> Build {
        Build {
            version: version.into(),
            commit: format!("c-{version}"),
        }
    }

    #[test]
    fn first_sighting_is_not_a_deployment() {
        let mut history = History::default();
        assert_eq!(history.observe(build("1.0"), 10.0), Change::First);
        assert_eq!(history.observe(build("1.0"), 20.0), Change::Unchanged);
        assert_eq!(
            (history.changes, history.rollbacks, history.last_change),
            (0, 0, None)
        );
    }

    #[test]
    fn a_new_version_is_a_deployment_and_an_old_one_a_rollback() {
        let mut history = History::default();
        history.observe(build("1.0"), 10.0);
        assert_eq!(history.observe(build("1.1"), 20.0), Change::Deployed);
        assert_eq!(history.observe(build("1.0"), 30.0), Change::RolledBack);
        assert_eq!(history.observe(build("1.1"), 40.0), Change::RolledBack);
        assert_eq!(history.observe(build("1.2"), 50.0), Change::Deployed);
        assert_eq!((history.changes, history.rollbacks), (4, 2));
        assert_eq!(history.last_change, Some(50.0));
        assert_eq!(history.previous, vec![build("1.0"), build("1.1")]);
    }

    #[test]
    fn a_new_commit_of_the_same_version_is_a_deployment() {
        let mut history = History::default();
        history.observe(build("1.0"), 1.0);
        let hotfix = Build {
            version: "1.0".into(),
            commit: "other".into(),
        };
        assert_eq!(history.observe(hotfix, 2.0), Change::Deployed);
    }

    #[test]
    fn memory_of_old_versions_is_bounded() {
        let mut history = History::default();
        for i in 0..200 {
            history.observe(build(&i.to_string()), f64::from(i));
        }
        assert_eq!(history.previous.len(), REMEMBERED_VERSIONS);
        assert_eq!(
            history.observe(build("0"), 999.0),
            Change::Deployed,
            "forgotten"
        );
        assert_eq!(history.observe(build("150"), 1000.0), Change::RolledBack);
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/state.json");
        assert_eq!(
            State::load(&path).expect("missing is empty"),
            State::default()
        );
        let mut state = State::default();
        let history = state.targets.entry("gateway".into()).or_default();
        history.observe(build("1.0"), 1.0);
        history.observe(build("2.0"), 2.0);
        state.save(&path).expect("save");
        assert_eq!(State::load(&path).expect("load"), state);
    }

    #[test]
    fn a_corrupt_state_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{not json").expect("write");
        let error = State::load(&path).expect_err("corrupt");
        assert!(error.to_string().contains("not valid JSON"), "{error}");
    }
}
