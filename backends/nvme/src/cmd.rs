//! Submission and completion queue entries, and the identify data the driver reads.
//!
//! A submission entry is 64 bytes (`CC.IOSQES` = 6), a completion 16 (`CC.IOCQES` = 4);
//! both little-endian. Completions come from the device: [`Completion::decode`] takes any
//! 16 bytes, and the queue checks the decoded values against what it submitted.
use core::fmt;

/// Admin opcodes.
pub mod admin {
    /// Delete I/O Submission Queue.
    pub const DELETE_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_SQ: u8 = 0x01;
    /// Delete I/O Completion Queue.
    pub const DELETE_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
}

/// NVM command set opcodes.
pub mod nvm {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DSM: u8 = 0x09;
}

/// Identify CNS values.
pub const CNS_NAMESPACE: u32 = 0x00;
/// Identify Controller.
pub const CNS_CONTROLLER: u32 = 0x01;
/// Set Features: Number of Queues.
pub const FEAT_NUM_QUEUES: u32 = 0x07;

/// One submission queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Command {
    /// Opcode.
    pub opcode: u8,
    /// Command identifier (the queue picks it).
    pub cid: u16,
    /// Namespace.
    pub nsid: u32,
    /// Data pointer: PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2, or the PRP list's address.
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub cdw: [u32; 6],
}

impl Command {
    /// The 64 bytes on the queue.
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let dw0 = u32::from(self.opcode) | (u32::from(self.cid) << 16);
        put32(&mut b, 0, dw0);
        put32(&mut b, 4, self.nsid);
        put64(&mut b, 24, self.prp1);
        put64(&mut b, 32, self.prp2);
        for (i, v) in self.cdw.iter().enumerate() {
            put32(&mut b, 40usize.saturating_add(i.saturating_mul(4)), *v);
        }
        b
    }

    /// The entry back from its bytes (the mock controller reads what the driver wrote).
    pub fn decode(b: &[u8; 64]) -> Self {
        let dw0 = get32(b, 0);
        let mut cdw = [0u32; 6];
        for (i, v) in cdw.iter_mut().enumerate() {
            *v = get32(b, 40usize.saturating_add(i.saturating_mul(4)));
        }
        Command {
            opcode: (dw0 & 0xff) as u8,
            cid: (dw0 >> 16) as u16,
            nsid: get32(b, 4),
            prp1: get64(b, 24),
            prp2: get64(b, 32),
            cdw,
        }
    }

    /// FUSE and PSDT of DW0 (must be 0: no fused operations, PRPs not SGLs).
    pub fn flags_of(b: &[u8; 64]) -> u32 {
        (get32(b, 0) >> 8) & 0xff
    }
}

/// A completion's status field (DW3 bits 31:17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Status Code Type (0 generic, 1 command specific, 2 media and data integrity, 3 path).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry.
    pub dnr: bool,
}

impl Status {
    /// Successful completion.
    pub const SUCCESS: Status = Status { sct: 0, sc: 0, dnr: false };

    /// Whether the command succeeded.
    pub fn ok(self) -> bool {
        self.sct == 0 && self.sc == 0
    }

    fn from_bits(v: u16) -> Self {
        // v = DW3 >> 17: SC bits 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14.
        Status { sc: (v & 0xff) as u8, sct: ((v >> 8) & 0x7) as u8, dnr: v & (1 << 14) != 0 }
    }

    fn bits(self) -> u16 {
        u16::from(self.sc) | (u16::from(self.sct & 7) << 8) | (u16::from(self.dnr) << 14)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (self.sct, self.sc) {
            (0, 0x00) => "success",
            (0, 0x01) => "invalid opcode",
            (0, 0x02) => "invalid field",
            (0, 0x04) => "data transfer error",
            (0, 0x06) => "internal error",
            (0, 0x07) => "aborted (requested)",
            (0, 0x0b) => "invalid namespace",
            (0, 0x80) => "LBA out of range",
            (0, 0x81) => "capacity exceeded",
            (1, 0x01) => "invalid queue identifier",
            (1, 0x02) => "invalid queue size",
            (2, _) => "media error",
            _ => "error",
        };
        write!(f, "{name} (sct {}, sc {:#04x}{})", self.sct, self.sc, if self.dnr { ", do not retry" } else { "" })
    }
}

/// One completion queue entry, decoded (not yet checked against the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Command specific (Set Features Number of Queues: the queues allocated).
    pub dw0: u32,
    /// The submission queue's head as the controller saw it.
    pub sq_head: u16,
    /// The submission queue this completes a command of.
    pub sq_id: u16,
    /// The command identifier.
    pub cid: u16,
    /// The phase tag.
    pub phase: bool,
    /// The status.
    pub status: Status,
}

impl Completion {
    /// Decodes 16 bytes as written by the device (any bytes decode).
    pub fn decode(b: &[u8; 16]) -> Self {
        let dw2 = get32(b, 8);
        let dw3 = get32(b, 12);
        Completion {
            dw0: get32(b, 0),
            sq_head: (dw2 & 0xffff) as u16,
            sq_id: (dw2 >> 16) as u16,
            cid: (dw3 & 0xffff) as u16,
            phase: dw3 & (1 << 16) != 0,
            status: Status::from_bits((dw3 >> 17) as u16),
        }
    }

    /// The 16 bytes (the mock controller writes them).
    pub fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        put32(&mut b, 0, self.dw0);
        put32(&mut b, 8, u32::from(self.sq_head) | (u32::from(self.sq_id) << 16));
        let dw3 = u32::from(self.cid) | (u32::from(self.phase) << 16) | (u32::from(self.status.bits()) << 17);
        put32(&mut b, 12, dw3);
        b
    }
}

/// What the driver needs of Identify Controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyController {
    /// Maximum Data Transfer Size as a power of two of the minimum page size (0: none).
    pub mdts: u8,
    /// Number of namespaces.
    pub nn: u32,
    /// Optional NVM commands: Dataset Management (deallocate).
    pub dsm: bool,
    /// Optional NVM commands: Write Zeroes.
    pub write_zeroes: bool,
    /// A volatile write cache is present (FLUSH means something).
    pub vwc: bool,
}

impl IdentifyController {
    /// From the 4 KiB identify page (the device's bytes: any decode).
    pub fn decode(b: &[u8]) -> Self {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let oncs = u16::from(at(520)) | (u16::from(at(521)) << 8);
        IdentifyController {
            mdts: at(77),
            nn: u32::from_le_bytes([at(516), at(517), at(518), at(519)]),
            dsm: oncs & (1 << 2) != 0,
            write_zeroes: oncs & (1 << 3) != 0,
            vwc: at(525) & 1 != 0,
        }
    }
}

/// What the driver needs of Identify Namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Size in logical blocks.
    pub nsze: u64,
    /// log2 of the logical block size in use (9: 512 bytes, 12: 4 KiB).
    pub lbads: u8,
    /// Metadata bytes per block in the format in use (the driver serves 0 only).
    pub ms: u16,
}

impl IdentifyNamespace {
    /// From the 4 KiB identify page (any bytes decode).
    pub fn decode(b: &[u8]) -> Self {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut nsze = [0u8; 8];
        for (i, x) in nsze.iter_mut().enumerate() {
            *x = at(i);
        }
        let fmt = usize::from(at(26) & 0xf);
        let lbaf = 128usize.saturating_add(fmt.saturating_mul(4));
        IdentifyNamespace {
            nsze: u64::from_le_bytes(nsze),
            ms: u16::from(at(lbaf)) | (u16::from(at(lbaf.saturating_add(1))) << 8),
            lbads: at(lbaf.saturating_add(2)),
        }
    }
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(d) = b.get_mut(off..off.saturating_add(4)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn put64(b: &mut [u8], off: usize, v: u64) {
    if let Some(d) = b.get_mut(off..off.saturating_add(8)) {
        d.copy_from_slice(&v.to_le_bytes());
    }
}

fn get32(b: &[u8], off: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(off..off.saturating_add(4)) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn get64(b: &[u8], off: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(off..off.saturating_add(8)) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn entries_round_trip_and_fields_sit_where_the_spec_puts_them() {
        let c = Command {
            opcode: nvm::READ,
            cid: 0xbeef,
            nsid: 1,
            prp1: 0x1234_5000,
            prp2: 0x9000,
            cdw: [7, 0, 15, 0, 0, 0],
        };
        let b = c.encode();
        assert_eq!(&b[0..4], &[0x02, 0, 0xef, 0xbe]);
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), 0x1234_5000);
        assert_eq!(u32::from_le_bytes(b[48..52].try_into().unwrap()), 15, "CDW12 at byte 48");
        assert_eq!(Command::decode(&b), c);
        assert_eq!(Command::flags_of(&b), 0);
        let done = Completion {
            dw0: 3,
            sq_head: 17,
            sq_id: 1,
            cid: 0xbeef,
            phase: true,
            status: Status { sct: 0, sc: 0x80, dnr: true },
        };
        let e = done.encode();
        assert_eq!(Completion::decode(&e), done);
        assert_eq!(e[14] & 1, 1, "phase is DW3 bit 16");
        assert!(!done.status.ok());
        assert_eq!(done.status.to_string(), "LBA out of range (sct 0, sc 0x80, do not retry)");
    }

    #[test]
    fn identify_pages_decode_what_the_driver_needs() {
        let mut c = [0u8; 4096];
        c[77] = 5;
        c[516] = 2;
        c[520] = 0b1100;
        c[525] = 1;
        assert_eq!(
            IdentifyController::decode(&c),
            IdentifyController { mdts: 5, nn: 2, dsm: true, write_zeroes: true, vwc: true }
        );
        let mut n = [0u8; 4096];
        n[0..8].copy_from_slice(&(1u64 << 20).to_le_bytes());
        n[26] = 1;
        n[128 + 4 + 2] = 12;
        assert_eq!(IdentifyNamespace::decode(&n), IdentifyNamespace { nsze: 1 << 20, lbads: 12, ms: 0 });
        // A short or hostile page decodes too.
        assert_eq!(IdentifyNamespace::decode(&[0xff; 10]).lbads, 0);
    }
}
