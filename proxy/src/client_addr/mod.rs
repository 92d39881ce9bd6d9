//! Who a client is when it reaches the proxy through a load balancer or an HTTP proxy: the
//! trusted proxies (`limits.trusted_proxies`), the PROXY protocol header a trusted load
//! balancer sends before anything else (`ws.proxy_protocol`), and the `X-Forwarded-For` /
//! `Forwarded` chain a trusted HTTP proxy appends to (`limits.forwarded_header`). Pure
//! functions; the client listener (`transport::listener`) and the WebSocket endpoint use them.
//!
//! Trust is hop by hop: a hop's word is believed only when the hop nearer to the proxy is
//! trusted. The TCP peer must be trusted for its PROXY header to count; the address the
//! header gives (the connection's address from then on) must be trusted for an
//! `X-Forwarded-For` to count. A client behind a TCP load balancer thus cannot make up an
//! address with an `X-Forwarded-For` of its own.

pub mod cidr;
pub mod forwarded;
pub mod proxy_protocol;

pub use cidr::{Cidr, CidrError, TrustedProxies};
pub use forwarded::ForwardedHeader;
