//! The state file holding every target's history: written atomically, and set aside when it
//! cannot be parsed, so that a bad file never keeps the exporter from starting.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::History;

/// The persisted histories of every target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub targets: BTreeMap<String, History>,
}

/// Why the exporter starts without the history that is on disk.
#[derive(Debug)]
pub enum Recovery {
    /// Not a valid state file: renamed to `moved_to`, kept for a post-mortem.
    SetAside {
        error: serde_json::Error,
        moved_to: PathBuf,
    },
    /// Not a valid state file, and it could not be renamed: the next save replaces it.
    NotSetAside {
        error: serde_json::Error,
        rename_error: std::io::Error,
    },
    /// The file could not be read (permissions, a directory...): left as it is.
    Unreadable { error: std::io::Error },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write state file {path}: {source}")]
pub struct SaveError {
    path: PathBuf,
    source: std::io::Error,
}

impl State {
    /// Loads the state of `path`. A missing file is an empty history; so is a file that
    /// cannot be read or parsed, with the [`Recovery`] saying what happened to it. `now` (Unix
    /// seconds) names a corrupt file set aside: `<name>.corrupt-<now>`.
    pub fn load(path: &Path, now: u64) -> (Self, Option<Recovery>) {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Self::default(), None),
            Err(error) => return (Self::default(), Some(Recovery::Unreadable { error })),
        };
        let error = match serde_json::from_slice(&bytes) {
            Ok(state) => return (state, None),
            Err(error) => error,
        };
        let moved_to = set_aside_path(path, now);
        let recovery = match std::fs::rename(path, &moved_to) {
            Ok(()) => Recovery::SetAside { error, moved_to },
            Err(rename_error) => Recovery::NotSetAside {
                error,
                rename_error,
            },
        };
        (Self::default(), Some(recovery))
    }

    /// Writes atomically (temporary file, fsync, rename), so a crash never leaves half a file.
    pub fn save(&self, path: &Path) -> Result<(), SaveError> {
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = PathBuf::from(temp);
        let written = self.write_then_rename(path, &temp);
        if written.is_err() {
            // Best effort: a full disk should not also keep a stale temporary file.
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(|source| SaveError {
            path: path.to_owned(),
            source,
        })
    }

    fn write_then_rename(&self, path: &Path, temp: &Path) -> std::io::Result<()> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self)?;
        let mut file = std::fs::File::create(temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(temp, path)
    }
}

/// `<path>.corrupt-<now>`, or with `-1`, `-2`... when that name is taken (two bad starts within
/// one second), so that no earlier corrupt file is overwritten.
fn set_aside_path(path: &Path, now: u64) -> PathBuf {
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{now}"));
    let mut candidate = PathBuf::from(&base);
    for n in 1..100 {
        if !candidate.exists() {
            break;
        }
        let mut next = base.clone();
        next.push(format!("-{n}"));
        candidate = PathBuf::from(next);
    }
    candidate
}
