//! `janus-bench store`: what the shared store costs an idle cluster, and how fast a change
//! reaches every proxy. A real Redis, N real proxy processes sharing it (no backends), and the
//! store filled with rooms and users of another live proxy (written straight into Redis in the
//! proxies' own layout), then:
//!
//! * the time each proxy takes to start and be in step (a whole read of the store);
//! * held idle for `--hold` seconds: Redis's CPU and commands per second, each proxy's CPU;
//! * `--propagation` times: a p2pcall name registered on proxy 1 until proxy 2 lists it, and
//!   released (handle detached) until proxy 2 no longer lists it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};

use crate::procstat::{clock_ticks_per_second, sample};
use crate::say;
use crate::spawn::{free_port, http_get, SpawnOptions};
use crate::wire::{self, Conn, Expect, Frame};

pub const USAGE: &str = "\
usage: janus-bench store [options]
  --proxies N        proxy processes sharing one Redis (10)
  --rooms N          videoroom rooms in the store (10000)
  --users N          videocall users in the store (100000)
  --hold SECS        idle time measured (30)
  --propagation N    registrations timed from one proxy to another (50)
  --sync-ms MS       store.sync_interval_ms of the proxies (their default, 1000)
  --proxy-bin PATH   proxy binary (proxy-under-test or janus-proxy next to this executable)
";

struct Opts {
    proxies: usize,
    rooms: u64,
    users: u64,
    hold: Duration,
    propagation: usize,
    sync_ms: u64,
    proxy_bin: PathBuf,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        proxies: 10,
        rooms: 10_000,
        users: 100_000,
        hold: Duration::from_secs(30),
        propagation: 50,
        sync_ms: 1000,
        proxy_bin: SpawnOptions::default_proxy_bin(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        let n = || v.parse::<u64>().map_err(|_| anyhow!("bad number {v:?}"));
        match flag.as_str() {
            "--proxies" => o.proxies = n()?.max(1) as usize,
            "--rooms" => o.rooms = n()?,
            "--users" => o.users = n()?,
            "--hold" => o.hold = Duration::from_secs(n()?.max(1)),
            "--propagation" => o.propagation = n()? as usize,
            "--sync-ms" => o.sync_ms = n()?.max(10),
            "--proxy-bin" => o.proxy_bin = PathBuf::from(v),
            _ => bail!("unknown option {flag}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .context("redis-cli")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn start_redis(port: u16) -> anyhow::Result<Killed> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start redis-server (apt-get install redis-server)")?;
    let redis = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis_cli(port, &["PING"]).unwrap_or_default() != "PONG" {
        if Instant::now() > deadline {
            bail!("redis-server did not answer on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(redis)
}

/// Rooms and users of a live proxy `ghost` (a heartbeat that outlives the run), in the
/// proxies' own layout, written by Lua in chunks.
fn fill(port: u16, rooms: u64, users: u64) -> anyhow::Result<()> {
    redis_cli(
        port,
        &["SET", "januscloud:proxies:ghost", "{}", "EX", "86400"],
    )?;
    redis_cli(port, &["SADD", "januscloud:proxy_index", "ghost"])?;
    let chunk = 10_000u64;
    let script_users = "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do \
        local name = 'user' .. i \
        redis.call('HSET', 'januscloud:videocall_users:' .. name, 'username', name, \
          'proxy_uuid', 'ghost', 'incall', '', 'peer_name', '', 'ctime', '0') \
        redis.call('HSET', 'januscloud:videocall_user_index', name, 'ghost') end return 1";
    let script_rooms = "for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do \
        redis.call('HSET', 'januscloud:videoroom_rooms:' .. i, 'room', i, \
          'settings', '{\"description\":\"bench\"}', 'creator', 'ghost', 'permanent', '0', \
          'ctime', '0', 'server', 'j1') \
        redis.call('SADD', 'januscloud:videoroom_room_index', i) end return 1";
    for (script, count) in [(script_users, users), (script_rooms, rooms)] {
        let mut from = 1;
        while from <= count {
            let to = (from + chunk - 1).min(count);
            redis_cli(
                port,
                &["EVAL", script, "0", &from.to_string(), &to.to_string()],
            )?;
            from = to + 1;
        }
    }
    Ok(())
}

struct Proxy {
    ws: String,
    admin: SocketAddr,
    child: Killed,
}

fn start_proxy(o: &Opts, dir: &Path, i: usize, redis_port: u16) -> anyhow::Result<Proxy> {
    let (ws_port, admin_port) = (free_port()?, free_port()?);
    let config = format!(
        "[ws]\nlisten = \"127.0.0.1:{ws_port}\"\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\
         [limits]\nrequests_per_second = 0\n\
         [store]\nurl = \"redis://127.0.0.1:{redis_port}/0\"\nproxy_id = \"p{i}\"\n\
         sync_interval_ms = {}\n",
        o.sync_ms
    );
    let path = dir.join(format!("proxy-{i}.toml"));
    std::fs::write(&path, config)?;
    let log = std::fs::File::create(dir.join(format!("proxy-{i}.log")))?;
    let child = Command::new(&o.proxy_bin)
        .arg(&path)
        .env(
            "RUST_LOG",
            std::env::var("JANUS_BENCH_PROXY_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", o.proxy_bin.display()))?;
    Ok(Proxy {
        ws: format!("ws://127.0.0.1:{ws_port}"),
        admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
        child: Killed(child),
    })
}

/// Waits until `/readyz` says the store is ok with `live` proxies; the time it took.
fn wait_in_step(proxy: &Proxy, live: usize, since: Instant) -> anyhow::Result<Duration> {
    let want = format!("\"proxies\":{live}");
    let deadline = since + Duration::from_secs(120);
    loop {
        if let Ok(reply) = http_get(proxy.admin, "/readyz") {
            if reply.contains("\"state\":\"ok\"") && reply.contains(&want) {
                return Ok(since.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!("proxy {} not in step within 120 s", proxy.ws);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Calls per command (`INFO commandstats`), commands inside scripts included.
fn command_calls(port: u16) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let info = redis_cli(port, &["INFO", "commandstats"])?;
    Ok(info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

fn commands_processed(port: u16) -> anyhow::Result<u64> {
    let info = redis_cli(port, &["INFO", "stats"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no total_commands_processed in INFO"))
}

/// A p2pcall handle on `url`: the connection, its session and handle.
async fn p2p_handle(url: &str) -> anyhow::Result<(Conn, u64, u64)> {
    let mut conn = Conn::new(wire::connect(url, Duration::from_secs(5)).await?);
    let limit = Duration::from_secs(5);
    let tx = conn.tx();
    let session = conn
        .request(tx, wire::create(tx), Expect::Success, limit)
        .await
        .map_err(|e| anyhow!("create: {}", e.kind()))?;
    let tx = conn.tx();
    let handle = conn
        .request(
            tx,
            wire::attach(tx, session, "janus.plugin.p2pcall"),
            Expect::Success,
            limit,
        )
        .await
        .map_err(|e| anyhow!("attach: {}", e.kind()))?;
    Ok((conn, session, handle))
}

/// The text of the answer (a `success` or the plugin's `event`) to a message.
async fn ask(conn: &mut Conn, session: u64, handle: u64, body: &str) -> anyhow::Result<String> {
    let tx = conn.tx();
    conn.send(wire::message(tx, session, handle, body))
        .await
        .map_err(|e| anyhow!("send: {}", e.kind()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match conn
            .recv(deadline)
            .await
            .map_err(|e| anyhow!("{}", e.kind()))?
        {
            Frame::Closed => bail!("closed"),
            Frame::Text(t) if wire::transaction(&t) == Some(tx) => {
                if matches!(wire::janus_kind(&t), Some("success" | "event")) {
                    return Ok(t);
                }
            }
            Frame::Text(_) => {}
        }
    }
}

/// Lists on `(conn, session, handle)` until `name` is (`present`) or is not listed.
async fn until_listed(
    on: &mut (Conn, u64, u64),
    name: &str,
    present: bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let quoted = format!("\"{name}\"");
    loop {
        let answer = ask(&mut on.0, on.1, on.2, r#"{"request":"list"}"#).await?;
        if answer.contains(&quoted) == present {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(10) {
            bail!(
                "{name} never {} on the other proxy",
                if present { "listed" } else { "gone" }
            );
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

pub async fn run(args: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let o = parse(args)?;
    if !o.proxy_bin.is_file() {
        bail!(
            "proxy binary {} not found (--proxy-bin)",
            o.proxy_bin.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("janus-bench-store-")
        .tempdir()?;
    if std::env::var_os("JANUS_BENCH_KEEP").is_some() {
        say!(out, "store: logs in {}", dir.path().display());
    }
    let port = free_port()?;
    let redis = start_redis(port)?;
    let filled = Instant::now();
    fill(port, o.rooms, o.users)?;
    say!(
        out,
        "store: {} rooms and {} users written in {:.1} s",
        o.rooms,
        o.users,
        filled.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let proxies: Vec<Proxy> = (0..o.proxies)
        .map(|i| start_proxy(&o, dir.path(), i, port))
        .collect::<anyhow::Result<_>>()?;
    let mut ready = Vec::new();
    for p in &proxies {
        ready.push(wait_in_step(p, o.proxies + 1, started)?);
    }
    let slowest = ready.iter().max().copied().unwrap_or_default();
    say!(
        out,
        "store: {} proxies in step {:.2} s after their start",
        o.proxies,
        slowest.as_secs_f64()
    );

    // A fresh proxy reads the store once more a heartbeat lifetime (5 s) after its first
    // round (as after a Redis gap): the idle measurement starts after that read.
    tokio::time::sleep(Duration::from_secs(6) + slowest).await;

    // Idle: what the store costs with nothing happening.
    let hz = clock_ticks_per_second();
    let redis_pid = redis.0.id();
    let pids: Vec<u32> = proxies.iter().map(|p| p.child.0.id()).collect();
    let calls0 = command_calls(port)?;
    let (commands0, redis0) = (commands_processed(port)?, sample(redis_pid)?);
    let proxies0 = pids
        .iter()
        .map(|p| sample(*p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(o.hold).await;
    let (commands1, redis1) = (commands_processed(port)?, sample(redis_pid)?);
    let calls1 = command_calls(port)?;
    let proxies1 = pids
        .iter()
        .map(|p| sample(*p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secs = redis1.at.duration_since(redis0.at).as_secs_f64();
    let cpu = |t0: u64, t1: u64| (t1.saturating_sub(t0)) as f64 / hz / secs * 100.0;
    let redis_cpu = cpu(redis0.cpu_ticks, redis1.cpu_ticks);
    // Every read is one command, less INFO's own (two).
    let ops = (commands1.saturating_sub(commands0) as f64 - 2.0).max(0.0) / secs;
    let proxy_cpu: Vec<f64> = proxies0
        .iter()
        .zip(&proxies1)
        .map(|(a, b)| cpu(a.cpu_ticks, b.cpu_ticks))
        .collect();
    let proxy_max = proxy_cpu.iter().copied().fold(0.0, f64::max);
    let proxy_mean = proxy_cpu.iter().sum::<f64>() / proxy_cpu.len().max(1) as f64;
    let proxy_rss_mib = proxies1.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    say!(
        out,
        "store: idle {:.0} s: redis {redis_cpu:.2} % CPU, {ops:.1} commands/s; proxies CPU mean \
         {proxy_mean:.2} %, max {proxy_max:.2} %, largest RSS {proxy_rss_mib:.1} MiB",
        secs
    );

    let mut per_command: Vec<(u64, &String)> = calls1
        .iter()
        .map(|(name, n)| {
            (
                n.saturating_sub(calls0.get(name).copied().unwrap_or(0)),
                name,
            )
        })
        .filter(|(n, _)| *n > 0)
        .collect();
    per_command.sort_by(|a, b| b.cmp(a));
    let listed: Vec<String> = per_command
        .iter()
        .map(|(n, name)| format!("{name} {:.1}/s", *n as f64 / secs))
        .collect();
    say!(
        out,
        "store: idle commands (scripts' included): {}",
        listed.join(", ")
    );

    // Propagation of a registration and of its release, proxy 1 to proxy 2.
    let (mut up, mut down) = (Vec::new(), Vec::new());
    if o.propagation > 0 && proxies.len() > 1 {
        let mut watcher = p2p_handle(&proxies[1].ws).await?;
        for i in 0..o.propagation {
            let name = format!("bench{i}");
            let (mut conn, session, handle) = p2p_handle(&proxies[0].ws).await?;
            let body = format!(r#"{{"request":"register","username":"{name}"}}"#);
            let answer = ask(&mut conn, session, handle, &body).await?;
            if !answer.contains("registered") {
                bail!("register {name}: {answer}");
            }
            up.push(until_listed(&mut watcher, &name, true).await?);
            let tx = conn.tx();
            conn.request(
                tx,
                wire::detach(tx, session, handle),
                Expect::Success,
                Duration::from_secs(5),
            )
            .await
            .map_err(|e| anyhow!("detach: {}", e.kind()))?;
            down.push(until_listed(&mut watcher, &name, false).await?);
            conn.close().await;
        }
        up.sort();
        down.sort();
        say!(out,
            "store: a registration on one proxy listed on another after p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             a release gone after p50 {:.2} ms, max {:.2} ms ({} each)",
            percentile(&up, 0.5),
            percentile(&up, 0.99),
            percentile(&up, 1.0),
            percentile(&down, 0.5),
            percentile(&down, 1.0),
            up.len()
        );
    }
    say!(
        out,
        "RESULT mode=store proxies={} rooms={} users={} hold_s={secs:.0} in_step_s={:.2} \
         redis_cpu_pct={redis_cpu:.2} redis_ops_per_s={ops:.1} proxy_cpu_mean_pct={proxy_mean:.2} \
         proxy_cpu_max_pct={proxy_max:.2} proxy_rss_max_mib={proxy_rss_mib:.1} \
         register_seen_p50_ms={:.2} register_seen_max_ms={:.2} release_seen_p50_ms={:.2} \
         release_seen_max_ms={:.2}",
        o.proxies,
        o.rooms,
        o.users,
        slowest.as_secs_f64(),
        percentile(&up, 0.5),
        percentile(&up, 1.0),
        percentile(&down, 0.5),
        percentile(&down, 1.0),
    );
    drop(proxies);
    drop(redis);
    if std::env::var_os("JANUS_BENCH_KEEP").is_some() {
        let _ = dir.keep();
    }
    Ok(())
}
