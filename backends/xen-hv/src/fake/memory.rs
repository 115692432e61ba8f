//! Pages of fake guest memory.
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use xen_sys_mini::grant_table::gntst;

use crate::*;

/// The driver domain's id in tests.
pub const BACKEND: DomId = 1;
pub const PAGE: usize = 4096;

type ReadHook = Box<dyn FnMut(&mut [u8; PAGE], usize, usize)>;

struct PageState {
    data: [u8; PAGE],
    /// Called after every read of the page (a frontend racing the backend).
    hook: Option<ReadHook>,
    reads: u64,
}

/// A page of fake guest memory, shared by whoever holds a clone.
#[derive(Clone)]
pub struct MemPage(Rc<RefCell<PageState>>);

impl core::fmt::Debug for MemPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MemPage")
    }
}

impl Default for MemPage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemPage {
    /// Exchanges the contents of two pages: a frame exchange as both domains see it
    /// (each keeps its GFN, the frames behind them trade places).
    pub fn swap_data(&self, other: &MemPage) {
        if !Rc::ptr_eq(&self.0, &other.0) {
            core::mem::swap(&mut self.0.borrow_mut().data, &mut other.0.borrow_mut().data);
        }
    }

    /// Whether two handles name the same page.
    pub fn same(&self, other: &MemPage) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    pub fn new() -> Self {
        MemPage(Rc::new(RefCell::new(PageState { data: [0; PAGE], hook: None, reads: 0 })))
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.borrow().data.to_vec()
    }
    pub fn set(&self, off: usize, src: &[u8]) {
        if let Some(d) = self.0.borrow_mut().data.get_mut(off..).and_then(|d| d.get_mut(..src.len())) {
            d.copy_from_slice(src);
        }
    }
    pub fn get(&self, off: usize, len: usize) -> Vec<u8> {
        self.0.borrow().data.get(off..).and_then(|d| d.get(..len)).map(<[u8]>::to_vec).unwrap_or_default()
    }
    /// Installs a hook that runs after each read (offset, length).
    pub fn on_read(&self, hook: ReadHook) {
        self.0.borrow_mut().hook = Some(hook);
    }
    pub fn reads(&self) -> u64 {
        self.0.borrow().reads
    }
}

impl Page for MemPage {
    fn read(&self, off: usize, dst: &mut [u8]) -> Result<(), MemError> {
        let mut st = self.0.borrow_mut();
        let src = st.data.get(off..).and_then(|d| d.get(..dst.len())).ok_or(MemError::OutOfBounds)?;
        dst.copy_from_slice(src);
        st.reads = st.reads.wrapping_add(1);
        if let Some(mut h) = st.hook.take() {
            h(&mut st.data, off, dst.len());
            st.hook = Some(h);
        }
        Ok(())
    }
    fn write(&self, off: usize, src: &[u8]) -> Result<(), MemError> {
        let mut st = self.0.borrow_mut();
        let d = st.data.get_mut(off..).and_then(|d| d.get_mut(..src.len())).ok_or(MemError::OutOfBounds)?;
        d.copy_from_slice(src);
        Ok(())
    }
    fn load_u32(&self, off: usize) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        if !off.is_multiple_of(4) {
            return Err(MemError::OutOfBounds);
        }
        self.read(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn store_u32(&self, off: usize, v: u32) -> Result<(), MemError> {
        if !off.is_multiple_of(4) {
            return Err(MemError::OutOfBounds);
        }
        self.write(off, &v.to_le_bytes())
    }
    fn fence(&self) {}
}
