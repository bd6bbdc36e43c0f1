//! `cargo xtask chaos`: faults across real hosts (network namespaces, see `dynamo_tests::hosts`)
//! against a five-node cluster of `dynamo` processes, a workload from a sixth host, and the
//! checker of `dynamo_tests::chaos` after each heal. Prints one table row per fault, then the
//! bench from the client host against the same from a node's own host.
//!
//! Usage: `chaos [--fault-seconds S] [--only NAME]`. Needs root (it skips otherwise) and the
//! release `dynamo` binary beside it, which `cargo xtask chaos` builds.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dynamo_tests::chaos::{self, Phase};
use dynamo_tests::host_cluster::{Advertise, HostCluster};
use dynamo_tests::hosts::describe;

/// Node settings: anti-entropy every 3 s, so convergence is measured in seconds.
const CONFIG: &str = "anti_entropy_interval_ms = 3000\n";

/// Seconds of workload before each fault and after its heal.
const QUIET_SECONDS: u64 = 5;

/// One fault: how it starts and how it is healed.
struct Fault {
    name: &'static str,
    start: fn(&HostCluster),
    heal: fn(&HostCluster),
}

const FAULTS: &[Fault] = &[
    Fault {
        name: "partition n1,n2 / n3,n4,n5",
        start: |c| c.network.cut(&[0, 1], &[2, 3, 4]),
        heal: |c| c.network.heal(),
    },
    Fault {
        name: "bridge: n1,n2 / n4,n5, n3 sees both",
        start: |c| c.network.cut(&[0, 1], &[3, 4]),
        heal: |c| c.network.heal(),
    },
    Fault {
        name: "one way: n1's packets to the others lost",
        start: |c| {
            for to in 1..5 {
                c.network.cut_one_way(0, to);
            }
        },
        heal: |c| c.network.heal(),
    },
    Fault {
        name: "isolated: n1 / the rest",
        start: |c| c.network.cut(&[0], &[1, 2, 3, 4]),
        heal: |c| c.network.heal(),
    },
    Fault {
        name: "kill -9 n2, restart",
        start: |c| c.kill(1),
        heal: |c| c.start_node(1),
    },
    Fault {
        name: "pause n2 (SIGSTOP), continue",
        start: |c| c.signal(1, "STOP"),
        heal: |c| c.signal(1, "CONT"),
    },
    Fault {
        name: "kill -9 n3, restart on a new address",
        start: |c| {
            c.kill(2);
            c.network.move_host(2, 50);
        },
        heal: |c| c.start_node(2),
    },
];

fn main() -> ExitCode {
    let mut fault_seconds = 10;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--fault-seconds", Some(value)) => match value.parse() {
                Ok(seconds) => fault_seconds = seconds,
                Err(_) => return usage(&format!("not a number of seconds: {value}")),
            },
            ("--only", Some(name)) => only = Some(name),
            _ => return usage(&format!("unexpected argument {arg}")),
        }
    }
    println!("{}", chaos::REPORT_HEADER);
    let mut failed = Vec::new();
    for fault in FAULTS {
        if only.as_deref().is_some_and(|o| !fault.name.contains(o)) {
            continue;
        }
        let cluster = match HostCluster::start_with(5, Advertise::Addresses, Some(CONFIG)) {
            Ok(cluster) => cluster,
            Err(reason) => {
                println!("skipped: this machine cannot make test hosts ({reason})");
                return ExitCode::SUCCESS;
            }
        };
        let (row, passed) = run_fault(&cluster, fault, fault_seconds);
        println!("{row}");
        if !passed {
            failed.push(fault.name);
        }
    }
    if only.is_none() {
        bench_from_hosts();
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!(
            "lost or undone data, or no convergence, under: {}",
            failed.join("; ")
        );
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("{problem}\nusage: chaos [--fault-seconds S] [--only NAME]");
    ExitCode::from(2)
}

/// Runs the workload through one fault and checks the history; the table row and whether the
/// checker found nothing wrong.
fn run_fault(cluster: &HostCluster, fault: &Fault, fault_seconds: u64) -> (String, bool) {
    chaos::create_buckets(cluster);
    let tls = cluster.client_tls("chaos");
    let phase = Phase::new("before");
    let total = QUIET_SECONDS * 2 + fault_seconds;
    let until = Instant::now() + Duration::from_secs(total);
    let (history, healed) = std::thread::scope(|scope| {
        let workload = scope
            .spawn(|| chaos::run_workload(cluster, &tls, &phase, 8, until, Duration::from_secs(2)));
        std::thread::sleep(Duration::from_secs(QUIET_SECONDS));
        phase.set("fault");
        (fault.start)(cluster);
        std::thread::sleep(Duration::from_secs(fault_seconds));
        (fault.heal)(cluster);
        phase.set("healed");
        let healed = Instant::now();
        (workload.join().expect("workload"), healed)
    });
    let verdict = chaos::check(cluster, &tls, &history, healed, Duration::from_secs(120));
    let row = chaos::report_row(fault.name, &history, &verdict, "fault");
    if !verdict.passed() {
        eprintln!("{}: {verdict:#?}\n{}", fault.name, cluster.logs());
    }
    if let Some((count, first)) = history.errors.get("fault") {
        eprintln!(
            "{}: {count} errors during the fault, the first: {first}",
            fault.name
        );
    }
    (row, verdict.passed())
}

/// `dynamo bench` (YCSB A, 20 s) from the client host, then from n1's own host.
fn bench_from_hosts() {
    let Ok(cluster) = HostCluster::start(3, Advertise::Addresses) else {
        return;
    };
    println!();
    println!("| bench (YCSB A, concurrency 32) | ops/s | p99 ms by operation |\n|---|---|---|");
    let args = [
        "bench",
        "--workload",
        "a",
        "--load",
        "--keys",
        "10000",
        "--seconds",
        "20",
        "--concurrency",
        "32",
        "--json",
    ];
    for (label, host) in [
        ("from another host", cluster.client_host()),
        ("from n1's host", 0),
    ] {
        let output = cluster.cli_on(host, &args);
        let text = String::from_utf8_lossy(&output.stdout);
        let report: Option<serde_json::Value> = text
            .lines()
            .last()
            .and_then(|line| serde_json::from_str(line).ok());
        match report {
            Some(report) => {
                let p99: Vec<String> = report["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| {
                        let op = o["op"].as_str().unwrap_or("?");
                        format!("{op} {:.2}", o["p99_ms"].as_f64().unwrap_or_default())
                    })
                    .collect();
                println!(
                    "| {label} | {:.0} | {} |",
                    report["ops_per_sec"].as_f64().unwrap_or_default(),
                    p99.join(", ")
                );
            }
            None => println!("| {label} | failed: {} | |", describe(&output)),
        }
    }
}
