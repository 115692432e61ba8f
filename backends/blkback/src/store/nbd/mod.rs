//! A store on an NBD server (`nbd://host[:port]/export`): blkif I/O becomes NBD commands on
//! one connection, many in flight, replies matched by cookie and their data written straight
//! into the frontend's mapped pages. The connection itself is the caller's ([`Transport`]: a
//! TCP socket of the driver domain's network stack); this type is sans-I/O like the client.
//!
//! Mapping (`doc/proto.md`): READ and WRITE split at the server's maximum payload; a write
//! with a preflush sends FLUSH and WRITE together (NBD's FLUSH covers every write completed
//! before it, and the request completes only when both have); FUA is `NBD_CMD_FLAG_FUA` when
//! offered, else the WRITE and, after its reply, a FLUSH; a discard is WRITE_ZEROES (so it
//! reads back as zeroes, like the RAM store) or TRIM; a read-only export is a read-only disk.
//!
//! Cancelling (the frontend went): held I/O comes back at once; the payload of writes
//! already on their way is copied out of the frontend's pages first, so the byte stream to
//! the server stays whole, and late replies are dropped by cookie.
//!
//! - `transport`: the byte stream ([`Transport`]) and who opens it ([`Connector`]);
//! - `commands`: the pure blkif → NBD command mapping;
//! - `store`: [`NbdStore`].
mod commands;
mod store;
mod transport;

pub use commands::{commands, Plan};
pub use store::{NbdCounters, NbdStore};
pub use transport::{ConnectError, Connector, NoNetwork, Transport, Unreachable};
