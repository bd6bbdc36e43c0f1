//! Power loss (issue 26): `dynamo` processes on hosts of their own whose data directories sit
//! on `lossyfs`, a FUSE filesystem that keeps written data in memory until fsync, so a power
//! cut loses everything not fsynced (see `dynamo_tests::lossyfs` and `dynamo_tests::power`).
//!
//! Needs root and `/dev/fuse`; where either is missing each test says why and passes without
//! running (anything else that goes wrong fails it). `cargo xtask power` runs the longer form.
//! The two cluster tests take turns: each measures a cluster, not two sharing two cores.

use std::time::Duration;

use dynamo_tests::power::{self, Cut, LossyDisk, PowerCluster};

/// The filesystem itself, so the cluster test below cannot pass by a filesystem that keeps
/// everything: after a power cut, only what was fsynced is there; names are kept.
#[test]
fn lossyfs_keeps_only_what_was_fsynced() {
    use std::io::Write;

    if let Some(reason) = power::unavailable() {
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mountpoint = dir.path().join("mnt");
    let binary = power::lossyfs_binary();
    let mut disk = LossyDisk::mount(&binary, dir.path().join("disk"), mountpoint.clone(), None)
        .unwrap_or_else(|reason| panic!("cannot mount lossyfs: {reason}"));
    let write = |name: &str, data: &[u8], fsync: bool| {
        let mut file = std::fs::File::create(mountpoint.join(name)).expect("create");
        file.write_all(data).expect("write");
        if fsync {
            file.sync_all().expect("fsync");
        }
    };
    write("synced", b"kept", true);
    write("unsynced", b"lost", false);
    write("grown", b"base", true);
    let mut grown = std::fs::OpenOptions::new()
        .append(true)
        .open(mountpoint.join("grown"))
        .expect("open");
    grown.write_all(b"+tail").expect("append");
    drop(grown);
    write("renamed.tmp", b"renamed without fsync", false);
    std::fs::rename(mountpoint.join("renamed.tmp"), mountpoint.join("renamed")).expect("rename");
    std::fs::create_dir(mountpoint.join("dir")).expect("mkdir");
    write("dir/nested", b"nested", true);
    // Before the cut, readers see everything.
    for (name, seen) in [
        ("unsynced", &b"lost"[..]),
        ("grown", b"base+tail"),
        ("renamed", b"renamed without fsync"),
    ] {
        assert_eq!(std::fs::read(mountpoint.join(name)).expect("read"), seen);
    }

    disk.power_off();
    disk.power_on().expect("power on");
    let cases: &[(&str, Option<&[u8]>)] = &[
        ("synced", Some(b"kept")),
        ("unsynced", Some(b"")),
        ("grown", Some(b"base")),
        ("renamed", Some(b"")),
        ("renamed.tmp", None),
        ("dir/nested", Some(b"nested")),
    ];
    for (name, expected) in cases {
        let found = std::fs::read(mountpoint.join(name)).ok();
        assert_eq!(found.as_deref(), *expected, "{name} after the power cut");
    }
    drop(disk);
}

/// Issue 26: three nodes on lossy disks and a client host writing, adding to carts and
/// deleting. Power is cut to n2 for 3 s, then to all three nodes at once for 2 s. Every write
/// is fsynced by at least its coordinator before it is acknowledged (paper 6.1), so after
/// power returns nothing acknowledged is lost, no delete is undone, no hint is left and every
/// replica agrees; and the cluster takes writes again after each cut.
#[test]
fn a_power_cut_loses_no_acknowledged_write() {
    let _turn = take_turn();
    let Some(power) = power_cluster(false) else {
        return;
    };
    let cuts = [Cut::one("power cut ", 1, 3), Cut::all("power cut ", 3, 2)];
    let outcome = run(&power, &cuts);
    assert!(
        outcome.verdict.passed(),
        "{:#?}\n{}",
        outcome.verdict,
        power.cluster.logs()
    );
    assert!(
        outcome.verdict.checked > 100,
        "the workload did too little: {:?}",
        outcome.history.acknowledged
    );
    for cut in &cuts {
        let after = format!("after {}", cut.name);
        assert!(
            outcome
                .history
                .acknowledged
                .get(&after)
                .copied()
                .unwrap_or(0)
                > 0,
            "nothing was acknowledged {after}: {:?}",
            outcome.history.errors
        );
    }
}

/// The negative control: the same cluster on disks that lie about fsyncs of the store's
/// journal (they succeed and keep nothing). A power cut of every node must then lose
/// acknowledged writes, and the checker must say so; otherwise the test above could pass on a
/// filesystem that kept everything, or a checker that saw nothing.
#[test]
fn a_disk_that_lies_about_fsync_loses_acknowledged_writes() {
    let _turn = take_turn();
    let Some(power) = power_cluster(true) else {
        return;
    };
    let outcome = run(&power, &[Cut::all("power cut ", 3, 2)]);
    assert!(
        !outcome.verdict.lost_writes.is_empty(),
        "disks that lie lost nothing: the power cut or the checker does not work: {:?}",
        outcome.history.acknowledged
    );
}

/// Four workers through `cuts`, 5 s of workload before each and after the last; prints the
/// report.
fn run(power: &PowerCluster, cuts: &[Cut]) -> power::Outcome {
    let outcome = power::run(power, cuts, 4, Duration::from_secs(5));
    println!("{}", power::report(cuts, &outcome));
    outcome
}

/// The turn of one cluster test.
fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Three nodes on lossy disks (lying ones with `lying`), or `None` (said why) where this
/// machine cannot cut power; any other failure to start fails the test.
fn power_cluster(lying: bool) -> Option<PowerCluster> {
    if let Some(reason) = power::unavailable() {
        eprintln!("skipped: this machine cannot cut power to test hosts ({reason})");
        return None;
    }
    match PowerCluster::start(3, Some(power::NODE_CONFIG), lying) {
        Ok(power) => Some(power),
        Err(reason) => panic!("cannot start the cluster on lossy disks: {reason}"),
    }
}
