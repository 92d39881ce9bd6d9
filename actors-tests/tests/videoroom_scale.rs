//! Signalling scale of a videoroom room spanning backends (issue 7): 50 participants in one
//! room through the proxy (a `proxy-under-test` process, so its memory is its own) in front
//! of three real Janus servers with `plugins.videoroom_publishers_per_backend = 17` (17, 17
//! and 16 participants per server). Each joins with `joinandconfigure` and a real SDP offer;
//! the room has `notify_joining`, so every participant learns of every join (`joined`'s
//! `publishers` and `attendees`, then `joining` events) and of every leave (`leaving`).
//! No PeerConnection comes up (no media), so nothing is mirrored: what participants learn
//! about those of the other servers comes from the proxy's own notices.
//!
//! Proven: each participant's view of the room (who is in it, from its own events) equals
//! the room's (the 50, then the 25 left after every other one `leave`s), the proxy's merged
//! `listparticipants` says the same, no request or event carries an error, and once everyone
//! has detached no videoroom handle is left on any server (the room's coordinator has ended
//! and detached its control handles). The proxy's RSS before, with the room full and at the
//! end is printed (recorded in BENCHMARKS.md).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actors_tests::proxy_process::ProxyProcess;
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::{http, init_logging, JanusServer};
use anyhow::{bail, ensure};
use serde_json::{json, Value};

const VIDEOROOM: &str = "janus.plugin.videoroom";
const OFFER: &str = include_str!("data/videocall-offer.sdp");
const ROOM: u64 = 7050;
const PARTICIPANTS: u64 = 50;
/// Bounds for a busy 2-core machine (other engineers compile at the same time).
const STEP_LIMIT: Duration = Duration::from_secs(15);
const VIEWS_LIMIT: Duration = Duration::from_secs(30);

/// The proxy as a process in front of `janus` (`janus-0`, …), rooms spanning servers with
/// 17 publishers per server.
fn start_proxy(janus: &[&JanusServer]) -> anyhow::Result<ProxyProcess> {
    let mut config = "[plugins]\nvideoroom_publishers_per_backend = 17\n".to_owned();
    for (n, j) in janus.iter().enumerate() {
        config.push_str(&format!(
            "[[backend.servers]]\nname = \"janus-{n}\"\nurl = \"{}\"\n",
            j.ws_url()
        ));
    }
    ProxyProcess::start(env!("CARGO_BIN_EXE_proxy-under-test"), &config)
}

async fn wait_selectable(proxy: &ProxyProcess, servers: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP_LIMIT;
    loop {
        let mut ready = 0;
        for n in 0..servers {
            if let Ok(r) = http::get_auth(
                proxy.admin_addr(),
                &format!("/backend_servers/janus-{n}"),
                actors_tests::TEST_ADMIN_TOKEN,
            )
            .await
            {
                ready += usize::from(r.status == 200 && r.json()["selectable"] == true);
            }
        }
        if ready == servers {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{ready} of {servers} servers selectable within {STEP_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One participant: its connection, its publisher id, the frames it got that were not
/// answers, and the ids it knows to be in the room.
struct Participant {
    peer: Peer,
    id: u64,
    view: BTreeSet<u64>,
    /// Ids it was told joined / left (each at most once, as from one Janus).
    joins: BTreeSet<u64>,
    leaves: BTreeSet<u64>,
}

impl Participant {
    fn new(peer: Peer, id: u64) -> Participant {
        Participant {
            peer,
            id,
            view: BTreeSet::new(),
            joins: BTreeSet::new(),
            leaves: BTreeSet::new(),
        }
    }

    /// Applies one frame to the view; an error anywhere fails the test.
    fn see(&mut self, frame: &Value) -> anyhow::Result<()> {
        ensure!(
            frame["janus"] != "error",
            "participant {}: {frame}",
            self.id
        );
        let data = &frame["plugindata"]["data"];
        ensure!(
            data.get("error_code").is_none(),
            "participant {}: {frame}",
            self.id
        );
        let ids = |key: &str| -> Vec<u64> {
            data[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["id"].as_u64())
                .collect()
        };
        self.view.extend(ids("publishers"));
        self.view.extend(ids("attendees"));
        if let Some(id) = data["joining"]["id"].as_u64() {
            ensure!(
                self.joins.insert(id),
                "participant {}: {id} joined twice",
                self.id
            );
            self.view.insert(id);
        }
        for key in ["leaving", "kicked"] {
            if let Some(id) = data[key].as_u64() {
                ensure!(
                    self.leaves.insert(id),
                    "participant {}: {id} left twice",
                    self.id
                );
                self.view.remove(&id);
            }
        }
        Ok(())
    }

    /// Sends a request and returns its answer (the event of an asynchronous one, its ack
    /// skipped); frames about others met meanwhile go to the view.
    async fn request(&mut self, tx: &str, body: Value, jsep: bool) -> anyhow::Result<Value> {
        let mut m = json!({"janus": "message", "session_id": self.peer.session,
            "handle_id": self.peer.handle, "transaction": tx, "body": body});
        if jsep {
            m["jsep"] = json!({"type": "offer", "sdp": OFFER});
        }
        self.peer.client.send(&m).await?;
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(f) = self.peer.client.recv_within(left).await? else {
                bail!("participant {}: no answer to {tx}", self.id);
            };
            if f["transaction"] == tx && f["janus"] != "ack" {
                self.see(&f)?;
                return Ok(f);
            }
            if f["transaction"] != tx {
                self.see(&f)?;
            }
        }
    }

    /// Reads events until the view is `want` (without itself), within `deadline`.
    async fn converge(&mut self, want: &BTreeSet<u64>, deadline: Instant) -> anyhow::Result<()> {
        let mut want = want.clone();
        want.remove(&self.id);
        while self.view != want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.peer.client.recv_within(left).await? {
                Some(f) => self.see(&f)?,
                None => bail!(
                    "participant {}: sees {:?}, the room is {:?}",
                    self.id,
                    self.view,
                    want
                ),
            }
        }
        Ok(())
    }
}

/// Destroys the peer's session (its handles detached with it) and closes the connection.
async fn bye(peer: Peer) -> anyhow::Result<()> {
    let mut client = peer.client;
    let done = client
        .request(json!({"janus": "destroy", "session_id": peer.session, "transaction": "d"}))
        .await?;
    ensure!(done["janus"] == "success", "{done}");
    // Dropped, not closed: a close handshake waits for the server's TCP close (about a
    // second with actix), 50 times over.
    drop(client);
    Ok(())
}

async fn listed(admin: &mut Participant) -> anyhow::Result<BTreeSet<u64>> {
    let r = admin
        .request(
            "lp",
            json!({"request": "listparticipants", "room": ROOM}),
            false,
        )
        .await?;
    Ok(r["plugindata"]["data"]["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_u64())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_participants_over_three_servers_all_see_the_same_room() -> anyhow::Result<()> {
    init_logging();
    let (a, b, c) = tokio::try_join!(
        JanusServer::start(),
        JanusServer::start(),
        JanusServer::start()
    )?;
    let proxy = start_proxy(&[&a, &b, &c])?;
    wait_selectable(&proxy, 3).await?;
    let url = proxy.url();

    let mut admin = Participant::new(peer_on(&url, VIDEOROOM).await?, 0);
    let created = admin
        .request(
            "c",
            json!({"request": "create", "room": ROOM, "publishers": 60,
                "notify_joining": true}),
            false,
        )
        .await?;
    ensure!(
        created["plugindata"]["data"]["videoroom"] == "created",
        "{created}"
    );
    let rss_before = proxy.rss_kib()?;
    eprintln!("videoroom_scale: proxy ready, room created");

    // 50 participants join one after the other, each with a real offer.
    let started = Instant::now();
    let mut people = Vec::new();
    for n in 0..PARTICIPANTS {
        let id = 5001 + n;
        let mut p = Participant::new(peer_on(&url, VIDEOROOM).await?, id);
        let joined = p
            .request(
                "j",
                json!({"request": "joinandconfigure", "room": ROOM, "ptype": "publisher",
                    "id": id, "display": format!("p{n}")}),
                true,
            )
            .await?;
        ensure!(
            joined["plugindata"]["data"]["videoroom"] == "joined" && joined["jsep"].is_object(),
            "{joined}"
        );
        people.push(p);
    }
    let join_time = started.elapsed();
    let everyone: BTreeSet<u64> = people.iter().map(|p| p.id).collect();
    let deadline = Instant::now() + VIEWS_LIMIT;
    for p in people.iter_mut() {
        p.converge(&everyone, deadline).await?;
    }
    ensure!(listed(&mut admin).await? == everyone, "listparticipants");
    // Spread over the three servers, 17 / 17 / 16.
    let mut per_server = Vec::new();
    for j in [&a, &b, &c] {
        let mut direct = Participant::new(peer_on(&j.ws_url(), VIDEOROOM).await?, 0);
        per_server.push(listed(&mut direct).await?.len());
        bye(direct.peer).await?;
    }
    per_server.sort();
    ensure!(per_server == [16, 17, 17], "per server: {per_server:?}");
    let rss_full = proxy.rss_kib()?;
    eprintln!(
        "videoroom_scale: room full and seen by all after {:?}",
        started.elapsed()
    );

    // Every other participant leaves: the 25 others see exactly who is left.
    let mut staying = Vec::new();
    for (n, mut p) in people.into_iter().enumerate() {
        if n % 2 == 0 {
            let left = p.request("bye", json!({"request": "leave"}), false).await?;
            ensure!(left["plugindata"]["data"]["leaving"] == "ok", "{left}");
            bye(p.peer).await?;
        } else {
            staying.push(p);
        }
    }
    let rest: BTreeSet<u64> = staying.iter().map(|p| p.id).collect();
    let deadline = Instant::now() + VIEWS_LIMIT;
    for p in staying.iter_mut() {
        p.converge(&rest, deadline).await?;
    }
    ensure!(
        listed(&mut admin).await? == rest,
        "listparticipants after the leaves"
    );
    eprintln!(
        "videoroom_scale: leaves seen by all after {:?}",
        started.elapsed()
    );

    // Everyone goes; nothing is left on the servers (the coordinator's handles neither).
    for p in staying {
        bye(p.peer).await?;
    }
    bye(admin.peer).await?;
    for j in [&a, &b, &c] {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            let n = j.handle_count().await?;
            if n == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} handles left on {}", n, j.ws_url());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let rss_after = proxy.rss_kib()?;
    println!(
        "videoroom_scale: 50 joins (joinandconfigure + offer, one after the other) in {:.2} s; \
         proxy RSS {rss_before} KiB before, {rss_full} KiB with 50 participants (+{} KiB, \
         {:.1} KiB each), {rss_after} KiB after everyone left",
        join_time.as_secs_f64(),
        rss_full.saturating_sub(rss_before),
        rss_full.saturating_sub(rss_before) as f64 / PARTICIPANTS as f64
    );
    Ok(())
}
