//! janus-proxy: speaks the Janus WebSocket API to clients and relays it to a cluster of Janus
//! servers. See `docs/architecture.md` in the repository for the actor tree.

pub mod admin;
pub mod adopt;
pub mod auth;
pub mod backend;
pub mod check;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod demos;
pub mod error;
pub mod info;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod plugin;
pub mod registry;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
pub mod transport;
pub mod wsframes;

pub use cli::{main_from_env, main_with_args};
pub use config::ProxyConfig;
pub use error::ProxyError;
pub use server::{start, RunningProxy, ShutdownHandle};
