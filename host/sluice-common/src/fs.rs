//! File-system helpers shared by every layer: small files written atomically and durably,
//! directory syncs, and the data directory's lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Writes a small file through a temp name, an fsync and a rename, so readers see the old
/// content or the new, never a mix. Make the rename durable with [`sync_dir`] when it must
/// survive a power loss.
pub fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Makes a directory entry (a new file, a rename) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The exclusive lock one server holds on its data directory for as long as it runs: two
/// servers appending to the same partition files would lose acknowledged records.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "sluice.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {dir} is in use by another sluice server{pid}; stop that server or \
         pass another --data-dir",
        pid = holder.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { dir: String, holder: Option<String> },
    #[error("cannot lock data directory {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Creates the directory if needed and takes its lock, or says who holds it. The
    /// lock is the operating system's (`flock`): it goes away with the process, so a
    /// crashed server never leaves a stale lock behind.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::InUse {
                    dir: dir.display().to_string(),
                    holder: (!holder.is_empty() && holder.len() < 32).then(|| holder.to_string()),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Who holds it, for the message a second server prints. Best effort: the lock is
        // the flock, and a server must start on a full disk.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let e = DataDirLock::acquire(dir.path()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("in use by another sluice server"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
