//! Links to backend Janus servers: one [`link::BackendLink`] actor per server multiplexes the
//! backend sessions and handles of every client over one WebSocket; the
//! [`supervisor::BackendSupervisor`] starts and restarts them, a [`breaker::CircuitBreaker`]
//! per server keeps new handles off failing ones.

pub mod backoff;
pub mod breaker;
pub mod connector;
pub mod link;
pub mod liveness;
pub mod reclaim;
pub mod supervisor;
pub mod transactions;

pub use link::{BackendCredentials, BackendLink, HealthEvent, LinkHealth, RetireLink, ServerDown};
pub use supervisor::{BackendSupervisor, CredentialBook, SupervisedLink};
