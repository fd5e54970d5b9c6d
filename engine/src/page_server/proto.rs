//! The page server's wire format, as CRIU 4.2 speaks it (observed on loopback between
//! `criu dump --page-server` and `criu page-server`): every command is a 32-byte header
//! in the sender's byte order,
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | command (low 16 bits) and pagemap `PE_*` flags (high 16 bits) |
//! | 4 | 4 | padding (CRIU leaves it uninitialised: never read) |
//! | 8 | 8 | number of pages |
//! | 16 | 8 | first virtual address (an offset in the object for shared memory) |
//! | 24 | 8 | destination: `id << 8 \| type` (type 1: a process's pagemap, 2: a shared memory object's) |
//!
//! followed, for an `ADD_F` with `PE_PRESENT` (and the old `ADD`), by the pages. Replies:
//! one byte to `OPEN2` (1: the server's parent dump has this destination), a u32 (0) to
//! `FLUSH` and `FLUSH_N_CLOSE`, a u32 (1 or 0) to `PARENT`.
//!
//! Pure: no I/O.

/// Bytes of one header.
pub const HEADER_SIZE: usize = 32;

/// The old add: present pages follow (flags PE_PRESENT).
pub const ADD: u16 = 1;
/// The old hole: pages in the parent dump (flags PE_PARENT).
pub const HOLE: u16 = 2;
/// Start writing a destination; no reply.
pub const OPEN: u16 = 3;
/// Start writing a destination; the server replies one byte: has its parent dump got it.
pub const OPEN2: u16 = 4;
/// Has the server's parent dump got this destination; a u32 reply.
pub const PARENT: u16 = 5;
/// A run with its `PE_*` flags in the command's high bits; pages follow if PE_PRESENT.
pub const ADD_F: u16 = 6;
/// Lazy restore: send these pages (the server answers with a header and the pages).
pub const GET: u16 = 7;
/// crust's own, to a `dump --lazy-pages` source that wrote `crust-lazy-parent` (never
/// sent to CRIU): which of these pages differ from the parent dump's; the reply is a
/// header (the same command, address and id, the number of pages answered) and one bit
/// per page (1: changed, fetch it; 0: the parent dump's copy is right), LSB first.
pub const CHANGED: u16 = 0x2001;
/// Everything sent so far is written; a u32 reply (0).
pub const FLUSH: u16 = 0x1023;
/// The same, and the connection ends.
pub const FLUSH_N_CLOSE: u16 = 0x1024;

/// A process's pagemap (`pagemap-ID.img`, ID its pid in the images).
pub const TYPE_PROCESS: u8 = 1;
/// A shared memory object's pagemap (`pagemap-shmem-ID.img`).
pub const TYPE_SHMEM: u8 = 2;

/// What a run of pages is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    /// `pagemap-ID.img`.
    Process(u64),
    /// `pagemap-shmem-ID.img`.
    Shmem(u64),
}

impl Destination {
    /// The header's `dst_id`.
    pub fn encode(self) -> u64 {
        match self {
            Destination::Process(id) => id << 8 | u64::from(TYPE_PROCESS),
            Destination::Shmem(id) => id << 8 | u64::from(TYPE_SHMEM),
        }
    }

    /// The destination a header names, or `None` for a type crust does not know.
    pub fn decode(dst_id: u64) -> Option<Destination> {
        match (dst_id & 0xff) as u8 {
            TYPE_PROCESS => Some(Destination::Process(dst_id >> 8)),
            TYPE_SHMEM => Some(Destination::Shmem(dst_id >> 8)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Process(id) => write!(f, "pagemap-{id}.img"),
            Destination::Shmem(id) => write!(f, "pagemap-shmem-{id}.img"),
        }
    }
}

/// One header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub command: u16,
    /// `PE_*` flags (ADD_F; GET's reply).
    pub flags: u16,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Header {
    /// A command without pages.
    pub fn command(command: u16, dst_id: u64) -> Header {
        Header { command, flags: 0, nr_pages: 0, vaddr: 0, dst_id }
    }

    /// An ADD_F of `nr_pages` at `vaddr` for `destination` with pagemap `flags`.
    pub fn run(destination: Destination, vaddr: u64, nr_pages: u64, flags: u32) -> Header {
        Header { command: ADD_F, flags: flags as u16, nr_pages, vaddr, dst_id: destination.encode() }
    }

    /// The header's bytes (host byte order, as CRIU sends them).
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        let cmd = u32::from(self.command) | u32::from(self.flags) << 16;
        out[0..4].copy_from_slice(&cmd.to_ne_bytes());
        out[8..16].copy_from_slice(&self.nr_pages.to_ne_bytes());
        out[16..24].copy_from_slice(&self.vaddr.to_ne_bytes());
        out[24..32].copy_from_slice(&self.dst_id.to_ne_bytes());
        out
    }

    /// A header from its bytes.
    pub fn decode(bytes: &[u8; HEADER_SIZE]) -> Header {
        let word = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let cmd = u32::from_ne_bytes(bytes[0..4].try_into().expect("4 bytes"));
        Header { command: cmd as u16, flags: (cmd >> 16) as u16, nr_pages: word(8), vaddr: word(16), dst_id: word(24) }
    }

    /// Whether pages follow this header on the wire (from the sender).
    pub fn carries_pages(&self) -> bool {
        self.command == ADD || self.command == ADD_F && u32::from(self.flags) & PE_PRESENT != 0
    }

    /// The run's pagemap flags, the old commands' too.
    pub fn pagemap_flags(&self) -> u32 {
        match self.command {
            ADD => PE_PRESENT,
            HOLE => PE_PARENT,
            _ => u32::from(self.flags),
        }
    }
}

/// CRIU's pagemap entry flags.
pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// Reads a whole header: false at a clean end of the stream (before its first byte).
pub(super) fn read_header(stream: &mut impl std::io::Read, bytes: &mut [u8; HEADER_SIZE]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < HEADER_SIZE {
        match stream.read(&mut bytes[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("the stream ended {got} bytes into a header"))),
            Ok(n) => got += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn headers_as_criu_sends_them() {
        // Bytes criu 4.2.1's dump sent criu's page server for pid 22774 (little-endian):
        // OPEN2 of its pagemap, then one present page.
        let open2 = hex("04000000000000000000000000000000000000000000000001f6580000000000");
        let header = Header::decode(&open2);
        assert_eq!(header, Header::command(OPEN2, Destination::Process(22774).encode()));
        assert_eq!(header.encode(), open2);
        let add = hex("0600040000000000010000000000000000b0adeb7f55000001f6580000000000");
        let header = Header::decode(&add);
        assert_eq!(header, Header::run(Destination::Process(22774), 0x557f_ebad_b000, 1, PE_PRESENT));
        assert!(header.carries_pages());
        assert_eq!(header.encode(), add);
        // A shared memory run, its padding left as CRIU left it.
        let mut shmem = Header::run(Destination::Shmem(32846), 0x100000, 256, PE_PRESENT).encode();
        shmem[4..8].copy_from_slice(&32765u32.to_ne_bytes());
        assert_eq!(Destination::decode(Header::decode(&shmem).dst_id), Some(Destination::Shmem(32846)));
        assert_eq!(Header::decode(&shmem).nr_pages, 256);
    }

    #[test]
    fn only_present_runs_carry_pages() {
        let parent = Header::run(Destination::Process(1), 0x1000, 3, PE_PARENT);
        assert!(!parent.carries_pages());
        assert_eq!(parent.pagemap_flags(), PE_PARENT);
        assert!(Header::run(Destination::Process(1), 0, 1, PE_LAZY | PE_PRESENT).carries_pages());
        assert!(Header { command: ADD, flags: 0, nr_pages: 1, vaddr: 0, dst_id: 0 }.carries_pages());
        assert_eq!(Header::command(HOLE, 0).pagemap_flags(), PE_PARENT);
        assert_eq!(Destination::decode(7), None);
    }

    fn hex(text: &str) -> [u8; HEADER_SIZE] {
        let bytes: Vec<u8> = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect();
        bytes.try_into().expect("32 bytes")
    }
}
