//! The blkback service over the fake hypervisor, driven as the driver domain's loop drives
//! it: the toolstack writes directories (as libxl does), the service discovers them through
//! its watch, frontends connect and do I/O, the toolstack detaches. Every test checks
//! xenstore state, data, mappings and frames, never just "no panic".
// Casts and arithmetic here are on the tests' own small values.
#![allow(clippy::cast_possible_truncation, clippy::arithmetic_side_effects)]

use blkback::engine::DataPath;
use blkback::service::{Defaults, Note, Service, LINGER_IDLE_NS, REMOVE_GRACE_NS, STATS_PERIOD_NS};
use blkback::testing::*;
use xen_sys_mini::io::blkif::BLKIF_RSP_OKAY;
use xen_sys_mini::io::xenbus::XenbusState;

type Svc = Service<FakeGrants, FakeFrames, FakeRegion, PipeConnector>;

/// The fake hypervisor, the service and a clock.
struct Bed {
    xs: FakeXenStore,
    g: FakeGrants,
    ev: FakeEvtchn,
    frames: FakeFrames,
    svc: Svc,
    now: u64,
}

impl Bed {
    fn new(modules: Vec<FakeRegion>) -> Self {
        let frames = FakeFrames::new(4096); // 16 MiB
        let net = PipeConnector {
            refuse: vec!["10.9.9.9".into()],
            dead: vec!["192.0.2.99".into()],
            ..PipeConnector::default()
        };
        let mut svc = Service::new(BACKEND, Defaults::default(), frames.clone(), modules, net);
        let mut xs = FakeXenStore::default();
        svc.start(&mut xs).expect("start");
        assert_eq!(xs.get(&format!("/local/domain/{BACKEND}/data/blkback/ready")), Some("1"));
        let mut b = Self { xs, g: FakeGrants::new(), ev: FakeEvtchn::default(), frames, svc, now: 1_000_000_000 };
        b.turn();
        b
    }

    /// One turn of the driver domain's loop.
    fn turn(&mut self) -> bool {
        self.svc.handle_xenstore(&mut self.xs, &mut self.g, &mut self.ev, self.now);
        let more = self.svc.process(&mut self.xs, &mut self.g, &mut self.ev, self.now);
        self.svc.timers(&mut self.xs, &mut self.g, &mut self.ev, self.now, || vec![("mapped", 0)]) | more
    }

    /// Turns until nothing is left to do (bounded).
    fn settle(&mut self) {
        for _ in 0..50 {
            let more = self.turn();
            if !more && self.xs.events.is_empty() {
                return;
            }
        }
        panic!("the service did not settle");
    }

    fn advance(&mut self, ns: u64) {
        self.now += ns;
        self.settle();
    }

    fn attach(&mut self, dom: u16, devid: u32, params: &str, mode: &str) -> MockFrontend {
        let (fe, be) = MockFrontend::toolstack_attach(&mut self.xs, dom, devid, params, mode);
        self.settle();
        MockFrontend::new(dom, devid, fe, be, FrontendOpts { persistent: true, ..FrontendOpts::default() })
    }

    fn connect(&mut self, fe: &mut MockFrontend) {
        assert_eq!(fe.backend_state(&self.xs), Some(XenbusState::InitWait as u32), "backend not in InitWait");
        fe.connect(&mut self.xs, &mut self.g, &mut self.ev);
        self.settle();
        assert!(fe.connected(&mut self.xs), "backend did not connect: {:?}", self.notes());
        self.settle();
    }

    /// A write then a read of the same sectors; returns what was read.
    fn write_read(&mut self, fe: &mut MockFrontend, sector: u64, data: &[u8]) -> Vec<u8> {
        fe.rw(&self.xs, &mut self.g, true, sector, data.len(), Some(data), 0);
        fe.push();
        self.settle();
        let done = fe.complete(&mut self.g);
        assert_eq!(done.len(), 1, "write not answered");
        assert_eq!(done[0].status, BLKIF_RSP_OKAY);
        fe.read(&self.xs, &mut self.g, sector, data.len());
        fe.push();
        self.settle();
        let mut done = fe.complete(&mut self.g);
        assert_eq!(done.len(), 1, "read not answered");
        assert_eq!(done[0].status, BLKIF_RSP_OKAY);
        done.remove(0).data
    }

    /// What libxl does for `xl block-detach`: `online` = 0 and our `state` = Closing.
    fn toolstack_detach(&mut self, be: &str) {
        self.xs.set(&format!("{be}/online"), "0");
        self.xs.set(&format!("{be}/state"), &(XenbusState::Closing as u32).to_string());
        self.settle();
    }

    fn notes(&mut self) -> Vec<Note> {
        self.svc.take_notes()
    }

    fn state(&self, be: &str) -> Option<&str> {
        self.xs.get(&format!("{be}/state"))
    }
}

#[test]
fn attach_connect_serve_detach() {
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "ram:1M", "w");
    let be = fe.be.clone();
    assert_eq!(b.svc.devices().count(), 1);
    // Probe keys, then InitWait (what libxl waits for).
    assert_eq!(b.xs.get(&format!("{be}/feature-max-indirect-segments")), Some("256"));
    assert_eq!(b.state(&be), Some("2"));
    // The RAM disk took 1 MiB of frames.
    assert_eq!(b.frames.live(), 256);
    b.connect(&mut fe);
    assert_eq!(fe.sectors(&b.xs), 2048);
    let data = pattern(7, 8192);
    assert_eq!(b.write_read(&mut fe, 100, &data), data);
    // Statistics are published on the period, per device and domain-wide.
    b.advance(STATS_PERIOD_NS);
    let stats = format!("/local/domain/{BACKEND}/data/blkback/vbd/5/51712");
    assert_eq!(b.xs.get(&format!("{stats}/wr_req")), Some("1"));
    assert_eq!(b.xs.get(&format!("/local/domain/{BACKEND}/data/blkback/mapped")), Some("0"));
    // Detach: the frontend sees Closing and closes; we go Closed, then remove the directory
    // after the grace (libxl reads Closed first).
    b.toolstack_detach(&be);
    assert_eq!(b.state(&be), Some("5"));
    fe.set_state(&mut b.xs, XenbusState::Closed);
    b.settle();
    // Served until idle (the closed frontend was notified once), then Closed.
    assert_eq!(b.state(&be), Some("5"));
    b.advance(LINGER_IDLE_NS);
    assert_eq!(b.state(&be), Some("6"));
    assert!(b.xs.exists(&be), "directory removed before the grace");
    b.advance(REMOVE_GRACE_NS);
    assert!(!b.xs.exists(&be), "directory not removed");
    assert!(!b.xs.exists(&stats), "the device's counters outlived it");
    assert_eq!(b.svc.devices().count(), 0);
    // Everything of the frontend is released: rings unmapped, channels closed, frames back.
    assert_eq!(b.g.counters().mapped_now, 0);
    assert_eq!(b.ev.bound_count(), 0);
    assert_eq!(b.frames.live(), 0);
    // No watch of the device is left behind.
    assert!(b.xs.watches.iter().all(|(p, _)| !p.starts_with(&be) && !p.starts_with(&fe.fe)), "{:?}", b.xs.watches);
}

#[test]
fn refused_targets_say_why_and_go_on_detach() {
    let cases = [
        ("ram", "`ram` needs a size, e.g. ram:64M"),
        ("disk:/dev/sda", "unknown target `disk`"),
        ("ram:64M:fast", "unknown target option `fast`"),
        ("ram:1G", "not enough memory for a 1024 MiB RAM disk (16 MiB free)"),
        ("module:3", "no boot module 3"),
    ];
    for (i, (params, why)) in cases.into_iter().enumerate() {
        let mut b = Bed::new(vec![]);
        let fe = b.attach(5, 51712 + i as u32, params, "w");
        let be = fe.be.clone();
        // Never InitWait: Closed, with the reason where libxl and the user look.
        assert_eq!(b.state(&be), Some("6"), "{params}");
        let err = b.xs.get(&format!("{be}/hotplug-error")).unwrap_or_default().to_string();
        assert!(err.starts_with(&format!("target `{params}`: ")) && err.contains(why), "{params}: {err}");
        assert_eq!(b.xs.get(&format!("{be}/hotplug-status")), Some("error"));
        assert!(b.xs.get(&format!("{be}/feature-max-indirect-segments")).is_none(), "a refused device advertised");
        assert!(b.notes().iter().any(|n| matches!(n, Note::Error(s) if s.contains(why))), "{params}: no console line");
        assert_eq!(b.frames.live(), 0, "{params}: frames taken for a refused device");
        // The frontend cannot make it connect.
        let mut fe = fe;
        fe.connect(&mut b.xs, &mut b.g, &mut b.ev);
        b.settle();
        assert_eq!(b.state(&be), Some("6"));
        assert_eq!(b.g.counters().mapped_now, 0);
        // `xl block-detach`: Closed, then the directory goes after the grace.
        b.toolstack_detach(&be);
        assert_eq!(b.state(&be), Some("6"));
        b.advance(REMOVE_GRACE_NS);
        assert!(!b.xs.exists(&be), "{params}: refused device's directory left behind");
        assert_eq!(b.svc.devices().count(), 0);
        assert!(b.xs.watches.iter().all(|(p, _)| !p.starts_with(&be)), "{params}: watch leaked: {:?}", b.xs.watches);
    }
}

#[test]
fn bad_toolstack_keys_refuse_the_device() {
    let mut b = Bed::new(vec![]);
    let (_, be) = MockFrontend::toolstack_attach(&mut b.xs, 5, 51712, "ram:1M", "w");
    // A frontend path outside the frontend's domain (as Linux's xenbus refuses it).
    b.xs.set(&format!("{be}/frontend"), "/local/domain/0/device/vbd/51712");
    b.settle();
    assert_eq!(b.state(&be), Some("6"));
    let err = b.xs.get(&format!("{be}/hotplug-error")).unwrap_or_default();
    assert!(err.contains("is not in domain 5"), "{err}");
    assert_eq!(b.frames.live(), 0, "the refused device kept its RAM disk");
}

#[test]
fn a_device_refused_for_its_keys_does_not_take_the_boot_module() {
    let mut b = Bed::new(vec![FakeRegion { data: pattern(4, 8192), base_gfn: 0x500 }]);
    let (_, be) = MockFrontend::toolstack_attach(&mut b.xs, 5, 51712, "module", "w");
    b.xs.set(&format!("{be}/frontend-id"), "70000");
    b.settle();
    assert_eq!(b.state(&be), Some("6"));
    assert!(b.xs.get(&format!("{be}/hotplug-error")).unwrap_or_default().contains("frontend-id"));
    assert_eq!(b.svc.free_modules(), 1, "a refused device holds the module");
    let mut fe = b.attach(6, 51712, "module", "w");
    b.connect(&mut fe);
    assert_eq!(fe.sectors(&b.xs), 16);
}

#[test]
fn a_boot_module_is_served_in_place_and_reused_after_detach() {
    let image = pattern(3, 64 * 1024);
    let mut b = Bed::new(vec![FakeRegion { data: image.clone(), base_gfn: 0x500 }]);
    let mut fe = b.attach(5, 51712, "module", "w");
    let be = fe.be.clone();
    b.connect(&mut fe);
    assert_eq!(fe.sectors(&b.xs), 128);
    // Its contents are the image; a write lands in it.
    fe.read(&b.xs, &mut b.g, 0, 4096);
    fe.push();
    b.settle();
    assert_eq!(fe.complete(&mut b.g)[0].data, image[..4096]);
    let data = pattern(9, 4096);
    assert_eq!(b.write_read(&mut fe, 8, &data), data);
    assert_eq!(b.svc.free_modules(), 0);
    // A second device cannot have the module while the first serves it.
    let other = b.attach(6, 51712, "module:0", "w");
    let err = b.xs.get(&format!("{}/hotplug-error", other.be)).unwrap_or_default();
    assert!(err.contains("boot module 0 is already served"), "{err}");
    b.toolstack_detach(&other.be);
    b.advance(REMOVE_GRACE_NS);
    // Detach the first: the module goes back to the pool, with the write in it. It just
    // did I/O, so it is served until idle (`LINGER_IDLE_NS`), then closed and removed.
    b.toolstack_detach(&be);
    fe.set_state(&mut b.xs, XenbusState::Closed);
    b.settle();
    assert_eq!(b.state(&be), Some("5"), "dropped while the frontend may still use its ring");
    b.advance(LINGER_IDLE_NS);
    assert_eq!(b.state(&be), Some("6"));
    b.advance(REMOVE_GRACE_NS);
    let st = b.state(&be).map(String::from);
    assert!(!b.xs.exists(&be), "{st:?} {:?}", b.notes());
    assert_eq!(b.svc.free_modules(), 1);
    // Attached again (the scenario's re-attach): the earlier write is still there.
    let mut fe2 = b.attach(5, 51712, "module", "w");
    b.connect(&mut fe2);
    fe2.read(&b.xs, &mut b.g, 8, 4096);
    fe2.push();
    b.settle();
    assert_eq!(fe2.complete(&mut b.g)[0].data, data, "the module lost a write across re-attach");
}

#[test]
fn a_frontend_that_disappears_is_dropped_and_cleaned_up_by_the_toolstack() {
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "ram:1M", "w");
    // The copy path needs frames the fake grant table can reach: this one maps.
    let mut other = b.attach(6, 51712, "ram:1M:map:nopersist", "w");
    b.connect(&mut fe);
    b.connect(&mut other);
    let be = fe.be.clone();
    let cfg = b.svc.device(&other.be).map(|d| *d.config()).expect("device");
    assert_eq!((cfg.path, cfg.adv.persistent), (DataPath::Map, false));
    // Requests in flight when the domain dies.
    fe.write(&b.xs, &mut b.g, 0, &pattern(1, 4096));
    fe.push();
    // The domain is destroyed: its xenstore directory and grants vanish.
    b.xs.remove_tree("/local/domain/5");
    b.g.forget_domain(5);
    b.settle();
    assert_eq!(b.state(&be), Some("6"), "not Closed after the frontend vanished");
    assert_eq!(b.svc.device(&be).map(|d| d.connection().is_some()), Some(false));
    // The other frontend is unaffected.
    let data = pattern(2, 4096);
    assert_eq!(b.write_read(&mut other, 0, &data), data);
    // The toolstack cleans up: online = 0 → directory removed after the grace.
    b.toolstack_detach(&be);
    b.advance(REMOVE_GRACE_NS);
    assert!(!b.xs.exists(&be));
    // Only the other frontend's rings are still mapped.
    assert_eq!(b.g.counters().mapped_now, 1);
    // The toolstack removes a directory itself (a forced detach): the device goes too.
    b.xs.remove_tree(&other.be);
    b.settle();
    assert_eq!(b.svc.devices().count(), 0);
    assert_eq!(b.g.counters().mapped_now, 0);
    assert_eq!(b.ev.bound_count(), 0);
    assert_eq!(b.frames.live(), 0);
}

/// The counters of one period, written until none are left; returns (turns, writes).
fn publish(b: &mut Bed) -> (u64, u64, u64) {
    b.now += STATS_PERIOD_NS;
    let (mut turns, mut writes, mut most) = (0, 0, 0);
    loop {
        let before = b.xs.requests;
        let more = b.svc.timers(&mut b.xs, &mut b.g, &mut b.ev, b.now, || vec![("mapped", 0)]);
        let n = b.xs.requests - before;
        (turns, writes, most) = (turns + 1, writes + n, most.max(n));
        if !more {
            return (turns, writes, most);
        }
        assert!(turns < 100, "the counters never ran out");
    }
}

/// Statistics: a few plain writes per turn (a publish was a transaction per device, ~20
/// round trips in one turn, holding every ring while dom0's xenstored answered), only the
/// values that changed, and no watch event (we do not watch our own directory).
#[test]
fn statistics_are_written_a_few_per_turn_only_when_changed_and_wake_nothing() {
    use blkback::service::STATS_WRITES_PER_TURN;
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "ram:1M", "w");
    b.connect(&mut fe);
    let _ = b.notes();
    b.settle();
    assert!(b.xs.events.is_empty());
    let (turns, writes, most) = publish(&mut b);
    assert!(most <= STATS_WRITES_PER_TURN as u64, "one turn made {most} round trips");
    assert!(turns > 1 && writes > STATS_WRITES_PER_TURN as u64, "{writes} writes in {turns} turns");
    let dir = b.svc.device(&fe.be).expect("device").stats_dir();
    assert_eq!(b.xs.get(&format!("{dir}/rd_req")), Some("0"));
    assert_eq!(b.xs.get(&format!("/local/domain/{BACKEND}/data/blkback/mapped")), Some("0"));
    assert!(b.xs.events.is_empty(), "our own statistics came back as {} watch events", b.xs.events.len());
    let after = b.xs.requests;
    b.settle();
    assert_eq!(b.xs.requests, after, "the device re-read xenstore after our own writes");
    // Nothing changed: nothing written.
    assert_eq!(publish(&mut b), (1, 0, 0));
    // I/O changes a few counters: only those are written.
    let data = pattern(3, 8192);
    assert_eq!(b.write_read(&mut fe, 0, &data), data);
    let (_, changed, _) = publish(&mut b);
    assert!(changed > 0 && changed < writes, "{changed} of {writes} counters rewritten");
    assert_eq!(b.xs.get(&format!("{dir}/rd_req")), Some("1"));
    assert_eq!(b.xs.get(&format!("{dir}/wr_req")), Some("1"));
}

#[test]
fn an_nbd_target_connects_once_negotiated_and_serves_the_export() {
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "nbd://192.0.2.1:10809/disk0", "w");
    let be = fe.be.clone();
    // InitWait at once (libxl waits 10 s at most); the size is known once the store has
    // negotiated, which the loop's turns did.
    assert_eq!(b.state(&be), Some("2"));
    // The handshake's round trips happen over the loop's turns (in the domain: woken by
    // the vif's event channel as the server's bytes arrive).
    for _ in 0..6 {
        b.turn();
    }
    b.connect(&mut fe);
    assert_eq!(fe.sectors(&b.xs), (1 << 20) / 512);
    let data = pattern(11, 16384);
    assert_eq!(b.write_read(&mut fe, 40, &data), data);
    let server = b.svc.connector().servers["192.0.2.1:10809"].clone();
    assert_eq!(server.borrow().disk[40 * 512..40 * 512 + 16384], data[..], "the export does not hold the write");
    assert!(b
        .notes()
        .iter()
        .any(|n| matches!(n, Note::Info(s) if s.contains("NBD export `disk0` on 192.0.2.1:10809"))));
}

#[test]
fn an_unreachable_or_malformed_nbd_target_is_refused_with_its_reason() {
    let mut b = Bed::new(vec![]);
    let fe = b.attach(5, 51712, "nbd://10.9.9.9/disk0", "w");
    assert_eq!(b.state(&fe.be), Some("6"));
    let err = b.xs.get(&format!("{}/hotplug-error", fe.be)).unwrap_or_default().to_string();
    assert!(err.contains("connection refused"), "{err}");
    let fe = b.attach(6, 51712, "nbd://host:70000/disk0", "w");
    let err = b.xs.get(&format!("{}/hotplug-error", fe.be)).unwrap_or_default().to_string();
    assert!(err.contains("bad port `70000`"), "{err}");
}

#[test]
fn an_unknown_export_or_a_dead_server_ends_the_attach_with_its_reason() {
    for (target, why) in [
        ("nbd://192.0.2.1/nope", "NBD handshake: the server has no such export"),
        ("nbd://192.0.2.99/disk0", "the NBD server is unreachable or closed the connection"),
    ] {
        let mut b = Bed::new(vec![]);
        let fe = b.attach(5, 51712, target, "w");
        for _ in 0..6 {
            b.turn();
        }
        b.settle();
        assert_eq!(b.state(&fe.be), Some("6"), "{target}: not Closed");
        let err = b.xs.get(&format!("{}/hotplug-error", fe.be)).unwrap_or_default().to_string();
        assert_eq!(err, why, "{target}");
        assert!(b.notes().iter().any(|n| matches!(n, Note::Error(s) if s.contains(why))), "{target}: no console line");
        // `xl block-detach` cleans it up like any refused device.
        b.toolstack_detach(&fe.be);
        b.advance(REMOVE_GRACE_NS);
        assert!(!b.xs.exists(&fe.be));
    }
}

/// A frontend rewriting its own keys in a loop (state flips, and a new key under `state`
/// each time so nothing is a duplicate) between two turns of the loop. Before: every queued
/// event was handled before any I/O, each one a full state-machine update (≥ 3 xenstore
/// round trips), and the client's queue had no bound. Now: the queue stays bounded, a turn
/// handles at most `MAX_EVENTS_PER_TURN` events and updates each device once, and a
/// neighbour's I/O is answered in that same turn.
#[test]
fn a_watch_event_flood_costs_one_update_per_turn_and_never_starves_io() {
    let mut b = Bed::new(vec![]);
    let mut noisy = b.attach(5, 51712, "ram:1M", "w");
    b.connect(&mut noisy);
    let mut good = b.attach(6, 51712, "ram:1M", "w");
    b.connect(&mut good);
    let data = pattern(3, 4096);
    assert_eq!(b.write_read(&mut good, 0, &data), data);

    for i in 0..20_000 {
        let s = if i % 2 == 0 { XenbusState::Initialised } else { XenbusState::Connected };
        b.xs.set(&format!("{}/state", noisy.fe), &(s as u32).to_string());
        b.xs.set(&format!("{}/state/k{i}", noisy.fe), "x");
    }
    assert!(b.xs.events.len() <= xen_hv::EVENT_QUEUE_CAP + 4, "{} events queued", b.xs.events.len());

    good.read(&b.xs, &mut b.g, 0, 4096);
    good.push();
    let r0 = b.xs.requests;
    let queued = b.xs.events.len();
    let left = b.svc.handle_xenstore(&mut b.xs, &mut b.g, &mut b.ev, b.now);
    assert_eq!(left, queued >= blkback::service::MAX_EVENTS_PER_TURN, "{queued} were queued");
    let spent = b.xs.requests - r0;
    // One update of one device: a handful of reads (state keys, online), not one per event.
    assert!(spent <= 12, "{spent} xenstore requests for one turn's events");
    b.svc.process(&mut b.xs, &mut b.g, &mut b.ev, b.now);
    let done = good.complete(&mut b.g);
    assert_eq!(done.len(), 1, "the neighbour's read waited behind the flood");
    assert_eq!(done[0].data, data);
    // What is left is handled in later turns, and the service settles.
    b.settle();
    assert!(b.xs.events.is_empty());
    assert_eq!(b.write_read(&mut good, 8, &data), data);
}

/// A refused device whose directory the toolstack removes (no detach handshake) leaves no
/// watch behind (xenstored's watch quota is 128 per domain), and neither does a served one.
#[test]
fn devices_whose_directory_is_removed_leave_no_watch() {
    let mut b = Bed::new(vec![]);
    let watches0 = b.xs.watches.len();
    let (_, bad) = MockFrontend::toolstack_attach(&mut b.xs, 5, 51712, "ram", "w");
    let (_, keys) = MockFrontend::toolstack_attach(&mut b.xs, 6, 51712, "ram:1M", "w");
    b.xs.set(&format!("{keys}/frontend"), "/local/domain/0/device/vbd/51712");
    let mut good = b.attach(7, 51712, "ram:1M", "w");
    b.connect(&mut good);
    b.settle();
    assert_eq!(b.svc.devices().count(), 3);
    for be in [&bad, &keys, &good.be] {
        b.xs.remove_tree(be);
    }
    b.settle();
    assert_eq!(b.svc.devices().count(), 0);
    assert_eq!(b.xs.watches.len(), watches0, "watches left: {:?}", b.xs.watches);
    assert_eq!(b.g.counters().mapped_now, 0);
    assert_eq!(b.frames.live(), 0);
}

/// Persistent-grant pools come out of one domain-wide budget (the driver domain sizes it
/// from its heap): each connection reserves its pool when it connects, later ones get what
/// is left or none (and still work, mapping per request), and a reservation returns when
/// its frontend goes. Before: every connection kept up to 1056 mappings whatever the heap,
/// and about the 25th full pool exhausted a 4 MiB heap and aborted the domain.
#[test]
fn persistent_pools_share_one_budget() {
    use blkback::persistent::DEFAULT_CAP;
    let frames = FakeFrames::new(4096);
    let defaults = Defaults { persistent_budget: 3 * DEFAULT_CAP, ..Defaults::default() };
    let mut svc = Service::new(BACKEND, defaults, frames.clone(), vec![], PipeConnector::default());
    let mut xs = FakeXenStore::default();
    svc.start(&mut xs).unwrap();
    let mut b = Bed { xs, g: FakeGrants::new(), ev: FakeEvtchn::default(), frames, svc, now: 1_000_000_000 };
    b.settle();
    let cap = |b: &Bed, fe: &MockFrontend| {
        b.svc.device(&fe.be).and_then(|d| d.connection()).map(|c| c.persistent_cap()).expect("not connected")
    };
    let mut fes = Vec::new();
    for dom in 5..8 {
        let mut fe = b.attach(dom, 51712, "ram:1M", "w");
        b.connect(&mut fe);
        fes.push(fe);
    }
    // Half the budget at most for one frontend (a one-page ring of 256-segment requests
    // could keep 32 × 257 = 8,224 grants), then what is left, then none.
    let half = 3 * DEFAULT_CAP / 2;
    assert_eq!(cap(&b, &fes[0]), half);
    assert_eq!(cap(&b, &fes[1]), half);
    assert_eq!(cap(&b, &fes[2]), 0, "a pool beyond the budget");
    // The one without a pool still does I/O (persistent grants negotiated, mapped per request).
    let data = pattern(5, 3 * 4096);
    let mut third = fes.pop().unwrap();
    assert_eq!(b.write_read(&mut third, 0, &data), data);
    // The first goes: its reservation comes back for the next connection.
    let first = fes.remove(0);
    b.toolstack_detach(&first.be);
    first.set_state(&mut b.xs, XenbusState::Closed);
    b.settle();
    b.advance(LINGER_IDLE_NS);
    b.advance(REMOVE_GRACE_NS);
    assert!(b.svc.device(&first.be).is_none());
    let mut fourth = b.attach(9, 51712, "ram:1M", "w");
    b.connect(&mut fourth);
    assert_eq!(cap(&b, &fourth), half);
}

/// `xl block-detach` while a writer runs: Linux blkfront writes Closed at once but may
/// still put requests on the ring (what it had queued, dispatched when our responses
/// restart its queue). They are served; the connection is dropped only once idle, so no
/// request is left holding its bio (which blocked dom0's xenwatch in `del_gendisk` and
/// left the next `xl block-attach` of the same vdev in Initialising).
#[test]
fn a_frontend_that_closed_is_served_until_idle_then_dropped() {
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "ram:1M", "w");
    let be = fe.be.clone();
    b.connect(&mut fe);
    let data = pattern(4, 8192);
    assert_eq!(b.write_read(&mut fe, 0, &data), data);
    b.toolstack_detach(&be);
    fe.set_state(&mut b.xs, XenbusState::Closed);
    b.settle();
    assert!(b.svc.device(&be).is_some_and(|d| d.connection().is_some()), "dropped right after I/O");
    let late = fe.rw(&b.xs, &mut b.g, true, 64, 8192, Some(&data), 0);
    fe.push();
    b.now += LINGER_IDLE_NS / 2;
    b.settle();
    let done = fe.complete(&mut b.g);
    assert_eq!(done.iter().map(|d| (d.id, d.status)).collect::<Vec<_>>(), vec![(late, BLKIF_RSP_OKAY)]);
    assert_eq!(b.state(&be), Some("5"));
    // Idle now: dropped, Closed, then the directory goes after the grace.
    b.advance(LINGER_IDLE_NS);
    assert_eq!(b.state(&be), Some("6"));
    assert_eq!(b.g.counters().mapped_now, 0);
    b.advance(REMOVE_GRACE_NS);
    assert!(!b.xs.exists(&be));
}

/// A closed frontend that never goes idle (it keeps putting requests on its ring) is not
/// served for ever: after `LINGER_MAX_NS` it is dropped, what it left answered with
/// errors, and the detach completes.
#[test]
fn a_closed_frontend_that_never_goes_idle_is_dropped_after_the_linger_limit() {
    use blkback::service::LINGER_MAX_NS;
    let mut b = Bed::new(vec![]);
    let mut fe = b.attach(5, 51712, "ram:1M", "w");
    let be = fe.be.clone();
    b.connect(&mut fe);
    b.toolstack_detach(&be);
    fe.set_state(&mut b.xs, XenbusState::Closed);
    b.settle();
    let step = LINGER_IDLE_NS / 2;
    let mut served = 0;
    let mut t = 0;
    while t < LINGER_MAX_NS + LINGER_IDLE_NS && b.svc.device(&be).is_some_and(|d| d.connection().is_some()) {
        fe.read(&b.xs, &mut b.g, 0, 4096);
        fe.push();
        b.now += step;
        t += step;
        b.settle();
        served += fe.complete(&mut b.g).len();
    }
    assert!(b.svc.device(&be).is_none_or(|d| d.connection().is_none()), "still served after {t} ns");
    assert!((LINGER_MAX_NS..LINGER_MAX_NS + LINGER_IDLE_NS).contains(&t), "dropped after {t} ns");
    assert!(served >= 10, "only {served} requests served while lingering");
    assert_eq!(b.g.counters().mapped_now, 0);
    assert_eq!(b.state(&be), Some("6"));
}

mod local {
    //! `nvme:` targets: the service opens namespaces of the driver domain's own controllers
    //! (here the `nvme` crate's mock controller, which enforces the spec) through
    //! `LocalDisks`, and refuses the ones it does not have with a reason.
    use super::*;
    use blkback::store::local::NvmeDisks;
    use blkback::store::nvme::NvmeDevice;
    use nvme::testing::{Bus, MockController, MockNs};
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(1_000_000_000) };
    }

    fn now() -> u64 {
        NOW.with(Cell::get)
    }

    type Mock = Rc<RefCell<MockController>>;

    /// A bed whose driver domain owns one controller with namespaces of `blocks` 512-byte
    /// blocks each, brought up as the binary does at boot.
    fn bed(namespaces: &[u64]) -> (Bed, Mock) {
        let bus = Bus::new();
        let mut m = MockController::new(&bus, namespaces[0]);
        m.namespaces = namespaces.iter().map(|&b| MockNs::new(b, 9)).collect();
        let mock = Rc::new(RefCell::new(m));
        let dev = NvmeDevice::new(mock.clone(), bus.clone(), now);
        for _ in 0..100 {
            dev.borrow_mut().poll();
            NOW.with(|c| c.set(c.get() + 1_000_000));
        }
        assert_eq!(dev.borrow().controller().state(), nvme::State::Ready);
        let mut b = Bed::new(vec![]);
        // The IOMMU's view: a grant mapping is reachable at a bus address of its own.
        let local = NvmeDisks::new(vec![dev], move |m: &Rc<FakeMapping>| Some(bus.map(m.mem())));
        b.svc.set_local_disks(Box::new(local));
        (b, mock)
    }

    #[test]
    fn an_nvme_target_is_served_by_dma_into_the_frontends_pages_without_persistent_grants() {
        let (mut b, mock) = bed(&[8192, 2048]);
        let mut fe = b.attach(5, 51712, "nvme:0", "w");
        let mut fe2 = b.attach(6, 51712, "nvme:0/2", "w");
        b.connect(&mut fe);
        b.connect(&mut fe2);
        // Persistent grants are not offered: the device DMAs into the mapped pages, and a
        // persistent pool would only add blkfront's copy into its pages.
        assert_eq!(b.xs.get(&format!("{}/feature-persistent", fe.be)), Some("0"));
        assert_eq!(fe.sectors(&b.xs), 8192);
        assert_eq!(fe2.sectors(&b.xs), 2048);
        let data = pattern(3, 11 * 4096);
        assert_eq!(b.write_read(&mut fe, 100, &data), data);
        let other = pattern(4, 4096);
        assert_eq!(b.write_read(&mut fe2, 8, &other), other);
        let m = mock.borrow();
        assert_eq!(m.namespaces[0].data[100 * 512..100 * 512 + data.len()], data[..], "namespace 1");
        assert_eq!(m.namespaces[1].data[8 * 512..8 * 512 + 4096], other[..], "namespace 2");
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        drop(m);
        // Zero copy, in the published counters: the device moved the bytes, the CPU none.
        publish(&mut b);
        let dir = b.svc.device(&fe.be).expect("device").stats_dir();
        let n = |k: &str| b.xs.get(&format!("{dir}/{k}")).and_then(|v| v.parse::<u64>().ok());
        assert_eq!(n("cpu_bytes"), Some(0), "the CPU copied data");
        assert!(n("nvme_dma_bytes").unwrap_or(0) >= 2 * data.len() as u64, "{:?}", n("nvme_dma_bytes"));
        assert!(b.notes().iter().any(|n| matches!(n, Note::Info(s) if s.contains("NVMe controller 0 namespace 2"))));
    }

    #[test]
    fn nvme_targets_the_domain_does_not_have_are_refused_with_the_reason() {
        let (mut b, _) = bed(&[8192]);
        for (i, (params, why)) in [
            ("nvme:1", "no NVMe controller 1: the driver domain owns 1 (numbered from 0)"),
            ("nvme:0/3", "NVMe controller 0 has no namespace 3"),
            ("nvme:0/0", "bad NVMe target `0/0`"),
        ]
        .into_iter()
        .enumerate()
        {
            let fe = b.attach(5, 51712 + i as u32, params, "w");
            assert_eq!(b.state(&fe.be), Some("6"), "{params}");
            let err = b.xs.get(&format!("{}/hotplug-error", fe.be)).unwrap_or_default().to_string();
            assert!(err.contains(why), "{params}: {err}");
        }
        // A driver domain without controllers (PVH) says so.
        let mut b = Bed::new(vec![]);
        let fe = b.attach(5, 51712, "nvme:0", "w");
        let err = b.xs.get(&format!("{}/hotplug-error", fe.be)).unwrap_or_default().to_string();
        assert!(err.contains("no NVMe controller 0: the driver domain owns none"), "{err}");
    }
}
