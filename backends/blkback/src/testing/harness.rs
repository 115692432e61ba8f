use super::prelude::*;
use super::*;

/// The backend's store in tests.
pub type TestStore = RamStore<Vec<u8>, Rc<FakeMapping>>;
pub type TestDevice = Device<FakeMapping, TestStore>;

/// A fake hypervisor with a backend device per frontend.
#[derive(Debug, Default)]
pub struct Harness {
    pub xs: FakeXenStore,
    pub g: FakeGrants,
    pub ev: FakeEvtchn,
}

impl Harness {
    pub fn new() -> Self {
        Self { xs: FakeXenStore::default(), g: FakeGrants::new(), ev: FakeEvtchn::default() }
    }

    /// libxl attaches a `size`-byte RAM disk to `dom`; returns the backend device (probed:
    /// InitWait) and the frontend.
    pub fn attach(
        &mut self,
        dom: DomId,
        devid: u32,
        size: usize,
        read_only: bool,
        cfg: DeviceConfig,
        opts: FrontendOpts,
    ) -> (TestDevice, MockFrontend) {
        let store = RamStore::new(vec![0u8; size], read_only);
        self.attach_store(dom, devid, store, if read_only { "r" } else { "w" }, cfg, opts)
    }

    /// `attach` with any store.
    pub fn attach_store<S: crate::store::Store<Rc<FakeMapping>>>(
        &mut self,
        dom: DomId,
        devid: u32,
        store: S,
        mode: &str,
        cfg: DeviceConfig,
        opts: FrontendOpts,
    ) -> (Device<FakeMapping, S>, MockFrontend) {
        let (fe, be) = MockFrontend::toolstack_attach(&mut self.xs, dom, devid, "ram", mode);
        let mut dev = Device::new(&mut self.xs, &be, crate::device::Backing::Store(store), cfg);
        assert_eq!(dev.refused(), None, "device refused");
        dev.watch(&mut self.xs, &be).unwrap_or_else(|e| panic!("watch: {e}"));
        dev.update(&mut self.xs, &mut self.g, &mut self.ev).unwrap_or_else(|e| panic!("probe: {e}"));
        (dev, MockFrontend::new(dom, devid, fe, be, opts))
    }

    /// Runs the handshake to Connected on both sides.
    pub fn connect<S: crate::store::Store<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
        fe: &mut MockFrontend,
    ) -> bool {
        fe.connect(&mut self.xs, &mut self.g, &mut self.ev);
        let _ = dev.update(&mut self.xs, &mut self.g, &mut self.ev);
        let ok = fe.connected(&mut self.xs);
        let _ = dev.update(&mut self.xs, &mut self.g, &mut self.ev);
        ok
    }

    /// Pushes the frontend's requests, runs the backend, collects responses.
    pub fn run<S: crate::store::Store<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
        fe: &mut MockFrontend,
    ) -> Vec<Done> {
        fe.push();
        let mut out = Vec::new();
        for _ in 0..64 {
            let r = dev.process(&mut self.xs, &mut self.g, &mut self.ev);
            out.extend(fe.complete(&mut self.g));
            if !r.more && fe.outstanding() == 0 {
                break;
            }
            if !r.more && r.requests == 0 {
                break;
            }
        }
        out
    }

    pub fn update<S: crate::store::Store<Rc<FakeMapping>>>(
        &mut self,
        dev: &mut Device<FakeMapping, S>,
    ) -> crate::device::UpdateOutcome {
        dev.update(&mut self.xs, &mut self.g, &mut self.ev).unwrap_or_default()
    }
}

/// Deterministic test data.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
