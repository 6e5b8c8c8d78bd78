//! What the gpubook desktop app and CLI share: connecting to an agent, the handshake,
//! requests matched to answers by id, and the event stream.
//!
//! Transports: a local Unix socket, or SSH ([`ssh`]): `gpubook-agent bridge` on an exec
//! channel, or a direct-streamlocal channel to the system agent; [`deploy`] puts the person's
//! own agent on a server that has none. [`link`] keeps a connection to one server alive.

pub mod caldav;
pub mod connection;
pub mod deploy;
pub mod endpoint;
pub mod feed;
pub mod ical;
pub mod link;
pub mod secrets;
pub mod servers;
pub mod ssh;

pub use connection::{ClientError, Connection, Pushed};
pub use endpoint::Endpoint;
