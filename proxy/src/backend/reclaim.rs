//! Whether a backend link that lost its socket holds its handles while it reconnects to
//! `claim` its backend session, and until when. A plain struct fed with what happened and the
//! time, returning what the link must do, so it is tested without a runtime.
//!
//! * A **dead** Janus loses its handles at once, since waiting would only delay the clients'
//!   `hangup`: a connection refused or reset, a socket that ends again while the link
//!   reclaims, a sentinel reporting the server down, a claim Janus refuses.
//! * A socket that simply **closed** may be a blip (a middlebox, a load balancer restarting)
//!   or a Janus that just died: the link reconnects at once and has `window`
//!   (`backend.reclaim_window_ms`) to claim; a refused reconnect ends it sooner.
//! * An **unreachable** Janus (timeouts, silence) may be fine behind a broken path, and it
//!   keeps the session for its `reclaim-session-timeout` (from its `info`) after it loses the
//!   transport — counted from its last activity, so from the last time the link heard from
//!   it. The handles wait that long, at most `partition_max`, while the link keeps
//!   reconnecting; never less than `window`.

use std::fmt;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use awc::error::{ConnectError, SendRequestError, WsClientError};

/// Why a socket was lost or a connect attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Nothing accepts the connection, or it was reset or ended during the WebSocket
    /// handshake: the Janus process is gone.
    Refused,
    /// An established socket ended (EOF, reset, close frame, protocol error).
    Closed,
    /// Nothing came back in time: connect, handshake, a request or the liveness ping timed
    /// out. The path is broken; the Janus may well be fine.
    TimedOut,
    /// The server's sentinel reports its Janus down.
    SentinelDown,
}

impl Loss {
    /// A failed connect attempt: timeouts and unreachable networks are a broken path; every
    /// other failure (refused, reset, EOF or a bad answer during the handshake, a name that
    /// does not resolve) means nothing usable listens there.
    pub fn of_connect_error(e: &WsClientError) -> Loss {
        let io = match e {
            WsClientError::SendRequest(SendRequestError::Timeout)
            | WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Timeout)) => {
                return Loss::TimedOut
            }
            WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(io)))
            | WsClientError::SendRequest(SendRequestError::Send(io)) => io,
            _ => return Loss::Refused,
        };
        match io.kind() {
            ErrorKind::TimedOut | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                Loss::TimedOut
            }
            _ => Loss::Refused,
        }
    }
}

/// Why the handles of a lost backend session are given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The socket had no backend session: nothing to claim.
    NoSession,
    /// `backend.reclaim_window_ms` is 0: sessions are never claimed.
    Disabled,
    /// The reconnect was refused or reset.
    Refused,
    /// A socket ended again while the link was reclaiming.
    ClosedAgain,
    /// The sentinel reports the server down.
    SentinelDown,
    /// No claim before the deadline.
    DeadlinePassed,
    /// Janus answered the claim with an error (the session is gone).
    ClaimRefused,
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GiveUp::NoSession => "no backend session",
            GiveUp::Disabled => "reclaiming is off",
            GiveUp::Refused => "backend refused the connection",
            GiveUp::ClosedAgain => "connection closed again while reclaiming",
            GiveUp::SentinelDown => "the sentinel reports the server down",
            GiveUp::DeadlinePassed => "no claim within the reclaim deadline",
            GiveUp::ClaimRefused => "the backend refused the claim",
        })
    }
}

/// What the link does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Connect (now, or at `at`) and claim the session; the handles wait.
    Reconnect { at: Instant },
    /// The backend session is lost: tell every handle, fail the queued requests.
    GiveUp(GiveUp),
    /// Nothing changes.
    Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimPolicy {
    /// `backend.reclaim_window_ms`: after a closed socket, or for a Janus whose reclaim
    /// timeout is unknown or 0. Zero: never reclaim.
    pub window: Duration,
    /// `backend.partition_reclaim_max_ms`: the most an unreachable Janus's handles wait,
    /// whatever reclaim timeout it advertises. Zero: like a closed socket.
    pub partition_max: Duration,
    /// Pause between connect attempts while reclaiming (an attempt that timed out already
    /// waited; one that failed at once must not spin).
    pub retry_gap: Duration,
}

/// A reclaim in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub session: u64,
    pub deadline: Instant,
    /// The last time the backend was heard from before the socket was lost.
    pub last_heard: Instant,
    /// A timeout was seen: the deadline follows the Janus's reclaim timeout.
    pub unreachable: bool,
}

#[derive(Debug, Clone)]
pub struct Reclaimer {
    policy: ReclaimPolicy,
    /// `reclaim-session-timeout` of the Janus's `info` (None: not known).
    janus_keeps: Option<Duration>,
    /// The last sentinel report said the server is down.
    sentinel_down: bool,
    active: Option<Active>,
}

impl Reclaimer {
    pub fn new(policy: ReclaimPolicy) -> Self {
        Reclaimer {
            policy,
            janus_keeps: None,
            sentinel_down: false,
            active: None,
        }
    }

    /// The Janus's `reclaim-session-timeout`, from its `info` (None: it did not say).
    pub fn set_janus_reclaim_timeout(&mut self, timeout: Option<Duration>) {
        self.janus_keeps = timeout;
    }

    pub fn janus_reclaim_timeout(&self) -> Option<Duration> {
        self.janus_keeps
    }

    pub fn active(&self) -> Option<&Active> {
        self.active.as_ref()
    }

    pub fn session(&self) -> Option<u64> {
        self.active.map(|a| a.session)
    }

    /// How long the session outlives its transport on an unreachable Janus, as far as this
    /// link will wait.
    fn unreachable_hold(&self) -> Duration {
        match self.janus_keeps {
            Some(keeps) => keeps.min(self.policy.partition_max),
            None => Duration::ZERO,
        }
    }

    fn give_up(&mut self, why: GiveUp) -> Decision {
        self.active = None;
        Decision::GiveUp(why)
    }

    /// The socket was lost, with backend session `session` if it had one; the backend was last
    /// heard from at `last_heard`. While reclaiming, the same as a failed attempt.
    pub fn lost(
        &mut self,
        session: Option<u64>,
        loss: Loss,
        last_heard: Instant,
        now: Instant,
    ) -> Decision {
        if self.active.is_some() {
            return self.attempt_failed(loss, now);
        }
        let Some(session) = session else {
            return Decision::GiveUp(GiveUp::NoSession);
        };
        if self.policy.window.is_zero() {
            return Decision::GiveUp(GiveUp::Disabled);
        }
        if self.sentinel_down {
            return Decision::GiveUp(GiveUp::SentinelDown);
        }
        let window_end = now + self.policy.window;
        let (deadline, unreachable) = match loss {
            Loss::Refused => return Decision::GiveUp(GiveUp::Refused),
            Loss::SentinelDown => return Decision::GiveUp(GiveUp::SentinelDown),
            Loss::Closed => (window_end, false),
            Loss::TimedOut => (window_end.max(last_heard + self.unreachable_hold()), true),
        };
        self.active = Some(Active {
            session,
            deadline,
            last_heard,
            unreachable,
        });
        Decision::Reconnect { at: now }
    }

    /// A connect attempt (or the socket of one, before the claim was answered) failed.
    pub fn attempt_failed(&mut self, loss: Loss, now: Instant) -> Decision {
        let hold = self.unreachable_hold();
        let Some(active) = self.active.as_mut() else {
            return Decision::Wait;
        };
        match loss {
            Loss::Refused => return self.give_up(GiveUp::Refused),
            Loss::Closed => return self.give_up(GiveUp::ClosedAgain),
            Loss::SentinelDown => return self.give_up(GiveUp::SentinelDown),
            Loss::TimedOut => {
                active.unreachable = true;
                active.deadline = active.deadline.max(active.last_heard + hold);
            }
        }
        if now >= active.deadline {
            return self.give_up(GiveUp::DeadlinePassed);
        }
        Decision::Reconnect {
            at: (now + self.policy.retry_gap).min(active.deadline),
        }
    }

    /// An adopting link ([`super::link::BackendLink::adopting`]): claim `session` (a dead
    /// proxy's) rather than create one, trying until `deadline`.
    pub fn adopt(&mut self, session: u64, deadline: Instant, now: Instant) {
        self.active = Some(Active {
            session,
            deadline,
            last_heard: now,
            unreachable: false,
        });
    }

    /// The claim succeeded: the handles live on.
    pub fn claimed(&mut self) {
        self.active = None;
    }

    /// Janus answered the claim with an error.
    pub fn claim_refused(&mut self) -> Decision {
        match self.active {
            Some(_) => self.give_up(GiveUp::ClaimRefused),
            None => Decision::Wait,
        }
    }

    /// A sentinel report about the server: down, or up (any other status).
    pub fn sentinel(&mut self, down: bool) -> Decision {
        self.sentinel_down = down;
        match (down, self.active) {
            (true, Some(_)) => self.give_up(GiveUp::SentinelDown),
            _ => Decision::Wait,
        }
    }

    pub fn tick(&mut self, now: Instant) -> Decision {
        match self.active {
            Some(active) if now >= active.deadline => self.give_up(GiveUp::DeadlinePassed),
            _ => Decision::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn reclaimer() -> Reclaimer {
        Reclaimer::new(ReclaimPolicy {
            window: 800 * MS,
            partition_max: 60 * S,
            retry_gap: 100 * MS,
        })
    }

    /// A reclaimer that knows its Janus keeps sessions `keeps` seconds.
    fn keeping(keeps: u64) -> Reclaimer {
        let mut r = reclaimer();
        r.set_janus_reclaim_timeout(Some(Duration::from_secs(keeps)));
        r
    }

    fn deadline(r: &Reclaimer) -> Instant {
        r.active()
            .map(|a| a.deadline)
            .expect("a reclaim in progress")
    }

    #[test]
    fn a_closed_socket_gets_the_window_and_a_claim_ends_it() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        assert_eq!(
            r.lost(Some(7), Loss::Closed, t0, t0),
            Decision::Reconnect { at: t0 }
        );
        assert_eq!(r.session(), Some(7));
        assert_eq!(
            deadline(&r),
            t0 + 800 * MS,
            "closed: the window, not Janus's 10 s"
        );
        assert_eq!(r.tick(t0 + 799 * MS), Decision::Wait);
        r.claimed();
        assert_eq!(r.session(), None);
        assert_eq!(r.tick(t0 + S), Decision::Wait, "nothing left to give up");
    }

    #[test]
    fn a_closed_socket_not_claimed_in_the_window_is_given_up() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        r.lost(Some(7), Loss::Closed, t0, t0);
        assert_eq!(
            r.tick(t0 + 800 * MS),
            Decision::GiveUp(GiveUp::DeadlinePassed)
        );
        assert_eq!(r.session(), None);
    }

    #[test]
    fn a_refused_reconnect_gives_up_at_once() {
        let t0 = Instant::now();
        for first in [Loss::Closed, Loss::TimedOut] {
            let mut r = keeping(10);
            r.lost(Some(7), first, t0, t0);
            assert_eq!(
                r.attempt_failed(Loss::Refused, t0 + 5 * MS),
                Decision::GiveUp(GiveUp::Refused),
                "after {first:?}"
            );
            assert_eq!(r.session(), None);
        }
    }

    #[test]
    fn a_socket_closed_again_while_reclaiming_gives_up() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        r.lost(Some(7), Loss::TimedOut, t0, t0 + S);
        assert_eq!(
            r.lost(None, Loss::Closed, t0, t0 + 2 * S),
            Decision::GiveUp(GiveUp::ClosedAgain)
        );
    }

    #[test]
    fn refused_or_sentinel_down_losses_give_up_without_reclaiming() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        assert_eq!(
            r.lost(Some(7), Loss::Refused, t0, t0),
            Decision::GiveUp(GiveUp::Refused)
        );
        assert_eq!(
            r.lost(Some(7), Loss::SentinelDown, t0, t0),
            Decision::GiveUp(GiveUp::SentinelDown)
        );
        assert_eq!(r.session(), None);
    }

    #[test]
    fn a_timeout_holds_the_handles_as_long_as_janus_keeps_the_session() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        // Silence noticed 1 s after the backend was last heard.
        assert_eq!(
            r.lost(Some(7), Loss::TimedOut, t0, t0 + S),
            Decision::Reconnect { at: t0 + S }
        );
        assert_eq!(deadline(&r), t0 + 10 * S, "from the last time it was heard");
        assert!(r.active().is_some_and(|a| a.unreachable));
        // Attempts keep timing out: keep trying, a little apart.
        assert_eq!(
            r.attempt_failed(Loss::TimedOut, t0 + 4 * S),
            Decision::Reconnect {
                at: t0 + 4 * S + 100 * MS
            }
        );
        assert_eq!(r.tick(t0 + 9 * S), Decision::Wait);
        // The path heals, the claim succeeds.
        r.claimed();
        assert_eq!(r.tick(t0 + 11 * S), Decision::Wait);
    }

    #[test]
    fn an_unreachable_janus_is_given_up_at_its_deadline() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        r.lost(Some(7), Loss::TimedOut, t0, t0 + S);
        assert_eq!(
            r.attempt_failed(Loss::TimedOut, t0 + 9_950 * MS),
            Decision::Reconnect { at: t0 + 10 * S },
            "the last attempt no later than the deadline"
        );
        assert_eq!(
            r.attempt_failed(Loss::TimedOut, t0 + 10 * S),
            Decision::GiveUp(GiveUp::DeadlinePassed)
        );
        let mut r = keeping(10);
        r.lost(Some(7), Loss::TimedOut, t0, t0 + S);
        assert_eq!(
            r.tick(t0 + 10 * S),
            Decision::GiveUp(GiveUp::DeadlinePassed)
        );
    }

    #[test]
    fn the_hold_is_capped_and_never_shorter_than_the_window() {
        let t0 = Instant::now();
        let mut r = keeping(3600);
        r.lost(Some(7), Loss::TimedOut, t0, t0);
        assert_eq!(deadline(&r), t0 + 60 * S, "partition_max caps an hour");

        // Janus destroys sessions at once (0), or did not say: today's window.
        for keeps in [Some(Duration::ZERO), None] {
            let mut r = reclaimer();
            r.set_janus_reclaim_timeout(keeps);
            r.lost(Some(7), Loss::TimedOut, t0, t0 + S);
            assert_eq!(deadline(&r), t0 + S + 800 * MS, "{keeps:?}");
        }

        // Heard long ago: at least the window from now.
        let mut r = keeping(1);
        r.lost(Some(7), Loss::TimedOut, t0, t0 + 5 * S);
        assert_eq!(deadline(&r), t0 + 5 * S + 800 * MS);

        // partition_max 0: unreachable is treated as closed.
        let mut r = Reclaimer::new(ReclaimPolicy {
            window: 800 * MS,
            partition_max: Duration::ZERO,
            retry_gap: 100 * MS,
        });
        r.set_janus_reclaim_timeout(Some(10 * S));
        r.lost(Some(7), Loss::TimedOut, t0, t0);
        assert_eq!(deadline(&r), t0 + 800 * MS);
    }

    #[test]
    fn a_closed_socket_whose_reconnect_times_out_is_unreachable_after_all() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        r.lost(Some(7), Loss::Closed, t0, t0);
        assert_eq!(deadline(&r), t0 + 800 * MS);
        // The reconnect timed out (capped at the deadline): the path is broken, not the Janus.
        assert_eq!(
            r.attempt_failed(Loss::TimedOut, t0 + 800 * MS),
            Decision::Reconnect { at: t0 + 900 * MS }
        );
        assert_eq!(deadline(&r), t0 + 10 * S);
        assert!(r.active().is_some_and(|a| a.unreachable));
    }

    #[test]
    fn the_sentinel_reporting_the_server_down_ends_a_reclaim_and_the_next_one() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        r.lost(Some(7), Loss::TimedOut, t0, t0 + S);
        assert_eq!(r.sentinel(true), Decision::GiveUp(GiveUp::SentinelDown));
        assert_eq!(r.session(), None);
        // While it says so, a lost socket is a dead Janus, whatever the loss looked like.
        assert_eq!(
            r.lost(Some(8), Loss::TimedOut, t0, t0 + 2 * S),
            Decision::GiveUp(GiveUp::SentinelDown)
        );
        assert_eq!(r.sentinel(false), Decision::Wait);
        assert_eq!(
            r.lost(Some(8), Loss::TimedOut, t0 + 2 * S, t0 + 3 * S),
            Decision::Reconnect { at: t0 + 3 * S }
        );
        // A report of "up" while reclaiming changes nothing.
        assert_eq!(r.sentinel(false), Decision::Wait);
        assert_eq!(r.session(), Some(8));
    }

    #[test]
    fn a_refused_claim_gives_up() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        assert_eq!(r.claim_refused(), Decision::Wait, "no reclaim");
        r.lost(Some(7), Loss::Closed, t0, t0);
        assert_eq!(r.claim_refused(), Decision::GiveUp(GiveUp::ClaimRefused));
        assert_eq!(r.session(), None);
    }

    #[test]
    fn nothing_to_reclaim_without_a_session_or_with_reclaiming_off() {
        let t0 = Instant::now();
        let mut r = keeping(10);
        assert_eq!(
            r.lost(None, Loss::TimedOut, t0, t0),
            Decision::GiveUp(GiveUp::NoSession)
        );
        assert_eq!(r.attempt_failed(Loss::TimedOut, t0), Decision::Wait);
        let mut off = Reclaimer::new(ReclaimPolicy {
            window: Duration::ZERO,
            partition_max: 60 * S,
            retry_gap: 100 * MS,
        });
        off.set_janus_reclaim_timeout(Some(10 * S));
        assert_eq!(
            off.lost(Some(7), Loss::TimedOut, t0, t0),
            Decision::GiveUp(GiveUp::Disabled)
        );
    }

    #[test]
    fn connect_errors_are_classified() {
        use std::io;
        let io_err = |kind| {
            WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(
                io::Error::from(kind),
            )))
        };
        let cases = [
            (io_err(ErrorKind::ConnectionRefused), Loss::Refused),
            (io_err(ErrorKind::ConnectionReset), Loss::Refused),
            (io_err(ErrorKind::TimedOut), Loss::TimedOut),
            (io_err(ErrorKind::HostUnreachable), Loss::TimedOut),
            (io_err(ErrorKind::NetworkUnreachable), Loss::TimedOut),
            (
                WsClientError::SendRequest(SendRequestError::Timeout),
                Loss::TimedOut,
            ),
            (
                WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Timeout)),
                Loss::TimedOut,
            ),
            (
                WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Disconnected)),
                Loss::Refused,
            ),
            (
                WsClientError::SendRequest(SendRequestError::Send(io::Error::from(
                    ErrorKind::UnexpectedEof,
                ))),
                Loss::Refused,
            ),
            (
                WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Unresolved)),
                Loss::Refused,
            ),
            (
                WsClientError::InvalidResponseStatus(awc::http::StatusCode::BAD_GATEWAY),
                Loss::Refused,
            ),
        ];
        for (error, loss) in cases {
            assert_eq!(Loss::of_connect_error(&error), loss, "{error:?}");
        }
    }
}
