//! Counters of one connection, published like Linux blkback's `statistics/` directory plus
//! what this backend adds (grant work, bytes, errors by cause).
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::request::Invalid;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Linux's names.
    pub rd_req: u64,
    pub wr_req: u64,
    /// Out of resources: a pass stopped with requests left on the ring.
    pub oo_req: u64,
    pub f_req: u64,
    pub ds_req: u64,
    pub rd_sect: u64,
    pub wr_sect: u64,
    /// Ours.
    pub indirect_req: u64,
    pub passes: u64,
    pub map_calls: u64,
    pub map_ops: u64,
    pub unmap_calls: u64,
    pub unmap_ops: u64,
    pub copy_calls: u64,
    pub copy_ops: u64,
    pub persistent_hits: u64,
    pub persistent_misses: u64,
    pub cpu_bytes: u64,
    pub notifications: u64,
    pub err_unsupported: u64,
    pub err_segments: u64,
    pub err_range: u64,
    pub err_read_only: u64,
    pub err_grant: u64,
    pub err_io: u64,
    /// Requests left on the ring for a later turn because the heap had no room for them.
    pub heap_waits: u64,
    /// Requests failed because an allocation for them failed (never expected: the heap
    /// room is checked first; the domain goes on either way).
    pub err_nomem: u64,
    /// The swap path (0 elsewhere): `SwapMode::code` (1 exchanging; 2 no hypervisor op, 3
    /// frontend did not allow it, 4 frontend refused by Xen, 5 no scratch frames).
    pub swap_mode: u64,
    pub swap_calls: u64,
    /// Data segments moved by frame exchange.
    pub swapped: u64,
    /// Of `swapped`: whole-page WRITEs exchanged with the disk's own frame (zero-copy).
    pub swap_direct: u64,
    /// Segments copied after the hypervisor refused their exchange.
    pub swap_fallbacks: u64,
    /// Scratch frames zeroed before going to a frontend other than the one whose data
    /// they held.
    pub swap_zeroed: u64,
}

impl Stats {
    pub fn count_invalid(&mut self, e: Invalid) {
        let c = match e {
            Invalid::Unsupported(_) | Invalid::SecureDiscardUnsupported | Invalid::BadIndirectOp(_) => {
                &mut self.err_unsupported
            }
            Invalid::BadSegmentCount(_) | Invalid::FirstAfterLast { .. } | Invalid::BeyondPage { .. } => {
                &mut self.err_segments
            }
            Invalid::BeyondCapacity => &mut self.err_range,
            Invalid::ReadOnly => &mut self.err_read_only,
            Invalid::BadIndirectPage | Invalid::BadGrant => &mut self.err_grant,
        };
        *c = c.saturating_add(1);
    }

    /// All requests refused or failed.
    pub fn errors(&self) -> u64 {
        [
            self.err_unsupported,
            self.err_segments,
            self.err_range,
            self.err_read_only,
            self.err_grant,
            self.err_io,
            self.err_nomem,
        ]
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// Key/value pairs for `<backend>/statistics/`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let v = |x: u64| format!("{x}");
        let mut out = alloc::vec![
            ("rd_req", v(self.rd_req)),
            ("wr_req", v(self.wr_req)),
            ("oo_req", v(self.oo_req)),
            ("f_req", v(self.f_req)),
            ("ds_req", v(self.ds_req)),
            ("rd_sect", v(self.rd_sect)),
            ("wr_sect", v(self.wr_sect)),
            ("indirect_req", v(self.indirect_req)),
            ("map_calls", v(self.map_calls)),
            ("map_ops", v(self.map_ops)),
            ("unmap_calls", v(self.unmap_calls)),
            ("copy_calls", v(self.copy_calls)),
            // Bytes our CPU moved between a frontend's pages and the store (0 on a store
            // the device DMAs for: the zero-copy proof of `nvme-dd`).
            ("cpu_bytes", v(self.cpu_bytes)),
            ("persistent_hits", v(self.persistent_hits)),
            ("heap_waits", v(self.heap_waits)),
            ("errors", v(self.errors())),
        ];
        // Errors by cause, only the causes that happened (each key counts against the driver
        // domain's xenstore quota).
        for (k, n) in [
            ("err_unsupported", self.err_unsupported),
            ("err_segments", self.err_segments),
            ("err_range", self.err_range),
            ("err_read_only", self.err_read_only),
            ("err_grant", self.err_grant),
            ("err_io", self.err_io),
            ("err_nomem", self.err_nomem),
        ] {
            if n != 0 {
                out.push((k, v(n)));
            }
        }
        if self.swap_mode != 0 {
            out.extend([
                ("swap_mode", v(self.swap_mode)),
                ("swap_calls", v(self.swap_calls)),
                ("swapped", v(self.swapped)),
                ("swap_direct", v(self.swap_direct)),
                ("swap_fallbacks", v(self.swap_fallbacks)),
                ("swap_zeroed", v(self.swap_zeroed)),
                ("copy_ops", v(self.copy_ops)),
            ]);
        }
        out
    }
}
