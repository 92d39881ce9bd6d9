//! awc's TCP connector with `TCP_NODELAY` set on every backend socket: Janus API frames are
//! small and latency-bound, Nagle's algorithm would hold them back.

use std::rc::Rc;

use actix_service::Service;
use actix_tls::connect::{ConnectError, ConnectInfo, Connection, Connector, ConnectorService};
use actix_web::http::Uri;
use futures_util::future::LocalBoxFuture;

#[derive(Clone)]
pub struct NoDelayConnector {
    inner: Rc<ConnectorService>,
}

impl NoDelayConnector {
    pub fn new() -> Self {
        NoDelayConnector {
            inner: Rc::new(Connector::default().service()),
        }
    }
}

impl Default for NoDelayConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl Service<ConnectInfo<Uri>> for NoDelayConnector {
    type Response = Connection<Uri, actix_rt::net::TcpStream>;
    type Error = ConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<ConnectInfo<Uri>>::poll_ready(&*self.inner, cx)
    }

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let conn = fut.await?;
            if let Err(e) = conn.io_ref().set_nodelay(true) {
                log::warn!("cannot set TCP_NODELAY on backend socket: {e}");
            }
            Ok(conn)
        })
    }
}

/// An awc client for backend links (`ws://`, or `wss://` with `tls`).
pub fn backend_client(
    connect_timeout: std::time::Duration,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .connector(NoDelayConnector::new())
                .rustls_0_23(tls)
                .timeout(connect_timeout),
        )
        .timeout(connect_timeout)
        .finish()
}
