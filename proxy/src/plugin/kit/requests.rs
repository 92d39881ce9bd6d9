//! A handle's client requests, taken in one place: a detach or the session's end at once (the
//! handle leaves), anything else through the handle's [`CommandQueue`] to the handle's own
//! method for it, one request at a time. A handle implements [`ClientRequests`] and gets its
//! `Handler<HandleCommand>` from [`take_requests!`](crate::plugin::kit::take_requests) (which
//! calls [`take`]); when a request that waited is done, the handle calls
//! [`ClientRequests::resume`].

use actix::prelude::*;
use janus_protocol::{JsonMap, Trickle};

use super::queue::CommandQueue;
use crate::messages::{HandleCommand, ReplyTo};

/// What a handle does with each kind of client request.
pub trait ClientRequests: Actor<Context = Context<Self>> {
    fn queue(&mut self) -> &mut CommandQueue;

    /// False once the handle left: nothing more is taken.
    fn takes_requests(&self) -> bool;

    fn message(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        body: JsonMap,
        jsep: Option<JsonMap>,
        reply_to: ReplyTo,
    );

    fn trickle(
        &mut self,
        ctx: &mut Context<Self>,
        transaction: String,
        trickle: Trickle,
        reply_to: ReplyTo,
    );

    /// A core `hangup`: the client closes its PeerConnection.
    fn hangup(&mut self, ctx: &mut Context<Self>, transaction: String, reply_to: ReplyTo);

    /// The handle goes away: the client detached (`detach`: its transaction and connection,
    /// to answer), or its session ends (None: nobody is told, as Janus does).
    fn leave(&mut self, ctx: &mut Context<Self>, detach: Option<(String, ReplyTo)>);

    /// The wait of the running request is over: the gate opens and the requests that waited
    /// run, until one waits in turn.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        self.queue().open();
        drain(self, ctx);
    }
}

/// `Handler<HandleCommand>` for a handle actor that implements [`ClientRequests`].
macro_rules! take_requests {
    ($actor:ty) => {
        impl actix::Handler<$crate::messages::HandleCommand> for $actor {
            type Result = ();

            fn handle(
                &mut self,
                cmd: $crate::messages::HandleCommand,
                ctx: &mut actix::Context<Self>,
            ) {
                $crate::plugin::kit::requests::take(self, ctx, cmd);
            }
        }
    };
}
pub(crate) use take_requests;

/// A command arrived (the body of the handle's `Handler<HandleCommand>`).
pub fn take<A: ClientRequests>(act: &mut A, ctx: &mut Context<A>, cmd: HandleCommand) {
    if !act.takes_requests() {
        return;
    }
    match cmd {
        HandleCommand::Detach {
            transaction,
            reply_to,
        } => act.leave(ctx, Some((transaction, reply_to))),
        HandleCommand::SessionClosing => act.leave(ctx, None),
        cmd => {
            if let Some(cmd) = act.queue().admit(cmd) {
                run(act, ctx, cmd);
            }
            // Requests left waiting behind an open gate (none, unless a handle opened its
            // queue without draining it) run now rather than at the next resume.
            drain(act, ctx);
        }
    }
}

/// Runs the requests that waited, until one waits in turn (or the handle left).
pub fn drain<A: ClientRequests>(act: &mut A, ctx: &mut Context<A>) {
    while act.takes_requests() {
        let Some(cmd) = act.queue().next_ready() else {
            return;
        };
        run(act, ctx, cmd);
    }
}

fn run<A: ClientRequests>(act: &mut A, ctx: &mut Context<A>, cmd: HandleCommand) {
    match cmd {
        HandleCommand::Message {
            transaction,
            body,
            jsep,
            reply_to,
        } => act.message(ctx, transaction, body, jsep, reply_to),
        HandleCommand::Trickle {
            transaction,
            trickle,
            reply_to,
        } => act.trickle(ctx, transaction, trickle, reply_to),
        HandleCommand::Hangup {
            transaction,
            reply_to,
        } => act.hangup(ctx, transaction, reply_to),
        // Never queued (see `take`).
        HandleCommand::Detach {
            transaction,
            reply_to,
        } => act.leave(ctx, Some((transaction, reply_to))),
        HandleCommand::SessionClosing => act.leave(ctx, None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;
    use serde_json::json;

    use super::*;
    use crate::messages::ClientFrame;
    use crate::plugin::kit::Trickles;

    /// Records the requests it runs; a message with `{"wait": true}` shuts the queue.
    struct Recorder {
        queue: CommandQueue,
        left: bool,
        ran: Arc<Mutex<Vec<String>>>,
    }

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    impl ClientRequests for Recorder {
        fn queue(&mut self) -> &mut CommandQueue {
            &mut self.queue
        }

        fn takes_requests(&self) -> bool {
            !self.left
        }

        fn message(
            &mut self,
            _: &mut Context<Self>,
            transaction: String,
            body: JsonMap,
            _: Option<JsonMap>,
            _: ReplyTo,
        ) {
            if body.get("wait").is_some() {
                self.queue.shut();
            }
            self.ran.lock().push(transaction);
        }

        fn trickle(&mut self, _: &mut Context<Self>, t: String, _: Trickle, _: ReplyTo) {
            self.ran.lock().push(t);
        }

        fn hangup(&mut self, _: &mut Context<Self>, t: String, _: ReplyTo) {
            self.ran.lock().push(t);
        }

        fn leave(&mut self, _: &mut Context<Self>, detach: Option<(String, ReplyTo)>) {
            self.left = true;
            let t = detach.map(|(t, _)| t).unwrap_or_else(|| "closing".into());
            self.ran.lock().push(format!("leave {t}"));
        }
    }

    /// Opens the queue and runs what waited.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Done;

    impl Handler<Done> for Recorder {
        type Result = ();
        fn handle(&mut self, _: Done, ctx: &mut Context<Self>) {
            self.queue.open();
            drain(self, ctx);
        }
    }

    crate::plugin::kit::take_requests!(Recorder);

    struct Nobody;

    impl Actor for Nobody {
        type Context = Context<Self>;
    }

    impl Handler<ClientFrame> for Nobody {
        type Result = ();
        fn handle(&mut self, _: ClientFrame, _: &mut Context<Self>) {}
    }

    #[actix::test]
    async fn requests_wait_behind_a_waiting_one_and_a_detach_does_not() {
        let ran = Arc::new(Mutex::new(Vec::new()));
        let handle = Recorder {
            queue: CommandQueue::new(Trickles::AtOnce),
            left: false,
            ran: ran.clone(),
        }
        .start();
        let reply_to = ReplyTo::new(Nobody.start().recipient());
        let message = |t: &str, body: serde_json::Value| HandleCommand::Message {
            transaction: t.into(),
            body: crate::plugin::test_body(body),
            jsep: None,
            reply_to: reply_to.clone(),
        };
        let send = |cmd| handle.send(cmd);
        send(message("m1", json!({"wait": true}))).await.ok();
        send(message("m2", json!({}))).await.ok();
        send(HandleCommand::Trickle {
            transaction: "t1".into(),
            trickle: Trickle::Candidate(json!({"completed": true})),
            reply_to: reply_to.clone(),
        })
        .await
        .ok();
        send(HandleCommand::Hangup {
            transaction: "h1".into(),
            reply_to: reply_to.clone(),
        })
        .await
        .ok();
        // m1 waits: m2 and the hangup wait behind it, the trickle passes.
        assert_eq!(*ran.lock(), ["m1", "t1"]);
        handle.send(Done).await.ok();
        assert_eq!(*ran.lock(), ["m1", "t1", "m2", "h1"]);
        send(message("m3", json!({"wait": true}))).await.ok();
        send(message("m4", json!({}))).await.ok();
        send(HandleCommand::Detach {
            transaction: "d".into(),
            reply_to: reply_to.clone(),
        })
        .await
        .ok();
        // Gone: what waited is not run, and nothing more is taken.
        handle.send(Done).await.ok();
        send(HandleCommand::SessionClosing).await.ok();
        assert_eq!(*ran.lock(), ["m1", "t1", "m2", "h1", "m3", "leave d"]);
    }
}
