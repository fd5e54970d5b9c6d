//! The network namespace of a tree that has one of its own: dumped into CRIU's images
//! (`netns-N`, `netdev-N`, `ifaddr-N`, `route-N`, `route6-N`, `rule-N`, `nftables-N`,
//! `iptables-N`, `ip6tables-N`) and made again in a new namespace on restore.
//!
//! - [`netlink`]: the synchronous netlink client every part speaks through;
//! - [`links`]: loopback and veth pairs (the host end created in crust's namespace),
//!   link state, MTU, MAC, ifindex;
//! - [`streams`]: addresses, routes (every table but `local`) and rules, the kernel's
//!   dump replies kept verbatim in iproute2's save streams, replayed on restore;
//! - [`sysctl`]: the namespace's and each device's `net.ipv4.conf`/`net.ipv6.conf`
//!   values (positional lists, CRIU's order), `net.unix.max_dgram_qlen`,
//!   `net.ipv4.ping_group_range`;
//! - [`dump`] and [`restore`]: the two halves, each entered in one place by the
//!   pipelines; the nftables ruleset goes through the `nft` program (text). Two other
//!   ways a runtime asks for: a namespace left out (`--empty-ns net`, runc's every
//!   checkpoint: no image, the restore makes an empty one) and an external one
//!   (`--external net[INODE]:KEY`: `netns-N.img` holds only the key, the restore joins
//!   the namespace its caller passes as `--inherit-fd fd[N]:KEY`).
//!
//! Everything that reads or changes the namespace runs in a crust thread that entered
//! it ([`in_namespace`]); programs run in a child that entered it before exec.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

pub(crate) mod dump;
pub(crate) mod links;
pub(crate) mod netlink;
pub(crate) mod restore;
pub(crate) mod streams;
pub(crate) mod sysctl;

use crate::sys;

/// Why a network namespace could not be dumped or restored.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A call failed; `what` names it.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// The kernel refused a netlink request.
    #[error("{what}: {source}")]
    Netlink { what: String, source: io::Error },
    /// Something crust does not dump or restore, or a program that failed.
    #[error("{what}")]
    Refused { what: String },
    /// An image that does not hold together.
    #[error("{image}: {what}")]
    BadImage { image: String, what: String },
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> NetError {
        NetError::Io { what: what.into(), source }
    }

    pub(crate) fn refused(what: impl Into<String>) -> NetError {
        NetError::Refused { what: what.into() }
    }

    pub(crate) fn bad_image(image: impl Into<String>, what: impl Into<String>) -> NetError {
        NetError::BadImage { image: image.into(), what: what.into() }
    }

    /// The errno of a refused netlink request or failed call.
    pub(crate) fn errno(&self) -> Option<i32> {
        match self {
            NetError::Io { source, .. } | NetError::Netlink { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// For `map_err`: call `what` failed.
pub(crate) fn net_io(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetError {
    let what = what.into();
    move |source| NetError::Io { what, source }
}

/// Runs `work` in a thread of crust that entered the network namespace `netns`, giving
/// it two rtnetlink sockets: one in crust's own namespace (opened before entering) and
/// one in `netns`.
pub(crate) fn with_sockets<T: Send>(
    netns: BorrowedFd<'_>,
    work: impl FnOnce(&mut netlink::Netlink, &mut netlink::Netlink) -> Result<T, NetError> + Send,
) -> Result<T, NetError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let mut host = netlink::Netlink::route().map_err(net_io("open an rtnetlink socket"))?;
                sys::netns::enter_net_namespace(netns).map_err(net_io("enter the network namespace"))?;
                let mut inside = netlink::Netlink::route().map_err(net_io("open an rtnetlink socket in the namespace"))?;
                work(&mut host, &mut inside)
            })
            .join()
            .unwrap_or_else(|_| Err(NetError::refused("the network namespace's thread panicked")))
    })
}

/// A network namespace crust holds open.
#[derive(Debug)]
pub(crate) struct Namespace {
    pub(crate) fd: std::os::fd::OwnedFd,
    /// Its inode (`net:[INODE]`).
    pub(crate) inode: u64,
}

impl Namespace {
    /// The network namespace of `pid`.
    pub(crate) fn of(pid: i32) -> Result<Namespace, NetError> {
        let fd = sys::netns::open_net_namespace(pid).map_err(net_io(format!("open /proc/{pid}/ns/net")))?;
        let inode = sys::netns::namespace_inode(&fd).map_err(net_io(format!("stat /proc/{pid}/ns/net")))?;
        Ok(Namespace { fd, inode })
    }

    /// The same namespace with its fd moved to the lowest free number at or above
    /// `above`: a restore holds it while it places the tree's fds at their numbers below
    /// that (a shared anonymous object dup2'd onto it closed it, and `setns` back then
    /// failed with EINVAL: container flavor in the aarch64 VM, 2026-12-06).
    /// Where the fd limit does not reach `above`, it stays where it is, with a warning.
    pub(crate) fn parked_above(self, above: i32) -> Result<Namespace, NetError> {
        let copy = self.fd.try_clone().map_err(net_io("duplicate crust's network namespace fd"))?;
        match sys::file::move_above(copy, above) {
            Ok(fd) => Ok(Namespace { fd, inode: self.inode }),
            Err(error) => {
                log::warn!("crust's network namespace fd stays below the tree's fd numbers: move above {above}: {error}");
                Ok(self)
            }
        }
    }

    /// crust's own (its calling thread's) network namespace.
    pub(crate) fn own() -> Result<Namespace, NetError> {
        let fd = sys::netns::open_own_net_namespace().map_err(net_io("open crust's own network namespace"))?;
        let inode = sys::netns::namespace_inode(&fd).map_err(net_io("stat crust's own network namespace"))?;
        Ok(Namespace { fd, inode })
    }

    pub(crate) fn borrow(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
