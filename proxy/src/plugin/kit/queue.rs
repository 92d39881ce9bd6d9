//! A handle's client requests, one at a time: a Janus plugin handles one request of a handle
//! after the other, so while a request waits for something (a server to be placed on, a backend
//! handle to attach, Redis), the later ones wait behind it, in order. A plain struct: the actor
//! admits what arrives, shuts the gate when a request starts waiting and opens it when the wait
//! is over, and runs what [`CommandQueue::next_ready`] gives.
//!
//! Trickles either wait like any request ([`Trickles::InOrder`]) or pass at once
//! ([`Trickles::AtOnce`]: a handle that keeps candidates aside until its media leg exists).
//! Detach and the session's end never wait: the actor handles them before asking the queue.

use std::collections::VecDeque;

use crate::messages::HandleCommand;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trickles {
    InOrder,
    AtOnce,
}

#[derive(Debug)]
pub struct CommandQueue<C = HandleCommand> {
    waiting: VecDeque<C>,
    shut: bool,
    trickles: Trickles,
}

/// What the queue needs to know of a command.
pub trait Queued {
    fn is_trickle(&self) -> bool;
}

impl Queued for HandleCommand {
    fn is_trickle(&self) -> bool {
        matches!(self, HandleCommand::Trickle { .. })
    }
}

impl<C: Queued> CommandQueue<C> {
    pub fn new(trickles: Trickles) -> Self {
        CommandQueue {
            waiting: VecDeque::new(),
            shut: false,
            trickles,
        }
    }

    /// A command arrived: returned if it runs now, kept otherwise.
    pub fn admit(&mut self, command: C) -> Option<C> {
        let passes = self.trickles == Trickles::AtOnce && command.is_trickle();
        if passes || (!self.shut && self.waiting.is_empty()) {
            return Some(command);
        }
        self.waiting.push_back(command);
        None
    }

    /// The next command to run, if the gate is open.
    pub fn next_ready(&mut self) -> Option<C> {
        if self.shut {
            return None;
        }
        self.waiting.pop_front()
    }

    /// The running command waits for something: later ones wait behind it.
    pub fn shut(&mut self) {
        self.shut = true;
    }

    /// The wait is over: [`CommandQueue::next_ready`] gives the waiting commands again.
    pub fn open(&mut self) {
        self.shut = false;
    }

    pub fn is_shut(&self) -> bool {
        self.shut
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The handle leaves: the waiting commands are dropped unanswered (Janus drops a gone
    /// handle's requests too).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.shut = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Cmd {
        Msg(u8),
        Trickle(u8),
    }

    impl Queued for Cmd {
        fn is_trickle(&self) -> bool {
            matches!(self, Cmd::Trickle(_))
        }
    }

    #[test]
    fn commands_run_in_order_one_wait_at_a_time() {
        let mut q = CommandQueue::new(Trickles::InOrder);
        assert_eq!(q.admit(Cmd::Msg(1)), Some(Cmd::Msg(1)));
        // 1 starts waiting: 2 and a trickle wait behind it.
        q.shut();
        assert_eq!(q.admit(Cmd::Msg(2)), None);
        assert_eq!(q.admit(Cmd::Trickle(3)), None);
        assert_eq!(q.next_ready(), None);
        assert_eq!(q.len(), 2);
        q.open();
        // Something still waits: a newcomer goes behind it even with the gate open.
        assert_eq!(q.admit(Cmd::Msg(4)), None);
        assert_eq!(q.next_ready(), Some(Cmd::Msg(2)));
        // 2 waits too.
        q.shut();
        assert_eq!(q.next_ready(), None);
        q.open();
        assert_eq!(q.next_ready(), Some(Cmd::Trickle(3)));
        assert_eq!(q.next_ready(), Some(Cmd::Msg(4)));
        assert_eq!(q.next_ready(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn trickles_can_pass_at_once() {
        let mut q = CommandQueue::new(Trickles::AtOnce);
        q.shut();
        assert_eq!(q.admit(Cmd::Msg(1)), None);
        assert_eq!(q.admit(Cmd::Trickle(2)), Some(Cmd::Trickle(2)));
        q.open();
        assert_eq!(q.next_ready(), Some(Cmd::Msg(1)));
    }

    #[test]
    fn leaving_drops_what_waits_and_keeps_the_gate_shut() {
        let mut q = CommandQueue::new(Trickles::InOrder);
        q.shut();
        q.admit(Cmd::Msg(1));
        q.clear();
        assert!(q.is_empty() && q.is_shut());
        assert_eq!(q.next_ready(), None);
    }
}
