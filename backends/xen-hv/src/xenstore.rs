//! Xenstore as backends use it: reads, writes, watches, and its errors.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A xenstore error the caller can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErr {
    /// ENOENT.
    NotFound,
    /// Transaction conflict (EAGAIN): run it again.
    Again,
    /// Anything else, as a sentence (xenstored's errno name, a protocol error, a timeout).
    Other(String),
}

impl fmt::Display for StoreErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreErr::NotFound => f.write_str("no such node"),
            StoreErr::Again => f.write_str("transaction conflict"),
            StoreErr::Other(s) => f.write_str(s),
        }
    }
}

/// A watch event: the path that changed and the token given to `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub path: String,
    pub token: String,
}

/// Xenstore, as backends use it.
pub trait XenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr>;
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr>;
    /// Removes a node and everything below it; absent is not an error.
    fn rm(&mut self, path: &str) -> Result<(), StoreErr>;
    /// The children of `path`; absent reads as empty.
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr>;
    /// Writes every pair atomically (one transaction, retried on conflict).
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr>;
    /// Fires an event for `path` (and below) with `token` now and on every change.
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr>;
    /// The next queued watch event, without waiting.
    fn next_event(&mut self) -> Result<Option<WatchEvent>, StoreErr>;
}
