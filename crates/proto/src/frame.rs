//! Bytes ↔ frames: a 4-byte big-endian length, then that many bytes of JSON.

use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest frame body either side accepts: 1 MiB.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame that could not be read or written.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The announced length is over [`MAX_FRAME`]; the body was not read.
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME} bytes")]
    TooLarge(usize),
    /// A frame with a length of zero.
    #[error("empty frame")]
    Empty,
    /// The stream ended inside a frame.
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// The stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame's body. `Ok(None)` when the stream ends cleanly between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(body))
}

/// Encodes `msg` as one frame (length and body).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes `msg` as one frame and flushes.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let bytes = encode(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let bytes = encode(&serde_json::json!({"type": "hello"})).unwrap();
        let mut r = &bytes[..];
        let body = read_frame(&mut r).await.unwrap().unwrap();
        assert_eq!(body, br#"{"type":"hello"}"#);
        assert!(read_frame(&mut r).await.unwrap().is_none());

        let mut truncated = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_frame(&mut truncated).await,
            Err(FrameError::Truncated)
        ));
        let mut half_len = &bytes[..2];
        assert!(matches!(
            read_frame(&mut half_len).await,
            Err(FrameError::Truncated)
        ));

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let mut r = &huge[..];
        assert!(matches!(
            read_frame(&mut r).await,
            Err(FrameError::TooLarge(_))
        ));
        let zero = 0u32.to_be_bytes();
        let mut r = &zero[..];
        assert!(matches!(read_frame(&mut r).await, Err(FrameError::Empty)));
    }
}
