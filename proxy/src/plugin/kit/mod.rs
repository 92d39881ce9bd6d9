//! The handle kit: what every plugin handle actor is built from, so that the plugins share one
//! skeleton instead of each writing its own.
//!
//! * [`core::HandleCore`]: the handle's ids and the frames the proxy makes for it (ack,
//!   success, plugin events and errors, hangup, detached, "backend lost"; in [`core_ext`],
//!   `webrtcup` and `trickle` for a handle with no backend), in Janus's shapes.
//! * [`queue::CommandQueue`]: client requests one at a time, with the gate a waiting request
//!   shuts; trickles in order or at once. [`requests`]: a handle's client requests taken
//!   through its queue to its method for each kind.
//! * [`legs::Legs`], [`legs::ensure`], [`legs::ask`]: the handle's backend handles, each
//!   told apart by the token the link echoes; a leg on a server and the answer to a request of
//!   the handle's own, as actor futures.
//! * [`leg::BackendLeg`]: one backend handle on one link.
//! * [`error::PluginError`]: a plugin's own error.
//! * [`request`]: the requests sent to backend handles.

pub mod core;
pub mod core_ext;
pub mod error;
pub mod leg;
pub mod legs;
pub mod queue;
pub mod request;
pub mod requests;

pub use self::core::{Frames, HandleCore, SessionPort, BACKEND_LOST_REASON};
pub use error::PluginError;
pub use leg::BackendLeg;
pub use legs::{Leg, LegState, Legs, Where, WithLegs};
pub use queue::{CommandQueue, Trickles};
pub(crate) use requests::take_requests;
pub use requests::ClientRequests;
