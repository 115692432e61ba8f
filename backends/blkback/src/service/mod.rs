//! The blkback service of a driver domain: the device table and its watch routing
//! (`service`), each device's timers (`entry`), and the statistics trickle (`publish`).
//! The heap and pool budget is [`crate::budget`]; building a store from `target=` is
//! [`crate::store::any`].
mod discovery;
mod entry;
mod publish;
#[allow(clippy::module_inception)]
mod service;

pub use entry::{LINGER_IDLE_NS, LINGER_MAX_NS, REMOVE_GRACE_NS};
pub use publish::{StatsPublisher, STATS_PERIOD_NS, STATS_WRITES_PER_TURN};
pub use service::{Defaults, Note, Service, MAX_EVENTS_PER_TURN};
