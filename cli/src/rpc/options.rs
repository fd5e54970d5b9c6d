//! A request's `criu_opts` onto the command line's [`CriuOptions`], in CRIU's order for
//! RPC: the server's own options (its configuration files and command line), then the
//! request's fields, then the request's `config_file`, which wins over both. Every
//! field with a command-line counterpart sets that option, so `CriuOptions::refusals`
//! and its builders answer for RPC as for the command line. What only RPC has stays
//! here: the directories as fds, `notify_scripts`, `log_to_stderr`, `status_fd`,
//! `orphan_pts_master`, `config_file`, `exec_cmd`, `pidfd_store_sk`, and a DUMP without
//! `pid`. A refusal names the option by its `criu_opts` field ([`rpc_field`]). Pure: the
//! directories arrive already opened, the config file's text already read.

use std::fmt;
use std::path::{Path, PathBuf};

use crust_engine::dump::DumpOptions;
use crust_engine::restore::RestoreOptions;
use crust_images::rpc::{CriuCgMode, CriuNetworkLockMethod, CriuOpts, CriuPreDumpMode};

use crate::criu::options::{CgroupMode, CpuCaps, CriuOptions, NetworkLock, PreDumpMode, RefusalKind, Verb};

/// What the engine is to do.
#[derive(Clone, Debug)]
pub enum EngineRequest {
    Dump(DumpOptions),
    Restore(RestoreOptions),
}

/// An option that stops a request, named as the client knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcRefusal {
    /// The `criu_opts` field (or, for an option only a configuration file can set, its
    /// name there).
    pub field: String,
    /// The value refused, for an option refused only for some values.
    pub value: Option<String>,
    pub why: String,
    pub kind: RefusalKind,
}

impl RpcRefusal {
    fn not_yet(field: &str, why: &str) -> Self {
        RpcRefusal { field: field.to_string(), value: None, why: why.to_string(), kind: RefusalKind::NotYet }
    }

    fn unusable(field: &str, value: impl Into<String>, why: &str) -> Self {
        RpcRefusal { field: field.to_string(), value: Some(value.into()), why: why.to_string(), kind: RefusalKind::Unusable }
    }

    fn shown(&self) -> String {
        match &self.value {
            Some(value) => format!("{} {value}", self.field),
            None => self.field.clone(),
        }
    }
}

/// Why a request's options cannot be carried out: every option that stops it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionError(pub Vec<RpcRefusal>);

impl OptionError {
    /// The response's `cr_errno`: EOPNOTSUPP when crust cannot honour an option yet,
    /// EINVAL when only values are wrong.
    pub fn errno(&self) -> i32 {
        if self.0.iter().any(|refusal| refusal.kind == RefusalKind::NotYet) {
            libc::EOPNOTSUPP
        } else {
            libc::EINVAL
        }
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (not_yet, unusable): (Vec<&RpcRefusal>, Vec<&RpcRefusal>) =
            self.0.iter().partition(|refusal| refusal.kind == RefusalKind::NotYet);
        let mut parts = Vec::new();
        if !not_yet.is_empty() {
            let list: Vec<String> = not_yet.iter().map(|r| format!("{} ({})", r.shown(), r.why)).collect();
            let noun = if not_yet.len() == 1 { "option" } else { "options" };
            parts.push(format!("{noun} not supported yet: {}", list.join(", ")));
        }
        parts.extend(unusable.iter().map(|r| format!("{}: {}", r.shown(), r.why)));
        f.write_str(&parts.join("; "))
    }
}

/// The request's directories, opened by the server from the client's fds.
#[derive(Clone, Debug)]
pub struct RequestDirs {
    /// The images directory (`images_dir_fd` or `images_dir`).
    pub images: PathBuf,
    /// The work directory (`work_dir_fd`, else the images directory).
    pub work: PathBuf,
}

/// The options of one request: `base` (the server's), then `opts`, then the text of
/// `opts.config_file` if there is one (`config`: its path and text). An error is a
/// value that cannot be taken at all (a log file in a subdirectory, a namespace
/// `empty_ns` cannot leave empty, a bad line of the config file).
pub fn request_options(
    base: &CriuOptions,
    opts: &CriuOpts,
    dirs: &RequestDirs,
    config: Option<(&Path, &str)>,
) -> Result<CriuOptions, OptionError> {
    let mut options = base.clone();
    // The service's own --pidfile and --status-fd are the service's, not a request's;
    // the client hears of the points through NOTIFY, not through action scripts.
    options.pidfile = None;
    options.status_fd = None;
    if !options.action_scripts.is_empty() {
        log::warn!("action scripts of the server's options are not run for RPC requests (notify_scripts reports the points)");
        options.action_scripts.clear();
    }
    options.images_dir = Some(dirs.images.clone());
    options.work_dir = Some(dirs.work.clone());
    set_fields(&mut options, opts)?;
    if let Some((path, text)) = config {
        options
            .apply_config(text, path)
            .map_err(|why| OptionError(vec![RpcRefusal::unusable("config_file", path.display().to_string(), &why)]))?;
    }
    Ok(options)
}

/// Everything that stops the request for `verb`, then the engine's options. The
/// refusals are the command line's, named by their `criu_opts` fields, and the RPC's
/// own.
pub fn engine_request(verb: Verb, options: &CriuOptions, opts: &CriuOpts) -> Result<EngineRequest, OptionError> {
    let mut refused = rpc_refusals(verb, opts);
    refused.extend(options.refusals(verb).into_iter().map(|refusal| RpcRefusal {
        field: rpc_field(refusal.option, opts),
        value: refusal.value,
        why: refusal.why,
        kind: refusal.kind,
    }));
    if !refused.is_empty() {
        return Err(OptionError(refused));
    }
    if verb == Verb::Restore {
        return Ok(EngineRequest::Restore(options.restore_options()));
    }
    options
        .dump_options(verb)
        .map(EngineRequest::Dump)
        .map_err(|why| OptionError(vec![RpcRefusal::not_yet("pid", &why)]))
}

/// The `criu_opts` field that stands for the command-line option `long`: its name
/// with `_` for `-`, except where CRIU named the field otherwise ([`RPC_NAMES`]), and
/// where two fields set one option, the one the request sets.
pub fn rpc_field(long: &str, opts: &CriuOpts) -> String {
    match long {
        "ext-unix-sk" if !opts.unix_sk_ino.is_empty() && !opts.ext_unix_sk() => "unix_sk_ino".to_string(),
        "external" if opts.external.is_empty() && opts.auto_ext_mnt() => "auto_ext_mnt".to_string(),
        "manage-cgroups" if opts.manage_cgroups_mode.is_some() => "manage_cgroups_mode".to_string(),
        _ => match RPC_NAMES.iter().find(|(option, _)| *option == long) {
            Some((_, field)) => field.to_string(),
            None => long.replace('-', "_"),
        },
    }
}

/// Command-line options whose `criu_opts` field has another name.
pub const RPC_NAMES: &[(&str, &str)] = &[
    ("tree", "pid"),
    ("work-dir", "work_dir_fd"),
    ("verbosity", "log_level"),
    ("restore-sibling", "rst_sibling"),
    ("veth-pair", "veths"),
    ("ext-mount-map", "ext_mnt"),
    ("cgroup-root", "cg_root"),
    ("irmap-scan-path", "irmap_scan_paths"),
    ("skip-in-flight", "tcp_skip_in_flight"),
    ("page-server", "ps"),
    ("address", "ps"),
    ("port", "ps"),
    ("ps-socket", "ps"),
    ("enable-external-sharing", "ext_sharing"),
    ("enable-external-masters", "ext_masters"),
    ("prev-images-dir", "parent_img"),
    ("config", "config_file"),
];

/// What only RPC refuses: a DUMP of the client itself, a command to exec after a
/// restore, a pidfd store.
fn rpc_refusals(verb: Verb, opts: &CriuOpts) -> Vec<RpcRefusal> {
    let mut out = Vec::new();
    let dumps = matches!(verb, Verb::Dump | Verb::PreDump);
    if dumps && opts.pid.is_none_or(|pid| pid <= 0) {
        out.push(RpcRefusal::not_yet("pid", "a dump of the requesting process itself; name the tree's root pid"));
    }
    if dumps && opts.pidfd_store_sk.is_some() {
        out.push(RpcRefusal::not_yet("pidfd_store_sk", "no pidfd store"));
    }
    if verb == Verb::Restore && opts.lazy_pages == Some(true) {
        out.push(RpcRefusal::not_yet("lazy_pages", "a lazy restore over RPC (the command line's restore --lazy-pages finds the daemon in its work directory)"));
    }
    if verb == Verb::Restore && !opts.exec_cmd.is_empty() {
        out.push(RpcRefusal::not_yet("exec_cmd", "the RPC server runs no command after a restore"));
    }
    out
}

/// Sets every option the request gives a value (an absent field leaves the server's
/// option as it is).
fn set_fields(options: &mut CriuOptions, opts: &CriuOpts) -> Result<(), OptionError> {
    if let Some(pid) = opts.pid.filter(|pid| *pid > 0) {
        options.tree = Some(pid);
    }
    if let Some(name) = &opts.log_file {
        // CRIU's rule for RPC: a name in the work directory.
        if name.contains('/') {
            return Err(OptionError(vec![RpcRefusal::unusable("log_file", name.clone(), "no subdirectories allowed")]));
        }
        options.log_file = Some(PathBuf::from(name));
    }
    if let Some(level) = opts.log_level {
        options.verbosity = level;
    }
    overlay(
        [
            (&mut options.leave_running, opts.leave_running),
            (&mut options.leave_stopped, opts.leave_stopped),
            (&mut options.tcp_established, opts.tcp_established),
            (&mut options.tcp_close, opts.tcp_close),
            (&mut options.skip_in_flight, opts.tcp_skip_in_flight),
            (&mut options.evasive_devices, opts.evasive_devices),
            (&mut options.shell_job, opts.shell_job),
            (&mut options.file_locks, opts.file_locks),
            (&mut options.track_mem, opts.track_mem),
            (&mut options.auto_dedup, opts.auto_dedup),
            (&mut options.link_remap, opts.link_remap),
            (&mut options.force_irmap, opts.force_irmap),
            (&mut options.restore_sibling, opts.rst_sibling),
            (&mut options.enable_external_sharing, opts.ext_sharing),
            (&mut options.enable_external_masters, opts.ext_masters),
            (&mut options.weak_sysctls, opts.weak_sysctls),
            (&mut options.lazy_pages, opts.lazy_pages),
            (&mut options.tls, opts.tls),
            (&mut options.tls_no_cn_verify, opts.tls_no_cn_verify),
            (&mut options.mntns_compat_mode, opts.mntns_compat_mode),
            (&mut options.skip_file_rwx_check, opts.skip_file_rwx_check),
            (&mut options.unprivileged, opts.unprivileged),
            (&mut options.display_stats, opts.display_stats),
        ],
        |on| on,
    );
    overlay(
        [
            (&mut options.root, opts.root.as_deref()),
            (&mut options.prev_images_dir, opts.parent_img.as_deref()),
            (&mut options.freeze_cgroup, opts.freeze_cgroup.as_deref()),
            (&mut options.cgroup_props_file, opts.cgroup_props_file.as_deref()),
            (&mut options.cgroup_yard, opts.cgroup_yard.as_deref()),
            (&mut options.tls_cacert, opts.tls_cacert.as_deref()),
            (&mut options.tls_cacrl, opts.tls_cacrl.as_deref()),
            (&mut options.tls_cert, opts.tls_cert.as_deref()),
            (&mut options.tls_key, opts.tls_key.as_deref()),
        ],
        |path| Some(PathBuf::from(path)),
    );
    overlay(
        [
            (&mut options.cgroup_props, opts.cgroup_props.as_deref()),
            (&mut options.lsm_profile, opts.lsm_profile.as_deref()),
            (&mut options.lsm_mount_context, opts.lsm_mount_context.as_deref()),
        ],
        |text| Some(text.to_string()),
    );
    if let Some(ps) = &opts.ps {
        // With lazy_pages, ps is where the dump serves the pages it leaves (as CRIU reads it).
        options.page_server = opts.lazy_pages != Some(true);
        options.address = ps.address.clone().or(options.address.take());
        options.port = ps.port.and_then(|port| u16::try_from(port).ok()).or(options.port);
    }
    if opts.ext_unix_sk() {
        options.ext_unix_sk.get_or_insert_with(Vec::new);
    } else if opts.ext_unix_sk == Some(false) {
        options.ext_unix_sk = None;
    }
    if !opts.unix_sk_ino.is_empty() {
        options.ext_unix_sk.get_or_insert_with(Vec::new).extend(opts.unix_sk_ino.iter().map(|sk| u64::from(sk.inode)));
    }
    if opts.auto_ext_mnt() {
        // CRIU's `--external mnt[]`.
        options.external.push("mnt[]".to_string());
    }
    options.external.extend(opts.external.iter().cloned());
    options.veth_pairs.extend(opts.veths.iter().map(|veth| format!("{}={}", veth.if_in, veth.if_out)));
    options.ext_mount_map.extend(opts.ext_mnt.iter().map(|map| format!("{}:{}", map.key, map.val)));
    options.cgroup_root.extend(opts.cg_root.iter().map(|root| match &root.ctrl {
        Some(controller) => format!("{controller}:{}", root.path),
        None => root.path.clone(),
    }));
    options.inherit_fd.extend(opts.inherit_fd.iter().map(|inherit| format!("fd[{}]:{}", inherit.fd, inherit.key)));
    options.join_ns.extend(opts.join_ns.iter().map(|join| match &join.extra_opt {
        Some(extra) => format!("{}:{},{extra}", join.ns, join.ns_file),
        None => format!("{}:{}", join.ns, join.ns_file),
    }));
    options.skip_mnt.extend(opts.skip_mnt.iter().cloned());
    options.enable_fs.extend(opts.enable_fs.iter().cloned());
    options.irmap_scan_paths.extend(opts.irmap_scan_paths.iter().cloned());
    options.cgroup_dump_controller.extend(opts.cgroup_dump_controller.iter().cloned());
    if let Some(limit) = opts.ghost_limit {
        options.ghost_limit = u64::from(limit);
    }
    if let Some(seconds) = opts.timeout {
        options.timeout = seconds;
    }
    // The schema's default (all bits) written out asks for nothing more than leaving
    // it out does.
    if let Some(bits) = opts.cpu_cap.filter(|bits| *bits != CriuOpts::default().cpu_cap()) {
        options.cpu_caps = Some(CpuCaps::from_bits(bits));
    }
    match opts.empty_ns {
        None | Some(0) => {}
        Some(bits) if bits == libc::CLONE_NEWNET as u32 => options.empty_ns = Some("net".to_string()),
        Some(bits) => {
            return Err(OptionError(vec![RpcRefusal::unusable("empty_ns", format!("{bits:#x}"), "only CLONE_NEWNET can be left empty")]))
        }
    }
    if opts.network_lock.is_some() {
        options.network_lock = match opts.network_lock() {
            CriuNetworkLockMethod::Iptables => NetworkLock::Iptables,
            CriuNetworkLockMethod::Nftables => NetworkLock::Nftables,
            CriuNetworkLockMethod::Skip => NetworkLock::Skip,
        };
    }
    if opts.pre_dump_mode.is_some() {
        options.pre_dump_mode = match opts.pre_dump_mode() {
            CriuPreDumpMode::Splice => PreDumpMode::Splice,
            CriuPreDumpMode::VmRead => PreDumpMode::Read,
        };
    }
    // CRIU: `manage_cgroups` turns soft mode on or off; `manage_cgroups_mode`, when
    // given, decides.
    if let Some(manage) = opts.manage_cgroups {
        options.manage_cgroups = Some(if manage { CgroupMode::Soft } else { CgroupMode::Ignore });
    }
    if opts.manage_cgroups_mode.is_some() {
        options.manage_cgroups = Some(match opts.manage_cgroups_mode() {
            CriuCgMode::Ignore => CgroupMode::Ignore,
            CriuCgMode::CgNone => CgroupMode::None,
            CriuCgMode::Props => CgroupMode::Props,
            CriuCgMode::Soft | CriuCgMode::Default => CgroupMode::Soft,
            CriuCgMode::Full => CgroupMode::Full,
            CriuCgMode::Strict => CgroupMode::Strict,
        });
    }
    Ok(())
}

/// Sets each option whose `criu_opts` field the request gives (`Some`), from the
/// field's value.
fn overlay<Target, Field, const N: usize>(pairs: [(&mut Target, Option<Field>); N], convert: impl Fn(Field) -> Target) {
    for (option, field) in pairs {
        if let Some(value) = field {
            *option = convert(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criu::table::OPTIONS;

    fn dirs() -> RequestDirs {
        RequestDirs { images: PathBuf::from("/img"), work: PathBuf::from("/img") }
    }

    fn request(verb: Verb, opts: &CriuOpts) -> Result<EngineRequest, OptionError> {
        let options = request_options(&CriuOptions::default(), opts, &dirs(), None)?;
        engine_request(verb, &options, opts)
    }

    fn refused(verb: Verb, opts: &CriuOpts) -> Vec<String> {
        match request(verb, opts) {
            Ok(_) => Vec::new(),
            Err(OptionError(refusals)) => refusals.into_iter().map(|r| r.field).collect(),
        }
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

    /// The fields of `message criu_opts` in our schema.
    fn criu_opts_fields() -> Vec<String> {
        let schema = include_str!("../../../images/proto/rpc.proto");
        let start = schema.find("message criu_opts {").expect("criu_opts in rpc.proto");
        let body = &schema[start..start + schema[start..].find("\n}").expect("end of criu_opts")];
        body.lines()
            .filter_map(|line| {
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["required" | "optional" | "repeated", _, name, "=", ..] => Some(name.to_string()),
                    _ => None,
                }
            })
            .collect()
    }

    /// Command-line options no `criu_opts` field stands for.
    const NO_RPC_FIELD: &[&str] = &[
        "restore-detached",
        "daemon",
        "help",
        "close",
        "log-pid",
        "version",
        "pidfile",
        "action-script",
        "ms",
        "libdir",
        "feature",
        "extra",
        "experimental",
        "all",
        "deprecated",
        "stream",
        "no-default-config",
        "file-validation",
        "ghost-fiemap",
        "allow-uprobes",
        "frozen-copy",
        "fault-inject",
        "skip-checksums",
    ];

    #[test]
    fn every_option_names_a_criu_opts_field_or_is_known_to_have_none() {
        let fields = criu_opts_fields();
        assert!(fields.len() > 60, "read the schema: {fields:?}");
        for spec in OPTIONS {
            let field = rpc_field(spec.long, &CriuOpts::default());
            let known = fields.contains(&field);
            let none = NO_RPC_FIELD.contains(&spec.long);
            assert!(known != none, "--{}: field {field} is in criu_opts: {known}; listed as having none: {none}", spec.long);
        }
        for (long, field) in RPC_NAMES {
            assert!(OPTIONS.iter().any(|spec| spec.long == *long), "--{long} is an option");
            assert!(fields.iter().any(|f| f == field), "{field} is a criu_opts field");
        }
    }

    #[test]
    fn two_fields_for_one_option_name_the_one_the_request_sets() {
        let ino = CriuOpts { unix_sk_ino: vec![crust_images::rpc::UnixSk { inode: 9 }], ..CriuOpts::default() };
        assert_eq!(rpc_field("ext-unix-sk", &ino), "unix_sk_ino");
        assert_eq!(rpc_field("ext-unix-sk", &CriuOpts { ext_unix_sk: Some(true), ..ino }), "ext_unix_sk");
        assert_eq!(rpc_field("external", &CriuOpts { auto_ext_mnt: Some(true), ..CriuOpts::default() }), "auto_ext_mnt");
        let mut mode = CriuOpts::default();
        mode.set_manage_cgroups_mode(CriuCgMode::Full);
        assert_eq!(rpc_field("manage-cgroups", &mode), "manage_cgroups_mode");
        assert_eq!(rpc_field("manage-cgroups", &CriuOpts::default()), "manage_cgroups");
        assert_eq!(rpc_field("restore-sibling", &CriuOpts::default()), "rst_sibling");
    }

    #[test]
    fn a_plain_dump_maps_onto_dump_options() {
        let EngineRequest::Dump(dump) = request(Verb::Dump, &runc_like_dump()).unwrap() else { panic!("a dump") };
        assert_eq!(dump.pid, 42);
        assert_eq!(dump.dir, PathBuf::from("/img"));
        assert!(dump.tcp_established && !dump.leave_running && !dump.shell_job);
        assert_eq!(dump.parent, None);
    }

    #[test]
    fn a_pre_dump_leaves_the_tree_running_and_names_its_parent() {
        let opts = CriuOpts { parent_img: Some("../pre1".into()), track_mem: Some(true), ..runc_like_dump() };
        let EngineRequest::Dump(dump) = request(Verb::PreDump, &opts).unwrap() else { panic!("a dump") };
        assert!(dump.leave_running);
        assert_eq!(dump.parent, Some(PathBuf::from("../pre1")));
    }

    #[test]
    fn a_restore_is_detached_and_writes_no_pidfile_of_the_server() {
        let opts = CriuOpts { evasive_devices: Some(true), shell_job: Some(true), ..CriuOpts::default() };
        let base = CriuOptions { pidfile: Some("service.pid".into()), ..CriuOptions::default() };
        let options = request_options(&base, &opts, &dirs(), None).unwrap();
        let EngineRequest::Restore(restore) = engine_request(Verb::Restore, &options, &opts).unwrap() else { panic!("a restore") };
        assert!(restore.detach && restore.shell_job);
        assert_eq!(restore.pidfile, None);
    }

    #[test]
    fn every_refused_option_is_named_by_its_field() {
        let opts = CriuOpts {
            lsm_profile: Some("apparmor:x".into()),
            lazy_pages: Some(true),
            external: vec!["unix[123]".into()],
            exec_cmd: vec!["/bin/true".into()],
            ..CriuOpts::default()
        };
        let error = request(Verb::Restore, &opts).unwrap_err();
        let text = error.to_string();
        for field in ["lsm_profile", "lazy_pages", "external", "exec_cmd"] {
            assert!(text.contains(field), "{field} in {text}");
        }
        assert!(text.starts_with("options not supported yet: "), "{text}");
        assert_eq!(error.errno(), libc::EOPNOTSUPP);
    }

    #[test]
    fn options_of_the_other_verb_are_ignored_as_criu_does() {
        let opts = CriuOpts { pid: Some(7), rst_sibling: Some(true), exec_cmd: vec!["x".into()], ..CriuOpts::default() };
        assert!(request(Verb::Dump, &opts).is_ok());
        let opts = CriuOpts { freeze_cgroup: Some("/nonexistent/freezer".into()), pidfd_store_sk: Some(3), ..CriuOpts::default() };
        assert!(request(Verb::Restore, &opts).is_ok());
        assert_eq!(refused(Verb::Dump, &CriuOpts { pid: Some(7), ..opts }), ["pidfd_store_sk", "freeze_cgroup"]);
    }

    #[test]
    fn every_cgroup_mode_is_accepted() {
        for (flag, mode, refused_as) in [
            (Some(false), None, None::<&str>),
            (Some(true), None, None),
            (Some(true), Some(CriuCgMode::Ignore), None),
            (Some(true), Some(CriuCgMode::CgNone), None),
            (Some(true), Some(CriuCgMode::Soft), None),
            (None, Some(CriuCgMode::Default), None),
            (None, Some(CriuCgMode::Strict), None),
            (None, None, None),
        ] {
            let mut opts = CriuOpts { pid: Some(1), manage_cgroups: flag, ..CriuOpts::default() };
            if let Some(mode) = mode {
                opts.set_manage_cgroups_mode(mode);
            }
            assert_eq!(refused(Verb::Dump, &opts), refused_as.into_iter().collect::<Vec<_>>(), "{flag:?} {mode:?}");
        }
    }

    #[test]
    fn defaults_written_out_are_not_refusals() {
        let mut opts =
            CriuOpts { pid: Some(1), ghost_limit: Some(1 << 20), cpu_cap: Some(u32::MAX), root: Some("/".into()), ..CriuOpts::default() };
        opts.set_network_lock(CriuNetworkLockMethod::Iptables);
        assert_eq!(refused(Verb::Dump, &opts), Vec::<String>::new());
        opts.set_network_lock(CriuNetworkLockMethod::Skip);
        opts.cpu_cap = Some(CpuCaps::CPU.into());
        let error = request(Verb::Dump, &opts).unwrap_err();
        assert_eq!(
            error.to_string(),
            "option not supported yet: cpu_cap cpu (needs cpuinfo.img; only none and fpu)"
        );
    }

    #[test]
    fn values_no_request_can_use() {
        let error = request(Verb::Dump, &CriuOpts::default()).unwrap_err();
        assert!(error.to_string().contains("pid ("), "{error}");
        let error = request(Verb::Dump, &CriuOpts { log_file: Some("a/b.log".into()), ..runc_like_dump() }).unwrap_err();
        assert_eq!((error.to_string().as_str(), error.errno()), ("log_file a/b.log: no subdirectories allowed", libc::EINVAL));
        let error = request(Verb::Restore, &CriuOpts { empty_ns: Some(libc::CLONE_NEWPID as u32), ..CriuOpts::default() }).unwrap_err();
        assert_eq!(error.to_string(), "empty_ns 0x20000000: only CLONE_NEWNET can be left empty");
        let opts = CriuOpts { freeze_cgroup: Some("/nonexistent/freezer".into()), ..runc_like_dump() };
        let error = request(Verb::Dump, &opts).unwrap_err();
        assert_eq!((error.to_string().as_str(), error.errno()), ("freeze_cgroup /nonexistent/freezer: no such cgroup", libc::EINVAL));
    }

    /// What runc 1.1.5 sends for `runc checkpoint` and `runc restore` of a busybox
    /// container (`runc --debug`, 2026-12-06): every option is taken.
    #[test]
    fn runc_s_checkpoint_pre_dump_and_restore_options_are_all_taken() {
        use crust_images::rpc::{CgroupRoot, ExtMountMap, InheritFd};
        let map = |key: &str, val: &str| ExtMountMap { key: key.into(), val: val.into() };
        let runc_common = CriuOpts {
            images_dir_fd: 7,
            work_dir_fd: Some(8),
            log_level: Some(4),
            notify_scripts: Some(true),
            manage_cgroups: Some(true),
            empty_ns: Some(libc::CLONE_NEWNET as u32),
            orphan_pts_master: Some(true),
            config_file: Some("/etc/criu/runc.conf".into()),
            leave_running: Some(false),
            ext_unix_sk: Some(false),
            tcp_established: Some(false),
            shell_job: Some(false),
            file_locks: Some(false),
            auto_dedup: Some(false),
            lazy_pages: Some(false),
            track_mem: Some(false),
            link_remap: Some(false),
            cpu_cap: Some(u32::MAX),
            ghost_limit: Some(1 << 20),
            ..CriuOpts::default()
        };
        let dump = CriuOpts {
            pid: Some(29442),
            log_file: Some("dump.log".into()),
            root: Some("/bundle/rootfs".into()),
            freeze_cgroup: Some("/".into()),
            ext_mnt: vec![map("/data", "/data"), map("/proc/keys", "/dev/null"), map("/dev/null", "/dev/null")],
            ..runc_common.clone()
        };
        assert_eq!(refused(Verb::Dump, &dump), Vec::<String>::new());
        let pre_dump = CriuOpts { parent_img: Some("../pre".into()), track_mem: Some(true), ext_mnt: Vec::new(), ..dump.clone() };
        assert_eq!(refused(Verb::PreDump, &pre_dump), Vec::<String>::new());
        let restore = CriuOpts {
            log_file: Some("restore.log".into()),
            root: Some("/run/runc/ct1/criu-root".into()),
            evasive_devices: Some(true),
            rst_sibling: Some(true),
            ext_mnt: vec![map("/data", "/bundle/hostdir"), map("/dev/null", "/dev/null")],
            cg_root: vec![CgroupRoot { ctrl: Some("memory".into()), path: "/crust-research/b1".into() }, CgroupRoot { ctrl: None, path: "/crust-research/b1".into() }],
            inherit_fd: vec![InheritFd { key: "pipe:[33030]".into(), fd: 0 }, InheritFd { key: "extRootNetNS".into(), fd: 9 }],
            ..runc_common
        };
        assert_eq!(refused(Verb::Restore, &restore), Vec::<String>::new());
        let EngineRequest::Restore(options) = request(Verb::Restore, &restore).unwrap() else {
            panic!("a restore")
        };
        assert!(options.empty_net && options.restore_sibling && options.detach);
        assert_eq!(options.inherit_fds, [(0, "pipe:[33030]".to_string()), (9, "extRootNetNS".to_string())]);
        let EngineRequest::Dump(options) = request(Verb::Dump, &dump).unwrap() else { panic!("a dump") };
        assert!(options.empty_net);
    }

    /// CRIU's order for RPC: the server's configuration, then the request, then the
    /// request's config_file.
    #[test]
    fn the_request_wins_over_the_server_and_its_config_file_over_both() {
        let mut base = CriuOptions::default();
        base.apply_config("tcp-established\nshell-job\nghost-limit 4M\n", Path::new("/etc/criu/default.conf")).unwrap();
        let opts = CriuOpts { pid: Some(3), tcp_established: Some(false), ghost_limit: Some(2 << 20), ..CriuOpts::default() };
        let options = request_options(&base, &opts, &dirs(), None).unwrap();
        assert!(!options.tcp_established, "the request's false wins over the server's file");
        assert!(options.shell_job, "what the request leaves out keeps the server's value");
        assert_eq!(options.ghost_limit, 2 << 20);
        let config = "# runc.conf\ntcp-established\nlog-file rpc.log\nmanage-cgroups ignore\nghost-limit 8M\n";
        let options = request_options(&base, &opts, &dirs(), Some((Path::new("/etc/criu/runc.conf"), config))).unwrap();
        assert!(options.tcp_established, "config_file wins over the request");
        assert_eq!(options.ghost_limit, 8 << 20);
        assert_eq!(options.log_file, Some(PathBuf::from("rpc.log")));
        assert_eq!(options.manage_cgroups, Some(CgroupMode::Ignore));
        let error = request_options(&base, &opts, &dirs(), Some((Path::new("/r.conf"), "tcp-established\nno-such-option\n"))).unwrap_err();
        assert_eq!(error.to_string(), "config_file /r.conf: /r.conf:2: unknown option --no-such-option");
    }
}
