//! What the reactor does with a connection from outside its own events: deliveries queued on
//! it by the router (through the reactor's sink), its socket for the poll, its timer entry, and
//! what it holds when it goes. The reactor asks; the connection keeps its fields.

use super::*;

/// What became of a topic delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicDelivery {
    /// The connection is already closing as a slow consumer: nothing queued.
    Skipped,
    /// Over its bound under the drop policy: dropped (counted by the caller).
    Dropped,
    /// Queued; `first`: the output was empty (the connection needs a flush); `overflowed`: it
    /// went over its bound with this one under the close policy, and must be closed.
    Queued { first: bool, overflowed: bool },
}

impl Conn {
    /// Queue a topic MESSAGE (`head` parts, then the shared rest).
    #[inline]
    pub fn deliver_topic(
        &mut self,
        pool: &mut BufPool,
        head: &[&[u8]],
        shared: &Arc<[u8]>,
        max_outbound: usize,
        drop_policy: bool,
    ) -> TopicDelivery {
        if self.overflowed {
            return TopicDelivery::Skipped;
        }
        if drop_policy && self.out.footprint() > max_outbound {
            return TopicDelivery::Dropped;
        }
        let first = self.out.is_empty();
        self.out.push_parts(pool, head);
        self.out.push_shared(shared);
        let overflowed = !drop_policy && self.out.footprint() > max_outbound;
        if overflowed {
            self.overflowed = true;
        }
        TopicDelivery::Queued { first, overflowed }
    }

    /// Queue a queue's MESSAGE if there is room under the bound (a queue delivery is never
    /// dropped: without room it goes back to its queue). The second value: the output was
    /// empty before (the connection needs a flush).
    #[inline]
    pub fn deliver_from_queue(
        &mut self,
        pool: &mut BufPool,
        head: &[&[u8]],
        shared: &Arc<[u8]>,
        max_outbound: usize,
    ) -> (crate::router::Queued, bool) {
        use crate::router::Queued;
        if self.overflowed {
            return (Queued::Gone, false);
        }
        self.queue_pending = true;
        if self.out.footprint() > max_outbound {
            return (Queued::Full, false);
        }
        let first = self.out.is_empty();
        self.out.push_parts(pool, head);
        self.out.push_shared(shared);
        (Queued::At(self.out.queued_total()), first)
    }

    /// A slow consumer's end: the frame being written is finished, those not started are
    /// dropped (their count returned), and the ERROR follows.
    pub fn fail_slow_consumer(&mut self, ctx: &mut Ctx<'_>) -> usize {
        let dropped = self.out.cut_to_frame();
        self.stomp_fail(
            ctx,
            &StompError::new("slow consumer: outbound queue over its limit"),
        );
        dropped
    }

    /// The window bits the server compresses with, if the session agreed to permessage-deflate.
    #[inline]
    pub fn deflate_bits(&self) -> Option<u8> {
        match &self.phase {
            Phase::Open { ws: Some(w), .. } => w
                .codec
                .deflate
                .as_ref()
                .map(|d| d.agreed.server_max_window_bits),
            _ => None,
        }
    }

    /// The socket, for the poll's (re/de)registration.
    pub fn socket(&mut self) -> Option<&mut TcpStream> {
        self.sock.as_mut()
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The peer's address, when it counts against the connection limits.
    pub fn admitted(&self) -> Option<std::net::IpAddr> {
        self.admitted
    }

    /// The poll said the socket is writable again.
    pub fn writable(&mut self) {
        self.write_blocked = false;
    }

    /// A write would block: the poll must also watch for writability.
    pub fn write_blocked(&self) -> bool {
        self.write_blocked
    }

    /// The wheel tick of the connection's live timer entry (the reactor's bookkeeping).
    pub fn timer_entry(&self) -> Option<u64> {
        self.timer_at
    }

    pub fn set_timer_entry(&mut self, tick: Option<u64>) {
        self.timer_at = tick;
    }

    /// Give the output's buffers back to the pool (the connection is going).
    pub fn release_output(&mut self, pool: &mut BufPool) {
        self.out.release(pool);
    }
}
