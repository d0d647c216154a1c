//! banger-agent: the guest agent and the protocol it speaks with the host.
//!
//! The agent is a small static binary in the guest that listens on vsock port
//! [`proto::PORT`] and answers JSON lines: `hello` (readiness), `exec` (a command with
//! streamed stdin/stdout/stderr, or on a TTY), `put`/`get` (files), `identity` (a new
//! hostname, network, keys and RNG seed for a guest restored from a snapshot) and
//! `shutdown`. The host reaches it through the VM's Firecracker hybrid vsock socket
//! (`CONNECT <port>` first); see [`client`].
//!
//! - [`proto`]: the messages, limits and error codes; [`b64`]: bytes in JSON.
//! - [`conn`]: one connection and its capped line reader.
//! - [`client`]: the host's side.
//! - [`server`]: the guest's side of one connection; [`listen`]: the vsock listener.
//! - [`hook`]: the agent as the kernel's `init=` on images banger cannot add a service to.
//! - [`guest`]: what banger writes into a guest (the agent's path, its unit, identity files).

pub mod b64;
pub mod client;
pub mod conn;
pub mod guest;
pub mod hook;
pub mod listen;
pub mod proto;
pub mod server;
