//! `lossyfs BACKING MOUNTPOINT`: mounts [`dynamo_tests::lossyfs`] over `BACKING` at
//! `MOUNTPOINT` and serves it until it is unmounted. Written data reaches `BACKING` only when
//! fsynced, so `kill -9` of this process is a power cut of whatever runs on the mount.
//!
//! With `LOSSYFS_LIE_ABOUT=SUFFIX` it is a disk that lies: fsyncs of files whose name ends
//! with SUFFIX succeed and keep nothing (the negative control of the power-loss tests).
//!
//! Needs `/dev/fuse` and `fusermount3` (or root). Exits 1 with the reason when it cannot mount.

use std::path::PathBuf;
use std::process::ExitCode;

use dynamo_tests::lossyfs::LossyFs;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!("usage: lossyfs BACKING MOUNTPOINT");
        return ExitCode::from(2);
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("lossyfs".into()),
        fuser::MountOption::Subtype("lossyfs".into()),
    ];
    let lie_about = std::env::var("LOSSYFS_LIE_ABOUT").ok();
    let filesystem = LossyFs::new(PathBuf::from(backing)).lying_about(lie_about);
    match fuser::mount(filesystem, mountpoint, &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lossyfs: cannot serve {mountpoint} over {backing}: {e}");
            ExitCode::FAILURE
        }
    }
}
