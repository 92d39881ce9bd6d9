//! Every frame captured from a real Janus 1.1.2 (../shared/reference/janus-1.1.2-frames.md,
//! copied to tests/data) must round-trip through the typed frames unchanged, key order
//! included, and every envelope error must be reproduced byte for byte by `Incoming`.

use janus_protocol::{ClientRequest, Incoming, ServerMessage};
use serde_json::Value;

const FRAMES: &str = include_str!("data/janus-1.1.2-frames.txt");

/// Replaces `<sessionN>` / `<handleN>` placeholders with distinct numbers.
fn concrete(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find('>').map(|e| e + 1).unwrap_or(tail.len());
        let token = &tail[1..end.saturating_sub(1)];
        let number = if let Some(n) = token.strip_prefix("session") {
            Some(1_000_000 + n.parse::<u64>().unwrap_or(0))
        } else {
            token
                .strip_prefix("handle")
                .map(|n| 2_000_000 + n.parse::<u64>().unwrap_or(0))
        };
        match number {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The frames of one direction, with their 1-based line numbers. The admin API section is left
/// out of the client-API checks (same request names, other answers).
fn frames(direction: char, with_admin: bool) -> Vec<(usize, String)> {
    let mut section = "";
    let mut out = Vec::new();
    for (i, l) in FRAMES.lines().enumerate() {
        if let Some(title) = l.strip_prefix("## ") {
            section = title;
        } else if l.starts_with(direction) && (with_admin || !section.starts_with("Admin API")) {
            out.push((i + 1, concrete(&l[2..])));
        }
    }
    out
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

const ADMIN_REPLIES: [&str; 4] = ["sessions", "handles", "handle_id", "status"];

#[test]
fn every_server_frame_round_trips() {
    let mut checked = 0;
    for (line, text) in frames('<', true) {
        let original: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("line {line}: {e}"));
        let typed: ServerMessage = serde_json::from_value(original.clone())
            .unwrap_or_else(|e| panic!("line {line}: {e}: {text}"));
        let back = serde_json::to_value(&typed).unwrap();
        assert_eq!(back, original, "line {line}");
        let admin = ADMIN_REPLIES.iter().any(|k| original.get(k).is_some());
        if !admin {
            assert_eq!(keys(&back), keys(&original), "key order, line {line}");
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} frames");
}

#[test]
fn every_client_request_round_trips_or_is_rejected_like_janus() {
    let lines: Vec<&str> = FRAMES.lines().collect();
    let mut typed_ok = 0;
    let mut envelope_errors = 0;
    for (line, text) in frames('>', false) {
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if let Some(v) = &value {
            if let Ok(req) = serde_json::from_value::<ClientRequest>(v.clone()) {
                assert_eq!(&serde_json::to_value(&req).unwrap(), v, "line {line}");
                typed_ok += 1;
            }
        }
        // Envelope and path errors need no server state: the reply must be reproduced exactly.
        let outcome = Incoming::parse(&text).and_then(|i| i.target());
        if let Err(err) = outcome {
            let reply_line = lines[line]; // the line after the request (1-based `line`)
            assert!(
                reply_line.starts_with("< "),
                "line {line}: no reply after request"
            );
            let expected: Value = serde_json::from_str(&concrete(&reply_line[2..])).unwrap();
            let ours = serde_json::to_value(ServerMessage::error(&err)).unwrap();
            if err.code.code() == 454 {
                assert_eq!(ours["error"]["code"], expected["error"]["code"]);
                assert!(ours.get("transaction").is_none());
            } else {
                assert_eq!(ours, expected, "line {line}: {text}");
                assert_eq!(keys(&ours), keys(&expected));
            }
            envelope_errors += 1;
        }
    }
    assert!(typed_ok > 60, "only {typed_ok} typed requests");
    assert!(
        envelope_errors >= 8,
        "only {envelope_errors} envelope errors"
    );
}
