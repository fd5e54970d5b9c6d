//! The one place where a request's `criu_opts` become engine options: which options
//! crust honours, which it accepts because it already behaves that way, and which it
//! refuses (with the option's name) because it cannot honour them yet. Pure: the
//! directories arrive already opened, and `config_file` text already read.

use std::fmt;
use std::path::PathBuf;

use crust_engine::dump::DumpOptions;
use crust_engine::restore::RestoreOptions;
use crust_images::rpc::{CriuCgMode, CriuNetworkLockMethod, CriuOpts};

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Dump,
    PreDump,
    Restore,
}

impl Action {
    fn dumps(self) -> bool {
        matches!(self, Action::Dump | Action::PreDump)
    }
}

/// The directories of a request, opened by the server from the client's fds.
#[derive(Clone, Debug)]
pub struct RequestDirs {
    /// The images directory (`images_dir_fd` or `images_dir`).
    pub images: PathBuf,
}

/// What the engine is to do.
#[derive(Clone, Debug)]
pub enum EngineRequest {
    Dump(DumpOptions),
    Restore(RestoreOptions),
}

/// An option the request sets that crust cannot honour yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The `criu_opts` field.
    pub option: &'static str,
    /// What crust does instead, or what is missing.
    pub why: &'static str,
}

/// Why a request's options cannot be carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// Options crust cannot honour yet, every one the request sets.
    Unsupported(Vec<Refusal>),
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionError::Unsupported(refusals) => {
                let list: Vec<String> = refusals.iter().map(|r| format!("{} ({})", r.option, r.why)).collect();
                let noun = if refusals.len() == 1 { "option" } else { "options" };
                write!(f, "{noun} not supported yet: {}", list.join(", "))
            }
        }
    }
}

/// Turns a request's options into the engine's: every option crust cannot honour is
/// refused (all of them named in one error), the others are mapped or accepted.
///
/// Honoured: `pid`, `leave_running`, `tcp_established`, `shell_job`, `parent_img`
/// (relative to the images directory), and, outside this function, the directories,
/// `log_file`/`log_level`/`log_to_stderr`, `notify_scripts`, `status_fd`,
/// `config_file`. Accepted because crust already behaves so: `track_mem` (pages are
/// compared with the parent's, no tracking needed), `file_locks` (locks are always
/// dumped), `link_remap` (unlinked files are always kept, as ghost copies),
/// `evasive_devices` and `orphan_pts_master` (they change nothing unless a device path
/// is gone at restore or a pty's master is outside the tree; crust then fails naming
/// the file), `skip_file_rwx_check` (crust checks no modes), `pre_dump_mode` (crust
/// picks its own way of reading pages), `display_stats`, `network_lock` NFTABLES
/// (crust's lock), `manage_cgroups` off or `IGNORE`/`CG_NONE`.
// Options the engine gains later take their defaults (`..Default::default()`).
#[allow(clippy::needless_update)]
pub fn engine_options(action: Action, opts: &CriuOpts, dirs: &RequestDirs) -> Result<EngineRequest, OptionError> {
    let refused = refusals(action, opts);
    if !refused.is_empty() {
        return Err(OptionError::Unsupported(refused));
    }
    if action.dumps() {
        let pid = match opts.pid {
            Some(pid) if pid > 0 => pid,
            _ => {
                return Err(OptionError::Unsupported(vec![Refusal {
                    option: "pid",
                    why: "a dump of the requesting process itself; name the tree's root pid",
                }]))
            }
        };
        Ok(EngineRequest::Dump(DumpOptions {
            pid,
            dir: dirs.images.clone(),
            // A pre-dump is a whole dump the tree survives, as `crust pre-dump`.
            leave_running: action == Action::PreDump || opts.leave_running(),
            tcp_established: opts.tcp_established(),
            shell_job: opts.shell_job(),
            parent: opts.parent_img.as_ref().map(PathBuf::from),
            ..DumpOptions::default()
        }))
    } else {
        Ok(EngineRequest::Restore(RestoreOptions {
            dir: dirs.images.clone(),
            // The response is the restored tree's pid: the tree runs on its own.
            detach: true,
            pidfile: None,
            shell_job: opts.shell_job(),
            ..RestoreOptions::default()
        }))
    }
}

/// Where an option matters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Dump,
    Restore,
    Both,
}

/// One option crust cannot honour yet: whether a request asks for it, and why not.
struct Unhonoured {
    option: &'static str,
    scope: Scope,
    asks: fn(&CriuOpts) -> bool,
    why: &'static str,
}

/// Every `criu_opts` field crust refuses when a request sets it (to anything but what
/// crust does anyway). An option outside its scope means nothing there and is
/// ignored, as CRIU ignores it.
const UNHONOURED: &[Unhonoured] = &[
    Unhonoured { option: "ps", scope: Scope::Both, asks: |o| o.ps.is_some(), why: "no page server" },
    Unhonoured { option: "lazy_pages", scope: Scope::Both, asks: |o| o.lazy_pages(), why: "pages are restored before the tree runs" },
    Unhonoured { option: "auto_dedup", scope: Scope::Both, asks: |o| o.auto_dedup(), why: "parent images are never punched" },
    Unhonoured { option: "tls", scope: Scope::Both, asks: |o| o.tls() || o.tls_no_cn_verify(), why: "no page server" },
    Unhonoured { option: "tls_cacert", scope: Scope::Both, asks: |o| o.tls_cacert.is_some(), why: "no page server" },
    Unhonoured { option: "tls_cacrl", scope: Scope::Both, asks: |o| o.tls_cacrl.is_some(), why: "no page server" },
    Unhonoured { option: "tls_cert", scope: Scope::Both, asks: |o| o.tls_cert.is_some(), why: "no page server" },
    Unhonoured { option: "tls_key", scope: Scope::Both, asks: |o| o.tls_key.is_some(), why: "no page server" },
    Unhonoured {
        option: "root",
        scope: Scope::Both,
        asks: |o| o.root.as_deref().is_some_and(|root| !root.trim_end_matches('/').is_empty()),
        why: "mount namespaces are not dumped or restored yet",
    },
    Unhonoured { option: "ext_mnt", scope: Scope::Both, asks: |o| !o.ext_mnt.is_empty(), why: "mount namespaces are not dumped or restored yet" },
    Unhonoured { option: "auto_ext_mnt", scope: Scope::Both, asks: |o| o.auto_ext_mnt(), why: "mount namespaces are not dumped or restored yet" },
    Unhonoured { option: "ext_sharing", scope: Scope::Both, asks: |o| o.ext_sharing(), why: "mount namespaces are not dumped or restored yet" },
    Unhonoured { option: "ext_masters", scope: Scope::Both, asks: |o| o.ext_masters(), why: "mount namespaces are not dumped or restored yet" },
    Unhonoured { option: "skip_mnt", scope: Scope::Dump, asks: |o| !o.skip_mnt.is_empty(), why: "mount namespaces are not dumped yet" },
    Unhonoured { option: "enable_fs", scope: Scope::Dump, asks: |o| !o.enable_fs.is_empty(), why: "mount namespaces are not dumped yet" },
    Unhonoured { option: "mntns_compat_mode", scope: Scope::Restore, asks: |o| o.mntns_compat_mode(), why: "mount namespaces are not restored yet" },
    Unhonoured { option: "external", scope: Scope::Both, asks: |o| !o.external.is_empty(), why: "no external resources (namespaces, ttys, files) yet" },
    Unhonoured { option: "empty_ns", scope: Scope::Restore, asks: |o| o.empty_ns() != 0, why: "network namespaces are not restored yet" },
    Unhonoured { option: "join_ns", scope: Scope::Restore, asks: |o| !o.join_ns.is_empty(), why: "the restored tree cannot join existing namespaces yet" },
    Unhonoured { option: "veths", scope: Scope::Restore, asks: |o| !o.veths.is_empty(), why: "network namespaces are not restored yet" },
    Unhonoured {
        option: "manage_cgroups",
        scope: Scope::Both,
        asks: |o| manages_cgroups(o),
        why: "cgroups are not dumped or restored yet (mode IGNORE or CG_NONE is what crust does)",
    },
    Unhonoured { option: "cg_root", scope: Scope::Both, asks: |o| !o.cg_root.is_empty(), why: "cgroups are not dumped or restored yet" },
    Unhonoured { option: "cgroup_props", scope: Scope::Dump, asks: |o| o.cgroup_props.is_some(), why: "cgroups are not dumped yet" },
    Unhonoured { option: "cgroup_props_file", scope: Scope::Dump, asks: |o| o.cgroup_props_file.is_some(), why: "cgroups are not dumped yet" },
    Unhonoured { option: "cgroup_dump_controller", scope: Scope::Dump, asks: |o| !o.cgroup_dump_controller.is_empty(), why: "cgroups are not dumped yet" },
    Unhonoured { option: "cgroup_yard", scope: Scope::Both, asks: |o| o.cgroup_yard.is_some(), why: "cgroups are not dumped or restored yet" },
    Unhonoured { option: "freeze_cgroup", scope: Scope::Dump, asks: |o| o.freeze_cgroup.is_some(), why: "crust freezes each thread with ptrace, not through the cgroup freezer" },
    Unhonoured { option: "ext_unix_sk", scope: Scope::Both, asks: |o| o.ext_unix_sk(), why: "a unix socket connected outside the tree fails the dump" },
    Unhonoured { option: "unix_sk_ino", scope: Scope::Both, asks: |o| !o.unix_sk_ino.is_empty(), why: "a unix socket connected outside the tree fails the dump" },
    Unhonoured { option: "tcp_skip_in_flight", scope: Scope::Dump, asks: |o| o.tcp_skip_in_flight(), why: "a listener with connections waiting for accept fails the dump" },
    Unhonoured { option: "tcp_close", scope: Scope::Restore, asks: |o| o.tcp_close(), why: "established connections are restored established" },
    Unhonoured {
        option: "network_lock",
        scope: Scope::Both,
        asks: |o| o.network_lock.is_some() && o.network_lock() != CriuNetworkLockMethod::Nftables,
        why: "crust locks connections with nftables only",
    },
    Unhonoured { option: "inherit_fd", scope: Scope::Restore, asks: |o| !o.inherit_fd.is_empty(), why: "every file is opened again from the images" },
    Unhonoured { option: "rst_sibling", scope: Scope::Restore, asks: |o| o.rst_sibling(), why: "the restored root is a child of crust, not of the client" },
    Unhonoured { option: "exec_cmd", scope: Scope::Restore, asks: |o| !o.exec_cmd.is_empty(), why: "no command is run after a restore" },
    Unhonoured { option: "weak_sysctls", scope: Scope::Restore, asks: |o| o.weak_sysctls(), why: "namespace sysctls are not restored yet" },
    Unhonoured { option: "lsm_profile", scope: Scope::Restore, asks: |o| o.lsm_profile.is_some(), why: "LSM profiles are not set on restore" },
    Unhonoured { option: "lsm_mount_context", scope: Scope::Restore, asks: |o| o.lsm_mount_context.is_some(), why: "LSM mount contexts are not set on restore" },
    Unhonoured { option: "leave_stopped", scope: Scope::Both, asks: |o| o.leave_stopped(), why: "the tree always runs on after a restore or a --leave-running dump" },
    Unhonoured { option: "unprivileged", scope: Scope::Both, asks: |o| o.unprivileged(), why: "crust needs root" },
    Unhonoured {
        option: "ghost_limit",
        scope: Scope::Dump,
        asks: |o| o.ghost_limit.is_some_and(|limit| limit != CriuOpts::default().ghost_limit()),
        why: "unlinked files are copied whatever their size",
    },
    Unhonoured { option: "irmap_scan_paths", scope: Scope::Dump, asks: |o| !o.irmap_scan_paths.is_empty(), why: "no inotify path search" },
    Unhonoured { option: "force_irmap", scope: Scope::Dump, asks: |o| o.force_irmap(), why: "no inotify path search" },
    Unhonoured { option: "timeout", scope: Scope::Dump, asks: |o| o.timeout.is_some(), why: "the freeze has no time limit" },
    Unhonoured { option: "pidfd_store_sk", scope: Scope::Dump, asks: |o| o.pidfd_store_sk.is_some(), why: "no pidfd store" },
    Unhonoured {
        option: "cpu_cap",
        scope: Scope::Both,
        asks: |o| o.cpu_cap.is_some_and(|cap| cap != CriuOpts::default().cpu_cap()),
        why: "no cpuinfo image; the restore checks the XSAVE layout itself",
    },
];

/// Every option the request sets for `action` that crust cannot honour, in field order.
pub fn refusals(action: Action, opts: &CriuOpts) -> Vec<Refusal> {
    UNHONOURED
        .iter()
        .filter(|entry| match entry.scope {
            Scope::Both => true,
            Scope::Dump => action.dumps(),
            Scope::Restore => action == Action::Restore,
        })
        .filter(|entry| (entry.asks)(opts))
        .map(|entry| Refusal { option: entry.option, why: entry.why })
        .collect()
}

/// Whether the request asks for cgroups to be managed (CRIU: `manage_cgroups_mode` if
/// set, else `manage_cgroups` true means SOFT; absent both, crust does not manage them).
fn manages_cgroups(opts: &CriuOpts) -> bool {
    match opts.manage_cgroups_mode {
        Some(_) => !matches!(opts.manage_cgroups_mode(), CriuCgMode::Ignore | CriuCgMode::CgNone),
        None => opts.manage_cgroups(),
    }
}

/// A CRIU configuration file's settings applied onto `opts`, as CRIU does with
/// `config_file`: settings in the file win over the request's. The format is CRIU's:
/// one long option per line without its dashes, an argument after blanks, `#` comments.
/// An option this does not know is an error naming it.
pub fn apply_config(opts: &mut CriuOpts, text: &str) -> Result<(), String> {
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, argument) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((name, argument)) => (name, Some(argument.trim().trim_matches('"'))),
            None => (line, None),
        };
        let name = name.trim_start_matches('-');
        let need = |argument: Option<&str>| -> Result<String, String> {
            argument.map(str::to_string).ok_or_else(|| format!("line {}: {name} needs an argument", number + 1))
        };
        match name {
            "tcp-established" => opts.tcp_established = Some(true),
            "file-locks" => opts.file_locks = Some(true),
            "shell-job" | "j" => opts.shell_job = Some(true),
            "leave-running" | "R" => opts.leave_running = Some(true),
            "ext-unix-sk" => opts.ext_unix_sk = Some(true),
            "evasive-devices" => opts.evasive_devices = Some(true),
            "link-remap" => opts.link_remap = Some(true),
            "tcp-skip-in-flight" | "skip-in-flight" => opts.tcp_skip_in_flight = Some(true),
            "tcp-close" => opts.tcp_close = Some(true),
            "track-mem" => opts.track_mem = Some(true),
            "auto-dedup" => opts.auto_dedup = Some(true),
            "lazy-pages" => opts.lazy_pages = Some(true),
            "orphan-pts-master" => opts.orphan_pts_master = Some(true),
            "weak-sysctls" => opts.weak_sysctls = Some(true),
            "skip-file-rwx-check" => opts.skip_file_rwx_check = Some(true),
            "display-stats" => opts.display_stats = Some(true),
            "log-file" | "o" => opts.log_file = Some(need(argument)?),
            "v0" | "v1" | "v2" | "v3" | "v4" => opts.log_level = name[1..].parse().ok(),
            "verbosity" | "v" => {
                opts.log_level = Some(need(argument)?.parse().map_err(|_| format!("line {}: bad verbosity", number + 1))?)
            }
            "manage-cgroups" => {
                let mode = match argument.unwrap_or("soft") {
                    "none" => CriuCgMode::CgNone,
                    "props" => CriuCgMode::Props,
                    "soft" => CriuCgMode::Soft,
                    "full" => CriuCgMode::Full,
                    "strict" => CriuCgMode::Strict,
                    "ignore" => CriuCgMode::Ignore,
                    other => return Err(format!("line {}: manage-cgroups mode {other}", number + 1)),
                };
                opts.manage_cgroups = Some(true);
                opts.set_manage_cgroups_mode(mode);
            }
            "network-lock" => {
                let method = match need(argument)?.as_str() {
                    "iptables" => CriuNetworkLockMethod::Iptables,
                    "nftables" => CriuNetworkLockMethod::Nftables,
                    "skip" => CriuNetworkLockMethod::Skip,
                    other => return Err(format!("line {}: network-lock method {other}", number + 1)),
                };
                opts.set_network_lock(method);
            }
            "root" => opts.root = Some(need(argument)?),
            "freeze-cgroup" => opts.freeze_cgroup = Some(need(argument)?),
            "lsm-profile" => opts.lsm_profile = Some(need(argument)?),
            "lsm-mount-context" => opts.lsm_mount_context = Some(need(argument)?),
            "external" => opts.external.push(need(argument)?),
            "skip-mnt" => opts.skip_mnt.push(need(argument)?),
            "enable-fs" => opts.enable_fs.push(need(argument)?),
            "ghost-limit" => {
                let limit = need(argument)?;
                opts.ghost_limit = Some(parse_size(&limit).ok_or_else(|| format!("line {}: ghost-limit {limit}", number + 1))?);
            }
            "timeout" => opts.timeout = Some(need(argument)?.parse().map_err(|_| format!("line {}: bad timeout", number + 1))?),
            other => return Err(format!("line {}: option {other} is not understood over RPC yet", number + 1)),
        }
    }
    Ok(())
}

/// CRIU's sizes: a number with an optional K, M or G suffix.
fn parse_size(text: &str) -> Option<u32> {
    let (digits, shift) = match text.chars().last()? {
        'K' | 'k' => (&text[..text.len() - 1], 10),
        'M' | 'm' => (&text[..text.len() - 1], 20),
        'G' | 'g' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits.parse().ok()?;
    u32::try_from(value << shift).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> RequestDirs {
        RequestDirs { images: PathBuf::from("/img") }
    }

    /// The options runc sets on every checkpoint of a plain container without
    /// namespaces crust lacks: accepted.
    fn runc_like_dump() -> CriuOpts {
        CriuOpts {
            images_dir_fd: 5,
            pid: Some(42),
            log_level: Some(4),
            log_file: Some("dump.log".into()),
            notify_scripts: Some(true),
            shell_job: Some(false),
            leave_running: Some(false),
            tcp_established: Some(true),
            tcp_skip_in_flight: Some(false),
            link_remap: Some(false),
            ext_unix_sk: Some(false),
            file_locks: Some(true),
            empty_ns: Some(0),
            orphan_pts_master: Some(true),
            auto_dedup: Some(false),
            lazy_pages: Some(false),
            config_file: Some("/etc/criu/runc.conf".into()),
            ..CriuOpts::default()
        }
    }

    #[test]
    fn a_plain_dump_maps_onto_dump_options() {
        let request = engine_options(Action::Dump, &runc_like_dump(), &dirs()).unwrap();
        let EngineRequest::Dump(dump) = request else { panic!("a dump") };
        assert_eq!(dump.pid, 42);
        assert_eq!(dump.dir, PathBuf::from("/img"));
        assert!(dump.tcp_established && !dump.leave_running && !dump.shell_job);
        assert_eq!(dump.parent, None);
    }

    #[test]
    fn a_pre_dump_leaves_the_tree_running_and_names_its_parent() {
        let opts = CriuOpts { parent_img: Some("../pre1".into()), track_mem: Some(true), ..runc_like_dump() };
        let EngineRequest::Dump(dump) = engine_options(Action::PreDump, &opts, &dirs()).unwrap() else { panic!("a dump") };
        assert!(dump.leave_running);
        assert_eq!(dump.parent, Some(PathBuf::from("../pre1")));
    }

    #[test]
    fn a_restore_is_detached() {
        let opts = CriuOpts { evasive_devices: Some(true), shell_job: Some(true), ..CriuOpts::default() };
        let EngineRequest::Restore(restore) = engine_options(Action::Restore, &opts, &dirs()).unwrap() else { panic!("a restore") };
        assert!(restore.detach && restore.shell_job);
        assert_eq!(restore.pidfile, None);
    }

    #[test]
    fn every_unhonoured_option_is_named() {
        let opts = CriuOpts {
            rst_sibling: Some(true),
            lazy_pages: Some(true),
            ext_mnt: vec![crust_images::rpc::ExtMountMap { key: "/a".into(), val: "/a".into() }],
            manage_cgroups: Some(true),
            ..CriuOpts::default()
        };
        let error = engine_options(Action::Restore, &opts, &dirs()).unwrap_err();
        let text = error.to_string();
        for option in ["rst_sibling", "lazy_pages", "ext_mnt", "manage_cgroups"] {
            assert!(text.contains(option), "{option} in {text}");
        }
        assert!(text.starts_with("options not supported yet: "), "{text}");
    }

    #[test]
    fn options_of_the_other_action_are_ignored_as_criu_does() {
        let opts = CriuOpts { pid: Some(7), rst_sibling: Some(true), inherit_fd: vec![], ..CriuOpts::default() };
        assert!(engine_options(Action::Dump, &opts, &dirs()).is_ok());
        let opts = CriuOpts { freeze_cgroup: Some("/sys/fs/cgroup/freezer/x".into()), ..CriuOpts::default() };
        assert!(engine_options(Action::Restore, &opts, &dirs()).is_ok());
        assert!(engine_options(Action::Dump, &CriuOpts { pid: Some(7), ..opts }, &dirs()).is_err());
    }

    #[test]
    fn cgroup_modes_crust_has_are_accepted() {
        for (flag, mode, refused) in [
            (Some(false), None, false),
            (Some(true), None, true),
            (Some(true), Some(CriuCgMode::Ignore), false),
            (Some(true), Some(CriuCgMode::CgNone), false),
            (Some(true), Some(CriuCgMode::Soft), true),
            (None, Some(CriuCgMode::Default), true),
            (None, None, false),
        ] {
            let mut opts = CriuOpts { pid: Some(1), manage_cgroups: flag, ..CriuOpts::default() };
            if let Some(mode) = mode {
                opts.set_manage_cgroups_mode(mode);
            }
            let names: Vec<_> = refusals(Action::Dump, &opts).iter().map(|r| r.option).collect();
            assert_eq!(names.contains(&"manage_cgroups"), refused, "{flag:?} {mode:?}");
        }
    }

    #[test]
    fn defaults_written_out_are_not_refusals() {
        let mut opts = CriuOpts { pid: Some(1), ghost_limit: Some(1 << 20), cpu_cap: Some(u32::MAX), root: Some("/".into()), ..CriuOpts::default() };
        opts.set_network_lock(CriuNetworkLockMethod::Nftables);
        assert_eq!(refusals(Action::Dump, &opts), vec![]);
        opts.set_network_lock(CriuNetworkLockMethod::Iptables);
        opts.ghost_limit = Some(2 << 20);
        let names: Vec<_> = refusals(Action::Dump, &opts).iter().map(|r| r.option).collect();
        assert_eq!(names, ["network_lock", "ghost_limit"]);
    }

    #[test]
    fn a_dump_without_a_pid_is_refused() {
        let error = engine_options(Action::Dump, &CriuOpts::default(), &dirs()).unwrap_err();
        assert!(error.to_string().contains("pid ("), "{error}");
    }

    #[test]
    fn config_files_use_criu_option_names() {
        let mut opts = CriuOpts::default();
        apply_config(&mut opts, "# runc.conf\ntcp-established\nfile-locks  # locks\nlog-file rpc.log\nmanage-cgroups ignore\nghost-limit 2M\n\n").unwrap();
        assert!(opts.tcp_established() && opts.file_locks());
        assert_eq!(opts.log_file.as_deref(), Some("rpc.log"));
        assert_eq!(opts.manage_cgroups_mode(), CriuCgMode::Ignore);
        assert_eq!(opts.ghost_limit, Some(2 << 20));
        let error = apply_config(&mut opts, "tcp-established\nno-such-option\n").unwrap_err();
        assert_eq!(error, "line 2: option no-such-option is not understood over RPC yet");
    }
}
