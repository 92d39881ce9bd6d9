//! Runs the same scripted exchange against a real Janus and through the proxy and compares what
//! came back, frame by frame, with the ids normalised. Frames that belong to one step are
//! compared as a multiset: Janus itself sends an `ack` and its `event` in either order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::JanusClient;

#[derive(Debug, Clone)]
pub enum Action {
    /// Send a text frame on a connection and collect frames until every expected `janus` kind
    /// has arrived.
    Send {
        conn: usize,
        text: String,
        expect: Vec<&'static str>,
    },
    /// Close a connection (waiting for the close handshake).
    Close { conn: usize },
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub action: Action,
    /// Remember `data.id` of the reply under this placeholder (`S:x` / `H:x`).
    pub capture: Option<&'static str>,
}

pub fn send(name: &str, conn: usize, text: &str, expect: &[&'static str]) -> Step {
    Step {
        name: name.to_owned(),
        action: Action::Send {
            conn,
            text: text.to_owned(),
            expect: expect.to_vec(),
        },
        capture: None,
    }
}

pub fn send_capture(
    name: &str,
    conn: usize,
    text: &str,
    expect: &[&'static str],
    capture: &'static str,
) -> Step {
    Step {
        capture: Some(capture),
        ..send(name, conn, text, expect)
    }
}

pub fn close(name: &str, conn: usize) -> Step {
    Step {
        name: name.to_owned(),
        action: Action::Close { conn },
        capture: None,
    }
}

/// What one step brought back: normalised frames, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub name: String,
    pub frames: Vec<String>,
}

const STEP_LIMIT: Duration = Duration::from_secs(8);

/// Replaces `{S:x}`, `{H:x}` and `{R:x}` placeholders. `R:` placeholders are random ids made
/// up for this run.
fn render(text: &str, ids: &mut HashMap<String, u64>) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let tail = &rest[start..];
        let is_placeholder = tail.len() > 3 && tail.as_bytes()[2] == b':' && {
            let c = tail.as_bytes()[1];
            c == b'S' || c == b'H' || c == b'R'
        };
        if !is_placeholder {
            out.push_str(&rest[..start + 1]);
            rest = &rest[start + 1..];
            continue;
        }
        let end = tail
            .find('}')
            .ok_or_else(|| anyhow!("unclosed placeholder in {text}"))?;
        let key = &tail[1..end];
        let id = match ids.get(key) {
            Some(id) => *id,
            None if key.starts_with("R:") => {
                let id = 1
                    + (std::process::id() as u64 * 7919 + ids.len() as u64 * 104_729)
                        % 9_000_000_000_000;
                ids.insert(key.to_owned(), id);
                id
            }
            None => bail!("placeholder {key} not captured yet"),
        };
        out.push_str(&rest[..start]);
        out.push_str(&id.to_string());
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn normalise(frame: &Value, ids: &HashMap<String, u64>) -> String {
    let mut frame = frame.clone();
    // jansson's parse error texts cannot be reproduced exactly; the code and prefix can.
    if frame["error"]["code"] == 454 {
        if let Some(reason) = frame["error"]["reason"].as_str() {
            let prefix = if reason.starts_with("Invalid Janus API request") {
                "Invalid Janus API request - <parser message>"
            } else {
                reason
            };
            frame["error"]["reason"] = Value::String(prefix.to_owned());
        }
    }
    let mut text = frame.to_string();
    let mut by_len: Vec<(&String, &u64)> = ids.iter().collect();
    by_len.sort_by_key(|(_, id)| std::cmp::Reverse(id.to_string().len()));
    for (name, id) in by_len {
        text = text.replace(&id.to_string(), &format!("<{name}>"));
    }
    text
}

/// Runs `steps` against `url`, opening connections as they are first used.
pub async fn run(url: &str, steps: &[Step]) -> anyhow::Result<Vec<StepResult>> {
    let mut conns: HashMap<usize, JanusClient> = HashMap::new();
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut results = Vec::new();
    for step in steps {
        match &step.action {
            Action::Close { conn } => {
                if let Some(c) = conns.remove(conn) {
                    c.close().await?;
                }
                results.push(StepResult {
                    name: step.name.clone(),
                    frames: vec![],
                });
            }
            Action::Send { conn, text, expect } => {
                if !conns.contains_key(conn) {
                    conns.insert(*conn, JanusClient::connect(url).await?);
                }
                let client = conns
                    .get_mut(conn)
                    .ok_or_else(|| anyhow!("connection {conn} missing"))?;
                let text = render(text, &mut ids)?;
                client.send_text(&text).await?;
                let mut missing: Vec<&str> = expect.clone();
                let mut frames = Vec::new();
                let deadline = Instant::now() + STEP_LIMIT;
                while !missing.is_empty() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let Some(frame) = client.recv_within(left).await? else {
                        bail!(
                            "{url}: step {:?}: still waiting for {missing:?}; got {frames:?}",
                            step.name
                        );
                    };
                    if let Some(pos) = missing
                        .iter()
                        .position(|k| frame["janus"].as_str() == Some(k))
                    {
                        missing.remove(pos);
                    }
                    frames.push(frame);
                }
                if let Some(name) = step.capture {
                    let id = frames
                        .iter()
                        .find_map(|f| f["data"]["id"].as_u64())
                        .ok_or_else(|| anyhow!("step {:?}: nothing to capture", step.name))?;
                    ids.insert(name.to_owned(), id);
                }
                let mut normalised: Vec<String> =
                    frames.iter().map(|f| normalise(f, &ids)).collect();
                normalised.sort();
                results.push(StepResult {
                    name: step.name.clone(),
                    frames: normalised,
                });
            }
        }
    }
    for (_, c) in conns.drain() {
        let _ = c.close().await;
    }
    Ok(results)
}

/// Step-by-step differences between two runs (empty when they agree).
pub fn differences(direct: &[StepResult], proxied: &[StepResult]) -> Vec<String> {
    let mut out = Vec::new();
    for (d, p) in direct.iter().zip(proxied) {
        if d != p {
            out.push(format!(
                "step {:?}\n  janus: {:#?}\n  proxy: {:#?}",
                d.name, d.frames, p.frames
            ));
        }
    }
    if direct.len() != proxied.len() {
        out.push(format!(
            "step count differs: janus {}, proxy {}",
            direct.len(),
            proxied.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut ids = HashMap::new();
        ids.insert("S:a".to_owned(), 42);
        assert_eq!(
            render(r#"{"session_id":{S:a},"body":{}}"#, &mut ids).unwrap(),
            r#"{"session_id":42,"body":{}}"#
        );
        assert!(render("{H:x}", &mut ids).is_err());
        let r = render("{R:c}", &mut ids).unwrap();
        assert_eq!(render("{R:c}", &mut ids).unwrap(), r);
        let f = serde_json::json!({"session_id": 42, "error": {"reason": "No such session 42"}});
        assert_eq!(
            normalise(&f, &ids),
            r#"{"session_id":<S:a>,"error":{"reason":"No such session <S:a>"}}"#
        );
    }
}
