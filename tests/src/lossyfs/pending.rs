//! What a file's writes look like before `fsync`: the page cache of a machine that is about
//! to lose power. [`Pending`] holds a file's unsynced writes and truncations on top of what
//! the backing file holds; reads see both, [`Pending::apply`] makes them durable, and dropping
//! it is the power cut.
//!
//! This module must not know FUSE; it is plain data over a backing file.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// A file's writes and truncations since its last `fsync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The size a reader sees now.
    size: u64,
    /// How many leading bytes of the backing file are still the file's content (a truncation
    /// cuts it; bytes of the backing file past it read as zeros until they are written again).
    backing_valid: u64,
    /// Writes in the order they came, each within `0..size`; a later one wins where they
    /// overlap.
    writes: Vec<(u64, Vec<u8>)>,
}

impl Pending {
    /// Nothing pending over a backing file of `backing_len` bytes.
    pub fn new(backing_len: u64) -> Pending {
        Pending {
            size: backing_len,
            backing_valid: backing_len,
            writes: Vec::new(),
        }
    }

    /// The size a reader sees.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of written data held.
    pub fn bytes(&self) -> usize {
        self.writes.iter().map(|(_, data)| data.len()).sum()
    }

    /// Records a write of `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = offset + data.len() as u64;
        self.size = self.size.max(end);
        // Appends (a journal's writes) extend the last write rather than adding one.
        if let Some((last_offset, last)) = self.writes.last_mut()
            && *last_offset + last.len() as u64 == offset
        {
            last.extend_from_slice(data);
            return;
        }
        self.writes.push((offset, data.to_vec()));
    }

    /// Records a truncation (or an extension with zeros) to `size` bytes.
    pub fn truncate(&mut self, size: u64) {
        self.size = size;
        self.backing_valid = self.backing_valid.min(size);
        self.writes.retain_mut(|(offset, data)| {
            if *offset >= size {
                return false;
            }
            data.truncate((size - *offset) as usize);
            true
        });
    }

    /// Reads up to `len` bytes at `offset`: the backing file's valid bytes, overlaid with the
    /// pending writes.
    pub fn read(&self, backing: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buffer = vec![0; (end - offset) as usize];
        let from_backing = end.min(self.backing_valid);
        if offset < from_backing {
            read_fully(
                backing,
                offset,
                &mut buffer[..(from_backing - offset) as usize],
            )?;
        }
        for (write_offset, data) in &self.writes {
            let write_end = write_offset + data.len() as u64;
            let start = offset.max(*write_offset);
            let stop = end.min(write_end);
            if start < stop {
                buffer[(start - offset) as usize..(stop - offset) as usize].copy_from_slice(
                    &data[(start - write_offset) as usize..(stop - write_offset) as usize],
                );
            }
        }
        Ok(buffer)
    }

    /// Writes everything pending to the backing file and syncs it (what `fsync` does).
    pub fn apply(&self, backing: &File) -> std::io::Result<()> {
        let backing_len = backing.metadata()?.len();
        if self.backing_valid < backing_len {
            backing.set_len(self.backing_valid)?;
        }
        for (offset, data) in &self.writes {
            backing.write_all_at(data, *offset)?;
        }
        backing.set_len(self.size)?;
        backing.sync_all()
    }
}

/// Reads exactly `buffer.len()` bytes at `offset`, zero-filling what lies past the backing
/// file's end.
fn read_fully(backing: &File, mut offset: u64, mut buffer: &mut [u8]) -> std::io::Result<()> {
    while !buffer.is_empty() {
        match backing.read_at(buffer, offset) {
            Ok(0) => {
                buffer.fill(0);
                return Ok(());
            }
            Ok(n) => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a case: a write, a truncation, or a sync.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Write(u64, &'static [u8]),
        Truncate(u64),
    }

    /// A case: its name, what the backing file holds, the steps, and what a reader sees before
    /// the sync, which is also what the backing file holds after it.
    type Case = (&'static str, &'static [u8], &'static [Step], &'static [u8]);

    #[test]
    fn reads_see_pending_writes_and_a_sync_makes_the_same_bytes_durable() {
        let cases: &[Case] = &[
            ("append", b"abc", &[Step::Write(3, b"de")], b"abcde"),
            ("overwrite", b"abcdef", &[Step::Write(2, b"XY")], b"abXYef"),
            (
                "later write wins",
                b"",
                &[Step::Write(0, b"aaaa"), Step::Write(1, b"bb")],
                b"abba",
            ),
            ("hole reads zeros", b"", &[Step::Write(3, b"x")], b"\0\0\0x"),
            (
                "truncate then extend reads zeros, not old bytes",
                b"abcdef",
                &[Step::Truncate(2), Step::Truncate(4)],
                b"ab\0\0",
            ),
            (
                "write cut by a truncation",
                b"",
                &[Step::Write(0, b"abcdef"), Step::Truncate(3)],
                b"abc",
            ),
            (
                "truncate, then write past the old end",
                b"abcdef",
                &[Step::Truncate(1), Step::Write(3, b"z")],
                b"a\0\0z",
            ),
        ];
        for (name, backing_bytes, steps, expected) in cases {
            let file = tempfile::tempfile().expect("temp file");
            file.write_all_at(backing_bytes, 0).expect("backing");
            let mut pending = Pending::new(backing_bytes.len() as u64);
            for step in *steps {
                match *step {
                    Step::Write(offset, data) => pending.write(offset, data),
                    Step::Truncate(size) => pending.truncate(size),
                }
            }
            let seen = pending.read(&file, 0, 1 << 20).expect("read");
            assert_eq!(seen, *expected, "{name}: read before the sync");
            // What the backing file holds until the sync: the power-cut view.
            let mut durable = vec![0; backing_bytes.len()];
            read_fully(&file, 0, &mut durable).expect("read backing");
            assert_eq!(
                durable, *backing_bytes,
                "{name}: nothing durable before the sync"
            );
            pending.apply(&file).expect("apply");
            let synced = Pending::new(file.metadata().expect("len").len())
                .read(&file, 0, 1 << 20)
                .expect("read");
            assert_eq!(synced, *expected, "{name}: after the sync");
        }
    }

    #[test]
    fn a_read_in_the_middle_overlays_only_its_range() {
        let file = tempfile::tempfile().expect("temp file");
        file.write_all_at(b"0123456789", 0).expect("backing");
        let mut pending = Pending::new(10);
        pending.write(4, b"abcdefgh");
        assert_eq!(pending.read(&file, 2, 4).expect("read"), b"23ab");
        assert_eq!(pending.read(&file, 10, 100).expect("read"), b"gh");
        assert!(pending.read(&file, 12, 5).expect("read").is_empty());
    }
}
