//! What bounds each connection, so no user can stall or starve the agent for others: the
//! limits (per uid, idle time, bytes queued), the per-uid count, and the outbox, whose frames
//! hold room until they are written; a client that lets answers pile up unread is cut off.

use super::error;
use gpubook_proto::{AgentFrame, ErrorKind, FrameError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};

/// Most connections of one uid at once (root's are not counted): no one user can hold every
/// place of the agent's 1,024.
pub const MAX_CONNECTIONS_PER_UID: usize = 64;
/// How long a connection that follows nothing (no subscription, no log) may stay silent after
/// the handshake before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Most bytes waiting to be written to one client: room for the largest frame and then some.
/// A client that lets more pile up (it does not read) is disconnected; a subscriber catching
/// up from the store waits for room instead.
pub const OUTBOX_BYTES: usize = 2 * gpubook_proto::MAX_FRAME + 64 * 1024;
/// Room in the outbox that catching up from the store leaves free, so the answers to requests
/// sent meanwhile always fit (one frame of the largest size).
pub(super) const ANSWER_ROOM: usize = gpubook_proto::MAX_FRAME + 4;
/// How long catching up may wait for room: a subscriber that reads nothing for this long has
/// fallen behind and is disconnected, like any client that does not read.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest error message sent to a client, in bytes: no error carries back a request's
/// untrusted text at length, whichever layer wrote it.
pub const MAX_ERROR_MESSAGE: usize = 2048;
/// Bounds on what connections may hold, so no user can stall or starve the agent.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections of one uid at once (root exempt).
    pub per_uid: usize,
    /// Silence allowed after the handshake from a connection that follows nothing.
    pub idle: Duration,
    /// Most bytes queued for one client before it counts as fallen behind.
    pub outbox_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_uid: MAX_CONNECTIONS_PER_UID,
            idle: IDLE_TIMEOUT,
            outbox_bytes: OUTBOX_BYTES,
        }
    }
}

/// Connections per uid, for [`Limits::per_uid`].
#[derive(Debug, Default)]
pub(super) struct PerUid {
    /// Open connections by uid. A plain mutex: never held across an await.
    open: Mutex<HashMap<u32, usize>>,
}

impl PerUid {
    /// Takes a place for `uid`, or `None` where it holds `max` already (root is not counted).
    pub(super) fn enter(self: &Arc<Self>, uid: u32, max: usize) -> Option<UidPlace> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(uid).or_default();
        if uid != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(UidPlace {
            table: self.clone(),
            uid,
        })
    }
}

/// A connection's place in [`PerUid`], given back when dropped.
#[derive(Debug)]
pub(super) struct UidPlace {
    /// The table it is counted in.
    table: Arc<PerUid>,
    /// Whose.
    uid: u32,
}

impl Drop for UidPlace {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

/// The frames waiting to be written to one client, bounded in bytes: each queued frame holds
/// permits of a semaphore of [`Limits::outbox_bytes`] until it is written.
#[derive(Debug, Clone)]
pub(super) struct Outbox {
    /// To the writer task: the encoded frame and the room it takes.
    tx: mpsc::UnboundedSender<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
    /// The room left, in bytes.
    room: Arc<Semaphore>,
    /// The whole room, in bytes.
    size: usize,
    /// Told when a push found no room: the client fell behind and is disconnected.
    pub(super) behind: Arc<tokio::sync::Notify>,
    /// Told by the writer whenever it has written a frame and given its room back.
    pub(super) freed: Arc<tokio::sync::Notify>,
}

/// Why a frame was not queued: the client is gone or fell behind; either way, stop.
#[derive(Debug)]
pub(super) struct Gone;

impl Outbox {
    /// An outbox of `size` bytes and the receiving end for the writer.
    pub(super) fn new(
        size: usize,
    ) -> (
        Self,
        mpsc::UnboundedReceiver<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let room = Arc::new(Semaphore::new(size));
        let behind = Arc::new(tokio::sync::Notify::new());
        let freed = Arc::new(tokio::sync::Notify::new());
        (
            Self {
                tx,
                room,
                size,
                behind,
                freed,
            },
            rx,
        )
    }

    /// `frame` as bytes; an answer too large for one frame becomes a typed error saying so.
    pub(super) fn encode(frame: &AgentFrame) -> Vec<u8> {
        match gpubook_proto::frame::encode(frame) {
            Ok(bytes) => bytes,
            Err(e) => {
                let id = match frame {
                    AgentFrame::Response { id, .. } => Some(*id),
                    _ => None,
                };
                let msg = match e {
                    FrameError::TooLarge(n) => format!(
                        "the answer ({n} bytes) is over the frame limit; ask for less \
                         (a narrower range, or page through with the cursor)"
                    ),
                    other => format!("cannot send the answer: {other}"),
                };
                let kind = ErrorKind::TooLarge;
                gpubook_proto::frame::encode(&error(id, kind, msg)).unwrap_or_default()
            }
        }
    }

    /// Queues an answer or a live push. No room: the client fell behind (it does not read);
    /// it is disconnected rather than let its queue grow.
    pub(super) fn push(&self, frame: &AgentFrame) -> Result<(), Gone> {
        let bytes = Self::encode(&short(frame));
        let need = bytes.len().clamp(1, self.size) as u32;
        let Ok(permit) = self.room.clone().try_acquire_many_owned(need) else {
            self.behind.notify_one();
            return Err(Gone);
        };
        self.tx.send((bytes, permit)).map_err(|_| Gone)
    }

    /// Queues a frame read from the store (catching up), waiting for room: the store holds
    /// them meanwhile, not the agent's memory.
    /// It takes room only while [`ANSWER_ROOM`] stays free for answers, and gives up after
    /// [`STALL_TIMEOUT`] without room (the client fell behind).
    pub(super) async fn send(&self, frame: &AgentFrame) -> Result<(), Gone> {
        let bytes = Self::encode(frame);
        let need = bytes.len().clamp(1, self.size);
        let keep = ANSWER_ROOM.min(self.size.saturating_sub(need));
        let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
        loop {
            // Listen before looking, so room freed in between is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.room.available_permits() >= need + keep {
                if let Ok(permit) = self.room.clone().try_acquire_many_owned(need as u32) {
                    return self.tx.send((bytes, permit)).map_err(|_| Gone);
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                self.behind.notify_one();
                return Err(Gone);
            }
        }
    }
}

/// `frame` with an error's message cut to [`MAX_ERROR_MESSAGE`] bytes (at a character
/// boundary, with "…"): messages may quote what a client sent.
pub(super) fn short(frame: &AgentFrame) -> std::borrow::Cow<'_, AgentFrame> {
    match frame {
        AgentFrame::Error { id, error } if error.message.len() > MAX_ERROR_MESSAGE => {
            let mut cut = MAX_ERROR_MESSAGE - "…".len();
            while !error.message.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut error = error.clone();
            error.message.truncate(cut);
            error.message.push('…');
            std::borrow::Cow::Owned(AgentFrame::Error { id: *id, error })
        }
        other => std::borrow::Cow::Borrowed(other),
    }
}
