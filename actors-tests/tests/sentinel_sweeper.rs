//! janus-sentinel's sweeper against a real Janus 1.1.2, a real proxy process and a proxy
//! in-process: the rooms a crashed proxy left on the Janus are destroyed; nothing else is.
//!
//! Proxy A (a process, so that it can be killed -9 and started again without its state) and
//! proxy B (alive throughout) place rooms on one Janus, reported to both by a sentinel in
//! monitor mode that sweeps every 200 ms rooms idle for 1 s. The Janus's plugins have an
//! `admin_key`, one room is private: the sweeper lists with the keys. Checked by asking the
//! Janus directly:
//!
//! * the mark: a client through a proxy sees its room's description as it created it (the
//!   `joined` event, an audiobridge `list`), Janus has it marked (`create`, `edit`);
//! * while A is dead (its admin API does not answer) nothing is destroyed;
//! * once A runs again without its rooms, A's videoroom and audiobridge rooms are destroyed,
//!   those created with a client's secret too: A creates its backend rooms with its
//!   `plugins.backend_room_secret`, the sweeper's `room_secret`;
//! * these stay: B's idle rooms (a live proxy has them), an operator's unmarked rooms, marked
//!   rooms with a participant joined directly, and a marked room made directly with another
//!   secret (the sweeper does not know it: counted as protected).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actors_tests::audiobridge_client::AUDIOBRIDGE;
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::sentinel_kit::{callback_url, sentinel_config, SentinelUnderTest};
use actors_tests::videoroom_client::{answer, VIDEOROOM};
use actors_tests::{
    free_port, http, init_logging, proxy_config, JanusOptions, JanusServer, ProxyUnderTest,
    TEST_ADMIN_TOKEN,
};
use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};

const SERVER: &str = "sweep-janus";
const VIDEOROOM_KEY: &str = "vk";
const AUDIOBRIDGE_KEY: &str = "ak";
const MARK: &str = "januscloud-";
/// Proxy A's `plugins.backend_room_secret`, the sentinel's `sweeper.room_secret`.
const ROOM_SECRET: &str = "swept-with-this";
/// Registration, a proxy process starting: generous, for a loaded 2-core machine.
const SOON: Duration = Duration::from_secs(20);

/// A proxy process on fixed ports, started again on the same ones after a kill -9 (as
/// systemd restarts a crashed proxy): the same admin URL for the sentinel, an empty memory.
struct RestartableProxy {
    config: std::path::PathBuf,
    admin: SocketAddr,
    ws: SocketAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RestartableProxy {
    fn start() -> anyhow::Result<RestartableProxy> {
        let dir = tempfile::tempdir()?;
        let ws = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let config = dir.path().join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "[ws]\nlisten = \"{ws}\"\nworkers = 1\n\n[admin]\nlisten = \"{admin}\"\n\
                 token = \"{TEST_ADMIN_TOKEN}\"\n\n[plugins]\n\
                 videoroom_admin_key = \"{VIDEOROOM_KEY}\"\n\
                 audiobridge_admin_key = \"{AUDIOBRIDGE_KEY}\"\n\
                 backend_room_secret = \"{ROOM_SECRET}\"\n"
            ),
        )?;
        let mut proxy = RestartableProxy {
            config,
            admin,
            ws,
            child: None,
            _dir: dir,
        };
        proxy.spawn()?;
        Ok(proxy)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new(env!("CARGO_BIN_EXE_proxy-under-test"))
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("proxy-under-test")?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.ws)
    }

    fn callback_url(&self) -> String {
        format!("http://{}/sentinel_callback", self.admin)
    }
}

impl Drop for RestartableProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A GET on a proxy's admin API with the admin token: status and JSON.
async fn admin_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Value)> {
    let auth = format!("Bearer {TEST_ADMIN_TOKEN}");
    let response = http::request(addr, "GET", path, &[("Authorization", &auth)], "").await?;
    Ok((response.status, response.json()))
}

/// Waits until the proxy at `addr` has the sentinel's server selectable.
async fn registered(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + SOON;
    loop {
        let path = format!("/backend_servers/{SERVER}");
        let last = match admin_get(addr, &path).await {
            Ok((200, server)) if server["selectable"] == true => return Ok(()),
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("{SERVER} not selectable on the proxy at {addr}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plugin request answered (its plugin data), which must be `what`.
async fn expect(peer: &mut Peer, tx: &str, body: Value, what: &str) -> anyhow::Result<Value> {
    let data = answer(peer, tx, body.clone(), false).await?;
    let plugin = if data.get("videoroom").is_some() {
        "videoroom"
    } else {
        "audiobridge"
    };
    ensure!(data[plugin] == what, "{body} -> {data}, not {what}");
    Ok(data)
}

/// Creates a room (`extra`: more `create` fields) and joins it on a second handle of the
/// same client; the `joined` event's data.
async fn create_and_join(
    url: &str,
    plugin: &str,
    room: u64,
    extra: Value,
) -> anyhow::Result<(Peer, Value)> {
    let mut peer = peer_on(url, plugin).await?;
    let key = if plugin == VIDEOROOM {
        VIDEOROOM_KEY
    } else {
        AUDIOBRIDGE_KEY
    };
    let mut create = json!({"request": "create", "room": room, "admin_key": key});
    if let (Some(create), Some(extra)) = (create.as_object_mut(), extra.as_object()) {
        create.extend(extra.clone());
    }
    expect(&mut peer, "create", create, "created").await?;
    let join = if plugin == VIDEOROOM {
        json!({"request": "join", "room": room, "ptype": "publisher", "display": "someone"})
    } else {
        json!({"request": "join", "room": room, "display": "someone"})
    };
    let joined = expect(&mut peer, "join", join, "joined").await?;
    Ok((peer, joined))
}

/// The rooms of `plugin` as the Janus itself lists them, private ones too: id → description.
async fn janus_rooms(url: &str, plugin: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut peer = peer_on(url, plugin).await?;
    let key = if plugin == VIDEOROOM {
        VIDEOROOM_KEY
    } else {
        AUDIOBRIDGE_KEY
    };
    let data = expect(
        &mut peer,
        "list",
        json!({"request": "list", "admin_key": key}),
        "success",
    )
    .await?;
    let _ = peer.client.close().await;
    Ok(data["list"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let id = e["room"].as_u64().unwrap_or(0);
            (id, e["description"].as_str().unwrap_or("").to_owned())
        })
        .collect())
}

fn has(rooms: &[(u64, String)], id: u64) -> bool {
    rooms.iter().any(|(r, _)| *r == id)
}

/// A sample of the sentinel's `/metrics` (`name` with its labels, e.g.
/// `janus_sentinel_sweeper_rooms_swept_total{plugin="videoroom"}`); 0 when absent.
async fn metric(sentinel: &SentinelUnderTest, name: &str) -> anyhow::Result<f64> {
    let (status, text) =
        actors_tests::sentinel_kit::http(sentinel.rest_addr, "GET", "/metrics", None).await?;
    ensure!(status == 200, "/metrics: {status}");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

/// Waits until `metric` reaches `at_least`.
async fn metric_reaches(
    sentinel: &SentinelUnderTest,
    name: &str,
    at_least: f64,
    limit: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let value = metric(sentinel, name).await?;
        if value >= at_least {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} is {value}, not {at_least} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const ROUNDS: &str = "janus_sentinel_sweeper_rounds_total";
const OWNERS_FAILED: &str = "janus_sentinel_sweeper_owner_checks_failed_total";
const SWEPT_V: &str = "janus_sentinel_sweeper_rooms_swept_total{plugin=\"videoroom\"}";
const SWEPT_A: &str = "janus_sentinel_sweeper_rooms_swept_total{plugin=\"audiobridge\"}";
const PROTECTED: &str = "janus_sentinel_sweeper_protected_rooms";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinel_sweeps_what_a_crashed_proxy_left_and_nothing_else() -> anyhow::Result<()> {
    init_logging();
    let janus = JanusServer::start_with(JanusOptions {
        plugin_configs: vec![
            (
                "janus.plugin.videoroom.jcfg".into(),
                format!("general: {{ admin_key = \"{VIDEOROOM_KEY}\" }}"),
            ),
            (
                "janus.plugin.audiobridge.jcfg".into(),
                format!("general: {{ admin_key = \"{AUDIOBRIDGE_KEY}\" }}"),
            ),
        ],
        ..JanusOptions::default()
    })
    .await?;
    let mut a = RestartableProxy::start()?;
    let mut b_config = proxy_config(&[]);
    b_config.plugins.videoroom_admin_key = VIDEOROOM_KEY.into();
    b_config.plugins.audiobridge_admin_key = AUDIOBRIDGE_KEY.into();
    let b = ProxyUnderTest::start(b_config).await?;
    let mut config = sentinel_config(SERVER, &janus.ws_url(), Some(&janus.admin_url()));
    config.report.urls = vec![a.callback_url(), callback_url(&b)];
    config.report.token = TEST_ADMIN_TOKEN.into();
    config.sweeper.idle_s = 1.0;
    config.sweeper.interval_s = 0.2;
    config.sweeper.videoroom_admin_key = VIDEOROOM_KEY.into();
    config.sweeper.audiobridge_admin_key = AUDIOBRIDGE_KEY.into();
    config.sweeper.room_secret = ROOM_SECRET.into();
    let sentinel = SentinelUnderTest::start(config)?;
    registered(a.admin).await?;
    registered(b.admin_addr).await?;

    let base = 3_000_000 + u64::from(std::process::id() % 100_000) * 16;
    let (a_secret, v_locked) = (base + 10, base + 11);
    let (va, aa, vs, vb, ab, vo, ao, vp, ap) = (
        base + 1,
        base + 2,
        base + 3,
        base + 4,
        base + 5,
        base + 6,
        base + 7,
        base + 8,
        base + 9,
    );

    // Through A: a private videoroom room, an audiobridge room, a videoroom room with a secret.
    // The clients see the descriptions they gave; the Janus has them marked.
    let extra = json!({"description": "Room of A", "is_private": true});
    let (mut v, joined) = create_and_join(&a.url(), VIDEOROOM, va, extra).await?;
    assert_eq!(joined["description"], "Room of A", "{joined}");
    let edit = json!({"request": "edit", "room": va, "new_description": "Room of A, edited"});
    expect(&mut v, "edit", edit, "edited").await?;
    let (mut ab_client, joined) = create_and_join(
        &a.url(),
        AUDIOBRIDGE,
        aa,
        json!({"description": "Bridge of A"}),
    )
    .await?;
    assert!(joined.get("description").is_none(), "{joined}");
    let list = expect(
        &mut ab_client,
        "list",
        json!({"request": "list"}),
        "success",
    )
    .await?;
    let entry = list["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["room"] == aa)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(entry["description"], "Bridge of A", "{list}");
    let (mut s_client, joined) =
        create_and_join(&a.url(), VIDEOROOM, vs, json!({"secret": "s3cret"})).await?;
    // No description given: Janus's own default, unmarked.
    assert_eq!(joined["description"], format!("Room {vs}"), "{joined}");
    // The client's secret is checked by the proxy, as Janus would.
    let wrong = json!({"request": "edit", "room": vs, "secret": ROOM_SECRET,
        "new_description": "x"});
    let refused = answer(&mut s_client, "wrong", wrong, false).await?;
    assert_eq!(refused["error_code"], 433, "{refused}");
    let right = json!({"request": "edit", "room": vs, "secret": "s3cret", "new_is_private": false});
    expect(&mut s_client, "right", right, "edited").await?;
    let (as_client, _) =
        create_and_join(&a.url(), AUDIOBRIDGE, a_secret, json!({"secret": "s3cret"})).await?;
    let on_janus = janus_rooms(&janus.ws_url(), VIDEOROOM).await?;
    assert!(
        on_janus.contains(&(va, format!("{MARK}Room of A, edited"))),
        "{on_janus:?}"
    );
    assert!(
        on_janus.contains(&(vs, format!("{MARK}Room {vs}"))),
        "{on_janus:?}"
    );
    let on_janus = janus_rooms(&janus.ws_url(), AUDIOBRIDGE).await?;
    assert!(
        on_janus.contains(&(aa, format!("{MARK}Bridge of A"))),
        "{on_janus:?}"
    );
    for client in [
        v.client,
        ab_client.client,
        s_client.client,
        as_client.client,
    ] {
        client.close().await?;
    }

    // Through B (alive throughout): idle rooms a live proxy has.
    for (plugin, room) in [(VIDEOROOM, vb), (AUDIOBRIDGE, ab)] {
        let (peer, _) = create_and_join(&b.ws_url(), plugin, room, json!({})).await?;
        peer.client.close().await?;
    }
    // Directly on the Janus: an operator's unmarked rooms, marked rooms with a participant.
    let mut direct = Vec::new();
    for (plugin, room) in [(VIDEOROOM, vo), (AUDIOBRIDGE, ao)] {
        let key = if plugin == VIDEOROOM {
            VIDEOROOM_KEY
        } else {
            AUDIOBRIDGE_KEY
        };
        let mut peer = peer_on(&janus.ws_url(), plugin).await?;
        let create = json!({"request": "create", "room": room, "admin_key": key,
            "description": "The operator's"});
        expect(&mut peer, "create", create, "created").await?;
        direct.push(peer);
    }
    let mut peer = peer_on(&janus.ws_url(), VIDEOROOM).await?;
    let create = json!({"request": "create", "room": v_locked, "admin_key": VIDEOROOM_KEY,
        "description": format!("{MARK}locked"), "secret": "the operator's"});
    expect(&mut peer, "create", create, "created").await?;
    direct.push(peer);
    for (plugin, room) in [(VIDEOROOM, vp), (AUDIOBRIDGE, ap)] {
        let description = json!({"description": format!("{MARK}busy")});
        let (peer, _) = create_and_join(&janus.ws_url(), plugin, room, description).await?;
        direct.push(peer);
    }

    // A crashes. Its rooms stay while its admin API does not answer: nothing is destroyed
    // without every proxy's word (the rooms are due by then: the proxies are asked).
    a.kill();
    let failed = metric(&sentinel, OWNERS_FAILED).await?;
    metric_reaches(&sentinel, OWNERS_FAILED, failed + 3.0, SOON).await?;
    let videorooms = janus_rooms(&janus.ws_url(), VIDEOROOM).await?;
    let audiobridges = janus_rooms(&janus.ws_url(), AUDIOBRIDGE).await?;
    assert!(
        has(&videorooms, va) && has(&audiobridges, aa),
        "{videorooms:?}"
    );
    assert_eq!(
        metric(&sentinel, SWEPT_V).await? + metric(&sentinel, SWEPT_A).await?,
        0.0
    );

    // A starts again, without its rooms: the sentinel destroys them.
    a.spawn()?;
    let restarted = Instant::now();
    let deadline = restarted + SOON;
    loop {
        let videorooms = janus_rooms(&janus.ws_url(), VIDEOROOM).await?;
        let audiobridges = janus_rooms(&janus.ws_url(), AUDIOBRIDGE).await?;
        if ![va, vs].iter().any(|r| has(&videorooms, *r))
            && ![aa, a_secret].iter().any(|r| has(&audiobridges, *r))
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("A's rooms not swept within {SOON:?}: {videorooms:?} {audiobridges:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "A's rooms swept {:?} after A restarted",
        restarted.elapsed()
    );
    // The room with another secret stays: the sweeper tried once and counts it.
    metric_reaches(&sentinel, PROTECTED, 1.0, SOON).await?;
    // Several more full rounds (every proxy answering) with every other room due or busy.
    let rounds = metric(&sentinel, ROUNDS).await?;
    metric_reaches(&sentinel, ROUNDS, rounds + 5.0, SOON).await?;
    let videorooms = janus_rooms(&janus.ws_url(), VIDEOROOM).await?;
    let audiobridges = janus_rooms(&janus.ws_url(), AUDIOBRIDGE).await?;
    for room in [v_locked, vb, vo, vp] {
        assert!(has(&videorooms, room), "videoroom {room}: {videorooms:?}");
    }
    for room in [ab, ao, ap] {
        assert!(
            has(&audiobridges, room),
            "audiobridge {room}: {audiobridges:?}"
        );
    }
    assert_eq!(metric(&sentinel, SWEPT_V).await?, 2.0);
    assert_eq!(metric(&sentinel, SWEPT_A).await?, 2.0);
    assert_eq!(metric(&sentinel, PROTECTED).await?, 1.0);
    // B's rooms were due and asked about (it has them); the busy ones were not idle.
    let idle_v = "janus_sentinel_sweeper_idle_rooms{plugin=\"videoroom\"}";
    assert_eq!(
        metric(&sentinel, idle_v).await?,
        2.0,
        "B's room and the locked one"
    );
    let (status, rooms) = admin_get(b.admin_addr, "/plugins/audiobridge/rooms").await?;
    assert_eq!(status, 200, "{rooms}");
    assert_eq!(rooms["rooms"][0]["room"], ab, "{rooms}");
    assert_eq!(rooms["rooms"][0]["server"], SERVER, "{rooms}");

    for peer in direct {
        peer.client.close().await?;
    }
    sentinel.shutdown(SOON).await
}
