//! Links to backend Janus servers: one [`link::BackendLink`] actor per server multiplexes the
//! backend sessions and handles of every client over one WebSocket.

pub mod backoff;
pub mod connector;
pub mod link;
pub mod transactions;

pub use link::{BackendIncoming, BackendLink, LinkRequest, LinkStatus, UnrouteHandle};
