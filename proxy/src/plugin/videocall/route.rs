//! Where a videocall handle's requests go, and what becomes of its leg when a call needs one:
//! plain decisions on the handle's state, unit-tested without a runtime. The handle actor
//! ([`super::handle`]) acts on them.

use super::errors::Verb;

/// Who answers a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The proxy itself, with Janus's events and errors.
    Proxy,
    /// The backend, through the handle's leg: its replies and events come back rewritten.
    Leg,
}

/// A `message`: `list` and `register` are always the proxy's; `call`, `accept`, `set` and
/// `hangup` go to the backend once it knows the call (`live`), as Janus would answer them: a
/// second `call` gets 480 there, and Janus's 480 also closes the caller's PeerConnection,
/// ending the call.
pub fn message_target(verb: Verb, live: bool) -> Target {
    match verb {
        Verb::List | Verb::Register => Target::Proxy,
        Verb::Call | Verb::Accept | Verb::Set | Verb::Hangup if live => Target::Leg,
        Verb::Call | Verb::Accept | Verb::Set | Verb::Hangup => Target::Proxy,
    }
}

/// A core `hangup` (the client closes its PeerConnection): the leg's, whenever the handle has
/// one (a lingering leg's PeerConnection may still be up); a plain `success` otherwise.
pub fn hangup_target(has_leg: bool) -> Target {
    if has_leg {
        Target::Leg
    } else {
        Target::Proxy
    }
}

/// What becomes of a trickled candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrickleTarget {
    /// To the backend (the call is live).
    Leg,
    /// Acked and kept until the call's offer or answer reached the backend, then sent in
    /// order (Janus acks a candidate it cannot use yet and keeps it too).
    Hold,
    /// Acked and forgotten: there is no call to use it in.
    Drop,
}

pub fn trickle_target(live: bool, in_call: bool) -> TrickleTarget {
    match (live, in_call) {
        (true, _) => TrickleTarget::Leg,
        (false, true) => TrickleTarget::Hold,
        (false, false) => TrickleTarget::Drop,
    }
}

/// Where the callee of a `call` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callee<T> {
    /// A handle of this proxy.
    Local(T),
    /// A user of that proxy, as this proxy's view of the shared store says.
    Remote(String),
    /// Not in this proxy's view (yet): Redis itself is asked who has the name.
    AskStore,
    /// Nobody has the name (no shared store, and not here).
    Nobody,
}

/// `local`: the handle of this proxy that has the name; `view`: with a shared store, the
/// proxy that has it as far as this proxy knows (None: no shared store).
pub fn find_callee<T>(local: Option<T>, view: Option<Option<String>>) -> Callee<T> {
    match (local, view) {
        (Some(handle), _) => Callee::Local(handle),
        (None, Some(Some(proxy))) => Callee::Remote(proxy),
        (None, Some(None)) => Callee::AskStore,
        (None, None) => Callee::Nobody,
    }
}

/// How far a handle's leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegPhase {
    /// Attaching on its server.
    Attaching,
    /// Attached; the proxy registers the handle's username on it.
    Registering,
    /// Registered: calls can go through it.
    Ready,
}

/// What a call on `server` does with the handle's leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegPlan {
    /// The leg there is attached (registered, or registering): it serves the call, and the
    /// new placement is given back.
    Reuse { ready: bool },
    /// A new leg on the call's server (the current one, if any, is released first).
    Open,
}

/// `current`: the handle's leg, on its server, if it has one.
pub fn plan_leg(current: Option<(&str, LegPhase)>, server: &str) -> LegPlan {
    match current {
        Some((on, LegPhase::Registering)) if on == server => LegPlan::Reuse { ready: false },
        Some((on, LegPhase::Ready)) if on == server => LegPlan::Reuse { ready: true },
        // Elsewhere, or still attaching: a leg of its own for the call.
        _ => LegPlan::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_to_the_backend_once_it_knows_the_call() {
        for verb in [Verb::List, Verb::Register] {
            assert_eq!(message_target(verb, true), Target::Proxy);
            assert_eq!(message_target(verb, false), Target::Proxy);
        }
        for verb in [Verb::Call, Verb::Accept, Verb::Set, Verb::Hangup] {
            assert_eq!(message_target(verb, true), Target::Leg);
            assert_eq!(message_target(verb, false), Target::Proxy);
        }
        assert_eq!(hangup_target(true), Target::Leg);
        assert_eq!(hangup_target(false), Target::Proxy);
    }

    #[test]
    fn a_callee_here_first_then_in_the_view_then_in_redis() {
        assert_eq!(
            find_callee(Some(1), Some(Some("two".into()))),
            Callee::Local(1)
        );
        assert_eq!(
            find_callee::<u8>(None, Some(Some("two".into()))),
            Callee::Remote("two".into())
        );
        assert_eq!(find_callee::<u8>(None, Some(None)), Callee::AskStore);
        assert_eq!(find_callee::<u8>(None, None), Callee::Nobody);
    }

    #[test]
    fn candidates_wait_for_the_call() {
        assert_eq!(trickle_target(true, true), TrickleTarget::Leg);
        assert_eq!(trickle_target(false, true), TrickleTarget::Hold);
        assert_eq!(trickle_target(false, false), TrickleTarget::Drop);
    }

    #[test]
    fn an_attached_leg_on_the_calls_server_is_reused() {
        assert_eq!(plan_leg(None, "a"), LegPlan::Open);
        assert_eq!(
            plan_leg(Some(("a", LegPhase::Ready)), "a"),
            LegPlan::Reuse { ready: true }
        );
        assert_eq!(
            plan_leg(Some(("a", LegPhase::Registering)), "a"),
            LegPlan::Reuse { ready: false }
        );
        assert_eq!(
            plan_leg(Some(("a", LegPhase::Attaching)), "a"),
            LegPlan::Open
        );
        assert_eq!(plan_leg(Some(("a", LegPhase::Ready)), "b"), LegPlan::Open);
    }
}
