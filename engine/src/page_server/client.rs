//! The sending end of the page server protocol: one TCP connection per dump.
//!
//! A dump opens each destination (`OPEN2`, whose one-byte reply says whether the
//! server's parent dump has it), sends its runs (`ADD_F` headers, each followed by its
//! pages when they are present) and ends with `FLUSH`, whose reply says the server has
//! written everything. The pages themselves are written to [`Client::stream`] by the
//! page copier (`memory/pages.rs`), headers in between, so they go out in order.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;

use super::proto::{self, Destination, Header};
use super::PageServerError;

/// A connection to a page server.
pub struct Client {
    address: String,
    stream: TcpStream,
}

impl Client {
    /// Connects to `address:port` (CRIU's `--address`, `--port`).
    pub fn connect(address: &str, port: u16) -> Result<Client, PageServerError> {
        let name = format!("{address}:{port}");
        let io = |what: &str| {
            let name = name.clone();
            let what = what.to_string();
            move |source| PageServerError::Io { address: name, what, source }
        };
        let mut last = None;
        for target in (address, port).to_socket_addrs().map_err(io("resolve"))? {
            match TcpStream::connect(target) {
                Ok(stream) => {
                    // Headers that wait for a reply must not wait for an ACK first.
                    stream.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
                    log::info!("page server {name}: connected");
                    return Ok(Client { address: name, stream });
                }
                Err(error) => last = Some(error),
            }
        }
        Err(io("connect")(last.unwrap_or_else(|| std::io::Error::other("no address"))))
    }

    /// `address:port`, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Starts `destination` (`OPEN2`): whether the server's parent dump has it.
    pub fn open(&mut self, destination: Destination) -> Result<bool, PageServerError> {
        self.send(&Header::command(proto::OPEN2, destination.encode()))?;
        let mut reply = [0u8; 1];
        self.stream.read_exact(&mut reply).map_err(self.io(format!("read the reply to opening {destination}")))?;
        Ok(reply[0] != 0)
    }

    /// Sends one header (the pages, if it carries any, are the caller's to send next).
    pub fn send(&mut self, header: &Header) -> Result<(), PageServerError> {
        self.stream.write_all(&header.encode()).map_err(self.io("send a header".into()))
    }

    /// Sends a run and its pages (small runs: shared memory objects shipped from files).
    pub fn send_run(&mut self, header: &Header, pages: &[u8]) -> Result<(), PageServerError> {
        self.send(header)?;
        self.stream.write_all(pages).map_err(self.io("send pages".into()))
    }

    /// The socket as a file the page copier writes headers and pages to.
    pub fn stream(&self) -> Result<File, PageServerError> {
        let fd: OwnedFd = self.stream.try_clone().map_err(self.io("dup the socket".into()))?.into();
        Ok(File::from(fd))
    }

    /// `FLUSH`: waits until the server has written everything sent.
    pub fn flush(&mut self) -> Result<(), PageServerError> {
        self.send(&Header::command(proto::FLUSH, 0))?;
        let mut reply = [0u8; 4];
        self.stream.read_exact(&mut reply).map_err(self.io("read the reply to FLUSH".into()))?;
        match u32::from_ne_bytes(reply) {
            0 => Ok(()),
            code => Err(PageServerError::Protocol { address: self.address.clone(), what: format!("FLUSH failed on the server (reply {code})") }),
        }
    }

    /// `GET` (lazy restore): asks the dumping side for the pages of process `id` (its
    /// pid in the images) from `vaddr` (its address at the dump) on, as many as fit in
    /// `into`; the server answers with a header naming how many it sends (fewer when
    /// its run ends first), then the pages. Returns the pages received.
    pub fn get(&mut self, id: u64, vaddr: u64, into: &mut [u8], page: u64) -> Result<u64, PageServerError> {
        let wanted = into.len() as u64 / page;
        // CRIU names the process by its plain id in GET and its reply (no type byte).
        let request = Header { command: proto::GET, flags: 0, nr_pages: wanted, vaddr, dst_id: id };
        self.send(&request)?;
        let mut bytes = [0u8; proto::HEADER_SIZE];
        self.stream.read_exact(&mut bytes).map_err(self.io(format!("read the reply to GET of {wanted} pages at {vaddr:#x} of pid {id}")))?;
        let reply = Header::decode(&bytes);
        if reply.nr_pages == 0 || reply.nr_pages > wanted || reply.vaddr != vaddr {
            return Err(PageServerError::Protocol {
                address: self.address.clone(),
                what: format!("GET of {wanted} pages at {vaddr:#x} of pid {id} answered with {} pages at {:#x}", reply.nr_pages, reply.vaddr),
            });
        }
        let len = (reply.nr_pages * page) as usize;
        self.stream.read_exact(&mut into[..len]).map_err(self.io(format!("read {} pages at {vaddr:#x} of pid {id}", reply.nr_pages)))?;
        Ok(reply.nr_pages)
    }

    /// [`proto::CHANGED`]: which of process `id`'s pages from `vaddr` on (at most
    /// `pages`) differ from the parent dump's; one bit per page answered (LSB first), and
    /// how many were answered.
    pub fn changed(&mut self, id: u64, vaddr: u64, pages: u64) -> Result<(Vec<u8>, u64), PageServerError> {
        self.send(&Header { command: proto::CHANGED, flags: 0, nr_pages: pages, vaddr, dst_id: id })?;
        let mut bytes = [0u8; proto::HEADER_SIZE];
        self.stream.read_exact(&mut bytes).map_err(self.io(format!("read the reply to CHANGED of {pages} pages at {vaddr:#x} of pid {id}")))?;
        let reply = Header::decode(&bytes);
        if reply.command != proto::CHANGED || reply.nr_pages == 0 || reply.nr_pages > pages || reply.vaddr != vaddr {
            return Err(PageServerError::Protocol {
                address: self.address.clone(),
                what: format!("CHANGED of {pages} pages at {vaddr:#x} of pid {id} answered with {} pages at {:#x}", reply.nr_pages, reply.vaddr),
            });
        }
        let mut bits = vec![0u8; reply.nr_pages.div_ceil(8) as usize];
        self.stream.read_exact(&mut bits).map_err(self.io(format!("read CHANGED's bits at {vaddr:#x} of pid {id}")))?;
        Ok((bits, reply.nr_pages))
    }

    fn io(&self, what: String) -> impl FnOnce(std::io::Error) -> PageServerError {
        let address = self.address.clone();
        move |source| PageServerError::Io { address, what, source }
    }
}
