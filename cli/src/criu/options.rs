//! CRIU's options as one typed value, and the one place that turns them into the
//! engine's `DumpOptions`/`RestoreOptions` or refuses them.
//!
//! Everything that sets options goes through `CriuOptions`: the command line and the
//! configuration files (`apply`, one `Setting` at a time, and `apply_config`, in CRIU's
//! order of precedence), and CRIU's RPC (`rpc/options.rs` sets the same fields from a
//! request's `criu_opts`). Then `refusals` says, for a verb, which options crust cannot
//! honour or use (the same answer on every path, each naming the option by its long
//! name, which the RPC server turns into its field name), and
//! `dump_options`/`restore_options` build what the engine takes.

use std::path::{Path, PathBuf};

use crust_engine::dump::{DumpMountOptions, DumpOptions, DumpStep};
use crust_engine::restore::{RestoreMountOptions, RestoreOptions};

use super::parse::{self, Setting};

/// CRIU's default for `--ghost-limit`: 1 MiB.
pub const DEFAULT_GHOST_LIMIT: u64 = 1 << 20;
/// CRIU's default for `--timeout`: 10 seconds.
pub const DEFAULT_TIMEOUT: u32 = 10;
/// CRIU's default log level (`-v2`: errors and warnings).
pub const DEFAULT_VERBOSITY: i32 = 2;

/// The prefixes of the `--external` resources crust takes: mounts, veth host ends,
/// network namespaces.
const TAKEN_EXTERNALS: [&str; 3] = ["mnt[", "veth[", "net["];

/// The verbs of CRIU's command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Dump,
    PreDump,
    Restore,
    Check,
    PageServer,
    LazyPages,
    Service,
    Swrk,
    Dedup,
    CpuinfoDump,
    CpuinfoCheck,
    Exec,
    Show,
}

impl Verb {
    /// The verb a command line's words name, with the words it uses up (`cpuinfo dump`
    /// takes two).
    pub fn parse(words: &[String]) -> Option<(Verb, usize)> {
        let first = words.first()?.as_str();
        let verb = match first {
            "dump" => Verb::Dump,
            "pre-dump" => Verb::PreDump,
            "restore" => Verb::Restore,
            "check" => Verb::Check,
            "page-server" => Verb::PageServer,
            "lazy-pages" => Verb::LazyPages,
            "service" => Verb::Service,
            "swrk" => Verb::Swrk,
            "dedup" => Verb::Dedup,
            "exec" => Verb::Exec,
            "show" => Verb::Show,
            "cpuinfo" => {
                return match words.get(1).map(String::as_str) {
                    Some("dump") => Some((Verb::CpuinfoDump, 2)),
                    Some("check") => Some((Verb::CpuinfoCheck, 2)),
                    _ => None,
                }
            }
            _ => return None,
        };
        Some((verb, 1))
    }

    /// The verb as written.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Dump => "dump",
            Verb::PreDump => "pre-dump",
            Verb::Restore => "restore",
            Verb::Check => "check",
            Verb::PageServer => "page-server",
            Verb::LazyPages => "lazy-pages",
            Verb::Service => "service",
            Verb::Swrk => "swrk",
            Verb::Dedup => "dedup",
            Verb::CpuinfoDump => "cpuinfo dump",
            Verb::CpuinfoCheck => "cpuinfo check",
            Verb::Exec => "exec",
            Verb::Show => "show",
        }
    }

    fn dumps(self) -> bool {
        matches!(self, Verb::Dump | Verb::PreDump)
    }
}

/// `--manage-cgroups` modes (the engine's).
pub use crust_engine::CgroupMode;

/// `--network-lock` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetworkLock {
    /// CRIU's default.
    #[default]
    Iptables,
    Nftables,
    Skip,
}

impl NetworkLock {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "iptables" => NetworkLock::Iptables,
            "nftables" => NetworkLock::Nftables,
            "skip" => NetworkLock::Skip,
            other => return Err(format!("invalid value for --network-lock: {other} (iptables, nftables or skip)")),
        })
    }
}

/// `--pre-dump-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PreDumpMode {
    #[default]
    Splice,
    Read,
}

/// `--file-validation` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileValidation {
    Filesize,
    Buildid,
}

/// `--cpu-cap` as a set of CRIU's capability bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuCaps(u8);

impl CpuCaps {
    pub const FPU: u8 = 1;
    pub const CPU: u8 = 2;
    pub const INS: u8 = 4;
    pub const ALL: u8 = 7;

    /// `cpu,fpu,^ins,...`; an empty value means all.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Ok(CpuCaps(Self::ALL));
        }
        let mut bits = 0u8;
        for word in text.split(',') {
            let (negate, name) = match word.strip_prefix('^') {
                Some(name) => (true, name),
                None => (false, word),
            };
            let bit = match name {
                "fpu" => Self::FPU,
                "cpu" => Self::CPU,
                "ins" => Self::INS,
                "all" => Self::ALL,
                "none" => {
                    bits = 0;
                    continue;
                }
                other => return Err(format!("unknown --cpu-cap `{other}' (cpu, fpu, ins, all, none, ^CAP)")),
            };
            if negate {
                bits &= !bit;
            } else {
                bits |= bit;
            }
        }
        Ok(CpuCaps(bits))
    }

    /// From CRIU's bits (RPC's `cpu_cap`), which are these: FPU 1, CPU 2, INS 4.
    pub fn from_bits(bits: u32) -> Self {
        CpuCaps((bits & u32::from(Self::ALL)) as u8)
    }

    /// Checks beyond the FPU state, which need cpuinfo.img.
    pub fn needs_cpuinfo(self) -> bool {
        self.0 & (Self::CPU | Self::INS) != 0
    }

    /// The capabilities that need cpuinfo.img, as `--cpu-cap` writes them (`cpu,ins`).
    fn needing_cpuinfo(self) -> String {
        let names: Vec<&str> =
            [(Self::CPU, "cpu"), (Self::INS, "ins")].iter().filter(|(bit, _)| self.0 & bit != 0).map(|(_, name)| *name).collect();
        names.join(",")
    }
}

/// Every option of CRIU's command line (and crust's own), typed. `Default` is CRIU's
/// defaults.
#[derive(Clone, Debug)]
pub struct CriuOptions {
    // The tree and what happens to it.
    pub tree: Option<i32>,
    pub leave_stopped: bool,
    pub leave_running: bool,
    pub restore_detached: bool,
    pub restore_sibling: bool,
    pub daemon: bool,
    pub shell_job: bool,
    pub exec_cmd: bool,
    pub freeze_cgroup: Option<PathBuf>,
    pub timeout: u32,
    pub lazy_pages: bool,
    pub stream: bool,
    pub unprivileged: bool,
    pub allow_uprobes: bool,
    pub network_lock: NetworkLock,
    pub mntns_compat_mode: bool,
    pub weak_sysctls: bool,
    pub action_scripts: Vec<PathBuf>,
    // Places.
    pub images_dir: Option<PathBuf>,
    pub work_dir: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub close_fds: Vec<i32>,
    // Logging.
    pub log_file: Option<PathBuf>,
    pub verbosity: i32,
    pub log_pid: bool,
    pub display_stats: bool,
    // External and special resources.
    pub external: Vec<String>,
    pub inherit_fd: Vec<String>,
    pub join_ns: Vec<String>,
    pub veth_pairs: Vec<String>,
    pub ext_mount_map: Vec<String>,
    pub empty_ns: Option<String>,
    pub skip_mnt: Vec<String>,
    pub enable_fs: Vec<String>,
    pub enable_external_sharing: bool,
    pub enable_external_masters: bool,
    /// `-x`: every external unix socket (`Some(empty)`) or the listed inodes.
    pub ext_unix_sk: Option<Vec<u64>>,
    pub tcp_established: bool,
    pub tcp_close: bool,
    pub skip_in_flight: bool,
    pub evasive_devices: bool,
    pub link_remap: bool,
    pub ghost_limit: u64,
    pub ghost_fiemap: bool,
    pub file_locks: bool,
    pub force_irmap: bool,
    pub irmap_scan_paths: Vec<String>,
    pub cpu_caps: Option<CpuCaps>,
    /// `None`: not given (CRIU's default is soft).
    pub manage_cgroups: Option<CgroupMode>,
    pub cgroup_root: Vec<String>,
    pub cgroup_props: Option<String>,
    pub cgroup_props_file: Option<PathBuf>,
    pub cgroup_dump_controller: Vec<String>,
    pub cgroup_yard: Option<PathBuf>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    pub file_validation: Option<FileValidation>,
    pub skip_file_rwx_check: bool,
    pub libdir: Option<PathBuf>,
    pub deprecated: bool,
    pub ms: bool,
    // Memory.
    pub prev_images_dir: Option<PathBuf>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub pre_dump_mode: PreDumpMode,
    // Page server and service.
    pub page_server: bool,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub ps_socket: Option<i32>,
    pub status_fd: Option<i32>,
    pub tls: bool,
    pub tls_no_cn_verify: bool,
    pub tls_cacert: Option<PathBuf>,
    pub tls_cacrl: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    // Check.
    pub feature: Option<String>,
    pub check_extra: bool,
    pub check_experimental: bool,
    // Other.
    pub help: bool,
    pub version: bool,
    pub config: Option<PathBuf>,
    pub no_default_config: bool,
    // crust's own.
    pub frozen_copy: bool,
    pub skip_checksums: bool,
    pub fault_inject: Option<DumpStep>,
    /// `--fault-inject hold:POINT`: wait at POINT until stdin closes (`interrupt.rs`).
    pub fault_hold: Option<String>,
}

impl Default for CriuOptions {
    fn default() -> Self {
        CriuOptions {
            tree: None,
            leave_stopped: false,
            leave_running: false,
            restore_detached: false,
            restore_sibling: false,
            daemon: false,
            shell_job: false,
            exec_cmd: false,
            freeze_cgroup: None,
            timeout: DEFAULT_TIMEOUT,
            lazy_pages: false,
            stream: false,
            unprivileged: false,
            allow_uprobes: false,
            network_lock: NetworkLock::default(),
            mntns_compat_mode: false,
            weak_sysctls: false,
            action_scripts: Vec::new(),
            images_dir: None,
            work_dir: None,
            pidfile: None,
            root: None,
            close_fds: Vec::new(),
            log_file: None,
            verbosity: DEFAULT_VERBOSITY,
            log_pid: false,
            display_stats: false,
            external: Vec::new(),
            inherit_fd: Vec::new(),
            join_ns: Vec::new(),
            veth_pairs: Vec::new(),
            ext_mount_map: Vec::new(),
            empty_ns: None,
            skip_mnt: Vec::new(),
            enable_fs: Vec::new(),
            enable_external_sharing: false,
            enable_external_masters: false,
            ext_unix_sk: None,
            tcp_established: false,
            tcp_close: false,
            skip_in_flight: false,
            evasive_devices: false,
            link_remap: false,
            ghost_limit: DEFAULT_GHOST_LIMIT,
            ghost_fiemap: true,
            file_locks: false,
            force_irmap: false,
            irmap_scan_paths: Vec::new(),
            cpu_caps: None,
            manage_cgroups: None,
            cgroup_root: Vec::new(),
            cgroup_props: None,
            cgroup_props_file: None,
            cgroup_dump_controller: Vec::new(),
            cgroup_yard: None,
            lsm_profile: None,
            lsm_mount_context: None,
            file_validation: None,
            skip_file_rwx_check: false,
            libdir: None,
            deprecated: false,
            ms: false,
            prev_images_dir: None,
            track_mem: false,
            auto_dedup: false,
            pre_dump_mode: PreDumpMode::default(),
            page_server: false,
            address: None,
            port: None,
            ps_socket: None,
            status_fd: None,
            tls: false,
            tls_no_cn_verify: false,
            tls_cacert: None,
            tls_cacrl: None,
            tls_cert: None,
            tls_key: None,
            feature: None,
            check_extra: false,
            check_experimental: false,
            help: false,
            version: false,
            config: None,
            no_default_config: false,
            frozen_copy: false,
            skip_checksums: false,
            fault_inject: None,
            fault_hold: None,
        }
    }
}

/// An option that stops a verb before the engine runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The option's long name, as in the table (`lazy-pages`, `network-lock`).
    pub option: &'static str,
    /// The value refused, for an option refused only for some values (`skip`, `soft`).
    pub value: Option<String>,
    /// What it would need, or what is wrong with the value.
    pub why: String,
    pub kind: RefusalKind,
}

/// Why an option stops a verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// crust cannot honour it yet: `--opt is not supported yet (why)`.
    NotYet,
    /// Its value cannot be used here: `--opt VALUE: why`.
    Unusable,
}

impl Refusal {
    /// The option as a command line writes it: `--network-lock skip`.
    pub fn shown(&self) -> String {
        match &self.value {
            Some(value) => format!("--{} {value}", self.option),
            None => format!("--{}", self.option),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RefusalKind::NotYet => write!(f, "{} is not supported yet ({})", self.shown(), self.why),
            RefusalKind::Unusable => write!(f, "{}: {}", self.shown(), self.why),
        }
    }
}

impl CriuOptions {
    /// Applies one setting (a later one overrides an earlier one; list options add up).
    /// `Err` is a one-line reason naming the option and the bad value.
    pub fn apply(&mut self, setting: &Setting) -> Result<(), String> {
        let on = setting.on;
        let name = setting.spec.long;
        let value = setting.value.clone().unwrap_or_default();
        let text = || -> Result<String, String> {
            setting.value.clone().ok_or_else(|| format!("option --{name} needs an argument"))
        };
        let path = || text().map(PathBuf::from);
        let number = |what: &str| -> Result<i64, String> {
            value.parse::<i64>().map_err(|_| format!("option --{name} takes {what}, not {value:?}"))
        };
        let fd = || -> Result<i32, String> {
            value.parse::<i32>().ok().filter(|fd| *fd >= 0).ok_or_else(|| format!("option --{name} takes a file descriptor number, not {value:?}"))
        };
        match name {
            "tree" => {
                let pid = number("a pid")?;
                if pid <= 0 || pid > i32::MAX as i64 {
                    return Err(format!("option --tree takes a pid, not {value:?}"));
                }
                self.tree = Some(pid as i32);
            }
            "leave-stopped" => self.leave_stopped = on,
            "leave-running" => self.leave_running = on,
            "restore-detached" => self.restore_detached = on,
            "restore-sibling" => self.restore_sibling = on,
            "daemon" => self.daemon = on,
            "images-dir" => self.images_dir = Some(path()?),
            "work-dir" => self.work_dir = Some(path()?),
            "log-file" => self.log_file = Some(path()?),
            "join-ns" => self.join_ns.push(text()?),
            "root" => self.root = Some(path()?),
            "ext-unix-sk" => {
                let list = self.ext_unix_sk.get_or_insert_with(Vec::new);
                if let Some(inode) = &setting.value {
                    list.push(inode.parse().map_err(|_| format!("option --ext-unix-sk takes a socket inode, not {inode:?}"))?);
                }
            }
            "help" => self.help = on,
            "tcp-established" => self.tcp_established = on,
            "close" => self.close_fds.push(fd()?),
            "log-pid" => self.log_pid = on,
            "version" => self.version = on,
            "evasive-devices" => self.evasive_devices = on,
            "pidfile" => self.pidfile = Some(path()?),
            "veth-pair" => {
                let pair = text()?;
                if !pair.contains('=') {
                    return Err(format!("option --veth-pair takes IN=OUT, not {pair:?}"));
                }
                self.veth_pairs.push(pair);
            }
            "action-script" => self.action_scripts.push(path()?),
            "link-remap" => self.link_remap = on,
            "shell-job" => self.shell_job = on,
            "file-locks" => self.file_locks = on,
            "page-server" => self.page_server = on,
            "address" => self.address = Some(text()?),
            "port" => {
                self.port = Some(value.parse().map_err(|_| format!("option --port takes a port number, not {value:?}"))?);
            }
            "prev-images-dir" => self.prev_images_dir = Some(path()?),
            "ms" => self.ms = on,
            "track-mem" => self.track_mem = on,
            "auto-dedup" => self.auto_dedup = on,
            "libdir" => self.libdir = Some(path()?),
            "cpu-cap" => self.cpu_caps = Some(CpuCaps::parse(&value)?),
            "force-irmap" => self.force_irmap = on,
            "ext-mount-map" => {
                let map = text()?;
                // `auto` is CRIU's old spelling of `--external mnt[]`.
                if !map.contains(':') && map != "auto" {
                    return Err(format!("option --ext-mount-map takes KEY:VALUE or auto, not {map:?}"));
                }
                self.ext_mount_map.push(map);
            }
            "exec-cmd" => self.exec_cmd = on,
            "manage-cgroups" => {
                self.manage_cgroups = Some(match &setting.value {
                    Some(mode) => CgroupMode::parse(mode)?,
                    None => CgroupMode::Soft,
                })
            }
            "cgroup-root" => self.cgroup_root.push(text()?),
            "inherit-fd" => {
                let spec = text()?;
                parse_inherit_fd(&spec)?;
                self.inherit_fd.push(spec);
            }
            "feature" => self.feature = Some(text()?),
            "skip-mnt" => self.skip_mnt.push(text()?),
            "enable-fs" => self.enable_fs.push(text()?),
            "enable-external-sharing" => self.enable_external_sharing = on,
            "enable-external-masters" => self.enable_external_masters = on,
            "freeze-cgroup" => self.freeze_cgroup = Some(path()?),
            "ghost-limit" => self.ghost_limit = parse_size(&value).map_err(|e| format!("option --ghost-limit: {e}"))?,
            "irmap-scan-path" => self.irmap_scan_paths.push(text()?),
            "lsm-profile" => {
                let profile = text()?;
                match profile.split_once(':') {
                    Some(("apparmor" | "selinux", _)) => self.lsm_profile = Some(profile),
                    _ => return Err(format!("option --lsm-profile takes apparmor:NAME or selinux:NAME, not {profile:?}")),
                }
            }
            "timeout" => {
                let seconds = number("seconds")?;
                self.timeout = u32::try_from(seconds).map_err(|_| format!("option --timeout takes seconds, not {value:?}"))?;
            }
            "external" => {
                let resource = text()?;
                if !resource.contains('[') {
                    return Err(format!("option --external takes TYPE[ID]:VALUE, not {resource:?}"));
                }
                self.external.push(resource);
            }
            "empty-ns" => {
                let ns = text()?;
                if ns != "net" {
                    return Err(format!("option --empty-ns takes net, not {ns:?}"));
                }
                self.empty_ns = Some(ns);
            }
            "lazy-pages" => self.lazy_pages = on,
            "extra" => self.check_extra = on,
            "experimental" => self.check_experimental = on,
            "all" => {
                self.check_extra = on;
                self.check_experimental = on;
            }
            "cgroup-props" => self.cgroup_props = Some(text()?),
            "cgroup-props-file" => self.cgroup_props_file = Some(path()?),
            "cgroup-dump-controller" => self.cgroup_dump_controller.push(text()?),
            "skip-in-flight" => self.skip_in_flight = on,
            "deprecated" => self.deprecated = on,
            "display-stats" => self.display_stats = on,
            "weak-sysctls" => self.weak_sysctls = on,
            "status-fd" => self.status_fd = Some(fd()?),
            "tcp-close" => self.tcp_close = on,
            "verbosity" => {
                self.verbosity = match &setting.value {
                    None => self.verbosity + 1,
                    Some(vs) if !vs.is_empty() && vs.bytes().all(|b| b == b'v') => self.verbosity + 1 + vs.len() as i32,
                    Some(level) => level.parse().map_err(|_| format!("option --verbosity takes a number, not {level:?}"))?,
                }
            }
            "ps-socket" => self.ps_socket = Some(fd()?),
            "stream" => self.stream = on,
            "config" => self.config = Some(path()?),
            "no-default-config" => self.no_default_config = on,
            "tls-cacert" => self.tls_cacert = Some(path()?),
            "tls-cacrl" => self.tls_cacrl = Some(path()?),
            "tls-cert" => self.tls_cert = Some(path()?),
            "tls-key" => self.tls_key = Some(path()?),
            "tls" => self.tls = on,
            "tls-no-cn-verify" => self.tls_no_cn_verify = on,
            "cgroup-yard" => self.cgroup_yard = Some(path()?),
            "pre-dump-mode" => {
                self.pre_dump_mode = match value.as_str() {
                    "splice" => PreDumpMode::Splice,
                    "read" => PreDumpMode::Read,
                    other => return Err(format!("invalid value for --pre-dump-mode: {other} (splice or read)")),
                }
            }
            "file-validation" => {
                self.file_validation = Some(match value.as_str() {
                    "filesize" => FileValidation::Filesize,
                    "buildid" => FileValidation::Buildid,
                    other => return Err(format!("invalid value for --file-validation: {other} (filesize or buildid)")),
                })
            }
            "skip-file-rwx-check" => self.skip_file_rwx_check = on,
            "lsm-mount-context" => self.lsm_mount_context = Some(text()?),
            "network-lock" => self.network_lock = NetworkLock::parse(&value)?,
            "mntns-compat-mode" => self.mntns_compat_mode = on,
            "unprivileged" => self.unprivileged = on,
            "ghost-fiemap" => self.ghost_fiemap = on,
            "allow-uprobes" => self.allow_uprobes = on,
            "frozen-copy" => self.frozen_copy = on,
            "fault-inject" => match value.strip_prefix("hold:") {
                Some(point) => {
                    if !crust_engine::interrupt::HOLD_POINTS.contains(&point) {
                        return Err(format!(
                            "unknown hold point {point} (known: {})",
                            crust_engine::interrupt::HOLD_POINTS.join(", ")
                        ));
                    }
                    self.fault_hold = Some(point.to_string())
                }
                None => self.fault_inject = Some(DumpStep::from_name(&value).ok_or_else(|| format!("unknown dump step {value}"))?),
            },
            "skip-checksums" => self.skip_checksums = on,
            other => return Err(format!("option --{other} is in the table but not handled (a crust bug)")),
        }
        Ok(())
    }

    /// Applies a configuration file's text (CRIU's format, read by
    /// `parse::parse_config`); an error names the file and the line.
    pub fn apply_config(&mut self, text: &str, path: &Path) -> Result<(), String> {
        for setting in parse::parse_config(text, path).map_err(|error| error.0)? {
            self.apply(&setting).map_err(|error| format!("{}: {error}", setting.origin))?;
        }
        Ok(())
    }

    /// The first of [`Self::refusals`]: what the command line answers.
    pub fn refusal(&self, verb: Verb) -> Option<Refusal> {
        self.refusals(verb).into_iter().next()
    }

    /// Every option that stops `verb`: the ones crust cannot honour yet, in the
    /// table's order, then the ones whose value cannot be used (a `--freeze-cgroup`
    /// that is not there). Options a verb does not use are ignored, as CRIU ignores
    /// them.
    pub fn refusals(&self, verb: Verb) -> Vec<Refusal> {
        let mut out = Vec::new();
        let mut refuse = |option: &'static str, value: Option<String>, why: &str| {
            out.push(Refusal { option, value, why: why.to_string(), kind: RefusalKind::NotYet })
        };
        let dumps = verb.dumps();
        let restores = verb == Verb::Restore;
        if !(dumps || restores) {
            return out;
        }
        let checks: Vec<(bool, &'static str, Option<&str>, &str)> = vec![
            (verb == Verb::PreDump && self.lazy_pages, "lazy-pages", None, "a pre-dump that leaves its pages at the source (dump --lazy-pages does)"),
            (verb == Verb::Dump && self.lazy_pages && self.page_server, "lazy-pages", None, "--lazy-pages with --page-server on dump (the pages not left at the source sent to a page server); dump --lazy-pages writes them into the images directory"),
            (self.stream, "stream", None, "needs criu-image-streamer's protocol"),
            (verb == Verb::Restore && self.page_server, "page-server", None, "restore reads pages from the images directory only; the lazy-pages daemon fetches them from a page server"),
            (self.tls, "tls", None, "page server connections over TLS"),
            (self.ps_socket.is_some(), "ps-socket", None, "a page server socket handed over as an fd"),
            (self.auto_dedup, "auto-dedup", None, "needs deduplication"),
            (self.ext_unix_sk.is_some(), "ext-unix-sk", None, "needs the engine to dump a unix socket whose peer is outside the tree"),
            (
                self.external.iter().any(|e| !TAKEN_EXTERNALS.iter().any(|taken| e.starts_with(taken))),
                "external",
                self.external.iter().find(|e| !TAKEN_EXTERNALS.iter().any(|taken| e.starts_with(taken))).map(String::as_str),
                "crust takes only mount (mnt[...]), veth (veth[IN]:OUT[@BRIDGE]) and network namespace (net[INODE]:KEY) externals yet",
            ),
            (!self.enable_fs.is_empty(), "enable-fs", None, "crust makes anew only proc, sysfs, tmpfs, devpts, mqueue, cgroup and cgroup2 mounts, which need no --enable-fs"),
            (restores && !self.join_ns.is_empty(), "join-ns", None, "needs namespace support in the engine"),
            (restores && self.lsm_profile.is_some(), "lsm-profile", None, "crust does not restore LSM profiles"),
            (restores && self.lsm_mount_context.is_some(), "lsm-mount-context", None, "crust does not set SELinux contexts on the mounts it makes"),
            (dumps && !self.cgroup_root.is_empty(), "cgroup-root", None, "crust's dump records every cgroup path as it is; --cgroup-root moves them on restore"),
            (dumps && self.cgroup_props.is_some(), "cgroup-props", None, "crust records its built-in property lists only"),
            (dumps && self.cgroup_props_file.is_some(), "cgroup-props-file", None, "crust records its built-in property lists only"),
            (dumps && !self.cgroup_dump_controller.is_empty(), "cgroup-dump-controller", None, "crust records every hierarchy"),
            (self.cgroup_yard.is_some(), "cgroup-yard", None, "crust mounts the hierarchies itself (detached mounts)"),
            (self.file_validation.is_some(), "file-validation", None, "crust checks only that each file exists"),
        ];
        for (given, option, value, why) in checks {
            if given {
                refuse(option, value.map(str::to_string), why);
            }
        }
        if let Some(caps) = self.cpu_caps.filter(|caps| caps.needs_cpuinfo()) {
            refuse("cpu-cap", Some(caps.needing_cpuinfo()), "needs cpuinfo.img; only none and fpu");
        }
        if verb == Verb::Dump && self.lazy_pages && !self.page_server && self.port.is_none() {
            out.push(Refusal { option: "lazy-pages", value: None, why: "needs the --port to serve the pages on (and --address, default every address)".into(), kind: RefusalKind::Unusable });
        }
        if dumps && self.page_server && self.port.is_none() {
            out.push(Refusal { option: "page-server", value: None, why: "needs the page server's --port (and --address, default 127.0.0.1)".into(), kind: RefusalKind::Unusable });
        }
        if let Err(why) = self.mount_maps() {
            out.push(Refusal { option: "external", value: None, why, kind: RefusalKind::Unusable });
        }
        if let Err(why) = self.net_externals() {
            out.push(Refusal { option: "external", value: None, why, kind: RefusalKind::Unusable });
        }
        if let Some(cgroup) = self.freeze_cgroup.as_ref().filter(|cgroup| dumps && !cgroup.exists()) {
            out.push(Refusal {
                option: "freeze-cgroup",
                value: Some(cgroup.display().to_string()),
                why: "no such cgroup".to_string(),
                kind: RefusalKind::Unusable,
            });
        }
        out
    }

    /// The images directory (CRIU's default: the current directory).
    pub fn images_dir(&self) -> PathBuf {
        self.images_dir.clone().unwrap_or_else(|| PathBuf::from("."))
    }

    /// What `crust dump` (or `pre-dump`, which leaves the tree running) asks the
    /// engine. Call `refusal` first.
    pub fn dump_options(&self, verb: Verb) -> Result<DumpOptions, String> {
        let pid = self.tree.ok_or_else(|| format!("{} needs the tree's root: -t PID", verb.name()))?;
        let leave_running = self.leave_running || verb == Verb::PreDump;
        Ok(DumpOptions {
            pid,
            dir: self.images_dir(),
            leave_running,
            tcp_established: self.tcp_established,
            shell_job: self.shell_job,
            frozen_copy: self.frozen_copy,
            fail_after: self.fault_inject,
            parent: self.prev_images_dir.clone(),
            mounts: self.dump_mount_options()?,
            leave_stopped: self.leave_stopped && !leave_running,
            file_locks: self.file_locks,
            ghost_limit: self.ghost_limit,
            network_lock_skip: self.network_lock == NetworkLock::Skip,
            tcp_close: self.tcp_close,
            skip_in_flight: self.skip_in_flight,
            cgroup_mode: self.manage_cgroups.unwrap_or_default(),
            freeze_cgroup: self.freeze_cgroup.clone(),
            // CRIU's --timeout 0 waits without a bound.
            timeout: (self.timeout > 0).then(|| std::time::Duration::from_secs(u64::from(self.timeout))),
            stages: Default::default(),
            // This binary again, as `crust __guardian`.
            guardian: std::env::current_exe().ok(),
            page_server: match (self.page_server, self.port) {
                (true, Some(port)) => Some(crust_engine::dump::PageServerAddress {
                    address: self.address.clone().unwrap_or_else(|| "127.0.0.1".into()),
                    port,
                }),
                _ => None,
            },
            lazy_pages: match (verb == Verb::Dump && self.lazy_pages, self.port) {
                (true, Some(port)) => Some(crust_engine::dump::LazyPagesSource {
                    address: crust_engine::dump::PageServerAddress { address: self.address.clone().unwrap_or_else(|| "0.0.0.0".into()), port },
                    ready: None,
                }),
                _ => None,
            },
            empty_net: self.empty_ns.is_some(),
            // A malformed one is one of `refusals`, reported before this is called.
            external_net: self.net_externals().unwrap_or_default(),
        })
    }

    /// `--external net[INODE]:KEY` entries as (INODE, KEY).
    fn net_externals(&self) -> Result<Vec<(u64, String)>, String> {
        let mut found = Vec::new();
        for external in self.external.iter().filter(|e| e.starts_with("net[")) {
            let parsed = external["net[".len()..]
                .split_once("]:")
                .and_then(|(inode, key)| Some((inode.parse::<u64>().ok()?, key)))
                .filter(|(_, key)| !key.is_empty());
            match parsed {
                Some((inode, key)) => found.push((inode, key.to_string())),
                None => return Err(format!("option --external takes net[INODE]:KEY, not {external:?}")),
            }
        }
        Ok(found)
    }

    /// `--external mnt[...]` and `--ext-mount-map` entries as (key, value) pairs, and
    /// whether `mnt[]` (or `--ext-mount-map auto`) asks for auto-detection.
    fn mount_maps(&self) -> Result<(Vec<(String, String)>, bool), String> {
        let mut pairs = Vec::new();
        let mut auto = false;
        for external in self.external.iter().filter(|e| e.starts_with("mnt[")) {
            let (inside, value) = external["mnt[".len()..].split_once(']').ok_or_else(|| format!("option --external {external}: no closing ]"))?;
            match (inside, value) {
                // `mnt[]` and `mnt[]:FLAGS` (s, m: external sharing and masters).
                ("", value) if value.is_empty() || value.strip_prefix(':').is_some_and(|f| f.chars().all(|c| c == 's' || c == 'm')) => auto = true,
                (key, value) if !key.is_empty() && value.len() > 1 && value.starts_with(':') => pairs.push((key.to_string(), value[1..].to_string())),
                _ => return Err(format!("option --external takes mnt[KEY]:VALUE or mnt[], not {external:?}")),
            }
        }
        for map in &self.ext_mount_map {
            match map.split_once(':') {
                Some((key, value)) if !key.is_empty() && !value.is_empty() => pairs.push((key.to_string(), value.to_string())),
                None if map == "auto" => auto = true,
                _ => return Err(format!("option --ext-mount-map takes KEY:VALUE, not {map:?}")),
            }
        }
        Ok((pairs, auto))
    }

    /// What a dump does with the tree's mounts: externals by mountpoint (`mnt[MP]:KEY`,
    /// `--ext-mount-map MP:KEY`), auto-detection, skipped mountpoints.
    pub fn dump_mount_options(&self) -> Result<DumpMountOptions, String> {
        let (externals, auto_externals) = self.mount_maps()?;
        Ok(DumpMountOptions { externals, auto_externals, skip: self.skip_mnt.clone() })
    }

    /// What a restore does with the tree's mounts: `--root`, externals by key
    /// (`mnt[KEY]:PATH`, `--ext-mount-map KEY:PATH`).
    pub fn restore_mount_options(&self) -> Result<RestoreMountOptions, String> {
        let (pairs, _) = self.mount_maps()?;
        Ok(RestoreMountOptions { root: self.root.clone(), externals: pairs.into_iter().map(|(key, path)| (key, PathBuf::from(path))).collect() })
    }

    /// What `crust restore` asks the engine. The engine always returns once the tree
    /// runs: without `-d` the caller waits for the root itself, after the post-resume
    /// scripts (and `--exec-cmd`'s command becomes the parent instead). Call `refusal`
    /// first.
    pub fn restore_options(&self) -> RestoreOptions {
        RestoreOptions {
            dir: self.images_dir(),
            detach: true,
            pidfile: self.pidfile.clone(),
            shell_job: self.shell_job,
            // A malformed mount map is one of `refusals`, reported before this is called.
            mounts: self.restore_mount_options().unwrap_or_default(),
            veths: self.veths(),
            skip_checksums: self.skip_checksums,
            // The daemon's socket in the work directory (the restore runs there).
            lazy_pages: self.lazy_pages.then(|| PathBuf::from(LAZY_PAGES_SOCKET)),
            empty_net: self.empty_ns.is_some(),
            leave_stopped: self.leave_stopped,
            restore_sibling: self.restore_sibling,
            // Checked when set (`parse_inherit_fd`).
            inherit_fds: self
                .inherit_fd
                .iter()
                .filter_map(|spec| parse_inherit_fd(spec).ok().map(|(fd, key)| (fd, key.to_string())))
                .collect(),
            cgroup_mode: self.manage_cgroups.unwrap_or_default(),
            cgroup_roots: self.cgroup_root.iter().map(|root| parse_cgroup_root(root)).collect(),
            ..Default::default()
        }
    }

    /// The veth host ends asked for: `--veth-pair IN=OUT[@BR]` and `--external
    /// veth[IN]:OUT[@BR]`, as (IN, OUT[@BR]).
    pub fn veths(&self) -> Vec<(String, String)> {
        let pairs = self.veth_pairs.iter().filter_map(|pair| pair.split_once('='));
        let external = self.external.iter().filter_map(|resource| resource.strip_prefix("veth[")?.split_once("]:"));
        pairs.chain(external).map(|(inner, outer)| (inner.to_string(), outer.to_string())).collect()
    }
}

/// The lazy-pages daemon's socket, in the work directory of both `crust lazy-pages`
/// and `crust restore --lazy-pages` (as CRIU names it).
pub const LAZY_PAGES_SOCKET: &str = "lazy-pages.socket";

/// `--cgroup-root [CONTROLLER:]PATH` as (controller, path): `:PATH` names the unified
/// hierarchy (runc's `cg_root` with an empty `ctrl`), a bare PATH every hierarchy.
pub fn parse_cgroup_root(text: &str) -> (Option<String>, String) {
    match text.split_once(':') {
        Some((controller, path)) if !text.starts_with('/') => (Some(controller.to_string()), path.to_string()),
        _ => (None, text.to_string()),
    }
}

/// `--ghost-limit`'s size: a number of bytes with an optional K, M or G (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 10),
        Some((at, 'M' | 'm')) => (&text[..at], 20),
        Some((at, 'G' | 'g')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (a number with K, M or G)"))?;
    number.checked_mul(1 << shift).ok_or_else(|| format!("{text:?} is too large"))
}

/// Checks `--inherit-fd fd[N]:RESOURCE`; returns N and the resource.
pub fn parse_inherit_fd(text: &str) -> Result<(i32, &str), String> {
    let bad = || format!("option --inherit-fd takes fd[NUM]:RESOURCE, not {text:?}");
    let rest = text.strip_prefix("fd[").ok_or_else(bad)?;
    let (number, resource) = rest.split_once("]:").ok_or_else(bad)?;
    let fd = number.parse::<i32>().ok().filter(|fd| *fd >= 0).ok_or_else(bad)?;
    if resource.is_empty() {
        return Err(bad());
    }
    Ok((fd, resource))
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_args;
    use super::*;

    fn options(text: &str) -> Result<CriuOptions, String> {
        let words: Vec<String> = text.split_whitespace().map(String::from).collect();
        let line = parse_args(&words).map_err(|e| e.0)?;
        let mut options = CriuOptions::default();
        for setting in &line.settings {
            options.apply(setting)?;
        }
        Ok(options)
    }

    #[test]
    fn verbosity_forms() {
        assert_eq!(options("").unwrap().verbosity, 2);
        assert_eq!(options("-v").unwrap().verbosity, 3);
        assert_eq!(options("-vv").unwrap().verbosity, 4);
        assert_eq!(options("-vvvv").unwrap().verbosity, 6);
        assert_eq!(options("-v4").unwrap().verbosity, 4);
        assert_eq!(options("-v0").unwrap().verbosity, 0);
        assert_eq!(options("--verbosity=1").unwrap().verbosity, 1);
        assert_eq!(options("--verbosity").unwrap().verbosity, 3);
        assert_eq!(options("-v 4").unwrap().verbosity, 4);
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(options("--ghost-limit 2M").unwrap().ghost_limit, 2 << 20);
        assert_eq!(options("--ghost-limit 512").unwrap().ghost_limit, 512);
        assert_eq!(options("--ghost-limit 1G").unwrap().ghost_limit, 1 << 30);
        assert!(options("--ghost-limit 1X").unwrap_err().contains("--ghost-limit"));
        assert_eq!(options("--network-lock nftables").unwrap().network_lock, NetworkLock::Nftables);
        assert_eq!(
            options("--network-lock foo").unwrap_err(),
            "invalid value for --network-lock: foo (iptables, nftables or skip)"
        );
        assert_eq!(options("--manage-cgroups").unwrap().manage_cgroups, Some(CgroupMode::Soft));
        assert_eq!(options("--manage-cgroups=strict").unwrap().manage_cgroups, Some(CgroupMode::Strict));
        assert!(options("--manage-cgroups=bogus").unwrap_err().contains("unknown cgroups mode"));
        assert!(options("--tree 0").is_err());
        assert!(options("--tree abc").is_err());
        assert!(options("--inherit-fd 3:x").is_err());
        assert_eq!(options("--inherit-fd fd[3]:tty[1:2]").unwrap().inherit_fd, ["fd[3]:tty[1:2]"]);
        assert!(options("--cpu-cap=bogus").is_err());
        assert!(options("--timeout -1").is_err());
        assert!(options("--fault-inject nowhere").is_err());
        assert!(options("--fault-inject hold:nowhere").is_err());
        assert_eq!(options("--fault-inject hold:parasite-threads").unwrap().fault_hold.as_deref(), Some("parasite-threads"));
    }

    #[test]
    fn later_settings_win_and_no_forms_turn_off() {
        let o = options("--tcp-established --no-tcp-established -D /a -D /b --external unix[1] --external unix[2]").unwrap();
        assert!(!o.tcp_established);
        assert_eq!(o.images_dir(), PathBuf::from("/b"));
        assert_eq!(o.external, ["unix[1]", "unix[2]"]);
        assert!(!options("--no-ghost-fiemap").unwrap().ghost_fiemap);
        let o = options("--all").unwrap();
        assert!(o.check_extra && o.check_experimental);
    }

    #[test]
    fn cgroup_roots_and_modes_reach_the_engine() {
        assert_eq!(parse_cgroup_root("/a/b"), (None, "/a/b".to_string()));
        assert_eq!(parse_cgroup_root("cpu,cpuacct:/a"), (Some("cpu,cpuacct".to_string()), "/a".to_string()));
        assert_eq!(parse_cgroup_root(":/u"), (Some(String::new()), "/u".to_string()));
        let restore = options("--manage-cgroups=full --cgroup-root name=systemd:/s").unwrap().restore_options();
        assert_eq!(restore.cgroup_mode, CgroupMode::Full);
        assert_eq!(restore.cgroup_roots, [(Some("name=systemd".to_string()), "/s".to_string())]);
        let dump = options("-t 1 --freeze-cgroup /sys/fs/cgroup/freezer/x").unwrap().dump_options(Verb::Dump).unwrap();
        assert_eq!(dump.cgroup_mode, CgroupMode::Soft);
        assert_eq!(dump.freeze_cgroup.as_deref(), Some(Path::new("/sys/fs/cgroup/freezer/x")));
    }

    #[test]
    fn cpu_caps() {
        assert!(CpuCaps::parse("").unwrap().needs_cpuinfo());
        assert!(!CpuCaps::parse("none").unwrap().needs_cpuinfo());
        assert!(!CpuCaps::parse("fpu").unwrap().needs_cpuinfo());
        assert!(!CpuCaps::parse("all,^cpu,^ins").unwrap().needs_cpuinfo());
        assert!(CpuCaps::parse("fpu,ins").unwrap().needs_cpuinfo());
    }

    #[test]
    fn refusals_name_the_option_and_depend_on_the_verb() {
        let refused = |text: &str, verb| options(text).unwrap().refusal(verb).map(|r| r.shown());
        assert_eq!(refused("--lazy-pages", Verb::Dump).as_deref(), Some("--lazy-pages"));
        assert_eq!(refused("--lazy-pages --port 1", Verb::Dump), None);
        assert_eq!(refused("--lazy-pages --port 1", Verb::PreDump).as_deref(), Some("--lazy-pages"));
        assert_eq!(refused("--lazy-pages --page-server --port 1", Verb::Dump).as_deref(), Some("--lazy-pages"));
        assert_eq!(refused("--lazy-pages", Verb::Restore), None);
        assert_eq!(refused("--lazy-pages", Verb::Check), None);
        assert_eq!(refused("--network-lock nftables --tcp-established", Verb::Dump), None);
        assert_eq!(refused("--network-lock iptables", Verb::Dump), None);
        assert_eq!(refused("--network-lock skip", Verb::Dump), None);
        assert_eq!(refused("--leave-stopped --tcp-close", Verb::Dump), None);
        assert_eq!(refused("--manage-cgroups", Verb::Dump), None);
        assert_eq!(refused("--manage-cgroups=strict --cgroup-root cpu:/x --cgroup-root /y", Verb::Restore), None);
        assert_eq!(refused("--cgroup-root /x", Verb::Dump).as_deref(), Some("--cgroup-root"));
        assert_eq!(refused("--cgroup-yard /y", Verb::Restore).as_deref(), Some("--cgroup-yard"));
        assert_eq!(refused("--cgroup-yard /y", Verb::Dump).as_deref(), Some("--cgroup-yard"));
        assert_eq!(refused("--cgroup-props-file /p", Verb::Dump).as_deref(), Some("--cgroup-props-file"));
        assert_eq!(refused("--cgroup-dump-controller pids", Verb::Dump).as_deref(), Some("--cgroup-dump-controller"));
        assert_eq!(refused("--manage-cgroups=ignore", Verb::Restore), None);
        assert_eq!(refused("--root /", Verb::Restore), None);
        assert_eq!(refused("--root /x", Verb::Restore), None);
        assert_eq!(refused("--external mnt[/data]:data --ext-mount-map /etc/x:x --skip-mnt /proc", Verb::Dump), None);
        assert_eq!(refused("--external veth[eth0]:v0", Verb::Restore), None);
        assert_eq!(refused("--external unix[123]", Verb::Restore).as_deref(), Some("--external unix[123]"));
        assert_eq!(refused("--restore-sibling", Verb::Dump), None);
        assert_eq!(refused("--restore-sibling", Verb::Restore), None);
        assert_eq!(refused("--inherit-fd fd[3]:/x", Verb::Dump), None);
        assert_eq!(refused("--cpu-cap=none", Verb::Restore), None);
        assert_eq!(refused("--cpu-cap", Verb::Restore).as_deref(), Some("--cpu-cap cpu,ins"));
        assert_eq!(refused("--cpu-cap=fpu,ins", Verb::Restore).as_deref(), Some("--cpu-cap ins"));
        assert_eq!(refused("--tcp-close --no-tcp-close", Verb::Dump), None);
        assert_eq!(refused("--leave-stopped", Verb::Restore), None);
        let text = options("--lazy-pages").unwrap().refusal(Verb::Dump).unwrap().to_string();
        assert!(text.contains("--lazy-pages") && text.contains("--port"), "{text}");
    }

    #[test]
    fn every_refusal_is_listed_in_order_and_unusable_values_come_last() {
        let o = options("--freeze-cgroup /nonexistent/cgroup --lazy-pages --auto-dedup --enable-fs tmpfs").unwrap();
        let names: Vec<&str> = o.refusals(Verb::Dump).iter().map(|r| r.option).collect();
        assert_eq!(names, ["auto-dedup", "enable-fs", "lazy-pages", "freeze-cgroup"]);
        let refusals = options("--freeze-cgroup /nonexistent/cgroup").unwrap().refusals(Verb::Dump);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].kind, RefusalKind::Unusable);
        assert_eq!(refusals[0].to_string(), "--freeze-cgroup /nonexistent/cgroup: no such cgroup");
        assert_eq!(options("--freeze-cgroup /nonexistent/cgroup").unwrap().refusals(Verb::Restore), vec![]);
        assert_eq!(options("--freeze-cgroup /").unwrap().refusals(Verb::Dump), vec![]);
    }

    #[test]
    fn config_text_applies_and_errors_name_the_line() {
        let mut o = CriuOptions::default();
        o.apply_config("tcp-established\nghost-limit 2M\n", Path::new("/c.conf")).unwrap();
        assert!(o.tcp_established);
        assert_eq!(o.ghost_limit, 2 << 20);
        let error = o.apply_config("\nnetwork-lock pf\n", Path::new("/c.conf")).unwrap_err();
        assert_eq!(error, "/c.conf:2: invalid value for --network-lock: pf (iptables, nftables or skip)");
        assert_eq!(o.apply_config("bogus\n", Path::new("/c.conf")).unwrap_err(), "/c.conf:1: unknown option --bogus");
    }

    #[test]
    fn cpu_caps_from_criu_bits() {
        assert!(!CpuCaps::from_bits(0).needs_cpuinfo());
        assert!(!CpuCaps::from_bits(1).needs_cpuinfo());
        assert!(CpuCaps::from_bits(2).needs_cpuinfo());
        assert_eq!(CpuCaps::from_bits(u32::MAX), CpuCaps::parse("all").unwrap());
    }

    #[test]
    fn engine_options() {
        let o = options("-t 42 -D /img -R --tcp-established -j --prev-images-dir ../pre").unwrap();
        let dump = o.dump_options(Verb::Dump).unwrap();
        assert_eq!((dump.pid, dump.dir.clone(), dump.leave_running, dump.tcp_established, dump.shell_job), (42, "/img".into(), true, true, true));
        assert_eq!(dump.parent, Some("../pre".into()));
        assert!(options("-t 42").unwrap().dump_options(Verb::PreDump).unwrap().leave_running);
        let dump = options("-t 42 -s -l --ghost-limit 2M --network-lock skip --tcp-close --skip-in-flight --timeout 3").unwrap().dump_options(Verb::Dump).unwrap();
        assert!(dump.leave_stopped && dump.file_locks && dump.network_lock_skip && dump.tcp_close && dump.skip_in_flight);
        assert_eq!((dump.ghost_limit, dump.timeout), (2 << 20, Some(std::time::Duration::from_secs(3))));
        let dump = options("-t 42").unwrap().dump_options(Verb::Dump).unwrap();
        assert!(!dump.leave_stopped && !dump.file_locks && !dump.network_lock_skip);
        assert_eq!((dump.ghost_limit, dump.timeout), (1 << 20, Some(std::time::Duration::from_secs(10))));
        assert_eq!(options("-t 42 --timeout 0").unwrap().dump_options(Verb::Dump).unwrap().timeout, None);
        assert!(options("-D /img -s").unwrap().restore_options().leave_stopped);
        let inherit = options("-D /img --inherit-fd fd[7]:pipe:[4242] --inherit-fd fd[8]:/var/log/x").unwrap().restore_options().inherit_fds;
        assert_eq!(inherit, [(7, "pipe:[4242]".to_string()), (8, "/var/log/x".to_string())]);
        assert!(options("-D /x").unwrap().dump_options(Verb::Dump).unwrap_err().contains("-t PID"));
        let restore = options("-D /img --pidfile p").unwrap().restore_options();
        assert!(restore.detach);
        assert_eq!(restore.pidfile, Some("p".into()));
    }

    /// Every option the table marks as not yet is refused on dump or restore when set
    /// (so `--help` and the behaviour cannot drift apart).
    #[test]
    fn table_not_yet_means_refused() {
        use super::super::table::{Arg, State, OPTIONS};
        for spec in OPTIONS.iter().filter(|s| matches!(s.state, State::NotYet(_))) {
            let value = match spec.arg {
                Arg::None => String::new(),
                _ => format!("={}", sample_value(spec.long)),
            };
            let o = options(&format!("--{}{value}", spec.long)).unwrap();
            assert!(
                o.refusal(Verb::Dump).is_some() || o.refusal(Verb::Restore).is_some(),
                "--{} is marked not yet but accepted",
                spec.long
            );
        }
    }

    fn sample_value(long: &str) -> &'static str {
        match long {
            "join-ns" => "net:/proc/1/ns/net",
            "veth-pair" => "a=b",
            "ext-mount-map" => "a:b",
            "cgroup-root" | "cgroup-yard" | "cgroup-props-file" => "/x",
            "inherit-fd" => "fd[3]:/x",
            "lsm-profile" => "apparmor:x",
            "external" => "unix[1]",
            "empty-ns" => "net",
            "ext-unix-sk" => "1",
            "file-validation" => "filesize",
            "ps-socket" => "3",
            _ => "x",
        }
    }
}
