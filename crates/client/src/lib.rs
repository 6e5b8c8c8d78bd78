//! What the gpubook desktop app and CLI share: connecting to an agent, the handshake,
//! requests matched to answers by id, and the event stream.
//!
//! Transports: a local Unix socket, or SSH ([`ssh`]): `gpubook-agent bridge` on an exec
//! channel, or a direct-streamlocal channel to the system agent; [`deploy`] puts the person's
//! own agent on a server that has none. [`live`] keeps one session per server alive, with one retry rule.

pub mod caldav;
pub mod connection;
pub mod deploy;
pub mod endpoint;
pub mod feed;
pub mod ical;
pub mod live;
pub mod places;
mod private_files;
pub mod secrets;
pub mod servers;
pub mod ssh;

pub use connection::{ClientError, Connection, Pushed};
pub use endpoint::Endpoint;
