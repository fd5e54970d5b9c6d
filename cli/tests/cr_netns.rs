//! A process in a network namespace of its own, with a veth to crust's namespace,
//! addresses of both families, routes in two tables, a rule, a sysctl and an nftables
//! table, serving on the namespace's addresses. After dump and restore the namespace's
//! links, addresses, routes, rules, sysctl and ruleset are as before, the veth's host
//! end has the name given with `--veth-pair`, and the restored process answers on its
//! TCP listener and UDP socket with the token it drew before the dump and a reply count
//! that continues (a restarted program would draw a new token and count from 0).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{compile, crust, signal, skip_reason, subreaper, tempdir, wait_exit, KillOnDrop};

/// Runs `program args`, panicking with its stderr if it fails; returns its stdout.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(output.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a shell command line in the network namespace of `pid`.
fn in_netns(pid: i32, script: &str) -> String {
    run("nsenter", &["-t", &pid.to_string(), "-n", "sh", "-ec", script])
}

/// What the test compares: the namespace as `ip`, /proc/sys and `nft` show it, with the
/// host end's ifindex (`eth0@if12`), which the kernel picks, left out.
fn snapshot(pid: i32) -> String {
    let text = in_netns(
        pid,
        "ip -o link; ip -o addr; ip route show table all; ip -6 route show table all; ip rule; ip -6 rule; \
         cat /proc/sys/net/ipv6/conf/eth0/hop_limit /proc/sys/net/ipv4/conf/eth0/rp_filter; nft list ruleset",
    );
    text.split_whitespace()
        .map(|word| match word.find("@if") {
            Some(at) if word[at + 3..].trim_end_matches(':').chars().all(|c| c.is_ascii_digit()) => &word[..at],
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Waits until link `name` of crust's namespace is gone (a namespace is torn down by a
/// kernel worker after its last process ends; its veths go with it).
fn wait_link_gone(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while link_exists(name) {
        assert!(Instant::now() < deadline, "host end {name} still there 20 s after its namespace ended");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the server over TCP and UDP; returns both replies.
fn ask(v4: &str, v6: &str, port: u16) -> (String, String) {
    let mut tcp = TcpStream::connect_timeout(&format!("{v4}:{port}").parse().unwrap(), Duration::from_secs(10)).expect("connect over the veth");
    let mut over_tcp = String::new();
    tcp.read_to_string(&mut over_tcp).unwrap();
    let udp = UdpSocket::bind("[::]:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    udp.send_to(b"hi", format!("[{v6}]:{port}")).unwrap();
    let mut buffer = [0u8; 64];
    let (n, _) = udp.recv_from(&mut buffer).expect("UDP reply over the veth");
    (over_tcp, String::from_utf8_lossy(&buffer[..n]).into_owned())
}

/// The reference crit decodes `netns-9.img` and `netdev-9.img` to the same JSON as
/// `crust show` (skipped, with the reason, without the reference root).
fn crit_reads_as_crust_does(images: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let root = std::env::var_os("CRUST_CRIU_ROOT").map(std::path::PathBuf::from).unwrap_or_else(|| repo.join(".cache/criu-root"));
    if !cfg!(target_arch = "x86_64") || !root.join("usr/bin/crit").exists() {
        eprintln!("crit comparison skipped: the reference root (x86_64) is not installed at {}", root.display());
        return;
    }
    for image in ["netns-9.img", "netdev-9.img"] {
        let path = images.join(image);
        let crit = Command::new(repo.join("ci/crit")).arg("show").arg(&path).output().unwrap();
        assert!(crit.status.success(), "crit show {image}: {}", String::from_utf8_lossy(&crit.stderr));
        let ours = crust().arg("show").arg(&path).output().unwrap();
        assert!(ours.status.success(), "crust show {image}: {}", String::from_utf8_lossy(&ours.stderr));
        let parse = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap_or_else(|e| panic!("{image}: not JSON: {e}"));
        assert_eq!(parse(&ours.stdout), parse(&crit.stdout), "{image}: crust show and crit show differ");
    }
}

#[test]
fn namespace_links_addresses_routes_and_bound_sockets_come_back() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    for tool in ["ip", "nsenter", "nft"] {
        if Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            eprintln!("skipped: needs {tool} to build and read the namespace");
            return;
        }
    }
    subreaper();
    let dir = tempdir("netns");
    let binary = compile(&dir, "netns", &[]);
    let tag = std::process::id() % 200 + 20;
    let host_end = format!("crtv{}", std::process::id() % 100000);
    let (v4_host, v4, v6) = (format!("10.213.{tag}.1"), format!("10.213.{tag}.2"), format!("fd13:{tag}::2"));
    let v6_host = format!("fd13:{tag}::1");
    let port = 7000 + tag as u16;

    let mut child = Command::new(&binary)
        .args([&v4, &v6, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut guard = KillOnDrop(pid);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), format!("ready {pid}"));
    run("ip", &["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &format!("/proc/{pid}/ns/net")]);
    run("ip", &["addr", "add", &format!("{v4_host}/24"), "dev", &host_end]);
    run("ip", &["addr", "add", &format!("{v6_host}/64"), "dev", &host_end, "nodad"]);
    run("ip", &["link", "set", &host_end, "up"]);
    in_netns(
        pid,
        &format!(
            "ip link set lo up; ip link set eth0 mtu 1400 address 02:00:0a:d5:{tag:02x}:02 up; \
             ip addr add {v4}/24 dev eth0; ip -6 addr add {v6}/64 dev eth0 nodad; \
             ip route add default via {v4_host}; ip route add 10.214.0.0/16 via {v4_host} metric 50; \
             ip route add 10.215.0.0/16 via {v4_host} table 100; ip rule add from {v4}/32 table 100 pref 100; \
             echo 33 > /proc/sys/net/ipv6/conf/eth0/hop_limit; echo 2 > /proc/sys/net/ipv4/conf/eth0/rp_filter; \
             nft add table inet crusttest; nft add chain inet crusttest in '{{ type filter hook input priority 0; }}'; \
             nft add rule inet crusttest in tcp dport 9 drop"
        ),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "bound");
    drop(stdin);
    drop(lines);
    let (tcp_before, udp_before) = ask(&v4, &v6, port);
    let token = tcp_before.split_whitespace().next().unwrap().to_string();
    assert_eq!(tcp_before, format!("{token} {pid} 0\n"));
    assert_eq!(udp_before, format!("{token} {pid} 1\n"));
    let before = snapshot(pid);

    let images = dir.join("img");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "-o", "dump.log", "-v4", "-D"]).arg(&images).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    guard.disarm();
    for image in ["netns-9.img", "netdev-9.img", "ifaddr-9.img", "route-9.img", "route6-9.img", "rule-9.img", "iptables-9.img", "ip6tables-9.img", "nftables-9.img"] {
        assert!(images.join(image).exists(), "{image} written");
    }
    crit_reads_as_crust_does(&images);
    wait_link_gone(&host_end);

    // A host end that cannot be made: one line naming it, nothing left running.
    let refused = crust().args(["restore", "-d", "--veth-pair", "eth0=lo", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "restore with host end lo succeeded");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("host end lo exists already"), "{stderr}");
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} left after a failed restore");

    let restored = crust()
        .args(["restore", "-d", "-o", "restore.log", "-v4", "--external", &format!("veth[eth0]:{host_end}"), "-D"])
        .arg(&images)
        .output()
        .unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    let mut guard = KillOnDrop(pid);
    assert!(link_exists(&host_end), "host end {host_end} made in crust's namespace");
    // C/R does not address the host end: the runtime (here the test) does.
    run("ip", &["addr", "add", &format!("{v4_host}/24"), "dev", &host_end]);
    run("ip", &["addr", "add", &format!("{v6_host}/64"), "dev", &host_end, "nodad"]);
    assert_eq!(snapshot(pid), before, "the namespace after restore");
    let (tcp_after, udp_after) = ask(&v4, &v6, port);
    assert_eq!(tcp_after, format!("{token} {pid} 2\n"), "TCP reply of the restored process");
    assert_eq!(udp_after, format!("{token} {pid} 3\n"), "UDP reply of the restored process");

    signal(pid, libc::SIGKILL);
    wait_exit(pid);
    guard.disarm();
    wait_link_gone(&host_end);
}

/// The network namespace inode of `pid` (`net:[INODE]`).
fn net_inode(pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap_or_else(|e| panic!("ns/net of {pid}: {e}")).ino()
}

/// Starts the pattern target (its memory a pattern of its pid) under `wrapper` (which
/// puts it in a network namespace and execs it: same pid); returns its pid.
fn start_pattern_in(dir: &Path, wrapper: &[&str], out: &Path) -> i32 {
    let binary = dir.join("pattern");
    if !binary.exists() {
        compile(dir, "pattern", &[]);
    }
    let mut command = Command::new(wrapper[0]);
    command.args(&wrapper[1..]).arg(&binary).arg(out).arg("4");
    let (child, text, _) = common::start_with_pipes(&mut command, 0);
    assert_eq!(text.trim(), child.id().to_string(), "target wrote its pid");
    child.id() as i32
}

/// SIGUSR1: the target checks every byte of its memory and writes PASS.
fn check_pattern(pid: i32, out: &Path) {
    signal(pid, libc::SIGUSR1);
    let status = wait_exit(pid);
    assert_eq!(std::fs::read_to_string(out).unwrap_or_default(), "PASS\n", "the restored target's memory check");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status:#x}");
}

/// runc's way with a network namespace: `--empty-ns net` at dump writes no network
/// image, and at restore makes the namespace again, empty (loopback down); without it
/// the restore refuses in one line naming the missing image.
#[test]
fn empty_ns_net_leaves_the_namespace_out_and_makes_it_empty() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    subreaper();
    let dir = tempdir("netns-empty");
    let out = dir.join("pattern.out");
    let pid = start_pattern_in(&dir, &["unshare", "--net", "--"], &out);
    let mut guard = KillOnDrop(pid);
    let host = net_inode(std::process::id() as i32);
    assert_ne!(net_inode(pid), host, "the target has a namespace of its own");
    let images = dir.join("img");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "--empty-ns", "net", "-o", "dump.log", "-v4", "-D"]).arg(&images).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    guard.disarm();
    let network_images: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| ["netns-", "netdev-", "ifaddr-", "route-", "nftables-"].iter().any(|p| name.starts_with(p)))
        .collect();
    assert!(network_images.is_empty(), "no network image with --empty-ns net: {network_images:?}");

    let refused = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "restore without --empty-ns succeeded");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("netns-") && stderr.contains("missing"), "{stderr}");

    let restored = crust().args(["restore", "-d", "--empty-ns", "net", "-o", "restore.log", "-v4", "-D"]).arg(&images).output().unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    let mut guard = KillOnDrop(pid);
    assert_ne!(net_inode(pid), host, "restored into a namespace of its own");
    let links = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    let names: Vec<&str> = links.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(names, ["lo"], "an empty namespace has only its loopback");
    let lo = run("nsenter", &["-t", &pid.to_string(), "-n", "ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains("<LOOPBACK>"), "the loopback of an empty namespace is down: {lo}");
    check_pattern(pid, &out);
    guard.disarm();
}

/// An external network namespace (`--external net[INODE]:KEY` at dump): only
/// `netns-N.img` with the key is written; the restore joins the namespace the caller
/// passes as `--inherit-fd fd[N]:KEY`, and refuses in one line without it.
#[test]
fn an_external_network_namespace_is_joined_from_an_inherited_fd() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    if Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        eprintln!("skipped: needs ip to make a named network namespace");
        return;
    }
    subreaper();
    let dir = tempdir("netns-external");
    let out = dir.join("pattern.out");
    let name = format!("crust-ext-{}", std::process::id());
    run("ip", &["netns", "add", &name]);
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
        }
    }
    let _netns = Netns(name.clone());
    let path = format!("/run/netns/{name}");
    let pid = start_pattern_in(&dir, &["nsenter", &format!("--net={path}"), "--"], &out);
    let mut guard = KillOnDrop(pid);
    let inode = net_inode(pid);
    let images = dir.join("img");
    let external = format!("net[{inode}]:extNet");
    let dumped = crust().args(["dump", "-t", &pid.to_string(), "--external", &external, "-o", "dump.log", "-v4", "-D"]).arg(&images).output().unwrap();
    assert!(dumped.status.success(), "dump: {}", String::from_utf8_lossy(&dumped.stderr));
    wait_exit(pid);
    guard.disarm();
    let netns_images: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.starts_with("net") || name.starts_with("ifaddr-"))
        .collect();
    assert_eq!(netns_images.len(), 1, "only netns-N.img: {netns_images:?}");
    let decoded = crust().arg("show").arg(images.join(&netns_images[0])).output().unwrap();
    assert!(String::from_utf8_lossy(&decoded.stdout).contains("extNet"), "ext_key in {}", String::from_utf8_lossy(&decoded.stdout));

    let refused = crust().args(["restore", "-d", "-D"]).arg(&images).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "restore without the namespace succeeded");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("--inherit-fd fd[N]:extNet"), "{stderr}");

    let held = std::fs::File::open(&path).unwrap();
    let held_fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    let mut restore = crust();
    restore.args(["restore", "-d", "--inherit-fd", "fd[7]:extNet", "-o", "restore.log", "-v4", "-D"]).arg(&images);
    // SAFETY: dup2 is async-signal-safe; fd 7 is the namespace for the restore only.
    unsafe {
        use std::os::unix::process::CommandExt;
        restore.pre_exec(move || if libc::dup2(held_fd, 7) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    let restored = restore.output().unwrap();
    assert!(restored.status.success(), "restore: {}", String::from_utf8_lossy(&restored.stderr));
    let mut guard = KillOnDrop(pid);
    assert_eq!(net_inode(pid), inode, "the restored target is in the external namespace");
    check_pattern(pid, &out);
    guard.disarm();
}
