//! What the audiobridge tests (`tests/audiobridge*.rs`) share: a client with an audiobridge
//! handle, the audio offer it joins with, and room ids for one run.

use std::time::Duration;

use crate::scenario::{peer_on, Peer};
use crate::videoroom_client::OFFER;

pub const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
/// How long one request, or the event it causes, may take.
pub const STEP_LIMIT: Duration = Duration::from_secs(8);

/// The audio part of the browser offer of the videoroom tests.
pub fn offer() -> String {
    let audio = OFFER
        .split("m=video")
        .next()
        .unwrap_or(OFFER)
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    audio
}

/// A client of `url` with an audiobridge handle.
pub async fn user(url: &str) -> anyhow::Result<Peer> {
    peer_on(url, AUDIOBRIDGE).await
}

/// Room ids for one run (below 2^53, distinct per process).
pub fn room_ids() -> [u64; 3] {
    let base = 1_000_000 + (std::process::id() as u64 % 100_000) * 10;
    [base + 1, base + 2, base + 3]
}
