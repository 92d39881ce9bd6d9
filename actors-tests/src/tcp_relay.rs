//! A TCP relay between the proxy and a backend Janus whose connections a test can cut while
//! both ends stay up: a link blip without killing anything.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

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
    acceptor: JoinHandle<()>,
}

impl TcpRelay {
    /// Listens on a free loopback port and relays every connection to `target`.
    pub async fn start(target: SocketAddr) -> anyhow::Result<TcpRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(Connections::default());
        let conns = connections.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let _ = inbound.set_nodelay(true);
                conns.accepted.fetch_add(1, Ordering::Relaxed);
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.add(task.abort_handle());
            }
        });
        Ok(TcpRelay {
            addr,
            connections,
            acceptor,
        })
    }

    /// Closes every relayed connection (both sides see the TCP connection end); new ones are
    /// still accepted. Returns how many were open.
    pub fn cut(&self) -> usize {
        self.connections.cut()
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
