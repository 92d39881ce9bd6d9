//! The client listener. Each accepted TCP connection is first checked for the PROXY protocol
//! (a header from a trusted load balancer gives the client's address; see `client_addr`), then
//! the TLS handshake is done for `wss`, then actix-http's HTTP/1 service takes the stream
//! together with the client's address, so `HttpRequest::peer_addr` is the real client for the
//! WebSocket endpoint. actix-web's `HttpServer` takes the address from the socket and reads
//! nothing before TLS, hence this small server of our own on the same parts (actix-server
//! workers, actix-http's dispatcher, the actix-web `App`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_service::{
    fn_factory, fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_web::dev::{AppConfig, Server, Service};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::env::TransportEnv;
use super::stream::{ClientStream, Io};
use crate::client_addr::proxy_protocol::{self, Detection, HeaderError, Parsed};
use crate::metrics::Refusal;

/// How long a new connection has to send its first bytes (a PROXY protocol header, or
/// whatever starts TLS or HTTP): actix-http's own limit for a first request.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take (actix-web's default).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pending connections the kernel queues (actix-web's default).
const BACKLOG: i32 = 1024;

/// Why a connection was closed before it was served.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("sent a PROXY protocol header but is not in limits.trusted_proxies")]
    Untrusted,
    #[error("sent a PROXY protocol header but ws.proxy_protocol is off")]
    Disabled,
    #[error("is a trusted proxy (limits.trusted_proxies, ws.proxy_protocol on) but sent no PROXY protocol header")]
    Missing,
    #[error("sent a bad PROXY protocol header: {0}")]
    Malformed(HeaderError),
    #[error("sent no complete PROXY protocol header within {0:?}")]
    HeaderTimeout(Duration),
    #[error("sent nothing within {0:?}")]
    Silent(Duration),
    #[error("closed the connection before sending anything")]
    Closed,
    #[error("closed the connection inside its PROXY protocol header")]
    ClosedInHeader,
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("no TLS handshake within {0:?}")]
    TlsTimeout(Duration),
    #[error("{0}")]
    Io(io::Error),
}

impl Refused {
    /// Refusals an operator must hear about: a misconfigured balancer, or someone trying to
    /// pass for one. The rest is the ordinary noise of the internet.
    fn is_notable(&self) -> bool {
        matches!(
            self,
            Refused::Untrusted
                | Refused::Disabled
                | Refused::Missing
                | Refused::Malformed(_)
                | Refused::HeaderTimeout(_)
                | Refused::ClosedInHeader
        )
    }
}

/// What actix-http's upgrade hook is given: the request, and its connection.
type UpgradeRequest = (
    Request,
    actix_codec::Framed<ClientStream, actix_http::h1::Codec>,
);

/// What every worker's acceptor shares.
#[derive(Clone)]
pub struct Acceptor {
    state: Arc<TransportEnv>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Acceptor {
    /// `tls`: the server configuration of `wss`, if served.
    pub fn new(state: Arc<TransportEnv>, tls: Option<rustls::ServerConfig>) -> Self {
        let tls = tls.map(|mut config| {
            // HTTP/1.1 only: the WebSocket upgrade needs it.
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        Acceptor { state, tls }
    }

    /// The stream to serve and the client's address, or the connection refused (logged).
    /// `open`: dropped when the stream is.
    async fn accept(
        &self,
        io: TcpStream,
        open: tokio::sync::oneshot::Sender<()>,
    ) -> Result<(ClientStream, Option<SocketAddr>), DispatchError> {
        let peer = match io.peer_addr() {
            Ok(peer) => SocketAddr::new(peer.ip().to_canonical(), peer.port()),
            // Gone already.
            Err(e) => return Err(DispatchError::Io(e)),
        };
        let _ = io.set_nodelay(true);
        match self.prepare(io, peer).await {
            Ok((io, client)) => {
                if client != peer {
                    log::debug!("client connection from {peer}: client {client}");
                }
                Ok((ClientStream { io, _open: open }, Some(client)))
            }
            Err(why) => {
                if why.is_notable() {
                    log::warn!("client connection from {peer} refused: {why}");
                    self.state.session.metrics.refused(Refusal::ProxyProtocol);
                } else {
                    log::debug!("client connection from {peer} closed: {why}");
                }
                Err(DispatchError::Io(io::Error::other(why.to_string())))
            }
        }
    }

    async fn prepare(
        &self,
        mut io: TcpStream,
        peer: SocketAddr,
    ) -> Result<(Io, SocketAddr), Refused> {
        let config = &self.state.ws;
        let client = if config.proxy_protocol && self.state.trusted_proxies.contains(peer.ip()) {
            let header = tokio::time::timeout(FIRST_BYTES_TIMEOUT, read_header(&mut io))
                .await
                .map_err(|_| Refused::HeaderTimeout(FIRST_BYTES_TIMEOUT))??;
            header.source.unwrap_or(peer)
        } else {
            // A header where none is honoured is refused, not served as a bad HTTP request:
            // it is a misconfigured balancer, or someone passing for one.
            let first = tokio::time::timeout(FIRST_BYTES_TIMEOUT, detect(&io))
                .await
                .map_err(|_| Refused::Silent(FIRST_BYTES_TIMEOUT))??;
            match first {
                Detection::Header if config.proxy_protocol => return Err(Refused::Untrusted),
                Detection::Header => return Err(Refused::Disabled),
                _ => peer,
            }
        };
        let client = SocketAddr::new(client.ip().to_canonical(), client.port());
        let stream = match &self.tls {
            None => Io::Plain(io),
            Some(tls) => {
                let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(io))
                    .await
                    .map_err(|_| Refused::TlsTimeout(TLS_HANDSHAKE_TIMEOUT))?
                    .map_err(Refused::Tls)?;
                Io::Tls(Box::new(stream))
            }
        };
        Ok((stream, client))
    }
}

/// Reads a PROXY protocol header, exactly: what follows stays on the socket.
async fn read_header(io: &mut TcpStream) -> Result<proxy_protocol::ProxyHeader, Refused> {
    let mut buf = Vec::with_capacity(64);
    loop {
        match proxy_protocol::parse(&buf) {
            Ok(Parsed::Complete { header, length }) if length == buf.len() => return Ok(header),
            // Only a malformed v1 line shorter than the shortest header ends inside the bytes
            // read; it would fail to parse, but be safe.
            Ok(Parsed::Complete { .. }) => {
                return Err(Refused::Malformed(HeaderError::V1("line too short")))
            }
            Ok(Parsed::Incomplete(more)) => {
                let start = buf.len();
                buf.resize(start + more, 0);
                let n = io.read(&mut buf[start..]).await.map_err(Refused::Io)?;
                if n == 0 {
                    return Err(if start == 0 {
                        Refused::Closed
                    } else {
                        Refused::ClosedInHeader
                    });
                }
                buf.truncate(start + n);
            }
            Err(HeaderError::Signature) => return Err(Refused::Missing),
            Err(e) => return Err(Refused::Malformed(e)),
        }
    }
}

/// Looks at the first bytes without taking them.
async fn detect(io: &TcpStream) -> Result<Detection, Refused> {
    let mut buf = [0u8; 12];
    loop {
        let n = io.peek(&mut buf).await.map_err(Refused::Io)?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        match proxy_protocol::detect(&buf[..n]) {
            Detection::Undecided => {
                // Fewer bytes than it takes to tell (a first segment of under 5 bytes: never
                // from a real client). `peek` returns at once while any byte waits, so wait a
                // little for more rather than spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            decided => return Ok(decided),
        }
    }
}

/// Binds the client listen address (the socket options of actix-web's `bind`).
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Serves `app` (made once per worker, on its thread) on `listener`: `workers` threads (0:
/// one per core), no signal handling (the proxy has its own). A graceful stop closes the
/// listener at once and gives the open connections `close_after_s` (checked once a second),
/// then drops them.
pub fn serve<F, I, S, B>(
    listener: std::net::TcpListener,
    workers: usize,
    close_after_s: u64,
    acceptor: Acceptor,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let secure = acceptor.tls.is_some();
    let mut builder = Server::build()
        .disable_signals()
        .shutdown_timeout(close_after_s);
    if workers > 0 {
        builder = builder.workers(workers);
    }
    let builder = builder.listen(
        format!("janus-proxy-clients-{local}"),
        listener,
        move || {
            let app = app()
                .into_factory()
                .map_err(|e: S::Error| e.into().error_response());
            // The application sees this only through `HttpRequest::app_config` and the
            // connection info's fallbacks, which the WebSocket endpoint does not read.
            let app = map_config(app, |()| AppConfig::default());
            let mut http = HttpService::build()
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local);
            if secure {
                http = http.secure();
            }
            // WebSocket handshakes are answered by `upgrade::serve`, which takes the stream
            // from the dispatcher: no HTTP state stays under an open WebSocket.
            let state = acceptor.state.clone();
            let http = http
                .upgrade(fn_service(move |(req, framed): UpgradeRequest| {
                    let state = state.clone();
                    async move {
                        super::upgrade::serve(req, framed, state)
                            .await
                            .map_err(actix_web::Error::from)
                    }
                }))
                .h1(app);
            let acceptor = acceptor.clone();
            fn_factory(move || {
                let http = http.new_service(());
                let acceptor = acceptor.clone();
                async move {
                    let http = Rc::new(http.await?);
                    Ok::<_, ()>(fn_service(move |io: TcpStream| {
                        let acceptor = acceptor.clone();
                        let http = http.clone();
                        // The accept (TLS handshake) and the dispatcher live in allocations
                        // of their own, freed once done: the task that stays for the
                        // connection's life waits on `open` alone.
                        async move {
                            let (open, closed) = tokio::sync::oneshot::channel();
                            let accepted = Box::pin(acceptor.accept(io, open)).await?;
                            Box::pin(http.call(accepted)).await?;
                            let _ = closed.await;
                            Ok::<_, DispatchError>(())
                        }
                    }))
                }
            })
        },
    )?;
    Ok(builder.run())
}
