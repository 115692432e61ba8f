//! The runtime's frames and boot modules.
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;

use super::memory::*;
use crate::*;

/// One of the driver domain's own frames, as the fake runtime hands it out. Counts itself
/// in its allocator while alive (a RAM disk's frames go back on detach).
#[derive(Debug)]
pub struct FakeFrame {
    gfn: u64,
    data: Box<[u8; PAGE]>,
    live: Rc<Cell<usize>>,
}

impl Frame for FakeFrame {
    fn gfn(&self) -> u64 {
        self.gfn
    }
    fn bytes(&self) -> &[u8] {
        &self.data[..]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[..]
    }
}

impl Drop for FakeFrame {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

/// The fake runtime's frame allocator: `capacity` frames at most.
#[derive(Debug, Clone)]
pub struct FakeFrames {
    capacity: usize,
    next_gfn: u64,
    live: Rc<Cell<usize>>,
}

impl FakeFrames {
    pub fn new(capacity: usize) -> Self {
        Self { capacity, next_gfn: 0x10_0000, live: Rc::new(Cell::new(0)) }
    }
    /// Frames handed out and not yet returned.
    pub fn live(&self) -> usize {
        self.live.get()
    }
}

impl Frames for FakeFrames {
    type Frame = FakeFrame;
    fn alloc(&mut self) -> Option<FakeFrame> {
        if self.live.get() >= self.capacity {
            return None;
        }
        self.live.set(self.live.get() + 1);
        self.next_gfn += 1;
        Some(FakeFrame { gfn: self.next_gfn, data: Box::new([0; PAGE]), live: self.live.clone() })
    }
    fn free_bytes(&self) -> u64 {
        ((self.capacity - self.live.get()) * PAGE) as u64
    }
}

/// A boot module as the fake runtime hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRegion {
    pub data: Vec<u8>,
    pub base_gfn: u64,
}

impl Region for FakeRegion {
    fn bytes(&self) -> &[u8] {
        &self.data
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    fn gfn(&self, off: u64) -> Option<(u64, u16)> {
        ((off as usize) < self.data.len()).then(|| (self.base_gfn + off / PAGE as u64, (off % PAGE as u64) as u16))
    }
}
