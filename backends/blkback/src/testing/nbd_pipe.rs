//! An NBD server in the same process, reached through a byte pipe: the transport and
//! connector of `NbdStore` in tests (the driver domain's TCP/IP stack in production).
use super::prelude::*;
use alloc::collections::BTreeMap as Map;
use core::cell::{Cell, RefCell};

use nbd::testing::{Server, ServerOpts};
use nbd::uri::NbdUri;

use crate::store::nbd::{ConnectError, Connector, Transport};

/// A byte pipe to a server: sends at most `max_send` bytes a call; replies are held back
/// while `hold` is set.
#[derive(Debug)]
pub struct Pipe {
    pub server: Rc<RefCell<Server>>,
    to_server: Vec<u8>,
    from_server: Vec<u8>,
    pub max_send: usize,
    pub hold: Rc<Cell<bool>>,
    /// The connection is gone (refused, reset, timed out).
    pub closed: Rc<Cell<bool>>,
    /// Whether a new connection can be made (the server is up).
    pub server_up: Rc<Cell<bool>>,
    /// The clock, in ns, that the test moves.
    pub clock: Rc<Cell<u64>>,
}

impl Pipe {
    /// A pipe to a new server with a `size`-byte export `disk0`.
    pub fn new(o: ServerOpts, size: usize) -> Self {
        let (server, greet) = Server::new(o, size);
        Self {
            server: Rc::new(RefCell::new(server)),
            to_server: Vec::new(),
            from_server: greet,
            max_send: 1000,
            hold: Rc::new(Cell::new(false)),
            closed: Rc::new(Cell::new(false)),
            server_up: Rc::new(Cell::new(true)),
            clock: Rc::new(Cell::new(0)),
        }
    }
}

impl Transport for Pipe {
    fn is_open(&self) -> bool {
        !self.closed.get()
    }
    fn send(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.max_send);
        self.to_server.extend_from_slice(&data[..n]);
        n
    }
    fn reconnect(&mut self) -> bool {
        if !self.server_up.get() {
            return false;
        }
        self.to_server.clear();
        self.from_server = self.server.borrow_mut().reconnect();
        self.closed.set(false);
        true
    }
    fn now_ns(&self) -> u64 {
        self.clock.get()
    }
    fn recv(&mut self, f: &mut dyn FnMut(&[u8]) -> usize) {
        if self.closed.get() {
            return;
        }
        if !self.hold.get() {
            let out = self.server.borrow_mut().feed(&core::mem::take(&mut self.to_server));
            self.from_server.extend(out);
        }
        if !self.from_server.is_empty() {
            let n = f(&self.from_server);
            self.from_server.drain(..n);
        }
    }
}

/// Connects `nbd://` targets to in-process servers, one per `host:port`, created on first
/// use with `opts`; unknown hosts are refused like an unreachable server.
#[derive(Debug, Default)]
pub struct PipeConnector {
    pub opts: Option<ServerOpts>,
    pub size: usize,
    /// The servers by `host:port`, to inspect.
    pub servers: Map<String, Rc<RefCell<Server>>>,
    pub refuse: Vec<String>,
    /// Hosts whose connections never complete and then close (no server there).
    pub dead: Vec<String>,
}

impl Connector for PipeConnector {
    type T = Pipe;
    fn connect(&mut self, uri: &NbdUri) -> Result<Pipe, ConnectError> {
        let key = format!("{}:{}", uri.host, uri.port);
        if self.refuse.contains(&uri.host) {
            return Err(ConnectError::Refused(key));
        }
        let p = Pipe::new(self.opts.unwrap_or_default(), self.size.max(1 << 20));
        if self.dead.contains(&uri.host) {
            p.hold.set(true);
            p.closed.set(true);
            p.server_up.set(false);
        }
        self.servers.insert(key, p.server.clone());
        Ok(p)
    }
}
