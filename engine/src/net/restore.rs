//! The restore half: the tree's network namespace made again before any of its
//! processes exists. crust's main thread enters a new network namespace
//! ([`NetImages::make`]), builds it there (sysctls, links with their dumped ifindex,
//! name, MTU and MAC, a veth's host end in crust's namespace, link flags, addresses,
//! routes, rules, the nftables ruleset), opens the tree's files (sockets are created in
//! the namespace they are opened in) and clones the root, which inherits the namespace;
//! then it goes back to its own ([`Entered::leave`], also on every error path). A tree
//! with a user namespace of its own gets a network namespace that namespace owns: its
//! root is cloned into a new, empty one, which crust's main thread then enters and
//! builds ([`NetImages::make_in`]) before the root goes on. A
//! failed restore leaves nothing behind: the namespace ends with the last fd on it, and
//! a veth's host end ends with its pair.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

use crust_images::iproute::SaveStream;
use crust_images::{pb, ImageDir, ImageKind};

use super::links::{self, HostEnd};
use super::netlink::Netlink;
use super::streams::{self, Stream};
use super::sysctl::{self, Family};
use super::{net_io, Namespace, NetError};
use crate::sys;

/// The images of one network namespace, read and checked before anything is made.
#[derive(Debug)]
pub(crate) struct NetImages {
    pub(crate) ns_id: u32,
    netns: pb::NetnsEntry,
    devices: Vec<pb::NetDeviceEntry>,
    streams: Vec<(Stream, String, SaveStream)>,
    nftables: Option<String>,
}

/// Whether `dir` holds the images of network namespace `ns_id` (`netns-N.img`).
pub(crate) fn has_namespace(dir: &Path, ns_id: u32) -> bool {
    dir.join(ImageKind::Netns.file_name(ns_id as u64)).exists()
}

/// The key of namespace `ns_id` when the dump left it outside (`netns-N.img` with
/// `ext_key`, `--external net[INODE]:KEY`); `None` for a namespace dumped whole.
pub(crate) fn external_key(dir: &Path, ns_id: u32) -> Result<Option<String>, NetError> {
    let netns: pb::NetnsEntry = ImageDir::new(dir)
        .read_single(ImageKind::Netns, ns_id as u64)
        .map_err(|e| NetError::bad_image(ImageKind::Netns.file_name(ns_id as u64), e.to_string()))?;
    Ok(netns.ext_key)
}

/// Gives crust's main thread a new, empty network namespace (`--empty-ns net`: only a
/// loopback, down, as the kernel makes it) and leaves it there until the root is
/// cloned.
pub(crate) fn make_empty(above: i32) -> Result<Entered, NetError> {
    let crust = Namespace::own()?.parked_above(above)?;
    sys::netns::enter_new_net_namespace().map_err(net_io("make a new network namespace"))?;
    Ok(Entered { crust: Some(crust), host_ends: Vec::new() })
}

/// Puts crust's main thread into the network namespace of `fd` (an external one the
/// caller passed with `--inherit-fd fd[N]:KEY`) until the root is cloned.
pub(crate) fn join(fd: i32, above: i32) -> Result<Entered, NetError> {
    let crust = Namespace::own()?.parked_above(above)?;
    sys::netns::enter_inherited_net_namespace(fd).map_err(net_io(format!("enter the external network namespace of fd {fd}")))?;
    Ok(Entered { crust: Some(crust), host_ends: Vec::new() })
}

/// Reads the images of network namespace `ns_id` from `dir`.
pub(crate) fn read(dir: &Path, ns_id: u32) -> Result<NetImages, NetError> {
    let images = ImageDir::new(dir);
    let name = |kind: ImageKind| kind.file_name(ns_id as u64);
    let netns: pb::NetnsEntry = images.read_single(ImageKind::Netns, ns_id as u64).map_err(|e| NetError::bad_image(name(ImageKind::Netns), e.to_string()))?;
    if let Some(key) = &netns.ext_key {
        return Err(NetError::bad_image(name(ImageKind::Netns), format!("an external network namespace (key {key:?}) is not supported yet")));
    }
    let devices: Vec<pb::NetDeviceEntry> =
        images.read_entries(ImageKind::Netdev, ns_id as u64).map_err(|e| NetError::bad_image(name(ImageKind::Netdev), e.to_string()))?;
    for device in &devices {
        match pb::NdType::try_from(device.r#type) {
            Ok(pb::NdType::Loopback | pb::NdType::Veth) => {}
            _ => {
                return Err(NetError::bad_image(
                    name(ImageKind::Netdev),
                    format!("link {} is of type {}: crust restores only loopback and veth links", device.name, device.r#type),
                ))
            }
        }
    }
    let mut streams = Vec::new();
    for stream in Stream::ALL {
        let kind = match stream {
            Stream::Addresses => ImageKind::Ifaddr,
            Stream::Routes { family } if family == libc::AF_INET6 as u8 => ImageKind::Route6,
            Stream::Routes { .. } => ImageKind::Route,
            Stream::Rules => ImageKind::Rule,
        };
        let file = name(kind);
        let path = dir.join(&file);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // CRIU writes no stream it could not save; nothing to put back then.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(NetError::io(format!("read {}", path.display()), error)),
        };
        if bytes.is_empty() {
            continue;
        }
        let saved = SaveStream::parse_image(&file, kind, &bytes).map_err(|e| NetError::bad_image(file.clone(), e.to_string()))?;
        streams.push((stream, file, saved));
    }
    for kind in [ImageKind::Iptables, ImageKind::Ip6tables] {
        let path = dir.join(name(kind));
        if std::fs::metadata(&path).map(|m| m.len() > 0).unwrap_or(false) {
            return Err(NetError::bad_image(name(kind), "legacy iptables rules: crust restores nftables rulesets only"));
        }
    }
    let nftables = match std::fs::read_to_string(dir.join(name(ImageKind::Nftables))) {
        Ok(text) if !text.trim().is_empty() => Some(text),
        Ok(_) => None,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(NetError::io(format!("read {}", name(ImageKind::Nftables)), error)),
    };
    Ok(NetImages { ns_id, netns, devices, streams, nftables })
}

/// crust's main thread in the tree's new network namespace; [`Entered::leave`] (or
/// drop) takes it back to its own.
#[derive(Debug)]
pub(crate) struct Entered {
    crust: Option<Namespace>,
    /// The host ends of the veths made: (inner name, host name).
    pub(crate) host_ends: Vec<(String, String)>,
}

impl Entered {
    /// Back to crust's own namespace.
    pub(crate) fn leave(mut self) -> Result<(), NetError> {
        self.go_back()
    }

    fn go_back(&mut self) -> Result<(), NetError> {
        match self.crust.take() {
            Some(crust) => sys::netns::enter_net_namespace(crust.borrow()).map_err(net_io("go back to crust's network namespace")),
            None => Ok(()),
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Err(error) = self.go_back() {
            log::error!("{error}");
        }
    }
}

/// Parses the host ends asked for (`IN=OUT[@BRIDGE]` of `--veth-pair` and
/// `veth[IN]:OUT[@BRIDGE]` of `--external`, both given as (IN, OUT[@BRIDGE])).
pub(crate) fn host_ends(pairs: &[(String, String)]) -> BTreeMap<String, HostEnd> {
    pairs.iter().map(|(inner, outer)| (inner.clone(), HostEnd::parse(outer))).collect()
}

impl NetImages {
    /// Makes the namespace and leaves the calling thread in it (see the module doc).
    pub(crate) fn make(&self, host_ends: &BTreeMap<String, HostEnd>, above: i32) -> Result<Entered, NetError> {
        self.check_host_ends(host_ends)?;
        let crust = Namespace::own()?.parked_above(above)?;
        let mut host = Netlink::route().map_err(net_io("open an rtnetlink socket"))?;
        sys::netns::enter_new_net_namespace().map_err(net_io("make a new network namespace"))?;
        let entered = Entered { crust: Some(crust), host_ends: Vec::new() };
        self.build(entered, &mut host, host_ends)
    }

    /// Builds the namespace in the new, empty network namespace of `pid` (the restored
    /// root of a tree with a user namespace of its own, cloned into both, so that its
    /// user namespace owns it), from the calling thread, which stays in it until
    /// [`Entered::leave`].
    pub(crate) fn make_in(&self, pid: i32, host_ends: &BTreeMap<String, HostEnd>, above: i32) -> Result<Entered, NetError> {
        self.check_host_ends(host_ends)?;
        let crust = Namespace::own()?.parked_above(above)?;
        let mut host = Netlink::route().map_err(net_io("open an rtnetlink socket"))?;
        let tree = Namespace::of(pid)?;
        sys::netns::enter_net_namespace(tree.fd).map_err(net_io(format!("enter the network namespace of pid {pid} (setns)")))?;
        let entered = Entered { crust: Some(crust), host_ends: Vec::new() };
        self.build(entered, &mut host, host_ends)
    }

    fn check_host_ends(&self, host_ends: &BTreeMap<String, HostEnd>) -> Result<(), NetError> {
        for inner in host_ends.keys() {
            if !self.devices.iter().any(|d| &d.name == inner && d.r#type == pb::NdType::Veth as i32 && d.peer_nsid.is_none()) {
                return Err(NetError::refused(format!("a host end is named for veth {inner}, which the dump has not (or not with its peer outside)")));
            }
        }
        Ok(())
    }

    /// Fills the namespace the calling thread is in (`entered`: how it goes back).
    fn build(&self, mut entered: Entered, host: &mut Netlink, host_ends: &BTreeMap<String, HostEnd>) -> Result<Entered, NetError> {
        let mut inside = Netlink::route().map_err(net_io("open an rtnetlink socket in the new namespace"))?;
        sysctl::write_namespace(&self.netns)?;
        let crust_fd = entered.crust.as_ref().expect("set above").borrow();
        let made = links::restore_links(&mut inside, host, crust_fd, &self.devices, self.ns_id, host_ends)?;
        entered.host_ends = made.into_iter().map(|m| (m.inner, m.name)).collect();
        for device in &self.devices {
            sysctl::write_conf(Family::V4, &device.name, &device.conf4, &self.netns.def_conf4)?;
            if !device.conf6.is_empty() {
                sysctl::write_conf(Family::V6, &device.name, &device.conf6, &self.netns.def_conf6)?;
            }
        }
        links::set_all_flags(&mut inside, &self.devices)?;
        for (stream, file, saved) in &self.streams {
            let (made, existed) = streams::restore(&mut inside, *stream, saved, file)?;
            log::info!("network namespace {}: {made} {} made, {existed} there already", self.ns_id, stream.describe());
        }
        if let Some(text) = &self.nftables {
            let mut ruleset = without_criu_lock(text);
            // CRIU locked the whole namespace (its chains, left out above): so does
            // the restore, until it lifts the lock (`files::unlock_tcp`), or a restored
            // socket's first packet meets a peer not restored yet and is answered RST.
            if ruleset.len() != text.len() && text.contains("chain CRIU {") {
                ruleset.push_str(&crate::files::namespace_lock_ruleset());
                log::info!("network namespace {}: locked whole until the restore ends (CRIU's dump locked it so)", self.ns_id);
            }
            load_ruleset(&ruleset)?;
        }
        Ok(entered)
    }
}

/// The ruleset without CRIU's network lock: a dump made by CRIU holds, in the `ip` and
/// `ip6` `filter` tables, its chain `CRIU` (accept CRIU's mark, drop the rest) and a
/// `jump CRIU` rule in each base chain, which CRIU removes after its own restore; loaded
/// as they are, they would drop every packet of the namespace. The per-connection lock
/// table of a dump (`inet CRIU-RUNID`, crust's, or CRIU's with `--network-lock
/// nftables`) stays, so the restored connections are locked until the restore lifts it
/// by name; its `owner` flag goes (an owned table would die with nft's socket at once).
/// Pure.
pub(crate) fn without_criu_lock(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_lock_chain = false;
    let mut in_lock_table = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if line.starts_with("table inet CRIU-") {
            in_lock_table = true;
        } else if line == "}" {
            in_lock_table = false;
        } else if in_lock_table && trimmed.starts_with("flags ") && trimmed.contains("owner") {
            continue;
        }
        if in_lock_chain {
            if trimmed == "}" {
                in_lock_chain = false;
            }
            continue;
        }
        if trimmed == "chain CRIU {" {
            in_lock_chain = true;
            continue;
        }
        if trimmed.ends_with("jump CRIU") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Loads an nftables ruleset (`nft -f -`) into the calling thread's network namespace.
fn load_ruleset(text: &str) -> Result<(), NetError> {
    use std::io::Write;
    let netns = sys::netns::open_own_net_namespace().map_err(net_io("open the new network namespace"))?;
    let mut command = Command::new("nft");
    command.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    sys::netns::run_in_net_namespace(&mut command, netns.as_raw_fd());
    let mut child = command.spawn().map_err(net_io("run nft -f - to restore the nftables ruleset"))?;
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(text.as_bytes()));
    let output = child.wait_with_output().map_err(net_io("wait for nft"))?;
    if let Some(Err(error)) = written {
        return Err(NetError::io("write the ruleset to nft", error));
    }
    if !output.status.success() {
        return Err(NetError::refused(format!("nft -f - (the dumped nftables ruleset): {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_s_lock_chains_are_left_out_of_the_ruleset() {
        // As CRIU 4.2 wrote it for a namespace with a table of its own.
        let criu = "table ip filter {\n\tchain CRIU {\n\t\tmeta mark 0x0000c114 counter packets 0 bytes 0 accept\n\t\tcounter packets 0 bytes 0 drop\n\t}\n\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tcounter packets 0 bytes 0 jump CRIU\n\t}\n}\ntable inet t1 {\n\tchain c1 {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 9 drop\n\t}\n}\n";
        let kept = without_criu_lock(criu);
        assert_eq!(
            kept,
            "table ip filter {\n\n\tchain INPUT {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\ntable inet t1 {\n\tchain c1 {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 9 drop\n\t}\n}\n"
        );
        assert_eq!(without_criu_lock(&kept), kept, "a ruleset without the lock stays as it is");
    }

    #[test]
    fn a_dump_s_lock_table_stays_without_its_owner_flag() {
        // As crust writes it for a container's connections (nft list ruleset).
        let text = "table inet CRIU-be4825df-920d-4a14-83 { # progname crust\n\tflags owner\n\n\tset conns4 {\n\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service\n\t}\n}\ntable inet t1 {\n\tflags owner\n}\n";
        assert_eq!(
            without_criu_lock(text),
            "table inet CRIU-be4825df-920d-4a14-83 { # progname crust\n\n\tset conns4 {\n\t\ttype ipv4_addr . inet_service . ipv4_addr . inet_service\n\t}\n}\ntable inet t1 {\n\tflags owner\n}\n"
        );
    }
}
