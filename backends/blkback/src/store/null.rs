//! The null store (`target=null:<size>`): the benchmark ceiling.
use alloc::vec::Vec;

use super::traits::*;
use crate::hv::Page;

/// A store that completes every I/O without moving data: the ceiling a backend can reach
/// when the disk costs nothing. Reads leave the frontend's pages as they were.
#[derive(Debug)]
pub struct NullStore<B> {
    sectors: u64,
    done: Vec<Completion<B>>,
}

impl<B> FrameBacked for NullStore<B> {}
impl<B> ScratchFrames for NullStore<B> {}

impl<B> NullStore<B> {
    pub fn new(sectors: u64) -> Self {
        Self { sectors, done: Vec::new() }
    }
}

impl<B: Page> BlockStore<B> for NullStore<B> {
    fn info(&self) -> DiskInfo {
        DiskInfo {
            sectors: self.sectors,
            sector_size: 512,
            physical_sector_size: 4096,
            read_only: false,
            flush: true,
            discard: true,
            discard_secure: false,
        }
    }
    fn submit(&mut self, io: StoreIo<B>) -> Result<(), (StoreIo<B>, StoreError)> {
        self.done.push((io, Ok(0)));
        Ok(())
    }
    fn complete(&mut self, out: &mut Vec<Completion<B>>) {
        out.append(&mut self.done);
    }
}
