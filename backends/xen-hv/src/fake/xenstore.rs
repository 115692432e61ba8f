//! Xenstore with xenstored's watch semantics.
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;

use crate::*;

/// Xenstore as a flat map of paths, with xenstored's watch semantics: a watch fires once
/// when set, then for every write or removal at or below its path.
#[derive(Debug, Default)]
pub struct FakeXenStore {
    pub tree: BTreeMap<String, String>,
    pub transactions: u64,
    /// Watches set: (path, token).
    pub watches: Vec<(String, String)>,
    /// Events not yet taken by `next_event` (bounded and merged as the kernel's client
    /// does).
    pub events: crate::EventQueue,
    /// Requests served (every trait call counts one round trip).
    pub requests: u64,
}

fn under(path: &str, watched: &str) -> bool {
    path == watched || path.strip_prefix(watched).is_some_and(|r| r.starts_with('/'))
}

impl FakeXenStore {
    pub fn get(&self, path: &str) -> Option<&str> {
        self.tree.get(path).map(String::as_str)
    }
    /// A write by anyone (the toolstack, a frontend): fires the watches over `path`.
    pub fn set(&mut self, path: &str, v: &str) {
        self.tree.insert(path.to_string(), v.to_string());
        self.fire(path);
    }
    pub fn exists(&self, path: &str) -> bool {
        let pre = format!("{path}/");
        self.tree.keys().any(|k| k == path || k.starts_with(&pre))
    }
    pub fn remove_tree(&mut self, path: &str) {
        let pre = format!("{path}/");
        self.tree.retain(|k, _| k != path && !k.starts_with(&pre));
        self.fire(path);
        // xenstored also fires the watches on nodes below a removed one.
        let below: Vec<(String, String)> =
            self.watches.iter().filter(|(w, _)| w != path && under(w, path)).cloned().collect();
        for (w, t) in below {
            self.events.push(WatchEvent { path: w, token: t });
        }
    }
    /// Fires the watches over `path` as a change there would (a directory created).
    pub fn touch(&mut self, path: &str) {
        self.fire(path);
    }
    fn fire(&mut self, path: &str) {
        for (w, t) in &self.watches {
            if under(path, w) {
                self.events.push(WatchEvent { path: path.to_string(), token: t.clone() });
            }
        }
    }
}

impl XenStore for FakeXenStore {
    fn read(&mut self, path: &str) -> Result<Option<String>, StoreErr> {
        self.requests += 1;
        Ok(self.tree.get(path).cloned())
    }
    fn write(&mut self, path: &str, value: &str) -> Result<(), StoreErr> {
        self.requests += 1;
        self.set(path, value);
        Ok(())
    }
    fn rm(&mut self, path: &str) -> Result<(), StoreErr> {
        self.requests += 1;
        self.remove_tree(path);
        Ok(())
    }
    fn directory(&mut self, path: &str) -> Result<Vec<String>, StoreErr> {
        self.requests += 1;
        let pre = format!("{path}/");
        let mut v: Vec<String> = self
            .tree
            .keys()
            .filter_map(|k| k.strip_prefix(&pre))
            .map(|r| r.split('/').next().unwrap_or("").to_string())
            .collect();
        v.dedup();
        Ok(v)
    }
    fn write_all(&mut self, pairs: &[(String, String)]) -> Result<(), StoreErr> {
        self.requests += 1;
        self.transactions += 1;
        for (k, v) in pairs {
            self.set(k, v);
        }
        Ok(())
    }
    fn watch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        self.requests += 1;
        self.watches.push((path.to_string(), token.to_string()));
        self.events.push(WatchEvent { path: path.to_string(), token: token.to_string() });
        Ok(())
    }
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), StoreErr> {
        self.requests += 1;
        let before = self.watches.len();
        self.watches.retain(|(p, t)| p != path || t != token);
        if self.watches.len() == before {
            return Err(StoreErr::NotFound);
        }
        Ok(())
    }
    fn next_event(&mut self) -> Result<Option<WatchEvent>, StoreErr> {
        Ok(self.events.pop())
    }
}
