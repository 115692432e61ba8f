//! The pure blkif → NBD mapping (`doc/proto.md`, "Request types" and "Size constraints"):
//! what commands one store I/O becomes on an export, and at which byte of the I/O each
//! command's data starts.
use alloc::vec::Vec;

use nbd::client::Command;
use nbd::handshake::Export;
use nbd::wire::{FLAG_SEND_FLUSH, FLAG_SEND_FUA, FLAG_SEND_TRIM, FLAG_SEND_WRITE_ZEROES};

use crate::store::IoOp;

/// The largest payload one command carries: the server's maximum, at most 1 MiB, in whole
/// sectors.
const MAX_COMMAND: u32 = 1 << 20;

/// The commands of one I/O, in order, each with the offset of its data within the I/O; and
/// whether a FLUSH must follow once they are all answered (FUA on a server without
/// `NBD_FLAG_SEND_FUA`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// (command, offset of its data in the I/O).
    pub cmds: Vec<(Command, u32)>,
    /// Send a FLUSH after the last reply.
    pub then_flush: bool,
}

/// What I/O `op` at `sector` (`len` bytes of data, or `nr_sectors` for a discard) becomes on
/// export `e`:
/// - READ and WRITE split at the server's maximum payload (`NBD_INFO_BLOCK_SIZE`);
/// - a write with a preflush is FLUSH then the WRITEs (NBD's FLUSH covers every write
///   completed before it), if the export has a cache to flush;
/// - FUA is `NBD_CMD_FLAG_FUA` where offered, else the WRITEs and then a FLUSH;
/// - a discard is WRITE_ZEROES where offered (it reads back as zeroes, like the RAM store),
///   else TRIM, else nothing;
/// - a flush on an export without `NBD_FLAG_SEND_FLUSH` is nothing (done at once).
pub fn commands(op: IoOp, sector: u64, nr_sectors: u64, len: u32, e: &Export) -> Plan {
    let offset = sector.saturating_mul(512);
    let max = (e.block.max_payload.min(MAX_COMMAND) & !511).max(512);
    let mut plan = Plan::default();
    let split = |cmds: &mut Vec<(Command, u32)>, total: u64, mk: &dyn Fn(u64, u32) -> Command| {
        let mut at = 0u64;
        while at < total {
            let n = u32::try_from(total.saturating_sub(at).min(u64::from(max))).unwrap_or(512);
            cmds.push((mk(offset.saturating_add(at), n), u32::try_from(at).unwrap_or(0)));
            at = at.saturating_add(u64::from(n));
        }
    };
    match op {
        IoOp::Read => split(&mut plan.cmds, u64::from(len), &|o, n| Command::Read { offset: o, length: n }),
        IoOp::Write { preflush, fua } => {
            let native_fua = fua && e.has(FLAG_SEND_FUA);
            if preflush && e.has(FLAG_SEND_FLUSH) {
                plan.cmds.push((Command::Flush, 0));
            }
            split(&mut plan.cmds, u64::from(len), &|o, n| Command::Write { offset: o, length: n, fua: native_fua });
            plan.then_flush = fua && !native_fua && e.has(FLAG_SEND_FLUSH);
        }
        IoOp::Flush => {
            if e.has(FLAG_SEND_FLUSH) {
                plan.cmds.push((Command::Flush, 0));
            }
        }
        IoOp::Discard { .. } => {
            let total = nr_sectors.saturating_mul(512);
            if e.has(FLAG_SEND_WRITE_ZEROES) {
                split(&mut plan.cmds, total, &|o, n| Command::WriteZeroes { offset: o, length: n, no_hole: false });
            } else if e.has(FLAG_SEND_TRIM) {
                split(&mut plan.cmds, total, &|o, n| Command::Trim { offset: o, length: n });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use nbd::handshake::BlockSizes;
    use nbd::wire::FLAG_HAS_FLAGS;

    fn export(flags: u16, max_payload: u32) -> Export {
        Export {
            size: 1 << 30,
            flags: FLAG_HAS_FLAGS | flags,
            block: BlockSizes { min: 1, preferred: 4096, max_payload },
            structured: true,
        }
    }

    const MIB: u32 = 1 << 20;

    #[test]
    fn reads_and_writes_split_at_the_servers_maximum_payload() {
        let e = export(0, 256 * 1024);
        let p = commands(IoOp::Read, 8, 0, MIB, &e);
        let want: Vec<(Command, u32)> = (0..4u32)
            .map(|i| (Command::Read { offset: 4096 + u64::from(i) * 262_144, length: 262_144 }, i * 262_144))
            .collect();
        assert_eq!(p, Plan { cmds: want, then_flush: false });
        // A maximum above 1 MiB is held to 1 MiB, one not in whole sectors rounded down.
        assert_eq!(commands(IoOp::Read, 0, 0, 4 * MIB, &export(0, 32 * MIB)).cmds.len(), 4);
        let odd = commands(IoOp::Read, 0, 0, 4096, &export(0, 1000));
        assert_eq!(odd.cmds.len(), 8, "1000 rounds down to 512-byte commands");
        assert!(odd.cmds.iter().all(|(c, _)| matches!(c, Command::Read { length: 512, .. })));
    }

    #[test]
    fn a_preflush_goes_first_and_fua_is_native_or_a_flush_after() {
        let op = IoOp::Write { preflush: true, fua: true };
        let native = commands(op, 0, 0, 4096, &export(FLAG_SEND_FLUSH | FLAG_SEND_FUA, MIB));
        assert_eq!(
            native,
            Plan {
                cmds: vec![(Command::Flush, 0), (Command::Write { offset: 0, length: 4096, fua: true }, 0)],
                then_flush: false
            }
        );
        let emulated = commands(op, 0, 0, 4096, &export(FLAG_SEND_FLUSH, MIB));
        assert_eq!(emulated.cmds[1].0, Command::Write { offset: 0, length: 4096, fua: false });
        assert!(emulated.then_flush);
        // An export without a cache to flush: the write alone, nothing after.
        let none = commands(op, 0, 0, 4096, &export(0, MIB));
        assert_eq!(
            none,
            Plan { cmds: vec![(Command::Write { offset: 0, length: 4096, fua: false }, 0)], then_flush: false }
        );
    }

    #[test]
    fn a_flush_without_server_flush_is_nothing_and_discards_prefer_write_zeroes() {
        assert!(commands(IoOp::Flush, 0, 0, 0, &export(0, MIB)).cmds.is_empty());
        assert_eq!(commands(IoOp::Flush, 0, 0, 0, &export(FLAG_SEND_FLUSH, MIB)).cmds, vec![(Command::Flush, 0)]);
        let d = IoOp::Discard { secure: false };
        let wz = commands(d, 2048, 4096, 0, &export(FLAG_SEND_WRITE_ZEROES | FLAG_SEND_TRIM, MIB));
        assert_eq!(wz.cmds.len(), 2, "2 MiB in 1 MiB commands");
        assert_eq!(
            wz.cmds[1],
            (Command::WriteZeroes { offset: (1 << 20) + MIB as u64, length: MIB, no_hole: false }, MIB)
        );
        let trim = commands(d, 0, 8, 0, &export(FLAG_SEND_TRIM, MIB));
        assert_eq!(trim.cmds, vec![(Command::Trim { offset: 0, length: 4096 }, 0)]);
        assert!(commands(d, 0, 8, 0, &export(0, MIB)).cmds.is_empty());
        // Without NBD_FLAG_HAS_FLAGS no flag counts.
        let bare = Export { flags: FLAG_SEND_FLUSH, ..export(0, MIB) };
        assert!(commands(IoOp::Flush, 0, 0, 0, &bare).cmds.is_empty());
    }
}
