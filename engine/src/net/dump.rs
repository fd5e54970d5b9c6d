//! The dump half: the network namespace of a tree that has one of its own, written as
//! CRIU 4.2 writes it: `netns-N` (the namespace's sysctls), `netdev-N` (links with their
//! sysctls), `ifaddr-N`, `route-N`, `route6-N`, `rule-N` (iproute2 save streams),
//! `iptables-N` and `ip6tables-N` (legacy tables: empty; a namespace that uses them is
//! refused) and `nftables-N` (the ruleset as `nft list ruleset` prints it, when `nft` is
//! installed). Nothing in the namespace is changed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crust_images::{pb, ImageKind};

use super::streams::{self, Stream};
use super::sysctl::{self, Family};
use super::{links, net_io, with_sockets, Namespace, NetError};
use crate::sys;

/// What a dump of a network namespace wrote, for the log.
#[derive(Debug, Default)]
pub(crate) struct DumpedNet {
    pub(crate) links: usize,
    pub(crate) addresses: usize,
    pub(crate) routes: usize,
    pub(crate) rules: usize,
    pub(crate) nftables_bytes: usize,
}

/// Whether the live processes `processes` (pid and the inode of its network namespace,
/// `None` where its link could not be read; the root first) are in a network namespace
/// other than crust's (`own`). Refuses a tree whose processes are in different ones. Pure.
pub(crate) fn tree_has_own_namespace(processes: &[(i32, Option<u64>)], own: Option<u64>) -> Result<bool, (i32, NetError)> {
    let Some(&(root, _)) = processes.first() else { return Ok(false) };
    let unread = |pid: i32| (pid, NetError::refused(format!("/proc/{pid}/ns/net could not be read")));
    let inode = |&(pid, inode): &(i32, Option<u64>)| inode.ok_or_else(|| unread(pid));
    let roots = inode(&processes[0])?;
    for process in &processes[1..] {
        let (pid, theirs) = (process.0, inode(process)?);
        if theirs != roots {
            return Err((
                pid,
                NetError::refused(format!("network namespace net:[{theirs}] other than the tree root's (net:[{roots}]): a tree in several network namespaces is not supported")),
            ));
        }
    }
    let own = own.ok_or_else(|| (root, NetError::refused("/proc/self/ns/net could not be read")))?;
    Ok(own != roots)
}

/// The key of `pid`'s network namespace when `externals` (`--external
/// net[INODE]:KEY`, as (INODE, KEY)) lists it.
pub(crate) fn external_key(pid: i32, externals: &[(u64, String)]) -> Result<Option<String>, NetError> {
    if externals.is_empty() {
        return Ok(None);
    }
    let namespace = Namespace::of(pid)?;
    Ok(externals.iter().find(|(inode, _)| *inode == namespace.inode).map(|(_, key)| key.clone()))
}

/// Writes namespace `ns_id` as an external one: `netns-N.img` with only `ext_key`, as
/// CRIU writes it; no other network image.
pub(crate) fn write_external(dir: &Path, ns_id: u32, key: &str) -> Result<(), NetError> {
    let name = ImageKind::Netns.file_name(ns_id as u64);
    let write_error = |error: crust_images::ImageError| NetError::refused(format!("write {name}: {error}"));
    let mut w = crate::private::create_image(dir, ImageKind::Netns, ns_id as u64).map_err(write_error)?;
    w.write_entry(&pb::NetnsEntry { ext_key: Some(key.to_string()), ..Default::default() }).map_err(write_error)?;
    w.finish().map_err(write_error)
}

/// Dumps the network namespace of `pid` as namespace `ns_id` into `dir`.
pub(crate) fn dump_namespace(pid: i32, ns_id: u32, dir: &Path) -> Result<DumpedNet, NetError> {
    let namespace = Namespace::of(pid)?;
    let crust = Namespace::own()?;
    let crust_fd = crust.borrow();
    let (netns, devices, saved, legacy) = with_sockets(namespace.borrow(), |_host, inside| {
        let mut devices = links::dump_links(inside, ns_id, crust_fd)?;
        for device in &mut devices {
            device.conf4 = sysctl::read_conf(Family::V4, &device.name);
            device.conf6 = sysctl::read_conf(Family::V6, &device.name);
        }
        let netns = sysctl::read_namespace();
        let mut saved = Vec::new();
        for stream in Stream::ALL {
            saved.push((stream, streams::dump(inside, stream)?));
        }
        let legacy = ["ip_tables_names", "ip6_tables_names"]
            .map(|name| fs::read_to_string(format!("/proc/thread-self/net/{name}")).unwrap_or_default().trim().to_string());
        Ok((netns, devices, saved, legacy))
    })?;
    for (name, tables) in ["iptables", "ip6tables"].iter().zip(&legacy) {
        if !tables.is_empty() {
            return Err(NetError::refused(format!(
                "the namespace has legacy {name} tables ({}): crust dumps nftables rulesets only",
                tables.replace('\n', ", ")
            )));
        }
    }
    let nftables = nft_ruleset(&namespace)?;

    let image = |kind: ImageKind| kind.file_name(ns_id as u64);
    let write_error = |kind: ImageKind| {
        let name = image(kind);
        move |error: crust_images::ImageError| NetError::refused(format!("write {name}: {error}"))
    };
    let mut w = crate::private::create_image(dir, ImageKind::Netns, ns_id as u64).map_err(write_error(ImageKind::Netns))?;
    w.write_entry(&netns).map_err(write_error(ImageKind::Netns))?;
    w.finish().map_err(write_error(ImageKind::Netns))?;
    let mut w = crate::private::create_image(dir, ImageKind::Netdev, ns_id as u64).map_err(write_error(ImageKind::Netdev))?;
    for device in &devices {
        w.write_entry(device).map_err(write_error(ImageKind::Netdev))?;
    }
    w.finish().map_err(write_error(ImageKind::Netdev))?;

    let mut dumped = DumpedNet { links: devices.len(), nftables_bytes: nftables.as_ref().map_or(0, |t| t.len()), ..Default::default() };
    for (stream, saved) in &saved {
        let kind = match stream {
            Stream::Addresses => ImageKind::Ifaddr,
            Stream::Routes { family } if *family == libc::AF_INET6 as u8 => ImageKind::Route6,
            Stream::Routes { .. } => ImageKind::Route,
            Stream::Rules => ImageKind::Rule,
        };
        let count = saved.messages().len();
        match stream {
            Stream::Addresses => dumped.addresses += count,
            Stream::Routes { .. } => dumped.routes += count,
            Stream::Rules => dumped.rules += count,
        }
        write_raw(dir, &image(kind), &saved.to_bytes())?;
    }
    write_raw(dir, &image(ImageKind::Iptables), b"")?;
    write_raw(dir, &image(ImageKind::Ip6tables), b"")?;
    if let Some(text) = nftables {
        write_raw(dir, &image(ImageKind::Nftables), text.as_bytes())?;
    }
    Ok(dumped)
}

/// Writes a raw image (0600, as every image).
fn write_raw(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), NetError> {
    let path = dir.join(name);
    crate::private::write_file(&path, bytes).map_err(net_io(format!("write {}", path.display())))
}

/// The namespace's nftables ruleset (`nft list ruleset` run in it); `None` when `nft`
/// is not installed (no `nftables-N`, as CRIU built without libnftables).
fn nft_ruleset(namespace: &Namespace) -> Result<Option<String>, NetError> {
    use std::os::fd::AsRawFd;
    let mut command = Command::new("nft");
    command.args(["list", "ruleset"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    sys::netns::run_in_net_namespace(&mut command, namespace.fd.as_raw_fd());
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            log::warn!("nft not installed: the namespace's nftables ruleset is not dumped");
            return Ok(None);
        }
        Err(error) => return Err(NetError::io("run nft list ruleset in the namespace", error)),
    };
    if !output.status.success() {
        return Err(NetError::refused(format!(
            "nft list ruleset in the namespace: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    String::from_utf8(output.stdout).map(Some).map_err(|_| NetError::refused("nft list ruleset printed something that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_in_one_network_namespace_is_compared_with_crusts_and_a_split_one_refused() {
        assert!(!tree_has_own_namespace(&[(10, Some(7)), (11, Some(7))], Some(7)).unwrap());
        assert!(tree_has_own_namespace(&[(10, Some(8)), (11, Some(8))], Some(7)).unwrap());
        assert!(!tree_has_own_namespace(&[], Some(7)).unwrap());
        let (pid, error) = tree_has_own_namespace(&[(10, Some(8)), (11, Some(9))], Some(7)).unwrap_err();
        assert_eq!(pid, 11);
        assert!(error.to_string().contains("net:[9] other than the tree root's (net:[8])"), "{error}");
        let (pid, error) = tree_has_own_namespace(&[(10, Some(8)), (12, None)], Some(7)).unwrap_err();
        assert_eq!(pid, 12);
        assert!(error.to_string().contains("/proc/12/ns/net could not be read"), "{error}");
    }
}
