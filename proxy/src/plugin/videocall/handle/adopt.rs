//! A videocall user and a dead proxy (docs/adoption.md, "Videocall"). The handle tells its
//! session, whenever it changes, what a survivor needs: its registered name and, while the
//! backend knows its call, the call (id, peer, the peer's proxy) with its leg. A survivor
//! rebuilds the handle from that ([`VideoCallHandle::adopted`]); once started it claims the
//! name in the shared store for its own proxy and finds its call's peer, wherever it is now,
//! telling the peer's proxy where the call lives ([`VideoCallHandle::restored`]).

use std::sync::Arc;

use actix::prelude::*;
use janus_protocol::JsonMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::peers::{Peer, PeerMoved};
use super::{Call, CallLeg, CallListing, Stage, VideoCallHandle};
use crate::messages::adoption::AdoptableState;
use crate::messages::cluster::Claim;
use crate::plugin::kit::BackendLeg;
use crate::plugin::videocall::remote::{self, VideoCallRemote};
use crate::plugin::videocall::route::LegPhase;
use crate::plugin::videocall::SharedUserBook;
use crate::plugin::AttachContext;

/// The plugin's state of a handle in its record (`HandleRecord::state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub username: String,
    /// The live call (its leg is the record's backend handle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<CallState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallState {
    pub id: u64,
    /// The peer's username.
    pub peer: String,
    /// The peer's proxy; None: the same proxy as this handle's (adopted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_proxy: Option<String>,
}

impl UserState {
    /// The state in a record; None (logged) for something else.
    pub fn parse(state: &Value) -> Option<UserState> {
        serde_json::from_value::<UserState>(state.clone())
            .map_err(|e| log::warn!("videocall: a recorded user is not one ({e}); not adopted"))
            .ok()
            .filter(|s| !s.username.is_empty())
    }
}

/// What an adopted handle does once started.
pub(super) struct Restored {
    /// In a call: where its peer was (see [`CallState::peer_proxy`]).
    peer_proxy: Option<Option<String>>,
}

impl VideoCallHandle {
    /// A dead proxy's user rebuilt here from `state`; `leg` is her live call's leg (adopted),
    /// None when she was not in one. None if the state is not one, does not go with the leg,
    /// or her name is someone else's here now. With the leg's token (0 without a leg).
    pub fn adopted(
        ctx: AttachContext,
        users: SharedUserBook,
        remote: Option<Arc<VideoCallRemote>>,
        state: &Value,
        leg: Option<BackendLeg>,
    ) -> Option<(Addr<VideoCallHandle>, u64)> {
        let user = UserState::parse(state)?;
        if users.lock().lookup(&user.username).is_some() {
            log::warn!(
                "videocall: {} is registered here already; the dead proxy's user is not adopted",
                user.username
            );
            return None;
        }
        let call = match (user.call, leg) {
            (Some(call), Some(leg)) => Some((call, leg)),
            (None, None) => None,
            _ => return None,
        };
        let mut leg_token = 0;
        let addr = VideoCallHandle::create(|actx| {
            let me = actx.address();
            let mut handle = VideoCallHandle::new(ctx, users.clone(), remote);
            let id = handle.core.handle_id;
            if users
                .lock()
                .register(&user.username, id, me.clone())
                .is_ok()
            {
                handle.username = Some(user.username.clone());
            }
            let mut peer_proxy = None;
            if let Some((call, leg)) = call {
                let server = leg.server.clone();
                let token = handle.legs.adopted(leg);
                leg_token = token;
                handle.leg = Some(CallLeg {
                    token,
                    server: server.clone(),
                    phase: LegPhase::Ready,
                    lingering: false,
                });
                let listed = CallListing::new(&users, &user.username, call.id, &call.peer);
                handle.call = Some(Call {
                    id: call.id,
                    // Found once started, before any message is taken (`restored`).
                    peer: Peer::Local(me),
                    peer_username: call.peer,
                    server,
                    stage: Stage::Live { placed: None },
                    _listed: listed,
                });
                peer_proxy = Some(call.peer_proxy);
            }
            handle.adopted = Some(Restored { peer_proxy });
            handle
        });
        Some((addr, leg_token))
    }

    /// Started after an adoption: the name claimed in the shared store for this proxy (the
    /// dead proxy's clean-up releases only names still its own), the call's peer found, and
    /// the handle recorded as this proxy's (so that it can be adopted again).
    pub(super) fn restored(&mut self, ctx: &mut Context<Self>, restored: Restored) {
        if let Some(username) = self.username.clone() {
            let claim = self.env.cluster.users.claim_user(remote::TOPIC, &username);
            let claimed = claim.into_actor(self).map(move |claim, _, _| {
                if claim == Claim::Taken {
                    // Registered on another proxy since the death: both have it now.
                    log::warn!("videocall: adopted user {username} is taken elsewhere");
                }
            });
            ctx.spawn(claimed);
        }
        if let Some(peer_proxy) = restored.peer_proxy {
            self.find_peer(ctx, peer_proxy);
        }
        self.share_adoptable();
    }

    /// The adopted call's peer: adopted here too (it was on the dead proxy), a handle here
    /// (told the call moved here), or on another proxy (told over the bus).
    fn find_peer(&mut self, ctx: &mut Context<Self>, peer_proxy: Option<String>) {
        let Some(call) = self.call.as_ref() else {
            return;
        };
        let (id, peer_username) = (call.id, call.peer_username.clone());
        let me = ctx.address();
        let peer = match (peer_proxy, self.remote.clone()) {
            (None, _) => self
                .users
                .lock()
                .lookup(&peer_username)
                .map(|(_, addr)| Peer::Local(addr)),
            (Some(proxy), Some(remote)) if proxy == remote.own_id() => {
                remote.take_call(id).map(|addr| {
                    addr.do_send(PeerMoved {
                        call: id,
                        peer: Peer::Local(me),
                    });
                    Peer::Local(addr)
                })
            }
            (Some(proxy), Some(remote)) => {
                remote.adopted_call(id, me, &proxy);
                Some(Peer::Remote { remote, proxy })
            }
            (Some(_), None) => None,
        };
        match peer {
            Some(peer) => {
                if let Some(call) = self.call.as_mut() {
                    call.peer = peer;
                }
            }
            None => {
                // The peer is gone: the call ends on the backend too (its leg hangs up).
                log::info!("videocall: adopted call {id}'s peer {peer_username} is gone");
                let mut body = JsonMap::new();
                body.insert("request".into(), "hangup".into());
                self.tell_leg(ctx, body);
                self.call = None;
                self.linger(ctx);
            }
        }
    }

    /// What a survivor needs to rebuild this handle now: nothing before a name; the name;
    /// the name and the live call with its leg.
    fn adoptable_now(&self) -> Option<AdoptableState> {
        let username = self.username.clone()?;
        let live = self
            .call
            .as_ref()
            .filter(|c| matches!(c.stage, Stage::Live { .. }));
        let leg = self.leg.as_ref().filter(|l| !l.lingering);
        let bound = live.zip(leg).and_then(|(call, leg)| {
            let handle = self.legs.get(leg.token)?.backend.handle?;
            let peer_proxy = match &call.peer {
                Peer::Local(_) => None,
                Peer::Remote { proxy, .. } => Some(proxy.clone()),
            };
            let call = CallState {
                id: call.id,
                peer: call.peer_username.clone(),
                peer_proxy,
            };
            Some((leg.server.clone(), handle, call))
        });
        let (server, backend_handle, call) = match bound {
            Some((server, handle, call)) => (server, Some(handle), Some(call)),
            None => (String::new(), None, None),
        };
        let state = serde_json::to_value(UserState { username, call }).ok()?;
        Some(AdoptableState {
            server,
            backend_handle,
            state,
        })
    }

    /// Tells the session what a survivor needs, when it changed.
    pub(super) fn share_adoptable(&mut self) {
        let now = self.adoptable_now();
        if now != self.adoptable {
            self.core.adoptable(now.clone());
            self.adoptable = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_users_state_survives_its_json_and_bad_ones_are_refused() {
        let state = UserState {
            username: "alice".into(),
            call: Some(CallState {
                id: 7,
                peer: "bob".into(),
                peer_proxy: Some("two".into()),
            }),
        };
        let value = serde_json::to_value(&state).expect("state");
        assert_eq!(
            value,
            json!({"username": "alice", "call": {"id": 7, "peer": "bob", "peer_proxy": "two"}})
        );
        assert_eq!(UserState::parse(&value), Some(state));
        let alone = json!({"username": "carol"});
        assert_eq!(
            UserState::parse(&alone),
            Some(UserState {
                username: "carol".into(),
                call: None
            })
        );
        for bad in [
            json!(null),
            json!({"username": ""}),
            json!({"username": 3}),
            json!({"username": "x", "call": {"id": "y"}}),
            json!([1]),
        ] {
            assert_eq!(UserState::parse(&bad), None, "{bad}");
        }
    }
}
