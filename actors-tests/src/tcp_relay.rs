//! A TCP relay between the proxy and a backend Janus whose path a test can break while both
//! ends stay up: [`TcpRelay::cut`] closes the connections (a link blip),
//! [`TcpRelay::partition`] blackholes the path (nothing is forwarded either way, connections
//! stay open and new ones are accepted but held, as when packets stop on a network: TCP
//! delivers what was held once it heals) until [`TcpRelay::heal`], and [`TcpRelay::refuse`]
//! resets every connection, held or open, and each new one (a dead Janus behind the relay).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// What the relay does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Blackhole,
    Refuse,
}

/// The relay tasks of the open connections.
#[derive(Default)]
struct Connections {
    tasks: Mutex<Vec<AbortHandle>>,
    accepted: AtomicU64,
}

impl Connections {
    fn add(&self, task: AbortHandle) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|t| !t.is_finished());
            tasks.push(task);
        }
    }

    /// Aborts every open connection; returns how many there were.
    fn cut(&self) -> usize {
        let Ok(mut tasks) = self.tasks.lock() else {
            return 0;
        };
        let open = tasks.iter().filter(|t| !t.is_finished()).count();
        for task in tasks.drain(..) {
            task.abort();
        }
        open
    }
}

pub struct TcpRelay {
    pub addr: SocketAddr,
    connections: Arc<Connections>,
    mode: watch::Sender<Mode>,
    acceptor: JoinHandle<()>,
}

impl TcpRelay {
    /// Listens on a free loopback port and relays every connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<TcpRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Connections::default());
        let (mode, _) = watch::channel(Mode::Forward);
        let conns = connections.clone();
        let modes = mode.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                conns.accepted.fetch_add(1, Ordering::Relaxed);
                let task = tokio::spawn(relay(inbound, target, modes.subscribe()));
                conns.add(task.abort_handle());
            }
        });
        Ok(TcpRelay {
            addr,
            connections,
            mode,
            acceptor,
        })
    }

    /// Closes every relayed connection (both sides see the TCP connection end); new ones are
    /// still accepted. Returns how many were open.
    pub fn cut(&self) -> usize {
        self.connections.cut()
    }

    /// Stops forwarding in both directions: open connections stay open, their bytes wait in
    /// the relay; new connections are accepted and held, not connected through.
    pub fn partition(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Forwards again: held bytes go through, held connections are connected to the target.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Resets every connection, open or held, and each new one at once, until [`Self::heal`]:
    /// what a client sees of a host where nothing listens any more.
    pub fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.connections.accepted.load(Ordering::Relaxed)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.connections.cut();
    }
}

/// Waits until the relay forwards (true) or refuses (false).
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|m| *m != Mode::Blackhole).await {
        Ok(m) => *m == Mode::Forward,
        Err(_) => false,
    }
}

/// Resets `stream` (RST rather than FIN) as it is dropped.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

async fn relay(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if !forwarding(&mut mode).await {
        return reset(&inbound);
    }
    let outbound = match TcpStream::connect(target).await {
        Ok(outbound) => outbound,
        // Nothing listens behind the relay: the client's connection is reset, as close to a
        // refused connection as an accepted one can get.
        Err(_) => return reset(&inbound),
    };
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Each direction ends on its own end of stream, or both on `refuse`.
    tokio::join!(
        pump(in_read, out_write, mode.clone()),
        pump(out_read, in_write, mode)
    );
}

/// Copies `from` to `to` while the relay forwards; in a blackhole, bytes read wait here and
/// nothing more is read. End of stream is passed on as a write shutdown.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !forwarding(&mut mode).await {
            return refuse_both(&from, &to);
        }
        let n = tokio::select! {
            // A read error ends this direction like an end of stream.
            read = from.read(&mut buf) => read.unwrap_or(0),
            // A partition that starts while waiting stops the reading too.
            _ = mode.wait_for(|m| *m != Mode::Forward) => continue,
        };
        if !forwarding(&mut mode).await {
            return refuse_both(&from, &to);
        }
        if n == 0 {
            let _ = to.shutdown().await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// `refuse`: both sockets of the connection are reset once their halves are dropped (a write
/// half still sends its FIN as it goes, then the close resets).
fn refuse_both(from: &OwnedReadHalf, to: &OwnedWriteHalf) {
    let _ = from.as_ref().set_zero_linger();
    let _ = to.as_ref().set_zero_linger();
}
