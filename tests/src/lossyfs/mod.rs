//! `lossyfs`: a FUSE passthrough filesystem that loses power (issue 26), as Jepsen's `LazyFS`
//! does.
//!
//! Every file's written data stays in this process's memory ([`pending::Pending`]) until the
//! file is fsynced; only then is it written to the backing directory. Killing the process with
//! SIGKILL is therefore a power cut: what was not fsynced is gone, including what readers had
//! already seen. Names (create, mkdir, rename, unlink) go to the backing directory at once, as
//! a journaling filesystem commits them soon after; a file created and not fsynced comes back
//! empty, which is what a program that renames without an fsync finds after a crash.
//!
//! Bounded: when more than [`PENDING_LIMIT`] bytes are pending (looked at every
//! [`PRESSURE_CHECK_BYTES`] written), the largest file is written back (made durable) the way a
//! kernel writes back dirty pages under pressure.
//!
//! This module must not know the node or its store; it sees files.

pub mod pending;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use pending::Pending;

/// Bytes of unsynced data held before the largest pending file is written back.
pub const PENDING_LIMIT: usize = 256 << 20;

/// Bytes written between two totals of the pending data: totalling walks every file, so it is
/// not done on every write (the limit may be passed by this much).
const PRESSURE_CHECK_BYTES: usize = 16 << 20;

/// Attributes are not cached by the kernel: sizes change with pending writes.
const TTL: Duration = Duration::ZERO;

/// A file or directory the kernel knows by number.
#[derive(Debug)]
struct Inode {
    /// Its path under the backing directory (empty for the root).
    path: PathBuf,
    /// Its backing file, open for reading and writing while it is open or has pending data.
    file: Option<File>,
    /// Lookups the kernel holds (each entry replied adds one; `forget` takes them back).
    lookups: u64,
    /// Open handles.
    handles: u32,
    /// Unsynced writes, if any.
    pending: Option<Pending>,
    /// Removed from its directory; its data lives until the last handle closes.
    unlinked: bool,
}

/// The inode table.
#[derive(Debug)]
struct State {
    inodes: HashMap<u64, Inode>,
    by_path: HashMap<PathBuf, u64>,
    next: u64,
    /// Bytes written since pending data was last totalled (see [`PRESSURE_CHECK_BYTES`]).
    written_since_check: usize,
}

/// The filesystem over one backing directory.
#[derive(Debug)]
pub struct LossyFs {
    backing: PathBuf,
    /// Files whose name ends with this have fsyncs that succeed and keep nothing.
    lie_about: Option<String>,
    state: Mutex<State>,
}

impl LossyFs {
    /// A filesystem whose durable contents live in `backing`.
    pub fn new(backing: PathBuf) -> LossyFs {
        let root = Inode {
            path: PathBuf::new(),
            file: None,
            lookups: 1,
            handles: 0,
            pending: None,
            unlinked: false,
        };
        LossyFs {
            backing,
            lie_about: None,
            state: Mutex::new(State {
                inodes: HashMap::from([(INodeNo::ROOT.0, root)]),
                by_path: HashMap::from([(PathBuf::new(), INodeNo::ROOT.0)]),
                next: INodeNo::ROOT.0 + 1,
                written_since_check: 0,
            }),
        }
    }

    /// Fsyncs of files whose name ends with `suffix` succeed and make nothing durable: a disk
    /// whose cache lies about them (the negative control of the power-loss tests).
    #[must_use]
    pub fn lying_about(mut self, suffix: Option<String>) -> LossyFs {
        self.lie_about = suffix.filter(|s| !s.is_empty());
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn backing_path(&self, relative: &Path) -> PathBuf {
        self.backing.join(relative)
    }

    /// The attributes of inode `ino` (its pending size, if any).
    fn attr(&self, state: &State, ino: u64) -> Result<FileAttr, Errno> {
        let inode = state.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        let metadata = match &inode.file {
            Some(file) => file.metadata(),
            None => std::fs::symlink_metadata(self.backing_path(&inode.path)),
        }
        .map_err(Errno::from)?;
        let size = inode.pending.as_ref().map_or(metadata.len(), Pending::size);
        Ok(file_attr(ino, &metadata, size))
    }

    /// The inode number of `relative`, made if new.
    fn inode_of(state: &mut State, relative: PathBuf) -> u64 {
        if let Some(ino) = state.by_path.get(&relative) {
            return *ino;
        }
        let ino = state.next;
        state.next += 1;
        state.by_path.insert(relative.clone(), ino);
        state.inodes.insert(
            ino,
            Inode {
                path: relative,
                file: None,
                lookups: 0,
                handles: 0,
                pending: None,
                unlinked: false,
            },
        );
        ino
    }

    fn child_path(state: &State, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        let parent = state.inodes.get(&parent.0).ok_or(Errno::ENOENT)?;
        Ok(parent.path.join(name))
    }

    /// Looks `relative` up in the backing directory and answers with its entry (one more
    /// lookup the kernel holds).
    fn entry(&self, relative: PathBuf) -> Result<FileAttr, Errno> {
        std::fs::symlink_metadata(self.backing_path(&relative)).map_err(Errno::from)?;
        let mut state = self.state();
        let ino = Self::inode_of(&mut state, relative);
        let attr = self.attr(&state, ino)?;
        if let Some(inode) = state.inodes.get_mut(&ino) {
            inode.lookups += 1;
        }
        Ok(attr)
    }

    /// Inode `inode`'s pending writes, begun over its backing file as it is now if it has
    /// none yet.
    fn pending_of<'a>(&self, inode: &'a mut Inode) -> Result<&'a mut Pending, Errno> {
        self.open_file(inode)?;
        if inode.pending.is_none() {
            let file = inode.file.as_ref().ok_or(Errno::EIO)?;
            inode.pending = Some(Pending::new(file.metadata().map_err(Errno::from)?.len()));
        }
        inode.pending.as_mut().ok_or(Errno::EIO)
    }

    /// Opens inode `ino`'s backing file if it is not open.
    fn open_file(&self, inode: &mut Inode) -> Result<(), Errno> {
        if inode.file.is_none() {
            let path = self.backing_path(&inode.path);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(Errno::from)?;
            inode.file = Some(file);
        }
        Ok(())
    }

    /// Makes `ino`'s pending data durable.
    fn sync(&self, state: &mut State, ino: u64) -> Result<(), Errno> {
        let inode = state.inodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if inode.pending.is_none() || inode.unlinked {
            return Ok(());
        }
        self.open_file(inode)?;
        let file = inode.file.as_ref().ok_or(Errno::EIO)?;
        if let Some(pending) = &inode.pending {
            // Kept until it is on disk: a failed fsync leaves it pending, as a kernel keeps
            // dirty pages.
            pending.apply(file).map_err(Errno::from)?;
        }
        inode.pending = None;
        Ok(())
    }

    /// Writes back the largest pending file while too much is pending (looked at once
    /// [`PRESSURE_CHECK_BYTES`] were written since the last look).
    fn write_back_under_pressure(&self, state: &mut State, written: usize) -> Result<(), Errno> {
        state.written_since_check += written;
        if state.written_since_check < PRESSURE_CHECK_BYTES {
            return Ok(());
        }
        state.written_since_check = 0;
        loop {
            let sizes = state
                .inodes
                .iter()
                .filter_map(|(ino, inode)| inode.pending.as_ref().map(|p| (*ino, p.bytes())));
            let total: usize = sizes.clone().map(|(_, bytes)| bytes).sum();
            if total <= PENDING_LIMIT {
                return Ok(());
            }
            let Some((largest, _)) = sizes.max_by_key(|(_, bytes)| *bytes) else {
                return Ok(());
            };
            self.sync(state, largest)?;
        }
    }

    /// Closes an inode's file and drops its data when nothing needs them any more.
    fn release_inode(state: &mut State, ino: u64) {
        if let Some(inode) = state.inodes.get_mut(&ino)
            && inode.handles == 0
        {
            if inode.unlinked {
                inode.pending = None;
            }
            if inode.pending.is_none() {
                inode.file = None;
            }
        }
    }
}

fn file_attr(ino: u64, metadata: &std::fs::Metadata, size: u64) -> FileAttr {
    let time = |seconds: i64, nanos: i64| {
        UNIX_EPOCH + Duration::new(seconds.max(0) as u64, nanos.clamp(0, 999_999_999) as u32)
    };
    let kind = if metadata.is_dir() {
        FileType::Directory
    } else if metadata.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: time(metadata.atime(), metadata.atime_nsec()),
        mtime: time(metadata.mtime(), metadata.mtime_nsec()),
        ctime: time(metadata.ctime(), metadata.ctime_nsec()),
        crtime: SystemTime::UNIX_EPOCH,
        kind,
        perm: (metadata.mode() & 0o7777) as u16,
        nlink: metadata.nlink() as u32,
        uid: metadata.uid(),
        gid: metadata.gid(),
        rdev: metadata.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let path = Self::child_path(&self.state(), parent, name);
        match path.and_then(|path| self.entry(path)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut state = self.state();
        if let Some(inode) = state.inodes.get_mut(&ino.0) {
            inode.lookups = inode.lookups.saturating_sub(nlookup);
        }
        let keep = state.inodes.get(&ino.0).is_none_or(|inode| {
            ino == INodeNo::ROOT
                || inode.lookups > 0
                || inode.handles > 0
                || inode.pending.is_some()
        });
        if !keep
            && let Some(inode) = state.inodes.remove(&ino.0)
            && state.by_path.get(&inode.path) == Some(&ino.0)
        {
            state.by_path.remove(&inode.path);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(&self.state(), ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let result = (|| {
            let inode = state.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(mode) = mode {
                std::fs::set_permissions(
                    self.backing_path(&inode.path),
                    std::fs::Permissions::from_mode(mode & 0o7777),
                )
                .map_err(Errno::from)?;
            }
            if let Some(size) = size {
                self.pending_of(inode)?.truncate(size);
            }
            Ok(())
        })();
        match result.and_then(|()| self.attr(&state, ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let path = Self::child_path(&self.state(), parent, name);
        let result = path.and_then(|path| {
            let full = self.backing_path(&path);
            std::fs::create_dir(&full).map_err(Errno::from)?;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode & !umask))
                .map_err(Errno::from)?;
            self.entry(path)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = Self::child_path(&state, parent, name).and_then(|path| {
            std::fs::remove_file(self.backing_path(&path)).map_err(Errno::from)?;
            if let Some(ino) = state.by_path.remove(&path) {
                if let Some(inode) = state.inodes.get_mut(&ino) {
                    inode.unlinked = true;
                }
                Self::release_inode(&mut state, ino);
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state();
        let result = Self::child_path(&state, parent, name).and_then(|path| {
            std::fs::remove_dir(self.backing_path(&path)).map_err(Errno::from)?;
            state.by_path.remove(&path);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let result = (|| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE) {
                return Err(Errno::EINVAL);
            }
            let from = Self::child_path(&state, parent, name)?;
            let to = Self::child_path(&state, newparent, newname)?;
            let to_full = self.backing_path(&to);
            if flags.contains(RenameFlags::RENAME_NOREPLACE)
                && std::fs::symlink_metadata(&to_full).is_ok()
            {
                return Err(Errno::EEXIST);
            }
            std::fs::rename(self.backing_path(&from), &to_full).map_err(Errno::from)?;
            if let Some(replaced) = state.by_path.remove(&to) {
                if let Some(inode) = state.inodes.get_mut(&replaced) {
                    inode.unlinked = true;
                }
                Self::release_inode(&mut state, replaced);
            }
            // The renamed entry and, for a directory, everything under it.
            let moved: Vec<(PathBuf, u64)> = state
                .by_path
                .iter()
                .filter(|(path, _)| path.starts_with(&from))
                .map(|(path, ino)| (path.clone(), *ino))
                .collect();
            for (old, ino) in moved {
                let Ok(rest) = old.strip_prefix(&from) else {
                    continue;
                };
                let new = if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                };
                state.by_path.remove(&old);
                state.by_path.insert(new.clone(), ino);
                if let Some(inode) = state.inodes.get_mut(&ino) {
                    inode.path = new;
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let result = (|| {
            let inode = state.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            self.open_file(inode)?;
            inode.handles += 1;
            Ok(())
        })();
        match result {
            Ok(()) => reply.opened(FileHandle(ino.0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let result = (|| {
            let path = Self::child_path(&state, parent, name)?;
            let exclusive = flags & rustix::fs::OFlags::EXCL.bits().cast_signed() != 0;
            let mut options = OpenOptions::new();
            options.read(true).write(true).mode(mode & !umask);
            if exclusive {
                options.create_new(true);
            } else {
                options.create(true);
            }
            let file = options
                .open(self.backing_path(&path))
                .map_err(Errno::from)?;
            let ino = Self::inode_of(&mut state, path);
            let inode = state.inodes.get_mut(&ino).ok_or(Errno::EIO)?;
            inode.file = Some(file);
            inode.handles += 1;
            inode.lookups += 1;
            self.attr(&state, ino)
        })();
        match result {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(attr.ino.0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        let result = (|| {
            let inode = state.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            self.open_file(inode)?;
            let file = inode.file.as_ref().ok_or(Errno::EIO)?;
            match &inode.pending {
                Some(pending) => pending.read(file, offset, u64::from(size)),
                None => Pending::new(file.metadata().map_err(Errno::from)?.len()).read(
                    file,
                    offset,
                    u64::from(size),
                ),
            }
            .map_err(Errno::from)
        })();
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        let result = (|| {
            let inode = state.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            self.pending_of(inode)?.write(offset, data);
            self.write_back_under_pressure(&mut state, data.len())
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Some(inode) = state.inodes.get_mut(&ino.0) {
            inode.handles = inode.handles.saturating_sub(1);
        }
        Self::release_inode(&mut state, ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Some(suffix) = &self.lie_about
            && state
                .inodes
                .get(&ino.0)
                .is_some_and(|inode| inode.path.to_string_lossy().ends_with(suffix.as_str()))
        {
            return reply.ok();
        }
        match self.sync(&mut state, ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let path = match self.state().inodes.get(&ino.0) {
            Some(inode) => self.backing_path(&inode.path),
            None => return reply.error(Errno::ENOENT),
        };
        let entries = match std::fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) => return reply.error(Errno::from(e)),
        };
        let mut listed = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for entry in entries.flatten() {
            let kind = match entry.file_type() {
                Ok(kind) if kind.is_dir() => FileType::Directory,
                Ok(kind) if kind.is_symlink() => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            listed.push((entry.ino(), kind, entry.file_name()));
        }
        for (index, (entry_ino, kind, name)) in listed.into_iter().enumerate().skip(offset as usize)
        {
            if reply.add(INodeNo(entry_ino), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Names are durable as soon as they change (see the module's doc).
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.backing) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}
