//! The rooms' administration in the proxy's videoroom and audiobridge plugins, against real
//! Janus 1.1.2:
//!
//! * `admin_key` (`plugins.videoroom_admin_key` / `plugins.audiobridge_admin_key`, Janus's
//!   `admin_key` in the plugin's jcfg): the same requests — `create` without the key, with a
//!   wrong one, with one of the wrong type, with the right one; `list` without, with a wrong,
//!   an empty, a non-string and the right key (private rooms shown only then); rooms used and
//!   destroyed — against a Janus configured with the key and through the proxy configured with
//!   it give the same frames.
//! * `permanent` rooms (`plugins.rooms_file`): rooms created or edited with `permanent: true`
//!   (by a client or through the admin REST API) are in the file and come back after a
//!   restart of the proxy (listed, joinable, with their edited settings); rooms created
//!   without it, destroyed with it or destroyed through the admin API do not; a corrupt file
//!   stops the start with an error naming it.

use std::path::Path;
use std::time::{Duration, Instant};

use actors_tests::plugin_script::named_ids;
use actors_tests::scenario::{peer_on, Peer};
use actors_tests::{init_logging, proxy_config, JanusOptions, JanusServer, ProxyUnderTest};
use anyhow::{anyhow, bail, ensure};
use serde_json::{json, Value};

const VIDEOROOM: &str = "janus.plugin.videoroom";
const AUDIOBRIDGE: &str = "janus.plugin.audiobridge";
const ADMIN_KEY: &str = "the-admin-key";
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// A Janus whose `plugin` has `admin_key` set in its jcfg.
async fn janus_with_admin_key(plugin: &str) -> anyhow::Result<JanusServer> {
    JanusServer::start_with(JanusOptions {
        plugin_configs: vec![(
            format!("{plugin}.jcfg"),
            format!("general: {{\n\tadmin_key = \"{ADMIN_KEY}\"\n\tlock_rtp_forward = true\n}}\n"),
        )],
        ..JanusOptions::default()
    })
    .await
}

/// One request of one user and how many frames it brings back.
struct Step {
    name: &'static str,
    body: Value,
    frames: usize,
}

fn step(name: &'static str, body: Value, frames: usize) -> Step {
    Step { name, body, frames }
}

fn normalise(frame: &Value, ids: &[(u64, String)]) -> String {
    let mut frame = frame.clone();
    // Janus lists rooms in hash-table order.
    if let Some(Value::Array(list)) = frame.pointer_mut("/plugindata/data/list") {
        list.sort_by_key(|v| v.to_string());
    }
    named_ids(&frame, ids)
}

/// The frames each step brought back, normalised and sorted (an `ack` and its event may come
/// in either order).
async fn run_script(
    url: &str,
    plugin: &str,
    steps: &[Step],
) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut user = peer_on(url, plugin).await?;
    let ids = vec![
        (user.session, "<session>".to_owned()),
        (user.handle, "<handle>".to_owned()),
    ];
    let mut results = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        let transaction = format!("s{n}");
        user.client
            .send(&json!({"janus": "message", "session_id": user.session,
                "handle_id": user.handle, "transaction": transaction, "body": st.body}))
            .await?;
        let deadline = Instant::now() + STEP_LIMIT;
        let mut got = Vec::new();
        while got.len() < st.frames {
            let left = deadline.saturating_duration_since(Instant::now());
            match user.client.recv_within(left).await? {
                Some(f) => got.push(normalise(&f, &ids)),
                None => bail!(
                    "{url}: step {:?}: {} of {} frames: {got:?}",
                    st.name,
                    got.len(),
                    st.frames
                ),
            }
        }
        got.sort();
        results.push((st.name.to_owned(), got));
    }
    // Nothing more than expected arrived (a short bounded look, not a synchronisation).
    if let Some(extra) = user.client.recv_within(Duration::from_millis(300)).await? {
        bail!("{url}: an unexpected frame after the script: {extra}");
    }
    let _ = user.client.close().await;
    Ok(results)
}

fn compare(
    direct: &[(String, Vec<String>)],
    proxied: &[(String, Vec<String>)],
) -> anyhow::Result<()> {
    let diffs: Vec<String> = direct
        .iter()
        .zip(proxied)
        .filter(|(d, p)| d != p)
        .map(|(d, p)| format!("step {:?}\n  janus: {:#?}\n  proxy: {:#?}", d.0, d.1, p.1))
        .collect();
    ensure!(direct.len() == proxied.len(), "step counts differ");
    ensure!(diffs.is_empty(), "differences:\n{}", diffs.join("\n"));
    Ok(())
}

/// The requests `admin_key` gates, in `plugin`'s words; `join` (and its leave) only where a
/// participant needs no PeerConnection to count (AudioBridge).
fn admin_key_script(plugin: &str, public: u64, private: u64) -> Vec<Step> {
    let audiobridge = plugin == AUDIOBRIDGE;
    let k = ADMIN_KEY;
    let mut steps = vec![
        step(
            "create without admin_key",
            json!({"request": "create", "room": public}),
            1,
        ),
        step(
            "create with a wrong admin_key",
            json!({"request": "create", "room": public, "admin_key": "wrong"}),
            1,
        ),
        step(
            "create with an admin_key that is not a string",
            json!({"request": "create", "room": public, "admin_key": 7}),
            1,
        ),
        step(
            "create with a parameter of the wrong type and no admin_key",
            json!({"request": "create", "room": public, "description": 5}),
            1,
        ),
        step(
            "create with a room of the wrong type and no admin_key",
            json!({"request": "create", "room": "x"}),
            1,
        ),
        step(
            "create with a wrong value (checked after the key) and no admin_key",
            json!({"request": "create", "room": public, "sampling_rate": 1234,
                "publishers": 1, "audiocodec": "nonsense"}),
            1,
        ),
        step(
            "create a public room",
            json!({"request": "create", "room": public, "admin_key": k,
                "description": "public"}),
            1,
        ),
        step(
            "create a private room",
            json!({"request": "create", "room": private, "admin_key": k,
                "description": "private", "is_private": true}),
            1,
        ),
        step(
            "create the same room again (the key first, then 'exists')",
            json!({"request": "create", "room": private, "admin_key": k}),
            1,
        ),
        step("list without admin_key", json!({"request": "list"}), 1),
        step(
            "list with a wrong admin_key",
            json!({"request": "list", "admin_key": "wrong"}),
            1,
        ),
        step(
            "list with an empty admin_key",
            json!({"request": "list", "admin_key": ""}),
            1,
        ),
        step(
            "list with a non-string admin_key",
            json!({"request": "list", "admin_key": 7}),
            1,
        ),
        step(
            "list with the admin_key: private rooms too",
            json!({"request": "list", "admin_key": k}),
            1,
        ),
        step(
            "exists (no key needed)",
            json!({"request": "exists", "room": private}),
            1,
        ),
    ];
    // `lock_rtp_forward`: forwarding needs the key too.
    let forward = |room: u64| {
        if audiobridge {
            json!({"request": "rtp_forward", "room": room, "host": "127.0.0.1", "port": 5000})
        } else {
            json!({"request": "rtp_forward", "room": room, "publisher_id": 1,
                "host": "127.0.0.1", "audio_port": 5000})
        }
    };
    let with_key = |mut body: Value, key: Value| {
        body["admin_key"] = key;
        body
    };
    let stop = json!({"request": "stop_rtp_forward", "room": private, "publisher_id": 1,
        "stream_id": 1});
    steps.extend([
        step("rtp_forward without admin_key", forward(private), 1),
        step(
            "rtp_forward with a wrong admin_key",
            with_key(forward(private), json!("wrong")),
            1,
        ),
        step(
            "rtp_forward to a room that does not exist, without admin_key",
            forward(9999),
            1,
        ),
        step(
            "rtp_forward to a room that does not exist, with the admin_key",
            with_key(forward(9999), json!(k)),
            1,
        ),
        step("stop_rtp_forward without admin_key", stop.clone(), 1),
        step(
            "stop_rtp_forward with the admin_key (no such forwarder)",
            with_key(stop, json!(k)),
            1,
        ),
    ]);
    if !audiobridge {
        steps.extend([
            step(
                "rtp_forward without publisher_id nor admin_key",
                json!({"request": "rtp_forward", "room": private, "host": "127.0.0.1"}),
                1,
            ),
            step(
                "rtp_forward with the admin_key (no such publisher)",
                with_key(forward(private), json!(k)),
                1,
            ),
        ]);
    }
    if audiobridge {
        steps.extend([
            step(
                "join the private room (no key needed)",
                json!({"request": "join", "room": private, "id": 77, "display": "a"}),
                2,
            ),
            step(
                "list with the admin_key: the private room's participant counted",
                json!({"request": "list", "admin_key": k}),
                1,
            ),
            step("list without: still hidden", json!({"request": "list"}), 1),
            step("leave", json!({"request": "leave"}), 2),
        ]);
    } else {
        steps.push(step(
            "listparticipants of the private room (placed on a backend with its key)",
            json!({"request": "listparticipants", "room": private}),
            1,
        ));
    }
    steps.extend([
        step(
            "destroy the public room",
            json!({"request": "destroy", "room": public}),
            1,
        ),
        step(
            "destroy the private room",
            json!({"request": "destroy", "room": private}),
            1,
        ),
        step(
            "list with the admin_key: nothing left",
            json!({"request": "list", "admin_key": k}),
            1,
        ),
    ]);
    steps
}

/// The admin_key script directly against a Janus with the key, and through the proxy (with
/// the key) in front of a Janus that has it too (so that it lists its private rooms to the
/// proxy, and takes the proxy's `create` of the rooms it places there).
async fn same_as_janus(plugin: &str, public: u64, private: u64) -> anyhow::Result<()> {
    let (direct, backend) =
        tokio::try_join!(janus_with_admin_key(plugin), janus_with_admin_key(plugin))?;
    let mut config = proxy_config(&[("j", backend.ws_url())]);
    config.plugins.videoroom_admin_key = ADMIN_KEY.to_owned();
    config.plugins.audiobridge_admin_key = ADMIN_KEY.to_owned();
    config.plugins.videoroom_lock_rtp_forward = true;
    config.plugins.audiobridge_lock_rtp_forward = true;
    let proxy = ProxyUnderTest::start(config).await?;
    let script = admin_key_script(plugin, public, private);
    let janus_frames = run_script(&direct.ws_url(), plugin, &script).await?;
    let proxy_frames = run_script(&proxy.ws_url(), plugin, &script).await?;
    // The script means what it says on Janus itself: the errors and the private listing.
    let all: Vec<String> = janus_frames.iter().flat_map(|(_, f)| f.clone()).collect();
    let all = all.join("\n");
    for code in match plugin {
        AUDIOBRIDGE => ["483", "489", "484"],
        _ => ["429", "433", "430"],
    } {
        ensure!(
            all.contains(&format!("\"error_code\":{code}")),
            "{code} not in {all}"
        );
    }
    ensure!(all.contains("\"description\":\"private\""), "{all}");
    compare(&janus_frames, &proxy_frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn videoroom_admin_key_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    same_as_janus(VIDEOROOM, 9101, 9102).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audiobridge_admin_key_same_as_janus() -> anyhow::Result<()> {
    init_logging();
    same_as_janus(AUDIOBRIDGE, 9201, 9202).await
}

// ---- permanent rooms ----

/// A synchronous request's plugin data (`success` frame).
async fn ask(user: &mut Peer, body: Value) -> anyhow::Result<Value> {
    user.client
        .send(&json!({"janus": "message", "session_id": user.session,
            "handle_id": user.handle, "transaction": "t", "body": body}))
        .await?;
    let frame = user.client.recv_within(STEP_LIMIT).await?;
    let frame = frame.ok_or_else(|| anyhow!("no answer to {body}"))?;
    ensure!(frame["janus"] == "success", "{body}: {frame}");
    Ok(frame["plugindata"]["data"].clone())
}

/// An asynchronous request's event (after its `ack`, in either order).
async fn ask_async(user: &mut Peer, body: Value) -> anyhow::Result<Value> {
    user.client
        .send(&json!({"janus": "message", "session_id": user.session,
            "handle_id": user.handle, "transaction": "a", "body": body}))
        .await?;
    let event = actors_tests::scenario::ack_and_event(&mut user.client, "a").await?;
    Ok(event["plugindata"]["data"].clone())
}

/// Creates each room (with secret `s`), `permanent` or not: Janus's answer says whether it
/// was saved (`plugin`: the answer's key, `videoroom` or `audiobridge`).
async fn create_rooms(user: &mut Peer, plugin: &str, rooms: &[(u64, bool)]) -> anyhow::Result<()> {
    for &(room, permanent) in rooms {
        let created = ask(
            user,
            json!({"request": "create", "room": room, "permanent": permanent,
                "description": "first", "secret": "s"}),
        )
        .await?;
        ensure!(
            created == json!({plugin: "created", "room": room, "permanent": permanent}),
            "{created}"
        );
    }
    Ok(())
}

fn listed(list: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = list["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["room"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

fn file_rooms(path: &Path, plugin: &str) -> anyhow::Result<Vec<u64>> {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let mut ids: Vec<u64> = file[plugin]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["room"].as_u64())
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_rooms_survive_a_restart_and_a_corrupt_file_stops_the_start() -> anyhow::Result<()>
{
    init_logging();
    let janus = JanusServer::start().await?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("rooms.json");
    let mut config = proxy_config(&[("j", janus.ws_url())]);
    config.plugins.rooms_file = file.clone();

    let proxy = ProxyUnderTest::start(config.clone()).await?;
    let mut vr = peer_on(&proxy.ws_url(), VIDEOROOM).await?;
    let mut ab = peer_on(&proxy.ws_url(), AUDIOBRIDGE).await?;
    create_rooms(
        &mut vr,
        "videoroom",
        &[(9301, true), (9302, false), (9303, true)],
    )
    .await?;
    let edited = ask(
        &mut vr,
        json!({"request": "edit", "room": 9301, "secret": "s", "permanent": true,
            "new_description": "edited"}),
    )
    .await?;
    ensure!(
        edited == json!({"videoroom": "edited", "room": 9301, "permanent": true}),
        "{edited}"
    );
    // An edit without `permanent` stays in memory (the file keeps "edited", as Janus's jcfg).
    ask(
        &mut vr,
        json!({"request": "edit", "room": 9301, "secret": "s", "new_description": "memory"}),
    )
    .await?;
    let destroyed = ask(
        &mut vr,
        json!({"request": "destroy", "room": 9303, "secret": "s", "permanent": true}),
    )
    .await?;
    ensure!(
        destroyed == json!({"videoroom": "destroyed", "room": 9303, "permanent": true}),
        "{destroyed}"
    );
    create_rooms(
        &mut ab,
        "audiobridge",
        &[(9401, true), (9402, false), (9403, true)],
    )
    .await?;
    let destroyed = ask(
        &mut ab,
        json!({"request": "destroy", "room": 9403, "secret": "s", "permanent": true}),
    )
    .await?;
    ensure!(
        destroyed["audiobridge"] == "destroyed" && destroyed["permanent"] == true,
        "{destroyed}"
    );
    // Through the admin REST API: the same, and a REST destroy is final.
    let rest = "/plugins/videoroom/rooms";
    for (room, permanent) in [(9304, true), (9305, false), (9306, true)] {
        let body = json!({"room": room, "description": "rest", "permanent": permanent});
        let (status, created) = proxy.admin_request("POST", rest, Some(&body), true).await?;
        ensure!(status == 200, "{status} {created}");
        ensure!(created["permanent"] == permanent, "{created}");
    }
    let path = format!("{rest}/9306");
    let (status, destroyed) = proxy.admin_request("DELETE", &path, None, true).await?;
    ensure!(status == 200, "{status} {destroyed}");
    ensure!(file_rooms(&file, "videoroom")? == [9301, 9304]);
    ensure!(file_rooms(&file, "audiobridge")? == [9401]);
    let _ = vr.client.close().await;
    let _ = ab.client.close().await;
    drop(proxy);

    // A new proxy with the same file: the permanent rooms are back, the others gone.
    let proxy = ProxyUnderTest::start(config.clone()).await?;
    let mut vr = peer_on(&proxy.ws_url(), VIDEOROOM).await?;
    let mut ab = peer_on(&proxy.ws_url(), AUDIOBRIDGE).await?;
    let list = ask(&mut vr, json!({"request": "list"})).await?;
    ensure!(listed(&list) == [9301, 9304], "{list}");
    let description = |room: u64| {
        list["list"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["room"] == room)
            .map(|r| r["description"].clone())
    };
    ensure!(description(9301) == Some(json!("edited")), "{list}");
    ensure!(description(9304) == Some(json!("rest")), "{list}");
    let joined = ask_async(
        &mut vr,
        json!({"request": "join", "room": 9301, "ptype": "publisher", "display": "v"}),
    )
    .await?;
    ensure!(joined["videoroom"] == "joined", "{joined}");
    let list = ask(&mut ab, json!({"request": "list"})).await?;
    ensure!(listed(&list) == [9401], "{list}");
    let joined = ask_async(
        &mut ab,
        json!({"request": "join", "room": 9401, "display": "a"}),
    )
    .await?;
    ensure!(joined["audiobridge"] == "joined", "{joined}");
    // Its secret came back with it.
    let refused = ask(
        &mut ab,
        json!({"request": "destroy", "room": 9401, "secret": "x"}),
    )
    .await?;
    ensure!(refused["error_code"] == 489, "{refused}");
    let _ = vr.client.close().await;
    let _ = ab.client.close().await;
    drop(proxy);

    // A corrupt file: a clear error at start, no proxy.
    std::fs::write(&file, "{\"videoroom\": [")?;
    match ProxyUnderTest::start(config).await {
        Ok(_) => bail!("the proxy started with a corrupt rooms file"),
        Err(e) => {
            let e = format!("{e:#}");
            ensure!(
                e.contains("rooms.json") && e.contains("not a rooms file"),
                "{e}"
            );
        }
    }
    Ok(())
}
