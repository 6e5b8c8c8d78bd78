//! The session thread (being written).

use super::{Options, Output, SshError, Target};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A handle to the dedicated thread that owns one `ssh2::Session` and its channels.
#[derive(Clone, Debug)]
pub struct Session {}

impl Session {
    /// Connects (through jump hosts), checks the host key and logs in.
    pub async fn connect(target: &Target, opts: &Options) -> Result<Session, SshError> {
        let _ = (target, opts);
        todo!()
    }

    /// Runs `command`, feeding it `stdin`; waits for it to end.
    pub async fn run(&self, command: &str, stdin: &[u8]) -> Result<Output, SshError> {
        let _ = (command, stdin);
        todo!()
    }

    /// Runs `command` with its standard input and output as a byte stream.
    pub async fn exec_stream(
        &self,
        command: &str,
    ) -> Result<(ChannelReader, ChannelWriter), SshError> {
        let _ = command;
        todo!()
    }
}

/// A channel's standard output.
#[derive(Debug)]
pub struct ChannelReader {}

/// A channel's standard input.
#[derive(Debug)]
pub struct ChannelWriter {}

impl AsyncRead for ChannelReader {
    fn poll_read(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        todo!()
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, _buf: &[u8]) -> Poll<std::io::Result<usize>> {
        todo!()
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        todo!()
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        todo!()
    }
}
