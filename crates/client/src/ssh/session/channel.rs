//! A channel's two ends for async code: its output (then its exit status and standard
//! error) and its input.

use super::{Cmd, Handle, Opened, Shared};
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

/// The two ends of a channel the thread opened.
pub(super) fn pair(opened: Opened, handle: &Handle) -> (ChannelReader, ChannelWriter) {
    (
        ChannelReader {
            id: opened.id,
            handle: handle.clone(),
            rx: opened.rx,
            shared: opened.shared,
            pending: Vec::new(),
            at: 0,
        },
        ChannelWriter {
            id: opened.id,
            handle: handle.clone(),
            closed: false,
        },
    )
}

/// A channel's standard output (and, once it ended, its standard error and exit status).
#[derive(Debug)]
pub struct ChannelReader {
    /// The channel's id in the thread.
    id: u64,
    /// The session.
    handle: Handle,
    /// Output chunks from the thread.
    rx: mpsc::Receiver<Vec<u8>>,
    /// Exit status and standard error.
    shared: Arc<Shared>,
    /// The chunk being read.
    pending: Vec<u8>,
    /// How far into it.
    at: usize,
}

impl ChannelReader {
    /// The command's exit status, once its output ended.
    pub fn exit_status(&self) -> Option<i32> {
        *self.shared.status.lock().unwrap()
    }

    /// What the command wrote to standard error so far (the first 64 KiB).
    pub fn stderr(&self) -> Vec<u8> {
        self.shared.stderr.lock().unwrap().clone()
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if self.at < self.pending.len() {
                let n = buf.remaining().min(self.pending.len() - self.at);
                let at = self.at;
                buf.put_slice(&self.pending[at..at + n]);
                self.at += n;
                return Poll::Ready(Ok(()));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => {
                    self.pending = chunk;
                    self.at = 0;
                }
                Poll::Ready(None) => {
                    if let Some(why) = self.shared.failed.lock().unwrap().clone() {
                        return Poll::Ready(Err(std::io::Error::new(
                            ErrorKind::ConnectionAborted,
                            format!("the SSH channel to {} failed: {why}", self.handle.server),
                        )));
                    }
                    return if self.handle.lost.is_set()
                        && self.shared.status.lock().unwrap().is_none()
                    {
                        Poll::Ready(Err(std::io::Error::new(
                            ErrorKind::ConnectionAborted,
                            self.handle.lost_error().to_string(),
                        )))
                    } else {
                        Poll::Ready(Ok(()))
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        let _ = self.handle.send(Cmd::DropReader(self.id));
    }
}

/// A channel's standard input. Shutting it down (or dropping it) sends EOF.
#[derive(Debug)]
pub struct ChannelWriter {
    /// The channel's id in the thread.
    id: u64,
    /// The session.
    handle: Handle,
    /// EOF already sent.
    closed: bool,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.closed {
            return Poll::Ready(Err(std::io::Error::new(
                ErrorKind::BrokenPipe,
                "the channel's input was closed",
            )));
        }
        match self.handle.send(Cmd::Write(self.id, buf.to_vec())) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(e) => Poll::Ready(Err(std::io::Error::new(
                ErrorKind::ConnectionAborted,
                e.to_string(),
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.closed {
            self.closed = true;
            let _ = self.handle.send(Cmd::Eof(self.id));
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.handle.send(Cmd::Eof(self.id));
        }
    }
}
