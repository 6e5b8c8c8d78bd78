//! What the gpubook desktop app and CLI share: connecting to an agent, the handshake,
//! requests matched to answers by id, and the event stream.
//!
//! Transports: a local Unix socket now; SSH (an exec channel running `gpubook-agent bridge`)
//! joins with its issue, behind the same [`Connection`].

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
