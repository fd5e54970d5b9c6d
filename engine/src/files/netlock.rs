//! The network lock of dumped TCP connections, made and removed here only: an nftables
//! table of the inet family laid out as CRIU's (sets `conns4`/`conns6` of source
//! address . source port . destination address . destination port, and chains on the
//! input and output hooks that let packets with CRIU's mark through and drop the sets'
//! connections), so either tool's restore lifts the other's lock by the table's name.
//!
//! The table dies with crust: it is made over netlink with NFT_TABLE_F_OWNER, so the
//! kernel deletes it when crust's netlink socket closes, even when crust is killed
//! mid-dump, and the target's connections flow again. Once the dump has killed the
//! tree, [`NetworkLock::keep`] makes the table again in one transaction with
//! NFT_TABLE_F_PERSIST added (the kernel refuses to change that flag on a table), so it
//! outlives crust and holds the connections for the restore, which removes it by name.
//! NFT_TABLE_F_PERSIST came in Linux 6.9; where the kernel lacks it, the table is made
//! with the `nft` command as before, and the log says that a killed crust leaves it.
//!
//! The restore side also removes CRIU's default lock (`--network-lock iptables`): a
//! pair of iptables DROP rules per connection.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{file_io, FileError};
use crate::sys::nftables::{NftMessage, NftSocket};
use crate::sys::socket::InetAddress;

/// CRIU's mark for packets that pass a lock (`meta mark` in the table, `--mark` in the
/// iptables rules): the restoring tool's own traffic.
const LOCK_MARK: u32 = 0xC114;

/// CRIU's numbers for `inventory.network_lock_method`: how a dump locked its TCP
/// connections (the restore lifts that lock).
pub(crate) const NETWORK_LOCK_IPTABLES: u32 = 0;
pub(crate) const NETWORK_LOCK_NFTABLES: u32 = 1;
pub(crate) const NETWORK_LOCK_SKIP: u32 = 2;

/// How a lock table is made.
enum Made {
    /// Not yet (no connection locked so far).
    Nothing,
    /// Over netlink, owned by this socket.
    Owned(NftSocket),
    /// With the `nft` command (the kernel has no NFT_TABLE_F_PERSIST).
    Command,
}

/// One lock table and the connections it holds. Dropped without [`Self::keep`], it is
/// removed (the connections flow again).
pub(crate) struct NetworkLock {
    table: String,
    /// The network namespace the connections are in, when not crust's own (a
    /// container's): the table is made there, by a socket made there.
    netns: Option<OwnedFd>,
    made: Made,
    connections: Vec<(InetAddress, InetAddress)>,
    kept: bool,
}

impl NetworkLock {
    /// A lock table named `table` (inet family) in network namespace `netns` (crust's
    /// own with `None`), made with its first connection.
    pub(crate) fn new(table: &str, netns: Option<OwnedFd>) -> NetworkLock {
        NetworkLock { table: table.to_string(), netns, made: Made::Nothing, connections: Vec::new(), kept: false }
    }

    fn netns(&self) -> Option<BorrowedFd<'_>> {
        self.netns.as_ref().map(|fd| fd.as_fd())
    }

    /// Drops every packet of the connection local↔peer, both ways, until the table goes.
    /// The table is made in the same transaction as its first connection.
    pub(crate) fn add(&mut self, local: &InetAddress, peer: &InetAddress) -> Result<(), FileError> {
        let (local, peer) = (on_the_wire(local), on_the_wire(peer));
        match &mut self.made {
            Made::Nothing if persist_supported() => {
                let mut socket = NftSocket::open_in(self.netns()).map_err(file_io("open a NETLINK_NETFILTER socket"))?;
                let mut batch = structure(&self.table, NFT_TABLE_F_OWNER);
                batch.push(elements(&self.table, &local, &peer, false));
                socket.transact(&batch).map_err(file_io(format!("make lock table inet {}", self.table)))?;
                let place = if self.netns.is_some() { "in the tree's network namespace, " } else { "" };
                log::info!("TCP lock: table inet {} made over netlink, {place}owned by crust (it goes if crust dies)", self.table);
                self.made = Made::Owned(socket);
            }
            Made::Nothing => {
                warn_no_persist();
                let mut script = command_structure(&self.table);
                script.push_str(&command_element(&self.table, &local, &peer, "add"));
                nft(&script, self.netns())?;
                self.made = Made::Command;
            }
            Made::Owned(socket) => {
                socket.transact(&[elements(&self.table, &local, &peer, false)]).map_err(file_io(format!("lock a connection in table inet {}", self.table)))?;
            }
            Made::Command => nft(&command_element(&self.table, &local, &peer, "add"), self.netns())?,
        }
        self.connections.push((local, peer));
        Ok(())
    }

    /// Keeps the table past crust's exit, for the restore: made again, with
    /// NFT_TABLE_F_PERSIST, in the transaction that deletes the owned one (so no packet
    /// passes in between). Call once the tree is killed or left stopped.
    pub(crate) fn keep(&mut self) -> Result<(), FileError> {
        self.kept = true;
        let Made::Owned(socket) = &mut self.made else { return Ok(()) };
        let mut batch = vec![table_message(NFT_MSG_DELTABLE, &self.table, 0, 0)];
        batch.extend(structure(&self.table, NFT_TABLE_F_OWNER | NFT_TABLE_F_PERSIST));
        for (local, peer) in &self.connections {
            batch.push(elements(&self.table, local, peer, false));
        }
        socket.transact(&batch).map_err(file_io(format!("keep lock table inet {} for the restore (NFT_TABLE_F_PERSIST)", self.table)))?;
        log::info!("TCP lock: table inet {} kept for the restore ({} connections)", self.table, self.connections.len());
        Ok(())
    }

    /// Removes the table now: every connection it held flows again.
    pub(crate) fn remove(&mut self) -> Result<(), FileError> {
        self.kept = true;
        match std::mem::replace(&mut self.made, Made::Nothing) {
            Made::Nothing => Ok(()),
            Made::Owned(mut socket) => socket
                .transact(&[table_message(NFT_MSG_DELTABLE, &self.table, 0, 0)])
                .map_err(file_io(format!("remove lock table inet {}", self.table))),
            Made::Command => remove_table(&self.table, self.netns()).map(|_| ()),
        }
    }

    /// Closes the netlink socket without removing the table: what crust's death does.
    #[cfg(test)]
    fn abandon(mut self) {
        self.kept = true;
        self.made = Made::Nothing;
    }
}

impl Drop for NetworkLock {
    fn drop(&mut self) {
        if !self.kept {
            if let Err(error) = self.remove() {
                log::warn!("TCP lock: {error}");
            }
        }
    }
}

/// The table that locks a whole restored network namespace whose dump (CRIU's) locked
/// it whole: every packet but those with CRIU's mark dropped, both ways.
pub(crate) const NAMESPACE_LOCK_TABLE: &str = "crust-restore-lock";

/// [`NAMESPACE_LOCK_TABLE`] as `nft -f` text. Pure.
pub(crate) fn namespace_lock_ruleset() -> String {
    let chain = |name: &str, hook: &str| {
        format!("\tchain {name} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n\t\tmeta mark {LOCK_MARK:#010x} accept\n\t\tdrop\n\t}}\n")
    };
    format!("table inet {NAMESPACE_LOCK_TABLE} {{\n{}{}}}\n", chain("input", "input"), chain("output", "output"))
}

/// Removes lock table `inet NAME` (a kept one, CRIU's, or one made with nft) of network
/// namespace `netns` (crust's own with `None`): `Ok(false)` when there was none.
pub(crate) fn remove_table(name: &str, netns: Option<BorrowedFd<'_>>) -> Result<bool, FileError> {
    remove(NFPROTO_INET, "inet", name, netns)
}

/// Removes table `NAME` of the ip (`AF_INET`) or ip6 family: crust's per-connection
/// lock tables before they moved to inet.
pub(crate) fn remove_table_of_family(family: i32, name: &str) -> Result<bool, FileError> {
    if family == libc::AF_INET { remove(NFPROTO_IPV4, "ip", name, None) } else { remove(NFPROTO_IPV6, "ip6", name, None) }
}

fn remove(nfproto: u8, family: &str, name: &str, netns: Option<BorrowedFd<'_>>) -> Result<bool, FileError> {
    let mut message = table_message(NFT_MSG_DELTABLE, name, 0, 0);
    message.family = nfproto;
    match NftSocket::open_in(netns).and_then(|mut socket| socket.transact(&[message])) {
        Ok(()) => {
            log::info!("TCP lock: table {family} {name} removed");
            Ok(true)
        }
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        // A kernel without nfnetlink (EPROTONOSUPPORT from the socket) or nf_tables
        // (EOPNOTSUPP from nfnetlink) holds no table: nothing to remove. Seen on
        // Debian's 6.1 kernels before their modules are loaded.
        Err(error) if matches!(error.raw_os_error(), Some(libc::EPROTONOSUPPORT | libc::EOPNOTSUPP)) => {
            log::debug!("no nf_tables in this kernel ({error}): no table {family} {name} to remove");
            Ok(false)
        }
        Err(error) => Err(FileError::Io { what: format!("remove lock table {family} {name}"), source: error }),
    }
}

/// Removes the iptables rules CRIU's default lock (`--network-lock iptables`) put on
/// the connection local↔peer: one DROP rule in INPUT (peer to local) and one in OUTPUT
/// (local to peer), each letting packets with CRIU's mark through. `Ok(false)`: none
/// was there.
pub(crate) fn remove_iptables_rules(local: &InetAddress, peer: &InetAddress) -> Result<bool, FileError> {
    let mut removed = false;
    for (tool, chain, rule) in iptables_rules(local, peer) {
        let output = Command::new(tool)
            .args(["-w", "-t", "filter", "-D", chain])
            .args(&rule)
            .stdin(Stdio::null())
            .output()
            .map_err(file_io(format!("run {tool} (install iptables)")))?;
        if output.status.success() {
            log::info!("TCP lock: {tool} rule of {chain} removed");
            removed = true;
        } else {
            log::debug!("{tool} -D {chain}: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
    }
    Ok(removed)
}

/// The iptables rules of CRIU's default lock on the connection local↔peer that are
/// there now (`iptables -C`), each as (the rule as an `iptables -A` command, the
/// command that removes it by hand). None when iptables cannot be run.
pub(crate) fn kept_iptables_rules(local: &InetAddress, peer: &InetAddress) -> Vec<(String, String)> {
    iptables_rules(local, peer)
        .into_iter()
        .filter(|(tool, chain, rule)| {
            let check = Command::new(tool).args(["-w", "-t", "filter", "-C", chain]).args(rule).stdin(Stdio::null()).output();
            check.is_ok_and(|c| c.status.success())
        })
        .map(|(tool, chain, rule)| {
            let rule = rule.join(" ");
            (format!("{tool} -A {chain} {rule}"), format!("{tool} -w -t filter -D {chain} {rule}"))
        })
        .collect()
}

/// CRIU's default lock on the connection local↔peer as iptables arguments after the
/// chain: the tool (iptables or ip6tables), the chain, the rule. One DROP rule in INPUT
/// (peer to local) and one in OUTPUT (local to peer), each letting packets with CRIU's
/// mark through.
fn iptables_rules(local: &InetAddress, peer: &InetAddress) -> [(&'static str, &'static str, Vec<String>); 2] {
    let (local, peer) = (&on_the_wire(local), &on_the_wire(peer));
    let tool = if local.family == libc::AF_INET { "iptables" } else { "ip6tables" };
    let rule = |from: &InetAddress, to: &InetAddress| -> Vec<String> {
        let mut args: Vec<String> = ["--protocol", "tcp", "-m", "mark", "!", "--mark"].iter().map(|a| a.to_string()).collect();
        args.push(format!("{LOCK_MARK:#X}"));
        args.extend(["--source".to_string(), ip_text(from), "--sport".to_string(), from.port.to_string()]);
        args.extend(["--destination".to_string(), ip_text(to), "--dport".to_string(), to.port.to_string(), "-j".to_string(), "DROP".to_string()]);
        args
    };
    [(tool, "INPUT", rule(peer, local)), (tool, "OUTPUT", rule(local, peer))]
}

/// Whether table `inet NAME` exists in network namespace `netns` (crust's own with
/// `None`) (NFT_MSG_GETTABLE); `false` when that cannot be told.
pub(crate) fn table_exists(name: &str, netns: Option<BorrowedFd<'_>>) -> bool {
    NftSocket::open_in(netns).and_then(|mut socket| socket.request(&table_message(NFT_MSG_GETTABLE, name, 0, 0))).is_ok()
}

/// The command to lift a lock table by hand.
pub(crate) fn delete_command(name: &str) -> String {
    format!("nft delete table inet {name}")
}

/// Whether this kernel takes NFT_TABLE_F_PERSIST (Linux 6.9): asked once, with a
/// transaction that makes a probe table with the flag and deletes it again (nothing
/// stays either way).
fn persist_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let name = format!("crust-probe-{}", std::process::id());
        let probe = [
            table_message(NFT_MSG_NEWTABLE, &name, NFT_TABLE_F_OWNER | NFT_TABLE_F_PERSIST, libc::NLM_F_CREATE as u16),
            table_message(NFT_MSG_DELTABLE, &name, 0, 0),
        ];
        match NftSocket::open().and_then(|mut socket| socket.transact(&probe)) {
            Ok(()) => true,
            Err(error) => {
                log::debug!("NFT_TABLE_F_PERSIST probe: {error}");
                false
            }
        }
    })
}

fn warn_no_persist() {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        log::warn!(
            "TCP lock: this kernel has no NFT_TABLE_F_PERSIST (Linux 6.9), so the lock table is made with the nft command \
             and is not tied to crust: if crust is killed mid-dump it stays, and the connections stay blocked until it is \
             removed (nft delete table inet NAME)"
        );
    });
}

// nf_tables message types, table flags and attributes (linux/netfilter/nf_tables.h).
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_TABLE_F_OWNER: u32 = 0x2;
const NFT_TABLE_F_PERSIST: u32 = 0x4;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NLA_F_NESTED: u16 = 0x8000;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_REG32_00: u32 = 8;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NF_INET_LOCAL_IN: u32 = 1;
const NF_INET_LOCAL_OUT: u32 = 3;
const NFT_META_MARK: u32 = 3;
const NFT_META_NFPROTO: u32 = 15;
const NFT_META_L4PROTO: u32 = 16;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
/// nft's data types, for the sets' key type (`nft list` shows them): ipv4_addr,
/// ipv6_addr, inet_service; a concatenation shifts each in by 6 bits.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
/// The sets' ids within a transaction (rules and elements name them by it too).
const CONNS4_ID: u32 = 1;
const CONNS6_ID: u32 = 2;

/// Netlink attributes, built into a buffer.
#[derive(Default)]
struct Attributes(Vec<u8>);

impl Attributes {
    fn bytes(mut self, kind: u16, payload: &[u8]) -> Self {
        self.0.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
        self
    }

    fn string(self, kind: u16, text: &str) -> Self {
        let mut payload = text.as_bytes().to_vec();
        payload.push(0);
        self.bytes(kind, &payload)
    }

    fn be32(self, kind: u16, value: u32) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    fn nested(self, kind: u16, inner: Attributes) -> Self {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }
}

fn table_message(kind: u16, name: &str, flags: u32, netlink_flags: u16) -> NftMessage {
    let mut attributes = Attributes::default().string(1, name);
    if kind == NFT_MSG_NEWTABLE {
        attributes = attributes.be32(2, flags);
    }
    NftMessage { kind, flags: netlink_flags, family: NFPROTO_INET, attributes: attributes.0 }
}

/// The table (with `table_flags`), its two sets, two chains and their rules.
fn structure(table: &str, table_flags: u32) -> Vec<NftMessage> {
    let create = libc::NLM_F_CREATE as u16;
    let mut out = vec![table_message(NFT_MSG_NEWTABLE, table, table_flags, create)];
    let concat = |types: [u32; 4]| types.iter().fold(0u32, |acc, t| (acc << 6) | t);
    for (set, id, key_type, key_len) in [
        ("conns4", CONNS4_ID, concat([TYPE_IPADDR, TYPE_INET_SERVICE, TYPE_IPADDR, TYPE_INET_SERVICE]), 16),
        ("conns6", CONNS6_ID, concat([TYPE_IP6ADDR, TYPE_INET_SERVICE, TYPE_IP6ADDR, TYPE_INET_SERVICE]), 40),
    ] {
        let attributes = Attributes::default().string(1, table).string(2, set).be32(3, 0).be32(4, key_type).be32(5, key_len).be32(10, id);
        out.push(NftMessage { kind: NFT_MSG_NEWSET, flags: create, family: NFPROTO_INET, attributes: attributes.0 });
    }
    for (chain, hook) in [("output", NF_INET_LOCAL_OUT), ("input", NF_INET_LOCAL_IN)] {
        let hook_attributes = Attributes::default().be32(1, hook).be32(2, 0);
        let attributes = Attributes::default().string(1, table).string(3, chain).nested(4, hook_attributes).be32(5, NF_ACCEPT).string(7, "filter");
        out.push(NftMessage { kind: NFT_MSG_NEWCHAIN, flags: create, family: NFPROTO_INET, attributes: attributes.0 });
        for expressions in [mark_accept(), drop_connections(false), drop_connections(true)] {
            let mut list = Attributes::default();
            for expression in expressions {
                list = list.nested(1, expression);
            }
            let attributes = Attributes::default().string(1, table).string(2, chain).nested(4, list);
            out.push(NftMessage { kind: NFT_MSG_NEWRULE, flags: create | libc::NLM_F_APPEND as u16, family: NFPROTO_INET, attributes: attributes.0 });
        }
    }
    out
}

fn expression(name: &str, data: Attributes) -> Attributes {
    Attributes::default().string(1, name).nested(2, data)
}

fn meta(key: u32, register: u32) -> Attributes {
    expression("meta", Attributes::default().be32(1, register).be32(2, key))
}

fn cmp_equal(register: u32, value: &[u8]) -> Attributes {
    expression("cmp", Attributes::default().be32(1, register).be32(2, 0).nested(3, Attributes::default().bytes(1, value)))
}

fn payload(base: u32, offset: u32, len: u32, register: u32) -> Attributes {
    expression("payload", Attributes::default().be32(1, register).be32(2, base).be32(3, offset).be32(4, len))
}

fn verdict(code: u32) -> Attributes {
    let code = Attributes::default().be32(1, code);
    expression("immediate", Attributes::default().be32(1, NFT_REG_VERDICT).nested(2, Attributes::default().nested(2, code)))
}

/// `meta mark 0xc114 accept`.
fn mark_accept() -> Vec<Attributes> {
    vec![meta(NFT_META_MARK, NFT_REG_1), cmp_equal(NFT_REG_1, &LOCK_MARK.to_ne_bytes()), verdict(NF_ACCEPT)]
}

/// `ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop` (or the ip6 one): each
/// field in 32-bit registers from NFT_REG32_00 on, as the set's key.
fn drop_connections(v6: bool) -> Vec<Attributes> {
    let (nfproto, address_len, source_at, set, set_id) =
        if v6 { (NFPROTO_IPV6, 16, 8, "conns6", CONNS6_ID) } else { (NFPROTO_IPV4, 4, 12, "conns4", CONNS4_ID) };
    let address_registers = address_len / 4;
    let mut register = NFT_REG32_00;
    let mut out = vec![
        meta(NFT_META_NFPROTO, NFT_REG_1),
        cmp_equal(NFT_REG_1, &[nfproto]),
        meta(NFT_META_L4PROTO, NFT_REG_1),
        cmp_equal(NFT_REG_1, &[libc::IPPROTO_TCP as u8]),
    ];
    out.push(payload(NFT_PAYLOAD_NETWORK_HEADER, source_at, address_len, register));
    register += address_registers;
    out.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2, register));
    register += 1;
    out.push(payload(NFT_PAYLOAD_NETWORK_HEADER, source_at + address_len, address_len, register));
    register += address_registers;
    out.push(payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, register));
    out.push(expression("lookup", Attributes::default().string(1, set).be32(2, NFT_REG32_00).be32(4, set_id)));
    out.push(verdict(NF_DROP));
    out
}

/// A set's key for packets from `from` to `to`: address, port (network order, padded
/// to 4 bytes), address, port.
fn key(from: &InetAddress, to: &InetAddress) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    for end in [from, to] {
        out.extend_from_slice(&end.addr);
        out.extend_from_slice(&end.port.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
    }
    out
}

/// The set's name and id for a connection of this family.
fn set_of(address: &InetAddress) -> (&'static str, u32) {
    if address.family == libc::AF_INET { ("conns4", CONNS4_ID) } else { ("conns6", CONNS6_ID) }
}

/// Adds (or deletes) the connection local↔peer: one element per direction.
fn elements(table: &str, local: &InetAddress, peer: &InetAddress, delete: bool) -> NftMessage {
    // NFT_MSG_DELSETELEM, for one connection of a table shared by a dump's.
    const NFT_MSG_DELSETELEM: u16 = 14;
    let (set, set_id) = set_of(local);
    let mut list = Attributes::default();
    for k in [key(local, peer), key(peer, local)] {
        list = list.nested(1, Attributes::default().nested(1, Attributes::default().bytes(1, &k)));
    }
    let attributes = Attributes::default().string(1, table).string(2, set).nested(3, list).be32(4, set_id);
    let (kind, flags) = if delete { (NFT_MSG_DELSETELEM, 0) } else { (NFT_MSG_NEWSETELEM, libc::NLM_F_CREATE as u16) };
    NftMessage { kind, flags, family: NFPROTO_INET, attributes: attributes.0 }
}

/// An IPv4-mapped address of an IPv6 socket carries IPv4 packets: the lock matches them
/// as such.
fn on_the_wire(address: &InetAddress) -> InetAddress {
    let mapped = address.family == libc::AF_INET6
        && address.addr.len() == 16
        && address.addr[..10].iter().all(|&b| b == 0)
        && address.addr[10..12] == [0xff, 0xff];
    if mapped {
        InetAddress { family: libc::AF_INET, addr: address.addr[12..].to_vec(), port: address.port }
    } else if address.family == libc::AF_INET {
        InetAddress { family: libc::AF_INET, addr: address.addr.iter().take(4).copied().collect(), port: address.port }
    } else {
        address.clone()
    }
}

fn ip_text(address: &InetAddress) -> String {
    if address.family == libc::AF_INET {
        address.addr.iter().take(4).map(|b| b.to_string()).collect::<Vec<_>>().join(".")
    } else {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&address.addr[..16]);
        std::net::Ipv6Addr::from(bytes).to_string()
    }
}

/// The same table as `structure`, as an nft script (kernels without
/// NFT_TABLE_F_PERSIST).
fn command_structure(table: &str) -> String {
    let mut script = format!(
        "add table inet {table}\n\
         add set inet {table} conns4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}\n\
         add set inet {table} conns6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}\n"
    );
    for (chain, hook) in [("output", "output"), ("input", "input")] {
        script.push_str(&format!(
            "add chain inet {table} {chain} {{ type filter hook {hook} priority filter; policy accept; }}\n\
             flush chain inet {table} {chain}\n\
             add rule inet {table} {chain} meta mark {LOCK_MARK:#010x} accept\n\
             add rule inet {table} {chain} ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
             add rule inet {table} {chain} ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
        ));
    }
    script
}

fn command_element(table: &str, local: &InetAddress, peer: &InetAddress, verb: &str) -> String {
    let (set, _) = set_of(local);
    let (l, p) = (ip_text(local), ip_text(peer));
    format!(
        "{verb} element inet {table} {set} {{ {l} . {lp} . {p} . {pp}, {p} . {pp} . {l} . {lp} }}\n",
        lp = local.port,
        pp = peer.port
    )
}

fn nft(script: &str, netns: Option<BorrowedFd<'_>>) -> Result<(), FileError> {
    let mut command = Command::new("nft");
    command.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(netns) = netns {
        crate::sys::netns::run_in_net_namespace(&mut command, netns.as_raw_fd());
    }
    let mut child = command
        .spawn()
        .map_err(file_io("run nft (install nftables)"))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(file_io("write to nft"))?;
    let output = child.wait_with_output().map_err(file_io("wait for nft"))?;
    if !output.status.success() {
        return Err(FileError::refused(format!("nft: {}", String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], port: u16) -> InetAddress {
        InetAddress { family: libc::AF_INET, addr: a.to_vec(), port }
    }

    /// Whether the table is gone once every copy of the owning socket is closed. Another
    /// test of this binary that spawns a command at the moment the socket is open gives
    /// its child a copy until that child execs (close-on-exec), so the table may outlive
    /// `abandon` by that long: wait for the condition, a bounded number of checks.
    fn table_goes(name: &str, netns: Option<BorrowedFd<'_>>) -> bool {
        for _ in 0..2000 {
            if !table_exists(name, netns) {
                return true;
            }
            std::thread::yield_now();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_whole_namespace_lock_lets_criu_s_mark_through() {
        assert_eq!(
            namespace_lock_ruleset(),
            "table inet crust-restore-lock {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tmeta mark 0x0000c114 accept\n\t\tdrop\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t\tmeta mark 0x0000c114 accept\n\t\tdrop\n\t}\n}\n"
        );
    }

    #[test]
    fn keys_are_address_port_address_port_in_registers() {
        let key = key(&v4([127, 0, 0, 1], 0x1234), &v4([10, 0, 0, 2], 80));
        assert_eq!(key, [127, 0, 0, 1, 0x12, 0x34, 0, 0, 10, 0, 0, 2, 0, 80, 0, 0]);
        let mapped = InetAddress { family: libc::AF_INET6, addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4].to_vec(), port: 9 };
        assert_eq!(on_the_wire(&mapped), v4([1, 2, 3, 4], 9));
        assert_eq!(command_element("T", &v4([1, 2, 3, 4], 5), &v4([6, 7, 8, 9], 10), "add"), "add element inet T conns4 { 1.2.3.4 . 5 . 6.7.8.9 . 10, 6.7.8.9 . 10 . 1.2.3.4 . 5 }\n");
    }

    #[test]
    fn the_table_is_criu_s_layout() {
        let messages = structure("CRIU-x", NFT_TABLE_F_OWNER);
        let kinds: Vec<u16> = messages.iter().map(|m| m.kind).collect();
        // table, 2 sets, then per chain: the chain and its 3 rules.
        assert_eq!(kinds, [0, 9, 9, 3, 6, 6, 6, 3, 6, 6, 6]);
        assert!(messages.iter().all(|m| m.family == NFPROTO_INET));
        // NFTA_TABLE_NAME "CRIU-x\0" (padded), NFTA_TABLE_FLAGS OWNER big-endian.
        assert_eq!(&messages[0].attributes[..4], &[11, 0, 1, 0]);
        assert_eq!(&messages[0].attributes[4..11], b"CRIU-x\0");
        assert_eq!(&messages[0].attributes[12..20], &[8, 0, 2, 0, 0, 0, 0, 2]);
    }

    /// The lock lives over netlink with crust's socket: made with a connection, gone
    /// when the socket closes (as when crust is killed); kept, it outlives the socket
    /// and goes by name.
    #[test]
    fn an_owned_table_dies_with_its_socket_and_a_kept_one_does_not() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CAP_NET_ADMIN) for nftables");
            return;
        }
        if !persist_supported() {
            eprintln!("skipped: the kernel has no NFT_TABLE_F_PERSIST (Linux 6.9)");
            return;
        }
        let pid = std::process::id();
        let (local, peer) = (v4([127, 0, 0, 1], 1), v4([127, 0, 0, 1], 2));
        let name = format!("crust-test-{pid}-owned");
        let mut lock = NetworkLock::new(&name, None);
        lock.add(&local, &peer).unwrap();
        lock.add(&v4([127, 0, 0, 1], 3), &v4([127, 0, 0, 1], 4)).unwrap();
        assert!(table_exists(&name, None));
        lock.abandon();
        assert!(table_goes(&name, None), "the kernel deleted the owned table with its socket");

        let name = format!("crust-test-{pid}-kept");
        let mut lock = NetworkLock::new(&name, None);
        lock.add(&local, &peer).unwrap();
        lock.keep().unwrap();
        drop(lock);
        assert!(table_exists(&name, None), "a kept table outlives its socket");
        assert!(remove_table(&name, None).unwrap());
        assert!(!table_exists(&name, None));
        assert!(!remove_table(&name, None).unwrap(), "nothing left to remove");

        let name = format!("crust-test-{pid}-dropped");
        let mut lock = NetworkLock::new(&name, None);
        lock.add(&local, &peer).unwrap();
        drop(lock);
        assert!(!table_exists(&name, None), "a lock dropped without keep removes its table");
    }

    /// A tree in a network namespace of its own (a container) is locked there: the
    /// table is in that namespace, not in crust's, and still dies with crust's socket.
    #[test]
    fn a_lock_in_another_network_namespace_is_made_there_and_dies_with_its_socket() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for nftables and a network namespace");
            return;
        }
        if !persist_supported() {
            eprintln!("skipped: the kernel has no NFT_TABLE_F_PERSIST (Linux 6.9)");
            return;
        }
        // A new namespace, held by its fd only (the thread that made it ends).
        let netns = std::thread::spawn(|| -> std::io::Result<OwnedFd> {
            crate::sys::netns::enter_new_net_namespace()?;
            crate::sys::netns::open_own_net_namespace()
        })
        .join()
        .unwrap()
        .unwrap();
        let name = format!("crust-test-{}-netns", std::process::id());
        let (local, peer) = (v4([10, 0, 0, 1], 1), v4([10, 0, 0, 2], 2));
        let mut lock = NetworkLock::new(&name, Some(netns.try_clone().unwrap()));
        lock.add(&local, &peer).unwrap();
        assert!(table_exists(&name, Some(netns.as_fd())), "the table is in the tree's namespace");
        assert!(!table_exists(&name, None), "and not in crust's");
        lock.abandon();
        assert!(table_goes(&name, Some(netns.as_fd())), "the kernel deleted the owned table with its socket");

        let mut lock = NetworkLock::new(&name, Some(netns.try_clone().unwrap()));
        lock.add(&local, &peer).unwrap();
        lock.keep().unwrap();
        drop(lock);
        assert!(table_exists(&name, Some(netns.as_fd())), "a kept table outlives its socket");
        assert!(!remove_table(&name, None).unwrap(), "crust's namespace has no such table");
        assert!(remove_table(&name, Some(netns.as_fd())).unwrap());

        // A failed dump drops its lock without keeping it: the table goes.
        let mut lock = NetworkLock::new(&name, Some(netns.try_clone().unwrap()));
        lock.add(&local, &peer).unwrap();
        drop(lock);
        assert!(!table_exists(&name, Some(netns.as_fd())), "a lock dropped without keep removes its table");
    }
}
