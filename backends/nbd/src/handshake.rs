//! Fixed newstyle negotiation (`doc/proto.md`, "Handshake"): the server's greeting, our
//! flags, `NBD_OPT_STRUCTURED_REPLY`, then `NBD_OPT_GO` for the export with an
//! `NBD_INFO_BLOCK_SIZE` request (so the server may enforce its block sizes and we honour
//! them); `NBD_OPT_EXPORT_NAME` when the server does not know `NBD_OPT_GO`, or speaks only
//! plain newstyle.
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::*;

/// Longest option reply we accept (its data is bounded by `MAX_STRING` in every reply we
/// use; this leaves room for ones we skip).
const MAX_OPTION_REPLY: u32 = 64 * 1024;
const GREETING_LEN: usize = 18;

/// What was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Export {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags (`FLAG_*`).
    pub flags: u16,
    /// Size constraints (defaults when the server named none).
    pub block: BlockSizes,
    /// Structured replies negotiated.
    pub structured: bool,
}

impl Export {
    pub fn read_only(&self) -> bool {
        self.flags & FLAG_READ_ONLY != 0
    }
    pub fn has(&self, flag: u16) -> bool {
        self.flags & FLAG_HAS_FLAGS != 0 && self.flags & flag != 0
    }
}

/// `NBD_INFO_BLOCK_SIZE` (`doc/proto.md`, "Size constraints").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    pub min: u32,
    pub preferred: u32,
    pub max_payload: u32,
}

impl Default for BlockSizes {
    fn default() -> Self {
        Self { min: 1, preferred: 4096, max_payload: DEFAULT_MAX_PAYLOAD }
    }
}

impl BlockSizes {
    /// Checks the constraints the document puts on them: powers of two, minimum at most
    /// 64 KiB, preferred at least the minimum, maximum a multiple of the minimum (or
    /// `u32::MAX`) and not below it.
    fn checked(self) -> Option<Self> {
        let ok = self.min.is_power_of_two()
            && self.min <= 64 * 1024
            && self.preferred.is_power_of_two()
            && self.preferred >= self.min
            && (self.max_payload == u32::MAX || self.max_payload.is_multiple_of(self.min))
            && self.max_payload >= self.min;
        ok.then_some(self)
    }
}

/// Why a negotiation failed. All but `Refused` and `UnknownExport` mean the server broke
/// the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not an NBD newstyle server (wrong magic): oldstyle servers are not supported.
    NotNewstyle,
    /// An option reply with the wrong magic, for another option, or malformed.
    BadReply(&'static str),
    /// The export does not exist on the server.
    UnknownExport,
    /// The server refused the export: the reply type and its message.
    Refused(u32, String),
    /// A reply longer than we accept.
    TooLong(u32),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::NotNewstyle => f.write_str("not an NBD newstyle server"),
            HandshakeError::BadReply(w) => write!(f, "NBD server broke the handshake: {w}"),
            HandshakeError::UnknownExport => f.write_str("the server has no such export"),
            HandshakeError::Refused(t, m) => {
                let what = match *t {
                    REP_ERR_POLICY => "refused by policy",
                    REP_ERR_TLS_REQD => "the server requires TLS",
                    REP_ERR_SHUTDOWN => "the server is shutting down",
                    REP_ERR_BLOCK_SIZE_REQD => "block sizes required",
                    REP_ERR_INVALID => "option invalid",
                    REP_ERR_PLATFORM => "not supported on the server's platform",
                    REP_ERR_TOO_BIG => "request too big",
                    _ => "refused",
                };
                if m.is_empty() {
                    write!(f, "NBD_OPT_GO {what}")
                } else {
                    write!(f, "NBD_OPT_GO {what}: {m}")
                }
            }
            HandshakeError::TooLong(n) => write!(f, "NBD option reply of {n} bytes is too long"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    StructuredReply,
    Go,
    /// After `NBD_OPT_EXPORT_NAME`: size, flags, and 124 zeroes unless `NO_ZEROES`.
    ExportName,
    Done,
}

/// The client side of a negotiation, fed with the server's bytes.
#[derive(Debug)]
pub struct Handshake {
    export: String,
    state: State,
    buf: Vec<u8>,
    no_zeroes: bool,
    structured: bool,
    size_flags: Option<(u64, u16)>,
    block: Option<BlockSizes>,
}

impl Handshake {
    /// A negotiation for export `export` (empty: the server's default).
    pub fn new(export: &str) -> Self {
        Self {
            export: String::from(export),
            state: State::Greeting,
            buf: Vec::new(),
            no_zeroes: false,
            structured: false,
            size_flags: None,
            block: None,
        }
    }

    /// Feeds bytes from the server; appends what to send to `out`. Returns the export once
    /// negotiated; bytes after the negotiation's end are the transmission phase's and are
    /// left in [`Handshake::leftover`].
    pub fn receive(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<Export>, HandshakeError> {
        self.buf.extend_from_slice(input);
        loop {
            match self.state {
                State::Done => return Ok(self.finished()),
                State::Greeting => {
                    if self.buf.len() < GREETING_LEN {
                        return Ok(None);
                    }
                    let r = Reader(&self.buf);
                    if r.u64(0) != Some(NBDMAGIC) || r.u64(8) != Some(IHAVEOPT) {
                        return Err(HandshakeError::NotNewstyle);
                    }
                    let flags = r.u16(16).unwrap_or(0);
                    self.buf.drain(..GREETING_LEN);
                    self.no_zeroes = flags & FLAG_NO_ZEROES != 0;
                    let mut ours = if self.no_zeroes { FLAG_C_NO_ZEROES } else { 0 };
                    if flags & FLAG_FIXED_NEWSTYLE != 0 {
                        ours |= FLAG_C_FIXED_NEWSTYLE;
                        out.extend_from_slice(&ours.to_be_bytes());
                        encode_option(OPT_STRUCTURED_REPLY, &[], out);
                        self.state = State::StructuredReply;
                    } else {
                        // Plain newstyle: only NBD_OPT_EXPORT_NAME is allowed.
                        out.extend_from_slice(&ours.to_be_bytes());
                        self.export_name(out);
                    }
                }
                State::ExportName => {
                    let need = if self.no_zeroes { 10 } else { 134 };
                    if self.buf.len() < need {
                        return Ok(None);
                    }
                    let r = Reader(&self.buf);
                    self.size_flags = Some((r.u64(0).unwrap_or(0), r.u16(8).unwrap_or(0)));
                    self.buf.drain(..need);
                    self.state = State::Done;
                }
                State::StructuredReply | State::Go => {
                    let Some((option, kind, data)) = self.take_reply()? else {
                        return Ok(None);
                    };
                    let sent = if self.state == State::Go { OPT_GO } else { OPT_STRUCTURED_REPLY };
                    if option != sent {
                        return Err(HandshakeError::BadReply("reply to an option we did not send"));
                    }
                    if self.state == State::StructuredReply {
                        match kind {
                            REP_ACK => self.structured = true,
                            // The server cannot: simple replies only.
                            k if k & REP_FLAG_ERROR != 0 => self.structured = false,
                            _ => return Err(HandshakeError::BadReply("unexpected reply to NBD_OPT_STRUCTURED_REPLY")),
                        }
                        self.go(out);
                        continue;
                    }
                    match kind {
                        REP_INFO => self.info(&data)?,
                        REP_ACK => {
                            if self.size_flags.is_none() {
                                return Err(HandshakeError::BadReply("NBD_REP_ACK without NBD_INFO_EXPORT"));
                            }
                            self.state = State::Done;
                        }
                        // A server that predates NBD_OPT_GO.
                        REP_ERR_UNSUP => self.export_name(out),
                        REP_ERR_UNKNOWN => return Err(HandshakeError::UnknownExport),
                        k if k & REP_FLAG_ERROR != 0 => {
                            let msg: String = String::from_utf8_lossy(&data).chars().take(MAX_STRING).collect();
                            return Err(HandshakeError::Refused(k, msg));
                        }
                        _ => return Err(HandshakeError::BadReply("unexpected reply to NBD_OPT_GO")),
                    }
                }
            }
        }
    }

    /// Bytes received after the negotiation ended (the start of the transmission phase).
    pub fn leftover(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }

    fn finished(&self) -> Option<Export> {
        let (size, flags) = self.size_flags?;
        Some(Export { size, flags, block: self.block.unwrap_or_default(), structured: self.structured })
    }

    fn go(&mut self, out: &mut Vec<u8>) {
        let mut data = Vec::with_capacity(self.export.len().saturating_add(8));
        data.extend_from_slice(&u32::try_from(self.export.len()).unwrap_or(0).to_be_bytes());
        data.extend_from_slice(self.export.as_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        encode_option(OPT_GO, &data, out);
        self.state = State::Go;
    }

    fn export_name(&mut self, out: &mut Vec<u8>) {
        encode_option(OPT_EXPORT_NAME, self.export.as_bytes(), out);
        self.state = State::ExportName;
    }

    /// One whole option reply off the buffer: (option, type, data).
    fn take_reply(&mut self) -> Result<Option<(u32, u32, Vec<u8>)>, HandshakeError> {
        let r = Reader(&self.buf);
        let Some(len) = r.u32(16) else { return Ok(None) };
        if r.u64(0) != Some(OPTION_REPLY_MAGIC) {
            return Err(HandshakeError::BadReply("bad option reply magic"));
        }
        if len > MAX_OPTION_REPLY {
            return Err(HandshakeError::TooLong(len));
        }
        let total = OPTION_REPLY_HEADER_LEN.saturating_add(len as usize);
        if self.buf.len() < total {
            return Ok(None);
        }
        let option = r.u32(8).unwrap_or(0);
        let kind = r.u32(12).unwrap_or(0);
        let data = self.buf.get(OPTION_REPLY_HEADER_LEN..total).unwrap_or_default().to_vec();
        self.buf.drain(..total);
        Ok(Some((option, kind, data)))
    }

    fn info(&mut self, data: &[u8]) -> Result<(), HandshakeError> {
        let r = Reader(data);
        match r.u16(0) {
            Some(INFO_EXPORT) => {
                if data.len() != 12 {
                    return Err(HandshakeError::BadReply("NBD_INFO_EXPORT of the wrong length"));
                }
                self.size_flags = Some((r.u64(2).unwrap_or(0), r.u16(10).unwrap_or(0)));
            }
            Some(INFO_BLOCK_SIZE) => {
                if data.len() != 14 {
                    return Err(HandshakeError::BadReply("NBD_INFO_BLOCK_SIZE of the wrong length"));
                }
                let b = BlockSizes {
                    min: r.u32(2).unwrap_or(0),
                    preferred: r.u32(6).unwrap_or(0),
                    max_payload: r.u32(10).unwrap_or(0),
                };
                self.block = Some(b.checked().ok_or(HandshakeError::BadReply("impossible block sizes"))?);
            }
            // Other information (name, description) we did not ask for: ignored.
            Some(_) => {}
            None => return Err(HandshakeError::BadReply("NBD_REP_INFO without a type")),
        }
        Ok(())
    }
}
