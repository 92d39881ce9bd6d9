//! A Redis Sentinel set of real processes on free loopback ports (Debian's `redis-server` and
//! `redis-sentinel`): a master, one replica (`--replicaof`), three sentinels watching the
//! master as [`MASTER_NAME`] with quorum 2 and short periods (down after 1 s). Every process
//! is killed when the set is dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// Whether `redis-server`, `redis-sentinel` and `redis-cli` are installed.
pub fn available() -> bool {
    ["redis-server", "redis-sentinel", "redis-cli"]
        .iter()
        .all(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
}

/// One process of the set (a data node or a sentinel), killed when dropped.
struct Process {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Process {
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct RedisSentinelSet {
    /// Data nodes: [0] the first master, [1] its replica.
    nodes: Vec<Process>,
    sentinels: Vec<Process>,
    dir: tempfile::TempDir,
}

/// `redis-cli -p <port> <args…>`: its output, one reply element a line.
pub fn cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .context("redis-cli")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A reply of field/value lines (`SENTINEL master`, `SENTINEL replicas`) as pairs.
fn fields(text: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].to_owned(), c[1].to_owned()))
        .collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl RedisSentinelSet {
    /// Starts the set and waits (≤ 30 s) until every sentinel sees the master, its replica
    /// and the two other sentinels: only then can they agree on a failover.
    pub async fn start() -> anyhow::Result<RedisSentinelSet> {
        let mut last = anyhow::anyhow!("not started");
        // A free port can be taken before the process binds it: a few tries.
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(set) => return Ok(set),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn try_start() -> anyhow::Result<RedisSentinelSet> {
        let dir = tempfile::Builder::new()
            .prefix("redis-sentinel-")
            .tempdir()?;
        let mut set = RedisSentinelSet {
            nodes: Vec::new(),
            sentinels: Vec::new(),
            dir,
        };
        let master = crate::free_port()?;
        set.nodes.push(set.data_node(master, None)?);
        set.wait_answers(0).await?;
        let replica = crate::free_port()?;
        set.nodes.push(set.data_node(replica, Some(master))?);
        // The replica in sync before the sentinels start: they learn of replicas from the
        // master's INFO, asked at once and then only every 10 s.
        set.wait_until("the replica in sync", |set| {
            Ok(cli(set.nodes[1].port, &["INFO", "replication"])?.contains("master_link_status:up"))
        })
        .await?;
        for index in 0..3 {
            let port = crate::free_port()?;
            let sentinel = set.sentinel(index, port, master)?;
            set.sentinels.push(sentinel);
        }
        set.wait_until("the sentinels to agree", |set| {
            for sentinel in &set.sentinels {
                let pairs = fields(&cli(sentinel.port, &["SENTINEL", "master", MASTER_NAME])?);
                let ok = field(&pairs, "flags") == Some("master")
                    && field(&pairs, "port") == Some(master.to_string().as_str())
                    && field(&pairs, "num-slaves") == Some("1")
                    && field(&pairs, "num-other-sentinels") == Some("2");
                let replicas = fields(&cli(sentinel.port, &["SENTINEL", "replicas", MASTER_NAME])?);
                let replica_ok = field(&replicas, "flags") == Some("slave")
                    && field(&replicas, "port") == Some(replica.to_string().as_str())
                    && field(&replicas, "master-link-status") == Some("ok");
                if !(ok && replica_ok) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(set)
    }

    fn data_node(&self, port: u16, replica_of: Option<u16>) -> anyhow::Result<Process> {
        let log = self.dir.path().join(format!("redis-{port}.log"));
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(master) = replica_of {
            command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        Ok(Process {
            port,
            child: Some(child),
            log,
        })
    }

    fn sentinel(&self, index: usize, port: u16, master: u16) -> anyhow::Result<Process> {
        // A sentinel rewrites its configuration file (what it learnt): one folder each.
        let dir = self.dir.path().join(format!("sentinel-{index}"));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("sentinel.log");
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 5000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.display(),
                log = log.display(),
            ),
        )?;
        let child = Command::new("redis-sentinel")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-sentinel (apt-get install redis-sentinel)")?;
        Ok(Process {
            port,
            child: Some(child),
            log,
        })
    }

    async fn wait_answers(&mut self, node: usize) -> anyhow::Result<()> {
        self.wait_until("redis-server to answer", move |set| {
            Ok(cli(set.nodes[node].port, &["PING"])?.trim() == "PONG")
        })
        .await
    }

    /// Polls `check` (every 50 ms, ≤ 30 s); fails early if a process exited.
    async fn wait_until(
        &mut self,
        what: &str,
        check: impl Fn(&RedisSentinelSet) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if check(self)? {
                return Ok(());
            }
            let mut exited = None;
            for process in self.nodes.iter_mut().chain(self.sentinels.iter_mut()) {
                if let Some(status) = process.exited()? {
                    exited = Some((process.port, status));
                }
            }
            if let Some((port, status)) = exited {
                bail!(
                    "process on port {port} exited ({status}) waiting for {what}; logs:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                bail!("no {what} within 30 s; logs:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `store.url` for the proxies: every sentinel, the master's name, database 0.
    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}/0", sentinels.join(","))
    }

    /// The port of the first master.
    pub fn master_port(&self) -> u16 {
        self.nodes[0].port
    }

    /// The port of the replica (the master after a failover).
    pub fn replica_port(&self) -> u16 {
        self.nodes[1].port
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// `kill -9` of the data node on `port`, waited for.
    pub fn kill_node(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                node.kill();
            }
        }
    }

    /// The master's port as sentinel `index` names it now.
    pub fn named_master(&self, index: usize) -> anyhow::Result<Option<u16>> {
        let port = self.sentinels.get(index).context("no such sentinel")?.port;
        let reply = cli(port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME])?;
        Ok(reply.lines().nth(1).and_then(|p| p.trim().parse().ok()))
    }

    /// Points every sentinel at the master on `port` (`SENTINEL REMOVE`, then `MONITOR`
    /// with the same settings), as an operator does after changing the topology by hand.
    pub fn monitor(&self, port: u16) -> anyhow::Result<()> {
        let port = port.to_string();
        for sentinel in &self.sentinels {
            let commands: [&[&str]; 4] = [
                &["SENTINEL", "REMOVE", MASTER_NAME],
                &["SENTINEL", "MONITOR", MASTER_NAME, "127.0.0.1", &port, "2"],
                &[
                    "SENTINEL",
                    "SET",
                    MASTER_NAME,
                    "down-after-milliseconds",
                    "1000",
                ],
                &["SENTINEL", "SET", MASTER_NAME, "failover-timeout", "5000"],
            ];
            for command in commands {
                let reply = cli(sentinel.port, command)?;
                if reply.trim() != "OK" {
                    bail!("{command:?} on sentinel {}: {reply}", sentinel.port);
                }
            }
        }
        Ok(())
    }

    /// Subscribes to `+switch-master` on every sentinel (returns once all are subscribed).
    pub async fn watch_switch(&self) -> anyhow::Result<SwitchWatch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut children = Vec::new();
        let mut subscribed = Vec::new();
        for sentinel in &self.sentinels {
            let mut child = tokio::process::Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &sentinel.port.to_string()])
                .args(["SUBSCRIBE", "+switch-master"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .context("redis-cli")?;
            let stdout = child.stdout.take().context("redis-cli stdout")?;
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                let mut ready = Some(ready_tx);
                while let Ok(Some(line)) = lines.next_line().await {
                    // The subscription's confirmation ends with the channel count.
                    if line.trim() == "1" {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    // "<name> <old ip> <old port> <new ip> <new port>"
                    let words: Vec<&str> = line.split_whitespace().collect();
                    if words.len() == 5 && words[0] == MASTER_NAME {
                        if let Ok(port) = words[4].parse::<u16>() {
                            let _ = tx.send((Instant::now(), port));
                        }
                    }
                }
            });
            children.push(child);
            subscribed.push(ready_rx);
        }
        for ready in subscribed {
            tokio::time::timeout(Duration::from_secs(10), ready)
                .await
                .context("SUBSCRIBE +switch-master not confirmed in 10 s")?
                .context("redis-cli ended")?;
        }
        Ok(SwitchWatch {
            _children: children,
            rx,
        })
    }

    /// The tail of every process's log (for failure messages).
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for process in self.nodes.iter().chain(&self.sentinels) {
            let text = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(15)..];
            out.push_str(&format!(
                "--- port {} ({})\n{}\n",
                process.port,
                process.log.display(),
                tail.join("\n")
            ));
        }
        out
    }
}

/// `+switch-master` announcements of the sentinels, with when each was read.
pub struct SwitchWatch {
    _children: Vec<tokio::process::Child>,
    rx: mpsc::UnboundedReceiver<(Instant, u16)>,
}

impl SwitchWatch {
    /// The first announcement (from whichever sentinel), within `limit`: when, and the new
    /// master's port.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<(Instant, u16)> {
        tokio::time::timeout(limit, self.rx.recv())
            .await
            .with_context(|| format!("no +switch-master within {limit:?}"))?
            .context("every redis-cli subscription ended")
    }
}
