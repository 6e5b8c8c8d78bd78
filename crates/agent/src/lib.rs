//! `gpubook-agent`: the daemon on each GPU server. It is the one source of truth for that
//! server's bookings: it keeps them in a durable store, lets the plan decide every change,
//! reads the GPUs, fires slot events on a timer and pushes events to subscribers.
//!
//! Layers, one per file: [`store`] (SQLite), [`state`] (the plan and the store behind one
//! lock; every change is one transaction), [`request`] (a frame's body → typed request),
//! [`handler`] (typed request → state), [`server`] (socket, handshake, framing,
//! subscriptions), [`timer`] (slot events), [`sampler`] (GPU readings), [`watch`] (history,
//! usage, intruders, idleness), [`bridge`] (stdio ↔ socket, for SSH).

pub mod bridge;
pub mod clock;
pub mod gpu;
pub mod handler;
pub mod identity;
pub mod install;
pub mod jobs;
pub mod maintenance;
pub mod notify;
pub mod procs;
pub mod report;
pub mod request;
pub mod sampler;
pub mod series;
pub mod server;
pub mod slurm;
pub mod state;
pub mod store;
pub mod suggest;
pub mod timer;
pub mod transfer;
pub mod watch;

pub use server::{serve, AgentConfig};
