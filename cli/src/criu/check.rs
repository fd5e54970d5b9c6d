//! `check`: what crust needs from the kernel (the engine's probes: CRIU's category 1),
//! `--extra` and `--experimental` (CRIU's categories 2 and 3), and `--feature NAME`
//! for each of CRIU 4.2's feature names, each probed on this kernel. Features that are
//! about the checkpoint tool rather than the kernel (external_net_ns, nftables) are
//! answered for crust.

use std::io::Write;
use std::path::PathBuf;

use super::options::CriuOptions;
use super::Program;
use crate::sys;

/// CRIU's categories: the extra ones are checked by `--extra`, the experimental ones
/// by `--experimental`; `--feature` reaches every one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Extra,
    Experimental,
    /// Only through `--feature`.
    FeatureOnly,
}

/// One of CRIU's feature names and how crust finds it out.
pub struct Feature {
    pub name: &'static str,
    pub category: Category,
    /// `Ok(how it was seen)` or `Err(why it is missing)`.
    pub probe: fn() -> Result<String, String>,
}

use Category::{Experimental, Extra, FeatureOnly};

/// CRIU 4.2's feature names, in its order.
pub static FEATURES: &[Feature] = &[
    Feature { name: "mnt_id", category: Extra, probe: mnt_id },
    Feature { name: "mem_dirty_track", category: Extra, probe: mem_dirty_track },
    Feature { name: "aio_remap", category: Extra, probe: aio_remap },
    Feature { name: "timerfd", category: Extra, probe: timerfd },
    Feature { name: "tun", category: FeatureOnly, probe: tun },
    Feature { name: "tun_ns", category: FeatureOnly, probe: tun_ns },
    Feature { name: "userns", category: Extra, probe: userns },
    Feature { name: "fdinfo_lock", category: Extra, probe: fdinfo_lock },
    Feature { name: "seccomp_suspend", category: Extra, probe: seccomp_suspend },
    Feature { name: "seccomp_filters", category: Extra, probe: seccomp_filters },
    Feature { name: "loginuid", category: Extra, probe: loginuid },
    Feature { name: "cgroupns", category: Extra, probe: cgroupns },
    Feature { name: "autofs", category: Experimental, probe: autofs },
    Feature { name: "tcp_half_closed", category: Extra, probe: tcp_half_closed },
    Feature { name: "compat_cr", category: Experimental, probe: compat_cr },
    Feature { name: "uffd", category: Extra, probe: uffd },
    Feature { name: "uffd-noncoop", category: Extra, probe: uffd_noncoop },
    Feature { name: "can_map_vdso", category: Extra, probe: can_map_vdso },
    Feature { name: "sk_ns", category: Extra, probe: sk_ns },
    Feature { name: "sk_unix_file", category: FeatureOnly, probe: sk_unix_file },
    Feature { name: "net_diag_raw", category: Extra, probe: net_diag_raw },
    Feature { name: "nsid", category: FeatureOnly, probe: nsid },
    Feature { name: "link_nsid", category: FeatureOnly, probe: link_nsid },
    Feature { name: "kcmp_epoll", category: Extra, probe: kcmp_epoll },
    Feature { name: "timens", category: Extra, probe: timens },
    Feature { name: "external_net_ns", category: FeatureOnly, probe: external_net_ns },
    Feature { name: "clone3_set_tid", category: Extra, probe: clone3_set_tid },
    Feature { name: "newifindex", category: Extra, probe: newifindex },
    Feature { name: "nftables", category: FeatureOnly, probe: nftables },
    Feature { name: "has_ipt_legacy", category: FeatureOnly, probe: has_ipt_legacy },
    Feature { name: "pidfd_store", category: Extra, probe: pidfd_store },
    Feature { name: "ns_pid", category: Extra, probe: ns_pid },
    Feature { name: "apparmor_stacking", category: Extra, probe: apparmor_stacking },
    Feature { name: "network_lock_nftables", category: Extra, probe: network_lock_nftables },
    Feature { name: "sockopt_buf_lock", category: Extra, probe: sockopt_buf_lock },
    Feature { name: "memfd_hugetlb", category: Extra, probe: memfd_hugetlb },
    Feature { name: "move_mount_set_group", category: Extra, probe: move_mount_set_group },
    Feature { name: "openat2", category: Extra, probe: openat2 },
    Feature { name: "get_rseq_conf", category: Extra, probe: get_rseq_conf },
    Feature { name: "ipv6_freebind", category: Extra, probe: ipv6_freebind },
    Feature { name: "pagemap_scan", category: Extra, probe: pagemap_scan },
    Feature { name: "timer_cr_ids", category: Extra, probe: timer_cr_ids },
    Feature { name: "overlayfs_maps", category: Extra, probe: overlayfs_maps },
    Feature { name: "breakpoints", category: Extra, probe: breakpoints },
    Feature { name: "pagemap_scan_guard_pages", category: Extra, probe: pagemap_scan_guard_pages },
];

/// Runs `check` as the options ask; returns the exit code (CRIU's: 0 if everything
/// asked for is there, 1 otherwise).
pub fn run(program: Program, options: &CriuOptions) -> anyhow::Result<i32> {
    let name = program.name();
    if let Some(wanted) = &options.feature {
        if wanted == "list" {
            for feature in FEATURES {
                println!("{}", feature.name);
            }
            return Ok(0);
        }
        let Some(feature) = FEATURES.iter().find(|f| f.name == wanted.as_str()) else {
            anyhow::bail!("unknown feature {wanted} (`{name} check --feature list` lists them)");
        };
        return Ok(match (feature.probe)() {
            Ok(how) => {
                println!("{} is supported", feature.name);
                if options.verbosity >= 3 {
                    eprintln!("{name}: {}: {how}", feature.name);
                }
                0
            }
            Err(why) => {
                eprintln!("{name}: {} is not supported: {why}", feature.name);
                1
            }
        });
    }
    // Category 1: what crust needs for any dump or restore.
    let mut required_missing = 0;
    for feature in crust_engine::check::check_features() {
        match (feature.present, feature.optional) {
            (true, _) => {
                if options.verbosity >= 3 {
                    println!("ok       {} ({})", feature.name, feature.detail);
                }
            }
            (false, false) => {
                eprintln!("{name}: missing: {} ({})", feature.name, feature.detail);
                required_missing += 1;
            }
            (false, true) => eprintln!("{name}: absent (only some dumps need it): {} ({})", feature.name, feature.detail),
        }
    }
    if required_missing > 0 {
        println!("Does not look good.");
        return Ok(1);
    }
    let mut other_missing = 0;
    for feature in FEATURES.iter().filter(|f| {
        (f.category == Extra && options.check_extra) || (f.category == Experimental && options.check_experimental)
    }) {
        match (feature.probe)() {
            Ok(how) => {
                if options.verbosity >= 3 {
                    println!("ok       {} ({how})", feature.name);
                }
            }
            Err(why) => {
                eprintln!("{name}: {} is not supported: {why}", feature.name);
                other_missing += 1;
            }
        }
    }
    let _ = std::io::stderr().flush();
    if other_missing > 0 {
        println!("Looks good but some kernel features are missing\nwhich, depending on your process tree, may cause\ndump or restore failure.");
        return Ok(1);
    }
    println!("Looks good.");
    Ok(0)
}

fn exists(path: &str) -> Result<String, String> {
    if std::path::Path::new(path).exists() {
        Ok(format!("{path} exists"))
    } else {
        Err(format!("no {path}"))
    }
}

fn kernel_at_least(major: u32, minor: u32, what: &str) -> Result<String, String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| format!("read the kernel release: {e}"))?;
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (have_major, have_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (have_major, have_minor) >= (major, minor) {
        Ok(format!("{what} came in Linux {major}.{minor}; this is {}", release.trim()))
    } else {
        Err(format!("{what} needs Linux {major}.{minor}; this is {}", release.trim()))
    }
}

/// A scratch directory for probes that need files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("crust-check-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mnt_id() -> Result<String, String> {
    let file = std::fs::File::open("/proc/self/status").map_err(|e| e.to_string())?;
    use std::os::fd::AsRawFd;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).map_err(|e| e.to_string())?;
    info.lines().find(|l| l.starts_with("mnt_id:")).map(|l| format!("fdinfo shows {l}")).ok_or_else(|| "fdinfo has no mnt_id".into())
}

fn mem_dirty_track() -> Result<String, String> {
    use std::os::unix::fs::FileExt;
    let page = sys::page_size();
    let mut buffer = vec![0u8; page * 2];
    let offset = buffer.as_ptr().align_offset(page);
    let address = buffer.as_ptr() as usize + offset;
    std::fs::write("/proc/self/clear_refs", "4").map_err(|e| format!("clear soft-dirty bits (/proc/self/clear_refs 4): {e}"))?;
    buffer[offset] = 1;
    let pagemap = std::fs::File::open("/proc/self/pagemap").map_err(|e| e.to_string())?;
    let mut entry = [0u8; 8];
    pagemap.read_exact_at(&mut entry, (address / page * 8) as u64).map_err(|e| format!("read pagemap: {e}"))?;
    std::hint::black_box(&buffer);
    if u64::from_ne_bytes(entry) & (1 << 55) != 0 {
        Ok("a written page shows the soft-dirty bit after clear_refs".into())
    } else {
        Err("soft-dirty tracking is off (a page written after clear_refs lacks pagemap bit 55); crust's incremental dumps compare pages instead".into())
    }
}

fn aio_remap() -> Result<String, String> {
    sys::aio_ring_follows_mremap().map(|()| "an AIO ring moved with mremap works at its new address".into())
}

fn timerfd() -> Result<String, String> {
    sys::timerfd_set_ticks().map(|()| "TFD_IOC_SET_TICKS works".into()).map_err(|e| format!("TFD_IOC_SET_TICKS: {e}"))
}

fn tun() -> Result<String, String> {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").map(|_| "/dev/net/tun opens".into()).map_err(|e| format!("open /dev/net/tun: {e}"))
}

fn tun_ns() -> Result<String, String> {
    tun()?;
    kernel_at_least(5, 2, "TUNGETDEVNETNS")
}

fn userns() -> Result<String, String> {
    exists("/proc/self/ns/user")?;
    sys::prctl_mm_map_size().map(|size| format!("/proc/self/ns/user, PR_SET_MM_MAP_SIZE = {size}")).map_err(|e| format!("PR_SET_MM_MAP_SIZE: {e}"))
}

fn fdinfo_lock() -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let scratch = Scratch::new("lock")?;
    let file = std::fs::File::create(scratch.0.join("lock")).map_err(|e| e.to_string())?;
    file.lock_shared().map_err(|e| format!("flock: {e}"))?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).map_err(|e| e.to_string())?;
    if info.lines().any(|l| l.starts_with("lock:")) {
        Ok("fdinfo lists a flock".into())
    } else {
        Err("fdinfo has no lock: line for a held flock".into())
    }
}

fn seccomp_suspend() -> Result<String, String> {
    const PTRACE_O_SUSPEND_SECCOMP: libc::c_int = 1 << 21;
    sys::with_traced_child(false, |pid| sys::ptrace_set_options(pid, PTRACE_O_SUSPEND_SECCOMP))
        .map_err(|e| e.to_string())?
        .map(|()| "PTRACE_O_SUSPEND_SECCOMP is accepted".into())
        .map_err(|e| format!("PTRACE_O_SUSPEND_SECCOMP: {e}"))
}

fn seccomp_filters() -> Result<String, String> {
    sys::with_traced_child(true, sys::ptrace_seccomp_filter_length)
        .map_err(|e| e.to_string())?
        .map(|length| format!("PTRACE_SECCOMP_GET_FILTER reads a {length}-instruction filter"))
        .map_err(|e| format!("PTRACE_SECCOMP_GET_FILTER: {e}"))
}

fn loginuid() -> Result<String, String> {
    let value = std::fs::read_to_string("/proc/self/loginuid").map_err(|e| format!("read /proc/self/loginuid: {e}"))?;
    let writable = sys::probe_in_child(|| std::fs::write("/proc/self/loginuid", value.trim()).is_ok()).map_err(|e| e.to_string())?;
    if writable {
        Ok("/proc/self/loginuid reads and writes".into())
    } else {
        Err("/proc/self/loginuid cannot be written (needs CONFIG_AUDITSYSCALL and CAP_AUDIT_CONTROL)".into())
    }
}

fn cgroupns() -> Result<String, String> {
    exists("/proc/self/ns/cgroup")
}

fn autofs() -> Result<String, String> {
    let scratch = Scratch::new("autofs")?;
    let (_read, write) = sys::pipe().map_err(|e| e.to_string())?;
    use std::os::fd::AsRawFd;
    let options = format!("fd={},pgrp={},minproto=5,maxproto=5,direct", write.as_raw_fd(), sys::process_group());
    let dir = scratch.0.clone();
    let mounted = sys::probe_in_child(move || {
        sys::private_mount_namespace().is_ok()
            && sys::mount("crust", &dir, "autofs", &options).is_ok()
            && std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.contains(" autofs ") && l.contains("pipe_ino=")))
    })
    .map_err(|e| e.to_string())?;
    if mounted {
        Ok("an autofs mount (in a private mount namespace) shows pipe_ino".into())
    } else {
        Err("autofs does not mount, or its mountinfo lacks pipe_ino (no autofs in this kernel?)".into())
    }
}

fn tcp_half_closed() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let client = std::net::TcpStream::connect(listener.local_addr().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let (_server, _) = listener.accept().map_err(|e| e.to_string())?;
    client.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
    const TCP_REPAIR: libc::c_int = 19;
    sys::set_socket_option(&client, libc::IPPROTO_TCP, TCP_REPAIR, 1).map_err(|e| format!("TCP_REPAIR on a half-closed socket: {e}"))?;
    // Leave repair mode so the socket closes normally.
    let _ = sys::set_socket_option(&client, libc::IPPROTO_TCP, TCP_REPAIR, 0);
    Ok("TCP_REPAIR works on a half-closed connection".into())
}

fn arch_map_vdso(option: u64, what: &str) -> Result<String, String> {
    match sys::arch_map_vdso(option) {
        None => Err(format!("{what} is x86-only (this architecture maps no vDSO by request)")),
        Some(Err(error)) => Err(error.to_string()),
        Some(Ok(true)) => Ok(format!("{what} maps a vDSO")),
        Some(Ok(false)) => Err(format!("{what} fails")),
    }
}

fn compat_cr() -> Result<String, String> {
    arch_map_vdso(0x2002, "arch_prctl(ARCH_MAP_VDSO_32)")
}

fn can_map_vdso() -> Result<String, String> {
    arch_map_vdso(0x2003, "arch_prctl(ARCH_MAP_VDSO_64)")
}

fn uffd() -> Result<String, String> {
    sys::userfaultfd_features().map(|f| format!("UFFDIO_API offers features {f:#x}")).map_err(|e| format!("userfaultfd: {e}"))
}

fn uffd_noncoop() -> Result<String, String> {
    // EVENT_FORK, EVENT_REMAP, EVENT_REMOVE, EVENT_UNMAP.
    const NONCOOP: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6);
    let features = sys::userfaultfd_features().map_err(|e| format!("userfaultfd: {e}"))?;
    if features & NONCOOP == NONCOOP {
        Ok(format!("fork, remap, remove and unmap events ({features:#x})"))
    } else {
        Err(format!("userfaultfd lacks the non-cooperative events ({features:#x})"))
    }
}

fn sk_ns() -> Result<String, String> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    let socket = sys::socket(libc::AF_INET, libc::SOCK_DGRAM, 0).map_err(|e| e.to_string())?;
    sys::ioctl_new_fd(&socket, SIOCGSKNS).map(|_| "SIOCGSKNS gives a socket's network namespace".into()).map_err(|e| format!("SIOCGSKNS: {e}"))
}

fn sk_unix_file() -> Result<String, String> {
    const SIOCUNIXFILE: libc::c_ulong = 0x89E0;
    let scratch = Scratch::new("unix")?;
    let socket = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0).map_err(|e| e.to_string())?;
    sys::bind_unix(&socket, &scratch.0.join("s")).map_err(|e| format!("bind: {e}"))?;
    sys::ioctl_new_fd(&socket, SIOCUNIXFILE).map(|_| "SIOCUNIXFILE opens a bound socket's file".into()).map_err(|e| format!("SIOCUNIXFILE: {e}"))
}

/// A netlink message: header (length, type, flags, seq, pid) then `payload`.
fn netlink_message(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let length = 16 + payload.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out
}

/// The error a netlink reply carries (0 for none).
fn netlink_error(reply: &[u8]) -> i32 {
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind == libc::NLMSG_ERROR as u16 && reply.len() >= 20 {
        -i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]])
    } else {
        0
    }
}

fn net_diag_raw() -> Result<String, String> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    for family in [libc::AF_INET, libc::AF_INET6] {
        // struct inet_diag_req_v2: family, protocol, ext, pad, states, then a 48-byte id.
        let mut request = vec![family as u8, libc::IPPROTO_RAW as u8, 0, 0];
        request.extend_from_slice(&u32::MAX.to_ne_bytes());
        request.extend_from_slice(&[0u8; 48]);
        let message = netlink_message(SOCK_DIAG_BY_FAMILY, (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16, &request);
        let replies = sys::netlink_exchange(libc::NETLINK_SOCK_DIAG, &message).map_err(|e| format!("sock_diag: {e}"))?;
        if let Some(errno) = replies.iter().map(|r| netlink_error(r)).find(|e| *e != 0) {
            let which = if family == libc::AF_INET { "IPv4" } else { "IPv6" };
            return Err(format!("sock_diag of {which} raw sockets: {}", std::io::Error::from_raw_os_error(errno)));
        }
    }
    Ok("sock_diag lists IPv4 and IPv6 raw sockets".into())
}

fn nsid() -> Result<String, String> {
    use std::os::fd::AsRawFd;
    const RTM_NEWNSID: u16 = 88;
    const RTM_GETNSID: u16 = 90;
    const NETNSA_FD: u16 = 3;
    let own = std::fs::File::open("/proc/self/ns/net").map_err(|e| e.to_string())?;
    // struct rtgenmsg (padded to 4), then the NETNSA_FD attribute.
    let mut payload = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    payload.extend_from_slice(&8u16.to_ne_bytes());
    payload.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    payload.extend_from_slice(&(own.as_raw_fd() as u32).to_ne_bytes());
    let message = netlink_message(RTM_GETNSID, libc::NLM_F_REQUEST as u16, &payload);
    let replies = sys::netlink_exchange(libc::NETLINK_ROUTE, &message).map_err(|e| format!("rtnetlink: {e}"))?;
    let reply = replies.first().ok_or("no rtnetlink reply")?;
    match netlink_error(reply) {
        0 if u16::from_ne_bytes([reply[4], reply[5]]) == RTM_NEWNSID => Ok("RTM_GETNSID answers".into()),
        0 => Err("RTM_GETNSID: unexpected reply".into()),
        errno => Err(format!("RTM_GETNSID: {}", std::io::Error::from_raw_os_error(errno))),
    }
}

fn link_nsid() -> Result<String, String> {
    nsid()?;
    kernel_at_least(4, 0, "IFLA_LINK_NETNSID")
}

fn kcmp_epoll() -> Result<String, String> {
    sys::kcmp_epoll_target().map(|()| "kcmp(KCMP_EPOLL_TFD) finds an epoll's target".into()).map_err(|e| format!("kcmp(KCMP_EPOLL_TFD): {e}"))
}

fn timens() -> Result<String, String> {
    exists("/proc/self/ns/time")
}

fn external_net_ns() -> Result<String, String> {
    Err("crust does not dump network namespaces yet, so it has no external ones either".into())
}

fn clone3_set_tid() -> Result<String, String> {
    let error = sys::clone3_with_busy_tid();
    if error.raw_os_error() == Some(libc::EEXIST) {
        Ok("clone3 checks set_tid (EEXIST for a taken pid)".into())
    } else {
        Err(format!("clone3 with set_tid: {error}"))
    }
}

fn newifindex() -> Result<String, String> {
    kernel_at_least(4, 15, "IFLA_NEW_IFINDEX")
}

fn nftables() -> Result<String, String> {
    Err("crust does not dump or restore nftables rules (network namespaces are not dumped yet)".into())
}

fn has_ipt_legacy() -> Result<String, String> {
    for binary in ["iptables-legacy", "ip6tables-legacy"] {
        let output = std::process::Command::new(binary).arg("--version").output().map_err(|e| format!("run {binary}: {e}"))?;
        if !output.status.success() {
            return Err(format!("{binary} --version: {}", output.status));
        }
    }
    Ok("iptables-legacy and ip6tables-legacy run".into())
}

fn pidfd_store() -> Result<String, String> {
    sys::pidfd_getfd_own().map(|()| "pidfd_open and pidfd_getfd work".into()).map_err(|e| format!("pidfd_open/pidfd_getfd: {e}"))
}

fn ns_pid() -> Result<String, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status.lines().find(|l| l.starts_with("NSpid:")).map(|_| "/proc/PID/status has NSpid".into()).ok_or_else(|| "/proc/PID/status has no NSpid".into())
}

fn apparmor_stacking() -> Result<String, String> {
    let path = "/sys/kernel/security/apparmor/features/domain/stack";
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim() == "yes" => Ok(format!("{path}: yes")),
        Ok(text) => Err(format!("{path}: {}", text.trim())),
        Err(error) => Err(format!("no AppArmor stacking ({path}: {error})")),
    }
}

fn network_lock_nftables() -> Result<String, String> {
    let output = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map_err(|e| format!("run nft (crust locks TCP connections with it; install nftables): {e}"))?;
    if output.status.success() {
        Ok("nft runs: crust's TCP lock works".into())
    } else {
        Err(format!("nft list tables: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn sockopt_buf_lock() -> Result<String, String> {
    const SO_BUF_LOCK: libc::c_int = 72;
    let socket = sys::socket(libc::AF_INET, libc::SOCK_STREAM, 0).map_err(|e| e.to_string())?;
    sys::socket_option(&socket, libc::SOL_SOCKET, SO_BUF_LOCK).map(|_| "SO_BUF_LOCK reads".into()).map_err(|e| format!("SO_BUF_LOCK: {e}"))
}

fn memfd_hugetlb() -> Result<String, String> {
    sys::memfd_hugetlb().map(|()| "memfd_create(MFD_HUGETLB) works".into()).map_err(|e| format!("memfd_create(MFD_HUGETLB): {e}"))
}

fn move_mount_set_group() -> Result<String, String> {
    let error = sys::move_mount_set_group_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => Err(format!("move_mount(MOVE_MOUNT_SET_GROUP): {error}")),
        _ => Ok(format!("move_mount knows MOVE_MOUNT_SET_GROUP (empty paths: {error})")),
    }
}

fn openat2() -> Result<String, String> {
    sys::openat2_root().map(|()| "openat2 works".into()).map_err(|e| format!("openat2: {e}"))
}

fn get_rseq_conf() -> Result<String, String> {
    sys::with_traced_child(false, sys::ptrace_rseq_configuration)
        .map_err(|e| e.to_string())?
        .map(|()| "PTRACE_GET_RSEQ_CONFIGURATION works".into())
        .map_err(|e| format!("PTRACE_GET_RSEQ_CONFIGURATION: {e}"))
}

fn ipv6_freebind() -> Result<String, String> {
    let socket = sys::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0).map_err(|e| format!("IPv6 socket: {e}"))?;
    sys::set_socket_option(&socket, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1)
        .map(|()| "IPV6_FREEBIND sets".into())
        .map_err(|e| format!("IPV6_FREEBIND: {e}"))
}

fn pagemap_scan() -> Result<String, String> {
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    sys::pagemap_scan(PAGE_IS_PRESENT).map(|n| format!("PAGEMAP_SCAN works ({n} region)")).map_err(|e| format!("PAGEMAP_SCAN: {e}"))
}

fn pagemap_scan_guard_pages() -> Result<String, String> {
    const PAGE_IS_GUARD: u64 = 1 << 8;
    sys::pagemap_scan(PAGE_IS_GUARD).map(|_| "PAGEMAP_SCAN knows PAGE_IS_GUARD".into()).map_err(|e| format!("PAGEMAP_SCAN with PAGE_IS_GUARD: {e}"))
}

fn timer_cr_ids() -> Result<String, String> {
    sys::timer_restore_ids()
        .map(|()| "PR_TIMER_CREATE_RESTORE_IDS works".into())
        .map_err(|e| format!("PR_TIMER_CREATE_RESTORE_IDS: {e} (crust restores timers with placeholder timers then)"))
}

fn overlayfs_maps() -> Result<String, String> {
    let scratch = Scratch::new("overlay")?;
    let dir = scratch.0.clone();
    let shown = sys::probe_in_child(move || {
        let merged = dir.join("merged");
        let ok = (|| -> std::io::Result<bool> {
            sys::private_mount_namespace()?;
            sys::mount("tmpfs", &dir, "tmpfs", "size=1m")?;
            for sub in ["lower", "upper", "work", "merged"] {
                std::fs::create_dir(dir.join(sub))?;
            }
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                dir.join("lower").display(),
                dir.join("upper").display(),
                dir.join("work").display()
            );
            sys::mount("overlay", &merged, "overlay", &data)?;
            let path = merged.join("f");
            std::fs::write(&path, [1u8; 4096])?;
            let file = std::fs::File::open(&path)?;
            let address = sys::map_file(&file, 4096)?;
            let maps = std::fs::read_to_string("/proc/self/maps")?;
            Ok(maps.lines().any(|l| l.starts_with(&format!("{address:x}-")) && l.ends_with(&path.display().to_string())))
        })();
        ok.unwrap_or(false)
    })
    .map_err(|e| e.to_string())?;
    if shown {
        Ok("/proc/PID/maps shows a mapped overlayfs file by its overlay path".into())
    } else {
        Err("/proc/PID/maps does not show a mapped overlayfs file by its overlay path (or overlayfs does not mount)".into())
    }
}

fn breakpoints() -> Result<String, String> {
    // The perf PMU the kernel registers when it has hardware breakpoints.
    exists("/sys/bus/event_source/devices/breakpoint").map(|_| "hardware breakpoints (the breakpoint PMU is registered)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are CRIU 4.2.1's `--feature` list, from its `--help` (`tests/data`).
    #[test]
    fn feature_names_are_criu_s() {
        let help = include_str!("../../tests/data/criu-4.2-help.txt");
        let start = help.find("only check a particular feature, one of:").unwrap();
        let end = help[start..].find("* Logging").unwrap() + start;
        let criu: Vec<&str> =
            help[start..end].split_once(':').unwrap().1.split([',', ' ', '\n']).map(str::trim).filter(|w| !w.is_empty()).collect();
        let ours: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        assert_eq!(ours, criu);
    }

    #[test]
    fn netlink_messages() {
        let message = netlink_message(20, 0x301, &[1, 2, 3, 4]);
        assert_eq!(message.len(), 20);
        assert_eq!(u32::from_ne_bytes(message[0..4].try_into().unwrap()), 20);
        let mut error = netlink_message(libc::NLMSG_ERROR as u16, 0, &(-2i32).to_ne_bytes());
        assert_eq!(netlink_error(&error), 2);
        error[4] = 3;
        assert_eq!(netlink_error(&error), 0);
    }
}
