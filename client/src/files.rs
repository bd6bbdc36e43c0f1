//! Files a node and the CLI keep for themselves: directories readable only by their owner, and
//! lock files that say a directory is in use by a running process.
//!
//! This module must not know what goes into those directories.

use std::fs;
use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents readable only by their owner (0700 on unix), from the
/// start rather than by a chmod afterwards.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Takes the lock file `path` (created if missing), held until the returned file is dropped or
/// the process ends, however it ends. `None` when another process holds it.
pub fn lock_file(path: &Path) -> io::Result<Option<fs::File>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}
