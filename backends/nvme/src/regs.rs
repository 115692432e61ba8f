//! BAR0's registers ("Controller Registers", NVMe over PCIe) and their fields.

/// Controller Capabilities (64-bit).
pub const CAP: usize = 0x00;
/// Version.
pub const VS: usize = 0x08;
/// Interrupt Mask Set / Clear.
pub const INTMS: usize = 0x0c;
/// Interrupt Mask Clear.
pub const INTMC: usize = 0x10;
/// Controller Configuration.
pub const CC: usize = 0x14;
/// Controller Status.
pub const CSTS: usize = 0x1c;
/// Admin Queue Attributes.
pub const AQA: usize = 0x24;
/// Admin Submission Queue base (64-bit).
pub const ASQ: usize = 0x28;
/// Admin Completion Queue base (64-bit).
pub const ACQ: usize = 0x30;
/// The first doorbell.
pub const DOORBELLS: usize = 0x1000;

/// `CC.EN`.
pub const CC_EN: u32 = 1;
/// `CC.IOSQES` = 6 (64-byte submission entries) and `CC.IOCQES` = 4 (16-byte completion
/// entries), `CC.MPS` = 0 (4 KiB pages), `CC.CSS` = 0 (NVM command set), `CC.AMS` = 0.
pub const CC_CONFIG: u32 = (6 << 16) | (4 << 20);
/// `CSTS.RDY`.
pub const CSTS_RDY: u32 = 1;
/// `CSTS.CFS`: controller fatal status.
pub const CSTS_CFS: u32 = 1 << 1;

/// The fields of CAP the driver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// Maximum Queue Entries Supported (1's based here: entries, not entries - 1).
    pub mqes: u32,
    /// How long the controller may take to become ready or not ready, in ns (CAP.TO is in
    /// 500 ms units).
    pub timeout_ns: u64,
    /// Doorbell stride in bytes (4 << CAP.DSTRD).
    pub doorbell_stride: usize,
    /// Smallest memory page size, bytes (2 ^ (12 + CAP.MPSMIN)).
    pub mps_min: u64,
    /// Largest memory page size, bytes.
    pub mps_max: u64,
    /// The NVM command set is supported (CAP.CSS bit 0).
    pub nvm: bool,
}

impl Cap {
    /// Decodes CAP; the fields are bounded by their widths, so any value decodes.
    pub fn decode(v: u64) -> Self {
        let field = |shift: u32, bits: u32| (v >> shift) & (1u64 << bits).wrapping_sub(1);
        Cap {
            mqes: u32::try_from(field(0, 16)).unwrap_or(0).saturating_add(1),
            timeout_ns: field(24, 8).saturating_mul(500_000_000),
            doorbell_stride: 4usize << field(32, 4),
            mps_min: 4096u64 << field(48, 4),
            mps_max: 4096u64 << field(52, 4),
            nvm: field(37, 8) & 1 != 0,
        }
    }

    /// The offset of queue `qid`'s submission tail doorbell.
    pub fn sq_doorbell(&self, qid: u16) -> usize {
        DOORBELLS.saturating_add(usize::from(qid).saturating_mul(2).saturating_mul(self.doorbell_stride))
    }

    /// The offset of queue `qid`'s completion head doorbell.
    pub fn cq_doorbell(&self, qid: u16) -> usize {
        self.sq_doorbell(qid).saturating_add(self.doorbell_stride)
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn cap_fields_and_doorbells() {
        // MQES 1023, TO 30 (15 s), DSTRD 1 (8 bytes), CSS NVM, MPSMIN 0, MPSMAX 4.
        let v = 1023 | (30 << 24) | (1u64 << 32) | (1u64 << 37) | (4u64 << 52);
        let c = Cap::decode(v);
        assert_eq!(c.mqes, 1024);
        assert_eq!(c.timeout_ns, 15_000_000_000);
        assert_eq!(c.doorbell_stride, 8);
        assert_eq!((c.mps_min, c.mps_max), (4096, 65536));
        assert!(c.nvm);
        assert_eq!(c.sq_doorbell(0), 0x1000);
        assert_eq!(c.cq_doorbell(0), 0x1008);
        assert_eq!(c.sq_doorbell(1), 0x1010);
        assert_eq!(c.cq_doorbell(1), 0x1018);
        // Any value decodes, bounded.
        let all = Cap::decode(u64::MAX);
        assert_eq!(all.mqes, 65536);
        assert_eq!(all.doorbell_stride, 4 << 15);
    }
}
