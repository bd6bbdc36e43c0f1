//! What `dynamo` prints: values and siblings, resolutions and sets, and the status lines of
//! members, the reaper, handoff and anti-entropy, in text for people and JSON for scripts.
//!
//! This module must not talk to a cluster: it formats what a command got back.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use dynamo_client::client::GetOutcome;
use dynamo_client::sets::{SetOp, SetView};
use dynamo_protocol::GetReply;
use dynamo_resolve::{Resolution, Resolver};

/// A key as it appears in messages: at most 64 characters, with the length when cut.
pub(crate) fn shown(key: &str) -> String {
    const SHOWN: usize = 64;
    if key.chars().count() <= SHOWN {
        return key.to_owned();
    }
    let head: String = key.chars().take(SHOWN).collect();
    format!("{head}... ({} bytes)", key.len())
}

/// A value for a person: as is when it is text, otherwise visibly escaped and labelled.
pub(crate) fn printable(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) =>
        {
            text.to_owned()
        }
        _ => format!("<binary, {} bytes> {}", value.len(), value.escape_ascii()),
    }
}

/// `get --raw` / `--output FILE`: the exact bytes of the one value. Exit codes as for `get`.
pub(crate) fn write_exact(outcome: &GetOutcome, output: Option<&Path>) -> Result<ExitCode> {
    let reply = match outcome {
        GetOutcome::NotFound { .. } => {
            eprintln!("not found");
            return Ok(ExitCode::from(3));
        }
        GetOutcome::Found(reply) => reply,
    };
    let values = match &reply.resolution {
        None => reply.values.as_slice(),
        Some(resolution) if resolution.value.is_none() => {
            eprintln!("not found ({})", resolution.notes.join("; "));
            return Ok(ExitCode::from(3));
        }
        Some(resolution) => resolution.value.as_slice(),
    };
    let [value] = values else {
        eprintln!(
            "error: {} siblings; --raw and --output write one value: read them with --json (base64) and resolve them with a write that carries the context",
            reply.values.len()
        );
        return Ok(ExitCode::from(4));
    };
    if let Some(path) = output {
        std::fs::write(path, value).with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {} bytes to {}", value.len(), path.display());
        outln!("context: {}", reply.context);
    } else {
        let mut out = std::io::stdout().lock();
        if let Err(error) = out.write_all(value).and_then(|()| out.flush())
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            return Err(error).context("writing to stdout");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a get's outcome and returns its exit code: 0 one value, 3 not found, 4 siblings.
/// JSON carries values as base64 (`"encoding": "base64"`), so any bytes survive.
pub(crate) fn print_get(outcome: &GetOutcome, json: bool) -> ExitCode {
    use base64::Engine as _;
    match outcome {
        GetOutcome::Found(GetReply {
            resolution: Some(resolution),
            context,
            ..
        }) => {
            print_resolution(resolution, context, json);
            if resolution.value.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        GetOutcome::Found(reply) => {
            if json {
                let values: Vec<String> = reply
                    .values
                    .iter()
                    .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
                    .collect();
                outln!(
                    "{}",
                    serde_json::json!({"found": true, "encoding": "base64", "values": values, "context": reply.context})
                );
            } else {
                if reply.values.len() > 1 {
                    outln!("{} siblings:", reply.values.len());
                }
                for value in &reply.values {
                    outln!("{}", printable(value));
                }
                outln!("context: {}", reply.context);
            }
            if reply.values.len() > 1 {
                ExitCode::from(4)
            } else {
                ExitCode::SUCCESS
            }
        }
        GetOutcome::NotFound { context } => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"found": false, "context": context})
                );
            } else {
                outln!("not found");
            }
            ExitCode::from(3)
        }
    }
}

/// A resolved value as a person reads it: a set's items one per line, anything else as text.
pub(crate) fn resolved_lines(resolver: Resolver, value: &[u8]) -> Vec<String> {
    let items: Option<Vec<Vec<u8>>> = match resolver {
        Resolver::Cart => dynamo_resolve::Cart::decode(value)
            .ok()
            .map(|c| c.items().map(<[u8]>::to_vec).collect()),
        Resolver::Union => dynamo_resolve::ItemSet::decode(value)
            .ok()
            .map(|s| s.0.into_iter().collect()),
        _ => None,
    };
    match items {
        Some(items) if items.is_empty() => vec!["(empty)".to_string()],
        Some(items) => items.iter().map(|i| printable(i)).collect(),
        None => vec![printable(value)],
    }
}

/// Prints a get that the bucket's resolver resolved: the value, then what was merged.
pub(crate) fn print_resolution(resolution: &Resolution, context: &str, json: bool) {
    use base64::Engine as _;
    let engine = &base64::engine::general_purpose::STANDARD;
    if json {
        let discarded: Vec<String> = resolution
            .discarded
            .iter()
            .map(|v| engine.encode(v))
            .collect();
        outln!(
            "{}",
            serde_json::json!({
                "found": resolution.value.is_some(),
                "resolver": resolution.resolver.name(),
                "encoding": "base64",
                "value": resolution.value.as_ref().map(|v| engine.encode(v)),
                "merged": resolution.merged,
                "notes": resolution.notes,
                "discarded": discarded,
                "context": context,
            })
        );
        return;
    }
    match &resolution.value {
        Some(value) => {
            for line in resolved_lines(resolution.resolver, value) {
                outln!("{line}");
            }
        }
        None => outln!("not found"),
    }
    outln!(
        "resolved by {}: {}",
        resolution.resolver,
        match resolution.merged {
            1 => "one version, nothing to merge".to_string(),
            n => format!("{n} versions merged"),
        }
    );
    for note in &resolution.notes {
        outln!("  {note}");
    }
    for value in &resolution.discarded {
        outln!("  discarded: {}", printable(value));
    }
    outln!("context: {context}");
}

/// Prints a cart after an operation.
pub(crate) fn print_set(view: &SetView, op: Option<&SetOp>, json: bool) {
    if json {
        let items: Vec<String> = view.items.iter().map(|i| printable(i)).collect();
        outln!(
            "{}",
            serde_json::json!({"resolver": view.resolver.name(), "items": items, "merged": view.merged, "notes": view.notes, "changed": view.changed})
        );
        return;
    }
    match op {
        Some(SetOp::Add(item)) if view.changed => outln!("added {}", printable(item)),
        Some(SetOp::Add(item)) => outln!("{} was already in the cart", printable(item)),
        Some(SetOp::Remove(item)) if view.changed => outln!("removed {}", printable(item)),
        Some(SetOp::Remove(item)) => outln!("{} was not in the cart", printable(item)),
        None => {}
    }
    if view.merged > 1 {
        outln!("{} versions merged ({})", view.merged, view.resolver);
    }
    for note in &view.notes {
        outln!("  {note}");
    }
    if view.items.is_empty() {
        outln!("the cart is empty");
    } else {
        outln!("cart ({}):", view.items.len());
        for item in &view.items {
            outln!("  {}", printable(item));
        }
    }
}

/// UP, DOWN, LEFT, REMOVED or FULL. A member that left is shown as left by every node, itself
/// included (its own failure detector still calls it up); one removed for good (`dynamo node
/// remove`) as removed, whether it is down or came back; one that is up with a full disk
/// (serving reads, taking no writes) as full.
pub(crate) fn member_state(member: &dynamo_protocol::MemberStatus) -> &'static str {
    match (member.status.as_str(), member.up) {
        ("left", _) => "LEFT",
        ("removed", _) => "REMOVED",
        (_, true) if member.disk_full => "FULL",
        (_, true) => "UP",
        (_, false) => "DOWN",
    }
}

/// One line on the tombstones the answering node reaped.
pub(crate) fn reaper_line(reaper: &dynamo_protocol::ReaperStatus) -> String {
    if reaper.grace_ms == 0 {
        return "tombstones: kept forever (tombstone_grace_ms = 0)".into();
    }
    format!(
        "tombstones: {} reaped, {} kept for now (reaped once {} s old, every replica holds them and no node holds a hint of the key)",
        reaper.reaped,
        reaper.kept,
        reaper.grace_ms / 1000
    )
}

/// One line on the partitions the answering node is handing to other nodes.
pub(crate) fn handoff_line(handoff: &dynamo_protocol::HandoffStatus) -> String {
    let mut parts: Vec<String> = handoff
        .running
        .iter()
        .map(|(partition, to, keys)| {
            format!("p{partition} to {to} in progress ({keys} keys acknowledged)")
        })
        .collect();
    if handoff.queued > 0 {
        parts.push(format!("{} partitions queued", handoff.queued));
    }
    if handoff.failed > 0 {
        parts.push(format!(
            "{} given up (anti-entropy covers them)",
            handoff.failed
        ));
    }
    if parts.is_empty() {
        "handoff: none pending".into()
    } else {
        format!("handoff: {}", parts.join("; "))
    }
}

/// One line on anti-entropy (paper 4.7) as the answering node runs it.
pub(crate) fn anti_entropy_line(ae: &dynamo_protocol::AntiEntropyStatus) -> String {
    if !ae.enabled {
        return "anti-entropy: off".into();
    }
    let window = ae.interval_ms.saturating_mul(2);
    let recent = ae
        .pairs
        .iter()
        .filter(|p| p.agreed_ms_ago.is_some_and(|ago| ago <= window))
        .count();
    let oldest = if ae.pairs.iter().any(|p| p.agreed_ms_ago.is_none()) {
        "some not yet compared".to_owned()
    } else {
        let ago = ae
            .pairs
            .iter()
            .filter_map(|p| p.agreed_ms_ago)
            .max()
            .unwrap_or(0);
        format!("oldest agreement {:.1} s ago", ago as f64 / 1000.0)
    };
    let running: Vec<String> = ae
        .in_progress
        .iter()
        .map(|p| format!("p{} with {}", p.partition, p.peer))
        .collect();
    let running = if running.is_empty() {
        "none in progress".to_owned()
    } else {
        format!("in progress: {}", running.join(", "))
    };
    format!(
        "anti-entropy: every {:.0} s; {recent} of {} partition/peer pairs agreed within {:.0} s ({oldest}); {running}; {} keys repaired ({} bytes){}",
        ae.interval_ms as f64 / 1000.0,
        ae.pairs.len(),
        window as f64 / 1000.0,
        ae.repaired_keys,
        ae.bytes_moved,
        if ae.throttled {
            format!(
                "; held to {:.1} MiB/s to spare client requests",
                ae.allowed_bytes_per_sec as f64 / (1024.0 * 1024.0)
            )
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a node that left showed itself UP while its peers showed it DOWN. Issue 26: a
    /// removed member and a full disk are shown.
    #[test]
    fn member_states_table() {
        let cases = [
            ("alive", true, false, "UP"),
            ("alive", false, false, "DOWN"),
            ("leaving", true, false, "UP"),
            ("left", true, false, "LEFT"),
            ("left", false, false, "LEFT"),
            ("removed", false, false, "REMOVED"),
            ("removed", true, false, "REMOVED"),
            ("alive", true, true, "FULL"),
            ("alive", false, true, "DOWN"),
        ];
        for (status, up, disk_full, expected) in cases {
            let member = dynamo_protocol::MemberStatus {
                id: "n1".into(),
                address: String::new(),
                zone: String::new(),
                capacity: 1,
                status: status.into(),
                up,
                in_ring: true,
                partitions: 0,
                ownership_percent: 0.0,
                pending_hints: 0,
                phi: None,
                disk_full,
            };
            assert_eq!(member_state(&member), expected, "{status} {up}");
        }
    }

    #[test]
    fn values_are_printed_as_text_or_escaped() {
        let cases: [(&[u8], &str); 4] = [
            (b"hello", "hello"),
            (b"two\nlines", "two\nlines"),
            (
                &[0x41, 0xff, 0x00, 0xfe],
                r"<binary, 4 bytes> A\xff\x00\xfe",
            ),
            (b"bell\x07", r"<binary, 5 bytes> bell\x07"),
        ];
        for (value, expected) in cases {
            assert_eq!(printable(value), expected);
        }
        assert_eq!(
            shown(&"k".repeat(100)).len(),
            64 + " ... (100 bytes)".len() - 1
        );
    }
}
