//! One vbd: the backend directory the toolstack wrote for us, the store behind it, and the
//! connection to its frontend. `update` re-reads a snapshot of xenstore and carries out what
//! `xenbus::step` decides; `process` runs the data path; a ring protocol violation drops
//! this frontend only.
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use xen_sys_mini::io::blkif::VDISK_READONLY;
use xen_sys_mini::io::xenbus::XenbusState;

use crate::budget::Budget;
use crate::engine::{ConnectParams, Connection, DataPath, PassReport};
use crate::error::{DeviceError, ToolstackError};
use crate::frontend_keys::{self, parse_u32, Advertised};
use crate::hv::{DomId, EventChannel, EvtchnPort, Grants, Page, XenStore};
use crate::request::Limits;
use crate::store::{BlockStore, Store};
use crate::xenbus::{self, Action, Snapshot};

/// How this backend serves its devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    pub adv: Advertised,
    pub path: DataPath,
    pub max_inflight: usize,
    pub max_segments_per_pass: usize,
    pub persistent_cap: usize,
    /// The disk's own limit on its pool (`target=...:pool=<n>`), below the budget's share.
    pub pool_max: Option<usize>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            adv: Advertised::default(),
            path: DataPath::Map,
            max_inflight: 512,
            max_segments_per_pass: 8192,
            persistent_cap: crate::persistent::DEFAULT_CAP,
            pool_max: None,
        }
    }
}

/// What `update` asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateOutcome {
    /// Delete the backend directory (call `remove`) after a short grace.
    pub remove_dir: bool,
    /// The set of event channel ports changed (re-read `ports`).
    pub ports_changed: bool,
    /// The frontend wrote Closed while connected and was notified (a kick): keep serving
    /// for a while from now (`xenbus::Snapshot::idle`).
    pub kicked: bool,
}

/// What stands behind a device: a store, or the reason there is none (a refused
/// `target=`). A refused device still follows the xenbus state machine (it goes Closed and,
/// on detach, removes its directory); it just never offers itself.
#[derive(Debug)]
pub enum Backing<S> {
    Store(S),
    Refused(DeviceError),
}

#[derive(Debug)]
pub struct Device<M, S> {
    /// `/local/domain/<us>/backend/vbd/<frontend-id>/<devid>`
    pub be: String,
    /// The frontend directory named by the toolstack's `frontend` key (empty if refused
    /// before it was read).
    pub fe: String,
    pub fe_dom: DomId,
    published: XenbusState,
    conn: Option<Connection<M>>,
    backing: Backing<S>,
    cfg: DeviceConfig,
    read_only: bool,
    /// Why the last connect or pass failed, for logs and tests.
    pub last_error: Option<DeviceError>,
    pub removed: bool,
    /// See `set_idle`.
    idle: bool,
    /// The closed frontend was notified once (see `update`).
    kicked: bool,
    /// Heap this device may use now (`set_heap_room`).
    heap_room: usize,
}

/// The toolstack's keys of a backend directory (`frontend`, `frontend-id`, `mode`):
/// written by dom0, still checked.
pub fn toolstack_keys<X: XenStore>(xs: &mut X, be: &str) -> Result<(String, DomId, bool), DeviceError> {
    let fe = xs.read(&format!("{be}/frontend"))?.ok_or(DeviceError::Toolstack(ToolstackError::NoFrontend))?;
    let fe_dom = xs
        .read(&format!("{be}/frontend-id"))?
        .and_then(|v| parse_u32(&v))
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(DeviceError::Toolstack(ToolstackError::BadFrontendId))?;
    // The frontend path must belong to that domain (as Linux's xenbus checks).
    let fe = fe.trim().to_string();
    if !fe.starts_with(&format!("/local/domain/{fe_dom}/")) {
        return Err(DeviceError::Toolstack(ToolstackError::ForeignFrontend { path: fe, dom: fe_dom }));
    }
    Ok((fe, fe_dom, mode_read_only(xs, be)?))
}

/// `mode` as libxl writes it (`w` or `r`); absent means writable.
pub fn mode_read_only<X: XenStore>(xs: &mut X, be: &str) -> Result<bool, DeviceError> {
    let mode = xs.read(&format!("{be}/mode"))?;
    Ok(mode.is_some_and(|m| !m.trim().starts_with('w')))
}

impl<M: Page, S: Store<Rc<M>>> Device<M, S> {
    /// A device for the backend directory `be` with what stands behind it. Bad toolstack
    /// keys make it a refused device too.
    pub fn new<X: XenStore>(xs: &mut X, be: &str, backing: Backing<S>, cfg: DeviceConfig) -> Self {
        let (fe, fe_dom, ro, backing) = match toolstack_keys(xs, be) {
            Ok((fe, dom, ro)) => (fe, dom, ro, backing),
            Err(e) => (String::new(), 0, true, Backing::Refused(e)),
        };
        let read_only = ro || matches!(&backing, Backing::Store(s) if s.info().read_only);
        Self {
            be: be.to_string(),
            fe,
            fe_dom,
            published: XenbusState::Initialising,
            conn: None,
            backing,
            cfg,
            read_only,
            last_error: None,
            removed: false,
            idle: true,
            heap_room: usize::MAX,
            kicked: false,
        }
    }

    pub fn state(&self) -> XenbusState {
        self.published
    }

    pub fn connection(&self) -> Option<&Connection<M>> {
        self.conn.as_ref()
    }

    /// The store, unless the device was refused.
    pub fn store(&self) -> Option<&S> {
        match &self.backing {
            Backing::Store(s) => Some(s),
            Backing::Refused(_) => None,
        }
    }

    /// The store, mutably (to drive a store's own I/O from outside the rings).
    pub fn store_mut(&mut self) -> Option<&mut S> {
        match &mut self.backing {
            Backing::Store(s) => Some(s),
            Backing::Refused(_) => None,
        }
    }

    /// Why the device was refused, if it was.
    pub fn refused(&self) -> Option<&DeviceError> {
        match &self.backing {
            Backing::Store(_) => None,
            Backing::Refused(e) => Some(e),
        }
    }

    /// Why the store cannot serve, if it failed (a network store's server refused it).
    pub fn store_failure(&self) -> Option<&str> {
        self.store().and_then(BlockStore::failed)
    }

    /// The store back, once the device is gone (a boot module can be served again).
    pub fn into_store(self) -> Option<S> {
        debug_assert!(self.conn.is_none(), "into_store on a connected device");
        match self.backing {
            Backing::Store(s) => Some(s),
            Backing::Refused(_) => None,
        }
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// Paths to watch: our directory (state, online) and the frontend's state.
    pub fn watches(&self) -> Vec<String> {
        let mut w = alloc::vec![self.be.clone()];
        if !self.fe.is_empty() {
            w.push(format!("{}/state", self.fe));
        }
        w
    }

    /// Whether a watch event on `path` can change what `update` decides: our own counters
    /// under `statistics/` and the connect keys we wrote cannot; the toolstack's `state`
    /// and `online`, the frontend's `state`, and our directory going away can.
    pub fn relevant(&self, path: &str) -> bool {
        match path.strip_prefix(self.be.as_str()) {
            Some("") | Some("/state") | Some("/online") => true,
            Some(_) => false,
            None => true,
        }
    }

    /// Sets the watches this device reacts to, with `token` (the service maps events back
    /// to the device by it).
    pub fn watch<X: XenStore>(&self, xs: &mut X, token: &str) -> Result<(), DeviceError> {
        for p in self.watches() {
            xs.watch(&p, token)?;
        }
        Ok(())
    }

    /// Our event channel ports (to sleep on).
    pub fn ports(&self) -> impl Iterator<Item = EvtchnPort> + '_ {
        self.conn.iter().flat_map(Connection::ports)
    }

    fn snapshot<X: XenStore>(&self, xs: &mut X) -> Result<Snapshot, DeviceError> {
        let state = |v: Option<String>| v.and_then(|v| parse_u32(&v)).and_then(XenbusState::from_u32);
        let frontend = if self.fe.is_empty() { None } else { state(xs.read(&format!("{}/state", self.fe))?) };
        let online = xs.read(&format!("{}/online", self.be))?.and_then(|v| parse_u32(&v)) == Some(1);
        let backend_in_store = state(xs.read(&format!("{}/state", self.be))?);
        Ok(Snapshot {
            idle: self.idle,
            frontend,
            online,
            backend_in_store,
            connected: self.conn.is_some(),
            refused: self.refused().is_some() || (self.conn.is_none() && self.store_failure().is_some()),
            store_ready: self.store().is_some_and(BlockStore::ready),
        })
    }

    /// Re-reads xenstore and acts on it.
    pub fn update<X: XenStore, G: Grants<Mapping = M>, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
    ) -> Result<UpdateOutcome, DeviceError> {
        let mut out = UpdateOutcome::default();
        if self.removed {
            return Ok(out);
        }
        let mut snap = self.snapshot(xs)?;
        // Linux blkfront (5.19+) writes Closed after stopping its queues, possibly with
        // requests still queued (a bio split in several requests, part dispatched): they go
        // on the ring only when an interrupt restarts the queues. Notify it once (its
        // `blkif_interrupt` then kicks the queues), and keep serving until idle.
        if snap.frontend == Some(XenbusState::Closed) && !self.kicked {
            if let Some(c) = &self.conn {
                for p in c.ports() {
                    ev.notify(p);
                }
                self.kicked = true;
                out.kicked = true;
                snap.idle = false;
            }
        }
        if snap.frontend != Some(XenbusState::Closed) {
            self.kicked = false;
        }
        let (next, actions) = xenbus::step(self.published, &snap);
        for a in actions {
            match a {
                Action::Advertise => {
                    // The swap path says so only where the hypervisor has the op (probed
                    // once): the frontend may then declare `feature-grant-swap` too.
                    let swap = self.cfg.path == DataPath::Swap && g.can_swap();
                    self.advertise(xs, swap)?;
                }
                Action::SetState(s) => {
                    xs.write(&format!("{}/state", self.be), &format!("{}", s as u32))?;
                }
                Action::Disconnect => {
                    self.disconnect(g, ev);
                    out.ports_changed = true;
                }
                Action::Connect => {
                    out.ports_changed = true;
                    if let Err(e) = self.connect(xs, g, ev) {
                        // The frontend gave us something unusable, or the domain has no
                        // room for another connection: say why, close.
                        self.write_error(xs, &e);
                        self.last_error = Some(e);
                        xs.write(&format!("{}/state", self.be), &format!("{}", XenbusState::Closing as u32))?;
                        self.published = XenbusState::Closing;
                        return Ok(out);
                    }
                }
                Action::RemoveDir => out.remove_dir = true,
                Action::Refuse => {
                    let why = match (self.refused(), self.store_failure()) {
                        (Some(e), _) => e.to_string(),
                        (None, Some(f)) => f.to_string(),
                        (None, None) => String::from("refused"),
                    };
                    let pairs = [
                        (format!("{}/hotplug-error", self.be), why),
                        (format!("{}/hotplug-status", self.be), String::from("error")),
                    ];
                    xs.write_all(&pairs)?;
                }
            }
        }
        self.published = next;
        Ok(out)
    }

    fn advertise<X: XenStore>(&mut self, xs: &mut X, swap: bool) -> Result<(), DeviceError> {
        if swap {
            xs.write(&format!("{}/feature-grant-swap", self.be), "3")?;
        }
        let a = &self.cfg.adv;
        let pairs = [
            ("feature-max-indirect-segments", a.max_indirect_segments.to_string()),
            ("max-ring-page-order", a.max_ring_page_order.to_string()),
            ("multi-queue-max-queues", a.max_queues.to_string()),
        ];
        let pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (format!("{}/{k}", self.be), v)).collect();
        Ok(xs.write_all(&pairs)?)
    }

    fn connect<X: XenStore, G: Grants<Mapping = M>, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
    ) -> Result<(), DeviceError> {
        let Backing::Store(store) = &mut self.backing else {
            return Err(DeviceError::NoStore);
        };
        let fc = frontend_keys::read_frontend(xs, &self.fe, &self.cfg.adv).map_err(DeviceError::Frontend)?;
        // Admission: the connection's rings and one request of the advertised maximum must
        // fit in the heap left now, or the frontend is refused and every other guest goes on.
        Budget::admit_connection(self.heap_room, fc.queues.len(), usize::from(self.cfg.adv.max_indirect_segments))?;
        // One pool per connection, sized by `Connection::connect` to what the frontend can
        // keep granted, within this connection's share of the domain's budget.
        let persistent_cap = self.cfg.persistent_cap.min(self.cfg.pool_max.unwrap_or(usize::MAX));
        let info = store.info();
        // A network store knows whether its export is read-only only now.
        self.read_only |= info.read_only;
        let limits = Limits {
            capacity: info.sectors,
            read_only: self.read_only,
            max_indirect_segments: self.cfg.adv.max_indirect_segments,
            flush: info.flush,
            barrier: info.flush,
            // As advertised: no discard on a read-only disk.
            discard: info.discard && !self.read_only,
            discard_secure: info.discard_secure,
        };
        let params = ConnectParams {
            frontend: self.fe_dom,
            abi: fc.abi,
            queues: fc.queues,
            persistent: fc.persistent,
            path: self.cfg.path,
            limits,
            max_inflight: self.cfg.max_inflight,
            max_segments_per_pass: self.cfg.max_segments_per_pass,
            persistent_cap,
            grant_swap: fc.grant_swap,
        };
        let conn = Connection::connect(g, ev, &params).map_err(DeviceError::Connect)?;
        let b = |v: bool| String::from(if v { "1" } else { "0" });
        let kv = [
            ("sectors", info.sectors.to_string()),
            ("info", (if self.read_only { VDISK_READONLY } else { 0 }).to_string()),
            ("sector-size", info.sector_size.to_string()),
            ("physical-sector-size", info.physical_sector_size.to_string()),
            ("feature-flush-cache", b(info.flush)),
            ("feature-barrier", b(info.flush)),
            ("feature-discard", b(info.discard && !self.read_only)),
            ("discard-granularity", info.physical_sector_size.to_string()),
            ("discard-alignment", String::from("0")),
            ("discard-secure", b(info.discard_secure)),
            ("feature-persistent", b(self.cfg.adv.persistent)),
            ("state", (XenbusState::Connected as u32).to_string()),
        ];
        let pairs: Vec<(String, String)> = kv.into_iter().map(|(k, v)| (format!("{}/{k}", self.be), v)).collect();
        if let Err(e) = xs.write_all(&pairs) {
            conn.disconnect(g, ev, store);
            return Err(DeviceError::Xenstore(e));
        }
        self.conn = Some(conn);
        self.last_error = None;
        Ok(())
    }

    fn disconnect<G: Grants<Mapping = M>, E: EventChannel>(&mut self, g: &mut G, ev: &mut E) {
        if let (Some(c), Backing::Store(store)) = (self.conn.take(), &mut self.backing) {
            c.disconnect(g, ev, store);
        }
    }

    /// Whether the connection has been idle long enough to be dropped once the frontend
    /// closed (`xenbus::Snapshot::idle`); the service sets it from its clock. Without a
    /// service (tests of one device) it stays true.
    pub fn set_idle(&mut self, idle: bool) {
        self.idle = idle;
    }

    /// The heap this device may use from now on (the driver domain's free heap less its
    /// reserve): a connection is refused below `connect_heap_bytes`, and a pass takes
    /// requests only while their worst case fits.
    pub fn set_heap_room(&mut self, bytes: usize) {
        self.heap_room = bytes;
    }

    /// The persistent-grant pool the next connection gets (its share of the domain's
    /// budget; 0 maps every grant per request even when persistent grants are negotiated,
    /// as Linux blkback does once its pool is full).
    pub fn set_persistent_cap(&mut self, n: usize) {
        self.cfg.persistent_cap = n;
    }

    /// The pool the current connection holds a reservation for (0 when not connected).
    pub fn persistent_reserved(&self) -> usize {
        self.conn.as_ref().map_or(0, Connection::persistent_cap)
    }

    /// Runs the data path. A ring protocol violation disconnects this frontend (state
    /// Closing, an `error` node), nothing else.
    pub fn process<X: XenStore, G: Grants<Mapping = M>, E: EventChannel>(
        &mut self,
        xs: &mut X,
        g: &mut G,
        ev: &mut E,
    ) -> PassReport {
        let (Some(c), Backing::Store(store)) = (self.conn.as_mut(), &mut self.backing) else {
            return PassReport::default();
        };
        c.set_heap_room(self.heap_room);
        match c.process(g, ev, store) {
            Ok(r) => r,
            Err(e) => {
                let e = DeviceError::Ring(e);
                self.disconnect(g, ev);
                self.write_error(xs, &e);
                self.last_error = Some(e);
                let _ = xs.write(&format!("{}/state", self.be), &format!("{}", XenbusState::Closing as u32));
                self.published = XenbusState::Closing;
                PassReport::default()
            }
        }
    }

    /// Drops the connection whatever xenstore says (our directory vanished under us).
    pub fn force_disconnect<G: Grants<Mapping = M>, E: EventChannel>(&mut self, g: &mut G, ev: &mut E) {
        self.disconnect(g, ev);
        self.published = XenbusState::Closed;
    }

    /// Where the counters go: `/local/domain/<dd>/data/blkback/vbd/<fe>/<dev>/`, outside
    /// the `backend/` tree the service watches (written there, every second's counters came
    /// back as watch events: 14 per device per second).
    pub fn stats_dir(&self) -> String {
        let split = self.be.find("/backend/vbd/").map(|i| self.be.split_at(i));
        match split.and_then(|(home, rest)| Some((home, rest.strip_prefix("/backend/vbd/")?))) {
            Some((home, dev)) => format!("{home}/data/blkback/vbd/{dev}"),
            None => format!("{}/statistics", self.be),
        }
    }

    /// The counters as (path under `stats_dir`, value); none while not connected.
    pub fn stats_pairs(&self) -> Vec<(String, String)> {
        let Some(c) = &self.conn else { return Vec::new() };
        let dir = self.stats_dir();
        let store = self.store().map(BlockStore::counters).unwrap_or_default();
        c.stats
            .pairs()
            .into_iter()
            .chain(store.into_iter().map(|(k, v)| (k, v.to_string())))
            .map(|(k, v)| (format!("{dir}/{k}"), v))
            .collect()
    }

    /// Writes the counters under `stats_dir` in one transaction (the service trickles them
    /// instead, see `Service::timers`).
    pub fn publish_stats<X: XenStore>(&self, xs: &mut X) -> Result<(), DeviceError> {
        Ok(xs.write_all(&self.stats_pairs())?)
    }

    /// Where an error about this device goes, by Xen's convention (Linux
    /// `xenbus_dev_error`, also FreeBSD's and NetBSD's backends): under the driver domain's
    /// own `error/` directory, at the backend's path relative to the domain's home:
    /// `/local/domain/<dd>/error/backend/vbd/<fe>/<dev>/error`.
    pub fn error_path(&self) -> String {
        format!("{}/error", self.error_dir())
    }

    fn error_dir(&self) -> String {
        match self.be.find("/backend/") {
            Some(i) => format!("{}/error{}", &self.be[..i], &self.be[i..]),
            None => format!("{}/error", self.be),
        }
    }

    /// Writes `<errno> <message>` (the format of `xenbus_va_dev_error`) to `error_path`,
    /// the errno the error's own.
    fn write_error<X: XenStore>(&self, xs: &mut X, e: &DeviceError) {
        let _ = xs.write(&self.error_path(), &format!("{} {e}", e.errno()));
    }

    /// Removes what the device wrote outside its directory: its error node and counters
    /// (nobody else removes them in a driver domain).
    pub fn remove_own_nodes<X: XenStore>(&self, xs: &mut X) {
        let _ = xs.rm(&self.error_dir());
        let _ = xs.rm(&self.stats_dir());
    }

    /// Deletes our backend directory (the toolstack waits for it on detach), and the
    /// device's error node and counters.
    pub fn remove<X: XenStore>(&mut self, xs: &mut X, token: &str) -> Result<(), DeviceError> {
        for p in self.watches() {
            let _ = xs.unwatch(&p, token);
        }
        self.remove_own_nodes(xs);
        xs.rm(&self.be)?;
        self.removed = true;
        Ok(())
    }
}
