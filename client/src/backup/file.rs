//! The backup file: a magic line, then records, each framed as its length (u32, little
//! endian), a CRC-32 of its bytes, and the postcard bytes of a [`Record`].
//!
//! The first record is the [`Record::Header`]; then, per bucket, a [`Record::Bucket`] and its
//! [`Record::Page`]s (each page is also the checkpoint a resumed backup continues from); a
//! complete file ends with [`Record::End`]. A file cut anywhere (a crash, a full disk, a power
//! loss) reads as its records up to the last whole one: [`BackupReader`] reports the cut, and
//! [`resume_point`] says where to continue.
//!
//! This module must not know how a cluster is read or written; it reads and writes files.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dynamo_protocol::{BucketProps, ListCursor, VersionPage};
use serde::{Deserialize, Serialize};

/// The format this build writes and reads. A later format gets a number of its own; a reader
/// refuses formats it does not know.
pub const BACKUP_FORMAT: u32 = 1;

/// What every backup file starts with.
const MAGIC: &[u8; 14] = b"DYNAMO-BACKUP\n";

/// Largest record a reader accepts: a page is a few MiB at most, so more is a damaged file.
const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;

/// Why a backup file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackupFileError {
    /// The file system failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
    /// The file is not a backup.
    #[error("{0} is not a dynamo backup (it does not start with the backup's magic line)")]
    NotABackup(PathBuf),
    /// The file was written by a later format.
    #[error(
        "{path} has backup format {found}; this build reads format {BACKUP_FORMAT}: use a later dynamo"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
    },
    /// A record that should be there is not, or holds the wrong thing.
    #[error("{path}: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One record of a backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// The first record.
    Header(BackupHeader),
    /// The bucket the following pages belong to, with its properties.
    Bucket(BucketProps),
    /// Keys of the current bucket with their versions; `next` is where the bucket continues
    /// (`None`: the bucket is complete).
    Page(VersionPage),
    /// The last record of a complete backup.
    End(BackupSummary),
}

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// [`BACKUP_FORMAT`] when written.
    pub format: u32,
    /// When the backup started (wall-clock milliseconds since the Unix epoch): every key's
    /// versions are as of this time or later.
    pub started_ms: u64,
    /// The version of the `dynamo` that wrote it.
    pub written_by: String,
    /// The buckets it holds; empty: every bucket the cluster had.
    pub buckets: Vec<String>,
}

/// The totals of a complete backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Buckets in the file.
    pub buckets: u32,
    /// Keys in the file, deleted ones included.
    pub keys: u64,
    /// Keys whose every version is a tombstone.
    pub deleted: u64,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BackupFileError + '_ {
    move |error| BackupFileError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Appends records to a backup file.
pub struct BackupWriter {
    path: PathBuf,
    file: BufWriter<File>,
    /// Bytes written so far (the file's length once flushed).
    written: u64,
}

impl BackupWriter {
    /// Creates `path` (refused if it exists) and writes the header.
    pub fn create(path: &Path, header: &BackupHeader) -> Result<Self, BackupFileError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io_error(path))?;
        let mut writer = Self {
            path: path.to_owned(),
            file: BufWriter::with_capacity(1 << 20, file),
            written: 0,
        };
        writer.write_bytes(MAGIC)?;
        writer.append(&Record::Header(header.clone()))?;
        Ok(writer)
    }

    /// Opens an interrupted backup to continue it after its last whole record (see
    /// [`resume_point`]): whatever follows that record is cut off.
    pub fn continue_at(path: &Path, valid_len: u64) -> Result<Self, BackupFileError> {
        let file = File::options()
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        file.set_len(valid_len).map_err(io_error(path))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.seek(SeekFrom::Start(valid_len))
            .map_err(io_error(path))?;
        Ok(Self {
            path: path.to_owned(),
            file,
            written: valid_len,
        })
    }

    /// Appends one record. It reaches the file when the buffer fills or at [`Self::flush`].
    pub fn append(&mut self, record: &Record) -> Result<u64, BackupFileError> {
        let bytes = postcard::to_stdvec(record).map_err(|error| BackupFileError::Damaged {
            path: self.path.clone(),
            message: format!("cannot encode a record: {error}"),
        })?;
        let length = u32::try_from(bytes.len())
            .ok()
            .filter(|&n| n <= MAX_RECORD_BYTES)
            .ok_or_else(|| BackupFileError::Damaged {
                path: self.path.clone(),
                message: format!("a record of {} bytes is too large", bytes.len()),
            })?;
        self.write_bytes(&length.to_le_bytes())?;
        self.write_bytes(&crc32fast::hash(&bytes).to_le_bytes())?;
        self.write_bytes(&bytes)?;
        Ok(bytes.len() as u64 + 8)
    }

    /// Hands what is buffered to the operating system (a checkpoint a crash of this process
    /// keeps).
    pub fn flush(&mut self) -> Result<(), BackupFileError> {
        self.file.flush().map_err(io_error(&self.path))
    }

    /// Flushes and makes the file durable (a power loss keeps it).
    pub fn finish(mut self) -> Result<u64, BackupFileError> {
        self.flush()?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(io_error(&self.path))?;
        Ok(self.written)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), BackupFileError> {
        self.file.write_all(bytes).map_err(io_error(&self.path))?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// How a read of the next record ended.
#[derive(Debug)]
pub enum Next {
    /// A whole record.
    Record(Record),
    /// The file ends cleanly here.
    End,
    /// The file is cut or damaged here: what follows cannot be read.
    Cut(String),
}

/// Reads a backup file record by record, holding one record at a time.
pub struct BackupReader {
    path: PathBuf,
    file: BufReader<File>,
    /// Bytes of whole records read so far, the magic line included.
    offset: u64,
    /// The file's length when opened.
    length: u64,
}

impl BackupReader {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<(Self, BackupHeader), BackupFileError> {
        let file = File::open(path).map_err(io_error(path))?;
        let length = file.metadata().map_err(io_error(path))?.len();
        let mut reader = Self {
            path: path.to_owned(),
            file: BufReader::with_capacity(1 << 20, file),
            offset: 0,
            length,
        };
        let mut magic = [0; MAGIC.len()];
        match reader.file.read_exact(&mut magic) {
            Ok(()) if &magic == MAGIC => reader.offset = MAGIC.len() as u64,
            Ok(()) => return Err(BackupFileError::NotABackup(path.to_owned())),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(BackupFileError::NotABackup(path.to_owned()));
            }
            Err(error) => return Err(io_error(path)(error)),
        }
        // The header names the format before anything else is decoded: a later format may
        // have changed the records themselves.
        let header = match reader.next_record()? {
            Next::Record(Record::Header(header)) => header,
            Next::Record(other) => {
                return Err(
                    reader.damaged(format!("the first record is not the header: {other:?}"))
                );
            }
            Next::End | Next::Cut(_) if reader.peek_format() > BACKUP_FORMAT => {
                return Err(BackupFileError::NewerFormat {
                    path: path.to_owned(),
                    found: reader.peek_format(),
                });
            }
            Next::End => return Err(reader.damaged("the file holds no header".into())),
            Next::Cut(why) => return Err(reader.damaged(why)),
        };
        if header.format > BACKUP_FORMAT {
            return Err(BackupFileError::NewerFormat {
                path: path.to_owned(),
                found: header.format,
            });
        }
        Ok((reader, header))
    }

    /// The next record, the end of the file, or where it is cut.
    pub fn next_record(&mut self) -> Result<Next, BackupFileError> {
        let mut frame = [0; 8];
        match read_full(&mut self.file, &mut frame).map_err(io_error(&self.path))? {
            0 => return Ok(Next::End),
            8 => {}
            _ => return Ok(Next::Cut(self.cut("a record's length"))),
        }
        let length = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let checksum = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let left = self.length.saturating_sub(self.offset);
        if length > MAX_RECORD_BYTES || u64::from(length) + 8 > left {
            return Ok(Next::Cut(
                self.cut("a record longer than the rest of the file"),
            ));
        }
        let mut bytes = vec![0; length as usize];
        if read_full(&mut self.file, &mut bytes).map_err(io_error(&self.path))? < bytes.len() {
            return Ok(Next::Cut(self.cut("a record")));
        }
        if crc32fast::hash(&bytes) != checksum {
            return Ok(Next::Cut(
                self.cut("a record whose checksum does not match"),
            ));
        }
        match postcard::from_bytes(&bytes) {
            Ok(record) => {
                self.offset += u64::from(length) + 8;
                Ok(Next::Record(record))
            }
            Err(error) => Ok(Next::Cut(
                self.cut(&format!("a record that does not decode ({error})")),
            )),
        }
    }

    /// Bytes of whole records read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's length.
    pub fn length(&self) -> u64 {
        self.length
    }

    fn cut(&self, what: &str) -> String {
        format!(
            "{} is cut or damaged at byte {}: {what}",
            self.path.display(),
            self.offset
        )
    }

    fn damaged(&self, message: String) -> BackupFileError {
        BackupFileError::Damaged {
            path: self.path.clone(),
            message,
        }
    }

    /// The format number a header of an unknown layout would start with (postcard: the
    /// variant index, then the format as a varint); 0 when it cannot be told.
    fn peek_format(&self) -> u32 {
        let Ok(mut file) = File::open(&self.path) else {
            return 0;
        };
        let mut start = [0; MAGIC.len() + 8 + 6];
        if read_full(&mut file, &mut start).unwrap_or(0) < start.len() {
            return 0;
        }
        let body = &start[MAGIC.len() + 8..];
        postcard::take_from_bytes::<(u8, u32)>(body).map_or(0, |((_, format), _)| format)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// Where an interrupted backup continues.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumePoint {
    /// The backup's header (its start time stays the one of the first run).
    pub header: BackupHeader,
    /// Buckets whose every page is in the file.
    pub done: Vec<String>,
    /// The bucket in progress and where it continues; `None` between buckets.
    pub current: Option<(BucketProps, Option<ListCursor>)>,
    /// Totals of the whole records.
    pub summary: BackupSummary,
    /// Bytes of whole records: the rest is cut off when the backup continues.
    pub valid_len: u64,
    /// Whether the file is already complete.
    pub complete: bool,
    /// Why the file ends early, if it does (a cut record).
    pub cut: Option<String>,
}

/// Reads an interrupted (or complete) backup to find where it continues.
pub fn resume_point(path: &Path) -> Result<ResumePoint, BackupFileError> {
    let (mut reader, header) = BackupReader::open(path)?;
    let mut point = ResumePoint {
        header,
        done: Vec::new(),
        current: None,
        summary: BackupSummary::default(),
        valid_len: reader.offset(),
        complete: false,
        cut: None,
    };
    loop {
        match reader.next_record()? {
            Next::Record(Record::Header(_)) => {
                return Err(reader.damaged("a second header".into()));
            }
            Next::Record(Record::Bucket(props)) => {
                if let Some((bucket, _)) = point.current.take() {
                    return Err(reader.damaged(format!(
                        "bucket {} starts before bucket {} is complete",
                        props.name, bucket.name
                    )));
                }
                point.summary.buckets += 1;
                point.current = Some((props, None));
            }
            Next::Record(Record::Page(page)) => {
                let Some((props, _)) = point.current.take() else {
                    return Err(reader.damaged("a page outside any bucket".into()));
                };
                point.summary.keys += page.entries.len() as u64;
                point.summary.deleted += page
                    .entries
                    .iter()
                    .filter(|(_, object)| dynamo_quorum::is_deleted(object))
                    .count() as u64;
                match page.next {
                    Some(next) => point.current = Some((props, Some(next))),
                    None => point.done.push(props.name),
                }
            }
            Next::Record(Record::End(_)) => point.complete = true,
            Next::End => break,
            Next::Cut(why) => {
                point.cut = Some(why);
                break;
            }
        }
        point.valid_len = reader.offset();
    }
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamo_quorum::{Object, Value};
    use dynamo_vclock::{Actor, VClock};

    fn object(value: Option<&[u8]>) -> Object {
        let mut object = Object::empty();
        let value = value.map_or(Value::Tombstone, |bytes| Value::Data(bytes.to_vec()));
        object.update(&VClock::new(), &Actor::new("n1#7.3"), value, 5);
        object
    }

    /// Two buckets of three pages each, the last key of each deleted.
    fn records() -> Vec<Record> {
        let mut records = Vec::new();
        for bucket in ["carts", "sessions"] {
            records.push(Record::Bucket(BucketProps::new(bucket)));
            for page in 0..3u32 {
                let entries = (0..4)
                    .map(|i| {
                        let key = format!("{bucket}-{page}-{i}").into_bytes();
                        (key, object((i < 3).then_some(b"value")))
                    })
                    .collect();
                let next = (page < 2).then(|| ListCursor {
                    partition: page,
                    after: Some(b"k".to_vec()),
                });
                records.push(Record::Page(VersionPage { entries, next }));
            }
        }
        records.push(Record::End(BackupSummary {
            buckets: 2,
            keys: 24,
            deleted: 6,
        }));
        records
    }

    fn header() -> BackupHeader {
        BackupHeader {
            format: BACKUP_FORMAT,
            started_ms: 1_700_000_000_000,
            written_by: "test".into(),
            buckets: vec!["carts".into(), "sessions".into()],
        }
    }

    fn read_all(path: &Path) -> (Vec<Record>, Option<String>) {
        let (mut reader, read_header) = BackupReader::open(path).expect("open");
        assert_eq!(read_header, header());
        let mut records = Vec::new();
        loop {
            match reader.next_record().expect("read") {
                Next::Record(record) => records.push(record),
                Next::End => return (records, None),
                Next::Cut(why) => return (records, Some(why)),
            }
        }
    }

    /// A backup cut at any byte (a crash or a full disk while writing) reads as its whole
    /// records, and continuing it from its resume point with the records that were lost gives
    /// the same file as a backup that was never interrupted.
    #[test]
    fn a_backup_cut_anywhere_resumes_into_the_same_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let full = dir.path().join("full.backup");
        let mut writer = BackupWriter::create(&full, &header()).expect("create");
        let header_end = writer.written();
        let mut ends = Vec::new();
        for record in records() {
            writer.append(&record).expect("append");
            ends.push(writer.written());
        }
        let length = writer.finish().expect("finish");
        let bytes = std::fs::read(&full).expect("read");
        assert_eq!(bytes.len() as u64, length);
        assert_eq!(read_all(&full), (records(), None));
        let point = resume_point(&full).expect("resume point");
        assert!(point.complete);
        assert_eq!(
            point.summary,
            BackupSummary {
                buckets: 2,
                keys: 24,
                deleted: 6
            }
        );

        let cut_path = dir.path().join("cut.backup");
        for cut in (header_end as usize..bytes.len()).step_by(7) {
            std::fs::write(&cut_path, &bytes[..cut]).expect("write");
            let point = resume_point(&cut_path).expect("resume point");
            let whole = ends.iter().filter(|&&end| end <= cut as u64).count();
            let expected = if whole == 0 {
                header_end
            } else {
                ends[whole - 1]
            };
            assert_eq!(point.valid_len, expected, "cut at {cut}");
            assert!(!point.complete);
            assert_eq!(
                point.cut.is_some(),
                point.valid_len < cut as u64,
                "cut at {cut}"
            );
            let mut writer =
                BackupWriter::continue_at(&cut_path, point.valid_len).expect("continue");
            for record in &records()[whole..] {
                writer.append(record).expect("append");
            }
            writer.finish().expect("finish");
            assert_eq!(
                std::fs::read(&cut_path).expect("read"),
                bytes,
                "cut at {cut}"
            );
        }
    }

    /// A damaged byte is found by the record's checksum; what is not a backup, or is of a later
    /// format, is refused with a message that says so.
    #[test]
    fn damaged_foreign_and_later_files_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.backup");
        let mut writer = BackupWriter::create(&path, &header()).expect("create");
        for record in records() {
            writer.append(&record).expect("append");
        }
        writer.finish().expect("finish");
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let (records_read, cut) = read_all(&path);
        assert!(records_read.len() < records().len());
        assert!(cut.expect("cut").contains("checksum"));

        std::fs::write(&path, b"hello, world\n").expect("write");
        let error = BackupReader::open(&path).err().expect("refused");
        assert!(error.to_string().contains("not a dynamo backup"), "{error}");

        std::fs::remove_file(&path).expect("remove");
        let later = BackupHeader {
            format: BACKUP_FORMAT + 1,
            ..header()
        };
        BackupWriter::create(&path, &later)
            .expect("create")
            .finish()
            .expect("finish");
        let error = BackupReader::open(&path).err().expect("refused");
        assert!(error.to_string().contains("format 2"), "{error}");

        let exists = BackupWriter::create(&path, &header())
            .err()
            .expect("refused");
        assert!(exists.to_string().contains("exists"), "{exists}");
    }
}
