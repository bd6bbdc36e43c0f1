//! The cluster commands: membership (`leave`, `node remove`), buckets, handoff, and what
//! `status` and `ring` show.
//!
//! This module must not know how nodes decide membership or placement: it asks a node and
//! prints the answer.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use dynamo_protocol::{BucketProps, Request, Response};

use crate::args::{Connection, CreateBucketArgs, MemberChange};
use crate::confirm;
use crate::print::{anti_entropy_line, handoff_line, member_state, reaper_line};

/// `dynamo node remove NAME`: a member that is down for good leaves the ring.
pub(crate) async fn remove_node(change: MemberChange) -> Result<ExitCode> {
    let name = &change.name;
    confirm(
        &format!("{name} will be taken out of the ring for good; its partitions get new owners"),
        change.yes,
    )?;
    let request = Request::RemoveNode { name: name.clone() };
    let answer = change
        .connection
        .client()?
        .request_any(&request)
        .await
        .with_context(|| format!("removing {name}"))?;
    let Response::Ring(Some(ring)) = answer else {
        bail!("removing {name}: the node answered {answer:?}");
    };
    outln!(
        "{name} removed: ring version {} has {} members; anti-entropy refills its partitions",
        ring.version(),
        ring.members().len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `dynamo leave NAME`: the member hands its partitions to the others.
pub(crate) async fn leave(change: MemberChange) -> Result<ExitCode> {
    let (_, node) = change
        .ask_member(
            "will leave the cluster; its partitions move to the other members",
            &Request::Leave,
        )
        .await?;
    outln!(
        "{} ({node}) is leaving; its partitions move to the other members",
        change.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `dynamo bucket create`: creates (or, with `--update`, changes) a bucket.
pub(crate) async fn create_bucket(args: CreateBucketArgs) -> Result<ExitCode> {
    let CreateBucketArgs {
        name,
        n,
        r,
        w,
        pr,
        pw,
        resolver,
        update,
        connection,
    } = args;
    let props = BucketProps {
        name: name.clone(),
        n,
        r,
        w,
        pr,
        pw,
        resolver,
    };
    let client = connection.client()?;
    let describe = |b: &BucketProps| {
        format!(
            "n={} r={} w={} pr={} pw={} resolver={}",
            b.n, b.r, b.w, b.pr, b.pw, b.resolver
        )
    };
    let buckets = client.list_buckets().await.context("listing buckets")?;
    let existing = buckets.iter().find(|b| b.name == name);
    if let Some(existing) = existing {
        if *existing == props {
            outln!("bucket {name} already has {}", describe(existing));
            return Ok(ExitCode::SUCCESS);
        }
        if !update {
            bail!(
                "bucket {name} exists with {}; pass --update to change it to {}",
                describe(existing),
                describe(&props)
            );
        }
    }
    let status = client.status().await.context("reading the members")?;
    let live = status
        .members
        .iter()
        .filter(|m| m.in_ring && m.up && m.status != "left")
        .count();
    let largest = [n, r, w, pr, pw].into_iter().max().unwrap_or(0);
    if largest > live {
        eprintln!(
            "warning: {} asks for {largest} replicas but only {live} members are up: requests needing them fail until more join",
            describe(&props)
        );
    }
    client
        .create_bucket(props.clone())
        .await
        .with_context(|| format!("creating bucket {name}"))?;
    let verb = if existing.is_some() {
        "changed to"
    } else {
        "created with"
    };
    outln!("bucket {name} {verb} {}", describe(&props));
    Ok(ExitCode::SUCCESS)
}

/// `dynamo handoff cancel NAME`: drops the member's partition transfers.
pub(crate) async fn cancel_handoff(change: MemberChange) -> Result<ExitCode> {
    let (answer, _) = change
        .ask_member(
            "will drop its partition transfers; anti-entropy copies that data instead, more slowly",
            &Request::CancelHandoff,
        )
        .await?;
    let Response::Cancelled(dropped) = answer else {
        bail!("{} answered {answer:?}", change.name);
    };
    outln!("{}: {dropped} partition transfers cancelled", change.name);
    Ok(ExitCode::SUCCESS)
}

/// `dynamo bucket list`.
pub(crate) async fn list_buckets(connection: Connection) -> Result<ExitCode> {
    let buckets = connection
        .client()?
        .list_buckets()
        .await
        .context("listing buckets")?;
    if connection.json {
        let list: Vec<_> = buckets
            .iter()
            .map(|b| serde_json::json!({"name": b.name, "n": b.n, "r": b.r, "w": b.w, "pr": b.pr, "pw": b.pw, "resolver": b.resolver.name()}))
            .collect();
        outln!("{}", serde_json::Value::Array(list));
    } else {
        outln!(
            "{:<24} {:>3} {:>3} {:>3} {:>3} {:>3}  resolver",
            "bucket",
            "n",
            "r",
            "w",
            "pr",
            "pw"
        );
        for b in buckets {
            outln!(
                "{:<24} {:>3} {:>3} {:>3} {:>3} {:>3}  {}",
                b.name,
                b.n,
                b.r,
                b.w,
                b.pr,
                b.pw,
                b.resolver
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynamo status`: members, up or down, ownership, hints, handoff, anti-entropy, reaper.
pub(crate) async fn status(connection: Connection) -> Result<ExitCode> {
    let status = connection
        .client()?
        .status()
        .await
        .context("reading the status")?;
    // Primary shares sum to 100%, replicated shares to N x 100%.
    let total_partitions: u32 = status.members.iter().map(|m| m.partitions).sum();
    let primary_percent = |m: &dynamo_protocol::MemberStatus| {
        if total_partitions == 0 {
            0.0
        } else {
            f64::from(m.partitions) * 100.0 / f64::from(total_partitions)
        }
    };
    if connection.json {
        let members: Vec<_> = status
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id, "address": m.address, "zone": m.zone, "capacity": m.capacity,
                    "state": member_state(m), "status": m.status, "up": m.up, "in_ring": m.in_ring,
                    "partitions": m.partitions, "primary_percent": primary_percent(m),
                    "replicated_percent": m.ownership_percent,
                    "pending_hints": m.pending_hints, "disk_full": m.disk_full,
                })
            })
            .collect();
        let anti_entropy = serde_json::to_value(&status.anti_entropy).unwrap_or_default();
        outln!(
            "{}",
            serde_json::json!({"node": status.node, "ring_version": status.ring_version, "members": members, "anti_entropy": anti_entropy})
        );
    } else {
        outln!(
            "as seen by {} (ring version {})",
            status.node,
            status.ring_version
        );
        outln!(
            "{:<7} {:<16} {:<22} {:<10} {:<8} {:>10} {:>8} {:>10} {:>6}",
            "state",
            "node",
            "address",
            "zone",
            "status",
            "partitions",
            "primary",
            "replicated",
            "hints"
        );
        for m in &status.members {
            outln!(
                "{:<7} {:<16} {:<22} {:<10} {:<8} {:>10} {:>7.1}% {:>9.1}% {:>6}",
                member_state(m),
                m.id,
                m.address,
                m.zone,
                m.status,
                m.partitions,
                primary_percent(m),
                m.ownership_percent,
                m.pending_hints
            );
        }
        outln!(
            "primary: share of the partitions a node is first replica of (sums to 100%); replicated: share of the key space it stores (sums to N x 100%)"
        );
        outln!("{}", anti_entropy_line(&status.anti_entropy));
        outln!("{}", handoff_line(&status.handoff));
        outln!("{}", reaper_line(&status.reaper));
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynamo ring`: who owns which partition.
pub(crate) async fn ring(connection: Connection) -> Result<ExitCode> {
    let Some(ring) = connection
        .client()?
        .ring()
        .await
        .context("reading the ring")?
    else {
        bail!("the node has no ring yet");
    };
    if connection.json {
        let owners: Vec<String> = (0..ring.partition_count())
            .map(|p| ring.partition_owner(p).to_string())
            .collect();
        outln!(
            "{}",
            serde_json::json!({"version": ring.version(), "partitions": ring.partition_count(), "owners": owners})
        );
    } else {
        outln!(
            "ring version {}, {} partitions, target N {}",
            ring.version(),
            ring.partition_count(),
            ring.target_n()
        );
        for (node, count) in ring.partition_counts() {
            outln!("{node:<16} {count:>6} partitions");
        }
        let mut out = std::io::stdout().lock();
        for p in 0..ring.partition_count() {
            let range = ring.partition_range(p);
            let _ = writeln!(
                out,
                "{p:>6} {:032x}..{:032x} {}",
                range.start,
                range.end,
                ring.partition_owner(p)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
