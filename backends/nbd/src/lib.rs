//! A Network Block Device client as a pure protocol engine (cf. quinn-proto, rustls): bytes
//! from the server go in, bytes for the server and events come out; the caller owns the TCP
//! connection, the clock and the buffers. Written against the NBD protocol document
//! (`doc/proto.md` of NetworkBlockDevice/nbd) and its URI format (`doc/uri.md`).
//!
//! - [`uri`]: `nbd://host[:port]/export`, as given in an xl disk spec's `target=`.
//! - [`wire`]: the protocol's constants and fixed-size messages.
//! - [`handshake`]: fixed newstyle negotiation: `NBD_OPT_STRUCTURED_REPLY`, then `NBD_OPT_GO`
//!   asking for `NBD_INFO_BLOCK_SIZE`, falling back to `NBD_OPT_EXPORT_NAME`.
//! - [`client`]: the transmission phase: requests by cookie, many in flight, simple and
//!   structured replies parsed as a stream (a reply may arrive a byte at a time), data handed
//!   to a sink without an intermediate buffer.
//!
//! Everything the server sends is hostile input: a compromised or broken server gets a
//! protocol error (hard disconnect), never a panic, an unbounded allocation or data written
//! outside the request it answers.
#![no_std]
#![forbid(unsafe_code)]
#![warn(clippy::arithmetic_side_effects)]

extern crate alloc;

pub mod client;
pub mod handshake;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod uri;
pub mod wire;
