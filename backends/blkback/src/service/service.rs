//! The blkback service of a driver domain: every vbd the toolstack puts under our
//! `backend/vbd/<frontend-id>/<devid>` becomes a [`Device`] with the store its `target=`
//! names; watch events drive the devices' state machines, `process` their rings.
//!
//! Like Linux's `xen-blkback/xenbus.c` (and Mini-OS `tpmback.c`), the backend owns its
//! discovery: one watch on `backend/vbd`, a rescan when a device directory appears or goes,
//! and per device the watches `Device::watches` names. The runtime offers xenstore, grants,
//! event channels, frames and a clock; it knows nothing about vbds.
//!
//! Sans-I/O: the caller owns the loop, the clock (`now` in ns) and the sleeping; the service
//! says which ports to sleep on and until when (`ports`, `next_deadline`).
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::entry::Entry;
use super::publish::StatsPublisher;
use crate::budget::Budget;
use crate::device::Device;
use crate::engine::DataPath;
use crate::hv::{DomId, EventChannel, EvtchnPort, Frames, Grants, Region, StoreErr, XenStore};
use crate::quote::quote;
use crate::store::any::AnyStore;
use crate::store::local::{LocalDisks, NoLocalDisks};
use crate::store::nbd::Connector;
use crate::store::BlockStore;

/// Watch events one turn of the loop handles at most (the rest wait for the next turn).
pub const MAX_EVENTS_PER_TURN: usize = 64;
/// The watch token of the vbd directory (device watches use their backend path).
const VBD_TOKEN: &str = "vbd";

/// Defaults from the driver domain's command line, overridable per disk by `target=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    pub path: DataPath,
    pub persistent: bool,
    pub max_indirect_segments: u16,
    /// How long I/O of an NBD disk waits for a lost server before it fails.
    pub nbd_window_ns: u64,
    /// Persistent-grant entries all connections together may keep (each pool entry is heap
    /// and a mapped page): a connection gets what is left, half of it at most, trimmed to
    /// what its frontend can keep granted; the driver domain sizes it from its heap.
    pub persistent_budget: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            path: DataPath::Map,
            persistent: true,
            max_indirect_segments: 256,
            nbd_window_ns: 60_000_000_000,
            persistent_budget: 16 * crate::persistent::DEFAULT_CAP,
        }
    }
}

pub(super) type Store<G, F, R, C> = AnyStore<<F as Frames>::Frame, R, <C as Connector>::T, Rc<<G as Grants>::Mapping>>;
pub(super) type Dev<G, F, R, C> = Device<<G as Grants>::Mapping, Store<G, F, R, C>>;

/// A log line the service wants shown (the caller decides where lines go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Only shown with the `debug` switch: every watch event handled.
    Debug(String),
    Info(String),
    Warn(String),
    Error(String),
}

/// The service over the hypervisor `G` (grants), frames `F` and boot modules `R`.
pub struct Service<G: Grants, F: Frames, R: Region, C: Connector> {
    pub(super) base: String,
    pub(super) data: String,
    pub(super) defaults: Defaults,
    pub(super) devices: BTreeMap<String, Entry<Dev<G, F, R, C>>>,
    pub(super) frames: F,
    /// Opens connections to NBD servers.
    pub(super) net: C,
    /// The driver domain's own controllers (`nvme:` targets).
    pub(super) local: Box<dyn LocalDisks<Rc<G::Mapping>>>,
    /// Boot modules; `None` while a device serves it.
    pub(super) modules: Vec<Option<R>>,
    /// Log lines since the caller last took them.
    pub(super) notes: Vec<Note>,
    /// Watch events with tokens that are not ours (the caller's own watches).
    pub(super) foreign: Vec<crate::hv::WatchEvent>,
    pub(super) debug: bool,
    /// The heap and pool budget (the free heap is read through the driver domain's
    /// allocator; without one, unbounded: host tests).
    pub(super) budget: Budget,
    /// A frontend waits for heap: look again at this time.
    pub(super) heap_retry: Option<u64>,
    pub(super) stats: StatsPublisher,
}

impl<G: Grants, F: Frames, R: Region, C: Connector> core::fmt::Debug for Service<G, F, R, C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Service({}, {} devices)", self.base, self.devices.len())
    }
}

impl<G: Grants, F: Frames, R: Region, C: Connector> Service<G, F, R, C> {
    /// The service of driver domain `domid`, with its memory for RAM disks and its boot
    /// modules.
    pub fn new(domid: DomId, defaults: Defaults, frames: F, modules: Vec<R>, net: C) -> Self {
        Self {
            base: format!("/local/domain/{domid}/backend/vbd"),
            data: format!("/local/domain/{domid}/data/blkback"),
            defaults,
            devices: BTreeMap::new(),
            frames,
            net,
            local: Box::new(NoLocalDisks),
            modules: modules.into_iter().map(Some).collect(),
            notes: Vec::new(),
            foreign: Vec::new(),
            debug: false,
            budget: Budget::new(|| usize::MAX, defaults.persistent_budget, usize::from(defaults.max_indirect_segments)),
            heap_retry: None,
            stats: StatsPublisher::new(),
        }
    }

    /// The driver domain's own controllers, for `nvme:` targets (none by default).
    pub fn set_local_disks(&mut self, local: Box<dyn LocalDisks<Rc<G::Mapping>>>) {
        self.local = local;
    }

    /// How to read the free heap (the driver domain's allocator). Connections and passes
    /// use what is above the budget's reserve: a frontend is refused or throttled, never
    /// the domain aborted.
    pub fn set_heap_gauge(&mut self, free: fn() -> usize) {
        self.budget.set_gauge(free);
    }

    /// Persistent-pool entries the kept pools may still grow by (kept aside for them).
    pub(super) fn unfilled_pools(&self) -> usize {
        let unfilled = self.devices.values().filter_map(|e| e.dev.connection());
        unfilled.map(|c| c.persistent_cap().saturating_sub(c.persistent_len())).sum()
    }

    /// Starts watching `backend/vbd` and says we are ready (`data/blkback/ready`).
    pub fn start<X: XenStore>(&mut self, xs: &mut X) -> Result<(), StoreErr> {
        xs.watch(&self.base, VBD_TOKEN)?;
        xs.write(&format!("{}/ready", self.data), "1")
    }

    /// The connector of network stores (to inspect in tests).
    pub fn connector(&self) -> &C {
        &self.net
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn defaults(&self) -> Defaults {
        self.defaults
    }

    /// The devices by backend path.
    pub fn devices(&self) -> impl Iterator<Item = (&str, &Dev<G, F, R, C>)> {
        self.devices.iter().map(|(k, e)| (k.as_str(), &*e.dev))
    }

    pub fn device(&self, be: &str) -> Option<&Dev<G, F, R, C>> {
        self.devices.get(be).map(|e| &*e.dev)
    }

    /// Boot modules not served right now.
    pub fn free_modules(&self) -> usize {
        self.modules.iter().filter(|m| m.is_some()).count()
    }

    /// Watch events for watches the caller set itself (not the service's tokens).
    pub fn take_foreign_events(&mut self) -> Vec<crate::hv::WatchEvent> {
        core::mem::take(&mut self.foreign)
    }

    /// Log lines since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        core::mem::take(&mut self.notes)
    }

    pub(super) fn info(&mut self, s: String) {
        self.notes.push(Note::Info(s));
    }
    pub(super) fn warn(&mut self, s: String) {
        self.notes.push(Note::Warn(s));
    }
    pub(super) fn error(&mut self, s: String) {
        self.notes.push(Note::Error(s));
    }

    /// Every event channel port of every connection, appended to `out` (to sleep on).
    pub fn ports(&self, out: &mut Vec<EvtchnPort>) {
        for e in self.devices.values() {
            out.extend(e.dev.ports());
        }
    }

    /// The earliest time a timer (a directory removal, the statistics) is due.
    pub fn next_deadline(&self) -> u64 {
        let timers = self.devices.values().filter_map(Entry::deadline).min().unwrap_or(u64::MAX);
        timers.min(self.stats.next_deadline()).min(self.heap_retry.unwrap_or(u64::MAX))
    }

    /// Handles queued watch events, `MAX_EVENTS_PER_TURN` at most: a vbd appearing or
    /// vanishing rescans (once per turn); a device's events re-run its state machine once
    /// per turn however many arrived (it is level-triggered: it re-reads what it needs).
    /// Returns whether events may be left (turn again before sleeping): a frontend writing
    /// its keys in a loop gets one update per turn, and every ring still gets its turn.
    pub fn handle_xenstore<X: XenStore, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
        now: u64,
    ) -> bool {
        let mut rescan = false;
        let mut dirty: Vec<String> = Vec::new();
        let mut more = false;
        for n in 0..=MAX_EVENTS_PER_TURN {
            if n == MAX_EVENTS_PER_TURN {
                more = true;
                break;
            }
            let event = match xs.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    self.error(format!("xenstore: {e}"));
                    break;
                }
            };
            if self.debug {
                self.notes.push(Note::Debug(format!("watch {} ({})", quote(&event.path), quote(&event.token))));
            }
            if event.token == VBD_TOKEN {
                // Only the shape of the tree matters here (a vbd appearing or going), not
                // the keys below a device: those reach the device's own watch.
                let depth = event.path.strip_prefix(&self.base).map(|r| r.split('/').filter(|s| !s.is_empty()).count());
                rescan |= matches!(depth, Some(0..=2));
            } else if let Some(e) = self.devices.get(&event.token) {
                if e.dev.relevant(&event.path) && !dirty.contains(&event.token) {
                    dirty.push(event.token);
                }
            } else {
                self.foreign.push(event);
            }
        }
        if rescan {
            self.rescan(xs, g, ev, now);
        }
        for be in dirty {
            self.update(xs, g, ev, &be, now);
        }
        more
    }

    /// Debug-level notes of every watch event handled (off by default: formatting one per
    /// event costs an allocation on the loop's hot path).
    pub fn set_debug(&mut self, on: bool) {
        self.debug = on;
    }

    pub(super) fn update<X: XenStore, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
        be: &str,
        now: u64,
    ) {
        // What a connection made now may keep: the domain's budget less the other
        // connections' reservations (a frontend cannot grow the heap past it by connecting).
        let reserved: usize =
            self.devices.iter().filter(|(k, _)| k.as_str() != be).map(|(_, e)| e.dev.persistent_reserved()).sum();
        let share = self.budget.persistent_share(reserved);
        let room = self.budget.spare(self.unfilled_pools());
        let Some(e) = self.devices.get_mut(be) else { return };
        if e.dev.connection().is_none() {
            e.dev.set_persistent_cap(share);
        }
        e.dev.set_heap_room(room);
        let idle = e.idle(now);
        e.dev.set_idle(idle);
        let before = e.dev.state();
        let r = e.dev.update(xs, g, ev);
        let after = e.dev.state();
        // Serving a closed frontend ends with its connection, or once it was idle anyway
        // (the state machine had its say then).
        if idle || e.dev.connection().is_none() {
            e.linger_over();
        }
        let why = match (&e.dev.last_error, e.dev.refused()) {
            (Some(err), _) | (None, Some(err)) => Some(err.to_string()),
            (None, None) => e.dev.store_failure().map(String::from),
        };
        let store_failed = e.dev.connection().is_none() && e.dev.store_failure().is_some();
        if let Ok(o) = &r {
            if o.kicked {
                // The closed frontend was notified: what it had queued comes now.
                e.kicked(now);
            }
            if o.remove_dir {
                e.schedule_removal(now);
            }
        }
        if let Err(err) = r {
            self.error(format!("{be}: {err}"));
        }
        if after != before {
            let why = why.map(|w| format!(" ({w})")).unwrap_or_default();
            if store_failed {
                self.error(format!("{be}: {before:?} -> {after:?}{why}"));
            } else {
                self.info(format!("{be}: {before:?} -> {after:?}{why}"));
            }
        }
    }

    /// Runs every connected device's rings once. Returns whether requests are waiting
    /// (call again before sleeping).
    pub fn process<X: XenStore, E: EventChannel>(&mut self, xs: &mut X, g: &mut G, ev: &mut E, now: u64) -> bool {
        // Network stores move their handshakes and replies here, connected or not.
        for e in self.devices.values_mut() {
            if let Some(s) = e.dev.store_mut() {
                s.poll();
            }
        }
        // Stores that became ready since the last look: their devices may connect now.
        let ready: Vec<String> = self
            .devices
            .iter_mut()
            .filter(|(_, e)| !e.ready_seen && e.dev.store().is_some_and(|s| s.ready() || s.failed().is_some()))
            .map(|(be, e)| {
                e.ready_seen = true;
                be.clone()
            })
            .collect();
        for be in ready {
            self.update(xs, g, ev, &be, now);
        }
        let mut more = false;
        let mut notes = Vec::new();
        let mut heap_wait = false;
        let budget = self.budget;
        for (be, e) in self.devices.iter_mut() {
            let before = e.dev.state();
            // Read before each device: what the one before gave back is free again.
            e.dev.set_heap_room(budget.room());
            let r = e.dev.process(xs, g, ev);
            // A frontend waiting for heap is not spun on: it is looked at again on the
            // next event or when the budget says (`Budget::retry_at`).
            heap_wait |= r.heap_wait;
            more |= r.more && !r.heap_wait;
            if r.requests > 0 || r.responses > 0 {
                e.io(now);
            }
            if e.dev.state() != before {
                let why = e.dev.last_error.as_ref().map(ToString::to_string).unwrap_or_default();
                notes.push(Note::Warn(format!("{be}: {before:?} -> {:?} ({why})", e.dev.state())));
            }
        }
        self.notes.append(&mut notes);
        self.heap_retry = heap_wait.then(|| Budget::retry_at(now));
        more
    }

    /// Timers due at `now`: directories to remove after their grace, and the statistics
    /// every `STATS_PERIOD_NS` (per device, plus the domain-wide `extra` counters under
    /// `data/blkback/`), written a few per turn. Returns whether counters are left to
    /// write (turn again before sleeping).
    pub fn timers<X: XenStore, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
        now: u64,
        extra: impl FnOnce() -> Vec<(&'static str, u64)>,
    ) -> bool {
        // Closed frontends served until idle: look again once serving them ends.
        let recheck: Vec<String> =
            self.devices.iter().filter(|(_, e)| e.linger_due(now)).map(|(k, _)| k.clone()).collect();
        for be in recheck {
            self.update(xs, g, ev, &be, now);
        }
        let due: Vec<String> =
            self.devices.iter().filter(|(_, e)| e.removal_due(now)).map(|(k, _)| k.clone()).collect();
        for be in due {
            let Some(mut e) = self.devices.remove(&be) else { continue };
            self.stats.forget(&e.dev.stats_dir());
            match e.dev.remove(xs, &be) {
                Ok(()) => self.info(format!("{be}: detached, directory removed")),
                Err(err) => self.error(format!("{be}: removing the directory: {err}")),
            }
            self.retire(*e.dev);
        }
        // The counters: queued once a period, written a few a turn (`publish`).
        let (devices, data) = (&self.devices, &self.data);
        self.stats.tick(now, || {
            let domain = extra().into_iter().map(move |(k, v)| (format!("{data}/{k}"), v.to_string()));
            devices.values().flat_map(|e| e.dev.stats_pairs()).chain(domain)
        });
        self.stats.write_some(xs)
    }
}
