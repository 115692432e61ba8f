use super::prelude::*;
use super::*;

/// How the mock frontend configures itself (what Linux blkfront would choose).
#[derive(Debug, Clone, Copy)]
pub struct FrontendOpts {
    pub abi: Abi,
    pub ring_page_order: u32,
    pub queues: u32,
    pub persistent: bool,
    /// Largest segment count it uses in one request (> 11: indirect if offered).
    pub max_segments: u16,
}

impl Default for FrontendOpts {
    fn default() -> Self {
        Self { abi: Abi::Native, ring_page_order: 0, queues: 1, persistent: false, max_segments: 11 }
    }
}

/// What the frontend expects back for a request.
#[derive(Debug, Clone)]
struct Shadow {
    op: u8,
    /// Data pages and their grants (released after the response unless persistent).
    pages: Vec<(MemPage, GrantRef)>,
    /// Indirect descriptor pages.
    ind: Vec<(MemPage, GrantRef)>,
    /// For reads: where the data is (page index, offset, len).
    layout: Vec<(usize, usize, usize)>,
}

/// A completed request as the frontend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: u64,
    pub op: u8,
    pub status: i16,
    /// READ data.
    pub data: Vec<u8>,
}

/// A Linux-like blkfront in domain `dom`.
#[derive(Debug)]
pub struct MockFrontend {
    pub dom: DomId,
    pub devid: u32,
    pub fe: String,
    pub be: String,
    pub opts: FrontendOpts,
    rings: Vec<FrontRing<MemPage>>,
    pub ring_pages: Vec<Vec<MemPage>>,
    ring_grefs: Vec<GrantRef>,
    pub ports: Vec<EvtchnPort>,
    /// Outstanding requests by id; a hostile frontend may reuse an id, so several.
    shadow: BTreeMap<u64, Vec<(usize, Shadow)>>,
    next_id: u64,
    /// Granted pages kept for reuse (persistent grants).
    pool: Vec<(MemPage, GrantRef)>,
    next_queue: usize,
    /// Grants the backend still had mapped when the frontend tried to end access.
    pub busy_grants: u64,
    /// Responses whose id or operation did not match an outstanding request.
    pub bogus_responses: u64,
    /// (id, operation, status, why) of each.
    pub bogus: Vec<(u64, u8, i16, &'static str)>,
}

impl MockFrontend {
    /// What libxl does for `xl block-attach <dom> ... backend=<dd>`: both directories.
    pub fn toolstack_attach(
        xs: &mut FakeXenStore,
        dom: DomId,
        devid: u32,
        params: &str,
        mode: &str,
    ) -> (String, String) {
        let fe = format!("/local/domain/{dom}/device/vbd/{devid}");
        let be = format!("/local/domain/{BACKEND}/backend/vbd/{dom}/{devid}");
        for (k, v) in [
            ("frontend", fe.as_str()),
            ("frontend-id", &dom.to_string()),
            ("online", "1"),
            ("removable", "0"),
            ("bootable", "1"),
            ("state", "1"),
            ("dev", "xvdb"),
            ("type", "phy"),
            ("mode", mode),
            ("device-type", "disk"),
            ("params", params),
        ] {
            xs.set(&format!("{be}/{k}"), v);
        }
        for (k, v) in [
            ("backend", be.as_str()),
            ("backend-id", &BACKEND.to_string()),
            ("state", "1"),
            ("virtual-device", &devid.to_string()),
            ("device-type", "disk"),
        ] {
            xs.set(&format!("{fe}/{k}"), v);
        }
        // libxl writes both directories in one transaction; its commit fires the watches
        // of every node it created, the device directory included.
        xs.touch(&be);
        (fe, be)
    }

    pub fn new(dom: DomId, devid: u32, fe: String, be: String, opts: FrontendOpts) -> Self {
        Self {
            dom,
            devid,
            fe,
            be,
            opts,
            rings: Vec::new(),
            ring_pages: Vec::new(),
            ring_grefs: Vec::new(),
            ports: Vec::new(),
            shadow: BTreeMap::new(),
            next_id: 0x1000,
            pool: Vec::new(),
            next_queue: 0,
            busy_grants: 0,
            bogus_responses: 0,
            bogus: Vec::new(),
        }
    }

    pub fn backend_state(&self, xs: &FakeXenStore) -> Option<u32> {
        xs.get(&format!("{}/state", self.be)).and_then(crate::frontend_keys::parse_u32)
    }

    fn be_u32(&self, xs: &FakeXenStore, k: &str) -> u32 {
        xs.get(&format!("{}/{k}", self.be)).and_then(crate::frontend_keys::parse_u32).unwrap_or(0)
    }

    /// blkfront's `talk_to_blkback`: rings, grants, event channels, keys, Initialised.
    pub fn connect(&mut self, xs: &mut FakeXenStore, g: &mut FakeGrants, ev: &mut FakeEvtchn) {
        let order = self.opts.ring_page_order.min(self.be_u32(xs, "max-ring-page-order"));
        let nq = self.opts.queues.min(self.be_u32(xs, "multi-queue-max-queues").max(1));
        self.opts.ring_page_order = order;
        self.opts.queues = nq;
        let fe = self.fe.clone();
        for q in 0..nq {
            let dir = if nq == 1 { fe.clone() } else { format!("{fe}/queue-{q}") };
            let pages: Vec<MemPage> = (0..(1u32 << order)).map(|_| MemPage::new()).collect();
            let mut refs = Vec::new();
            for (i, p) in pages.iter().enumerate() {
                let r = g.grant(self.dom, p, BACKEND, false);
                refs.push(r);
                let key = if order == 0 { String::from("ring-ref") } else { format!("ring-ref{i}") };
                xs.set(&format!("{dir}/{key}"), &r.to_string());
            }
            self.ring_grefs.extend(&refs);
            let ring =
                FrontRing::init(pages.clone(), self.opts.abi.slot_size()).unwrap_or_else(|_| panic!("ring init"));
            self.rings.push(ring);
            self.ring_pages.push(pages);
            let port = ev.alloc_unbound(self.dom);
            self.ports.push(port);
            xs.set(&format!("{dir}/event-channel"), &port.to_string());
        }
        if order > 0 {
            xs.set(&format!("{fe}/ring-page-order"), &order.to_string());
        }
        if nq > 1 {
            xs.set(&format!("{fe}/multi-queue-num-queues"), &nq.to_string());
        }
        xs.set(&format!("{fe}/protocol"), if self.opts.abi == Abi::X86_32 { "x86_32-abi" } else { "x86_64-abi" });
        xs.set(&format!("{fe}/feature-persistent"), if self.opts.persistent { "1" } else { "0" });
        xs.set(&format!("{fe}/state"), "3");
    }

    /// blkfront sees the backend Connected and goes Connected too.
    pub fn connected(&mut self, xs: &mut FakeXenStore) -> bool {
        if self.backend_state(xs) == Some(4) {
            xs.set(&format!("{}/state", self.fe), "4");
            true
        } else {
            false
        }
    }

    pub fn set_state(&self, xs: &mut FakeXenStore, s: XenbusState) {
        xs.set(&format!("{}/state", self.fe), &(s as u32).to_string());
    }

    /// blkfront's teardown: ends access to rings (refused while the backend still maps
    /// them) and forgets its rings; returns how many grants were still mapped.
    pub fn release_rings(&mut self, g: &mut FakeGrants) -> usize {
        let mut busy = 0;
        for r in core::mem::take(&mut self.ring_grefs) {
            if g.end_access(self.dom, r).is_err() {
                busy += 1;
            }
        }
        for (_, r) in core::mem::take(&mut self.pool) {
            if g.end_access(self.dom, r).is_err() {
                busy += 1;
            }
        }
        self.rings.clear();
        self.ring_pages.clear();
        self.ports.clear();
        self.shadow.clear();
        busy
    }

    pub fn sectors(&self, xs: &FakeXenStore) -> u64 {
        xs.get(&format!("{}/sectors", self.be)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    fn data_page(&mut self, g: &mut FakeGrants, readonly: bool) -> (MemPage, GrantRef) {
        if self.opts.persistent {
            if let Some(p) = self.pool.pop() {
                return p;
            }
            let p = MemPage::new();
            let r = g.grant(self.dom, &p, BACKEND, false);
            return (p, r);
        }
        let p = MemPage::new();
        let r = g.grant(self.dom, &p, BACKEND, readonly);
        (p, r)
    }

    fn release(&mut self, g: &mut FakeGrants, pages: Vec<(MemPage, GrantRef)>) {
        for (p, r) in pages {
            if self.opts.persistent {
                self.pool.push((p, r));
            } else if g.end_access(self.dom, r).is_err() {
                self.busy_grants += 1;
            }
        }
    }

    fn queue(&mut self) -> usize {
        let q = self.next_queue % self.rings.len().max(1);
        self.next_queue = self.next_queue.wrapping_add(1);
        q
    }

    /// The queue the next `rw` or `simple` request goes to (round robin, as blkfront's
    /// blk-mq queues are picked by CPU).
    pub fn next_queue(&self) -> usize {
        self.next_queue % self.rings.len().max(1)
    }

    /// Number of request slots free on queue `q`.
    pub fn free_slots(&self, q: usize) -> u32 {
        self.rings.get(q).map_or(0, FrontRing::free)
    }

    fn uses_indirect(&self, xs: &FakeXenStore, nsegs: usize) -> bool {
        nsegs > BLKIF_MAX_SEGMENTS_PER_REQUEST
            && u32::from(self.opts.max_segments) > 11
            && self.be_u32(xs, "feature-max-indirect-segments") > 11
    }

    /// Queues a READ or WRITE of `len` bytes at `sector` (one request: direct up to 11
    /// pages, indirect above if the backend offers it). `data` is the WRITE payload.
    /// `page_off` shifts the data within the first page (sector aligned).
    pub fn rw(
        &mut self,
        xs: &FakeXenStore,
        g: &mut FakeGrants,
        write: bool,
        sector: u64,
        len: usize,
        data: Option<&[u8]>,
        page_off: usize,
    ) -> u64 {
        let op = if write { BLKIF_OP_WRITE } else { BLKIF_OP_READ };
        self.request(xs, g, op, sector, len, data, page_off)
    }

    /// Queues a WRITE with flush semantics: `op` is `BLKIF_OP_WRITE_BARRIER` or
    /// `BLKIF_OP_FLUSH_DISKCACHE` with data, as Linux blkfront sends a `REQ_PREFLUSH` /
    /// `REQ_FUA` write (`blkif_queue_rw_req`).
    pub fn write_as(&mut self, xs: &FakeXenStore, g: &mut FakeGrants, op: u8, sector: u64, data: &[u8]) -> u64 {
        self.request(xs, g, op, sector, data.len(), Some(data), 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        xs: &FakeXenStore,
        g: &mut FakeGrants,
        op: u8,
        sector: u64,
        len: usize,
        data: Option<&[u8]>,
        page_off: usize,
    ) -> u64 {
        let write = op != BLKIF_OP_READ;
        let mut layout = Vec::new();
        let mut left = len;
        let mut off = page_off;
        while left > 0 {
            let n = (PAGE - off).min(left);
            layout.push((layout.len(), off, n));
            left -= n;
            off = 0;
        }
        let mut pages = Vec::new();
        let mut segs = Vec::new();
        let mut pos = 0;
        for &(_, o, n) in &layout {
            let (p, r) = self.data_page(g, write);
            if let Some(d) = data {
                p.set(o, &d[pos..pos + n]);
            }
            pos += n;
            segs.push(BlkifRequestSegment {
                gref: r,
                first_sect: (o / 512) as u8,
                last_sect: ((o + n) / 512 - 1) as u8,
            });
            pages.push((p, r));
        }
        let id = self.next_id;
        self.next_id += 1;
        let q = self.queue();
        let mut ind = Vec::new();
        let raw = if self.uses_indirect(xs, segs.len()) {
            let mut grefs = [0u32; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
            for (i, chunk) in segs.chunks(BLKIF_SEGS_PER_INDIRECT_FRAME).enumerate() {
                let (p, r) = self.data_page(g, true);
                for (j, s) in chunk.iter().enumerate() {
                    p.set(j * 8, &encode_segment(s));
                }
                grefs[i] = r;
                ind.push((p, r));
            }
            RawRequest {
                operation: BLKIF_OP_INDIRECT,
                id,
                body: RawBody::Indirect { indirect_op: op, nr_segments: segs.len() as u16, sector, handle: 0, grefs },
            }
        } else {
            let mut seg = [BlkifRequestSegment::default(); 11];
            for (d, s) in seg.iter_mut().zip(&segs) {
                *d = *s;
            }
            RawRequest {
                operation: op,
                id,
                body: RawBody::Rw { nr_segments: segs.len() as u8, handle: 0, sector, seg },
            }
        };
        self.put(q, &encode_request(self.opts.abi, &raw));
        self.shadow_insert(id, (q, Shadow { op, pages, ind, layout }));
        id
    }

    /// Queues a WRITE of `data` at `sector` (one request, as `rw`); returns its id.
    pub fn write(&mut self, xs: &FakeXenStore, g: &mut FakeGrants, sector: u64, data: &[u8]) -> u64 {
        self.rw(xs, g, true, sector, data.len(), Some(data), 0)
    }

    /// Queues a READ of `len` bytes at `sector` (one request, as `rw`); returns its id.
    pub fn read(&mut self, xs: &FakeXenStore, g: &mut FakeGrants, sector: u64, len: usize) -> u64 {
        self.rw(xs, g, false, sector, len, None, 0)
    }

    /// Queues FLUSH_DISKCACHE (no data) or DISCARD.
    pub fn simple(&mut self, operation: u8, sector: u64, nr_sectors: u64, secure: bool) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let body = if operation == BLKIF_OP_DISCARD {
            RawBody::Discard { flag: if secure { BLKIF_DISCARD_SECURE } else { 0 }, handle: 0, sector, nr_sectors }
        } else {
            RawBody::Rw { nr_segments: 0, handle: 0, sector, seg: [BlkifRequestSegment::default(); 11] }
        };
        let q = self.queue();
        self.put(q, &encode_request(self.opts.abi, &RawRequest { operation, id, body }));
        self.shadow_insert(id, (q, Shadow { op: operation, pages: Vec::new(), ind: Vec::new(), layout: Vec::new() }));
        id
    }

    /// Queues raw slot bytes (hostile). The response is matched by `id` = `expect_id`,
    /// operation `expect_op`.
    pub fn raw(&mut self, q: usize, slot: &[u8; MAX_SLOT], expect_id: u64, expect_op: u8) -> u32 {
        let idx = self.put(q, slot);
        self.shadow_insert(
            expect_id,
            (q, Shadow { op: expect_op, pages: Vec::new(), ind: Vec::new(), layout: Vec::new() }),
        );
        idx
    }

    /// Writes a slot on queue `q`. A test that fills a ring further than blkfront would
    /// (`RING_FULL`) is wrong, not the backend: that panics.
    fn put(&mut self, q: usize, slot: &[u8; MAX_SLOT]) -> u32 {
        let abi = self.opts.abi;
        let ring = self.rings.get_mut(q).expect("mock blkfront: no such queue");
        match ring.put_request(&slot[..abi.slot_size()]) {
            Ok(Some(idx)) => idx,
            Ok(None) => panic!("mock blkfront: queue {q} is full (check free_slots first)"),
            Err(e) => panic!("mock blkfront: ring page: {e}"),
        }
    }

    /// Publishes queued requests on every queue.
    pub fn push(&mut self) {
        for r in &mut self.rings {
            let _ = r.push_requests_and_check_notify();
        }
    }

    /// Every response waiting on queue `q`, as (id, operation, status), then
    /// `RING_FINAL_CHECK_FOR_RESPONSES`. A backend whose `rsp_prod` runs ahead of our
    /// requests broke the protocol: that panics (the mock enforces blkfront's view).
    fn take_responses(&mut self, q: usize) -> Vec<(u64, u8, i16)> {
        let abi = self.opts.abi;
        let mut out = Vec::new();
        let Some(ring) = self.rings.get_mut(q) else { return out };
        loop {
            let mut b = [0u8; 16];
            match ring.take_response(&mut b[..abi.rsp_size()]) {
                Ok(Some(_)) => out.push(decode_response(abi, &b[..abi.rsp_size()])),
                Ok(None) => match ring.final_check_for_responses() {
                    Ok(true) => {}
                    Ok(false) => return out,
                    Err(e) => panic!("mock blkfront: backend broke the ring: {e}"),
                },
                Err(e) => panic!("mock blkfront: backend broke the ring: {e}"),
            }
        }
    }

    pub fn ring(&mut self, q: usize) -> Option<&mut FrontRing<MemPage>> {
        self.rings.get_mut(q)
    }

    /// Collects responses, copies READ data out, releases grants.
    pub fn complete(&mut self, g: &mut FakeGrants) -> Vec<Done> {
        let mut out = Vec::new();
        for q in 0..self.rings.len() {
            let rsps = self.take_responses(q);
            for (id, op, status) in rsps {
                // Each response answers one distinct outstanding request with this id,
                // queue and operation.
                let entry = self.shadow.get_mut(&id).and_then(|v| {
                    let i = v.iter().position(|(sq, sh)| *sq == q && sh.op == op)?;
                    Some(v.remove(i))
                });
                if self.shadow.get(&id).is_some_and(Vec::is_empty) {
                    self.shadow.remove(&id);
                }
                let Some((_, sh)) = entry else {
                    self.bogus_responses += 1;
                    self.bogus.push((id, op, status, "no outstanding request with this id, queue and operation"));
                    continue;
                };
                let mut data = Vec::new();
                if sh.op == BLKIF_OP_READ && status == BLKIF_RSP_OKAY {
                    for &(i, o, n) in &sh.layout {
                        data.extend(sh.pages[i].0.get(o, n));
                    }
                }
                self.release(g, sh.pages);
                self.release(g, sh.ind);
                out.push(Done { id, op, status, data });
            }
        }
        out
    }

    fn shadow_insert(&mut self, id: u64, v: (usize, Shadow)) {
        self.shadow.entry(id).or_default().push(v);
    }

    pub fn outstanding(&self) -> usize {
        self.shadow.values().map(Vec::len).sum()
    }
}
