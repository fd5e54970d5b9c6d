//! Image kinds: CRIU's magic numbers, crit's names for them, and CRIU's file names.

/// First word of every image except inventory and raw images (CRIU's `IMG_COMMON_MAGIC`).
pub const IMG_COMMON_MAGIC: u32 = 0x5456_4319;
/// First word of service files: stats and irmap cache (CRIU's `IMG_SERVICE_MAGIC`).
pub const IMG_SERVICE_MAGIC: u32 = 0x5510_5940;

/// `inventory_entry.img_version` of images with the common magic in every file
/// (CRIU's `CRTOOLS_IMAGES_V1_1`); the only version CRIU 3.x and 4.x write.
pub const IMAGES_VERSION: u32 = 2;

/// Which leading word an image kind is framed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `IMG_COMMON_MAGIC` then the kind's magic.
    Common,
    /// `IMG_SERVICE_MAGIC` then the kind's magic.
    Service,
    /// Only the kind's own magic (inventory.img).
    Bare,
    /// No header at all: the file is raw data (pages-N.img).
    Raw,
}

macro_rules! image_kinds {
    ($( $(#[$doc:meta])* $variant:ident = ($magic:expr, $name:literal, $framing:ident, $file:literal) ),* $(,)?) => {
        /// One kind of image file, as CRIU's `magic.h` and `image-desc.c` list them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ImageKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ImageKind {
            /// Every kind we know, in declaration order.
            pub const ALL: &'static [ImageKind] = &[ $( ImageKind::$variant, )* ];

            /// The kind's own magic number (0 for raw images).
            pub fn magic(self) -> u32 {
                match self { $( ImageKind::$variant => $magic, )* }
            }

            /// crit's name for the kind, as in the JSON `"magic"` field (`"CORE"`).
            pub fn name(self) -> &'static str {
                match self { $( ImageKind::$variant => $name, )* }
            }

            /// How the file starts.
            pub fn framing(self) -> Framing {
                match self { $( ImageKind::$variant => Framing::$framing, )* }
            }

            fn file_pattern(self) -> &'static str {
                match self { $( ImageKind::$variant => $file, )* }
            }
        }
    };
}

// File patterns: `{}` is the id in decimal, `{x}` in hex (CRIU's "%x"), none: one file per dump.
image_kinds! {
    /// inventory.img: dump-wide facts (image version, root ids).
    Inventory = (0x5831_3116, "INVENTORY", Bare, "inventory.img"),
    /// pstree.img: the process tree.
    Pstree = (0x5027_3030, "PSTREE", Common, "pstree.img"),
    /// fdinfo-N.img: fd number to file id, per files table.
    Fdinfo = (0x5621_3732, "FDINFO", Common, "fdinfo-{}.img"),
    /// pagemap-N.img: which pages of a task were dumped where.
    Pagemap = (0x5608_4025, "PAGEMAP", Common, "pagemap-{}.img"),
    /// pagemap-shmem-N.img: which pages of shared memory object N (a memfd's inode)
    /// were dumped where; PAGEMAP's magic and messages.
    PagemapShmem = (0x5608_4025, "PAGEMAP", Common, "pagemap-shmem-{}.img"),
    /// pages-N.img: raw page contents.
    Pages = (0, "PAGES", Raw, "pages-{}.img"),
    /// core-N.img: one thread's registers and task state.
    Core = (0x5505_3847, "CORE", Common, "core-{}.img"),
    /// ids-N.img: kernel object ids of a task.
    Ids = (0x5443_2030, "IDS", Common, "ids-{}.img"),
    /// vmas-N.img: old-style standalone vma list.
    Vmas = (0x5412_3737, "VMAS", Common, "vmas-{}.img"),
    /// pipes.img
    Pipes = (0x5651_3555, "PIPES", Common, "pipes.img"),
    /// pipes-data.img: buffered pipe contents.
    PipesData = (0x5645_3709, "PIPES_DATA", Common, "pipes-data.img"),
    /// fifo.img
    Fifo = (0x5836_4939, "FIFO", Common, "fifo.img"),
    /// fifo-data.img
    FifoData = (0x5933_3054, "FIFO_DATA", Common, "fifo-data.img"),
    /// sigacts-N.img: old-style signal handlers.
    Sigact = (0x5534_4201, "SIGACT", Common, "sigacts-{}.img"),
    /// unixsk.img
    Unixsk = (0x5437_3943, "UNIXSK", Common, "unixsk.img"),
    /// inetsk.img
    Inetsk = (0x5644_3851, "INETSK", Common, "inetsk.img"),
    /// packetsk.img
    Packetsk = (0x6045_4618, "PACKETSK", Common, "packetsk.img"),
    /// itimers-N.img: old-style interval timers.
    Itimers = (0x5746_4056, "ITIMERS", Common, "itimers-{}.img"),
    /// posix-timers-N.img: old-style POSIX timers.
    PosixTimers = (0x5260_3957, "POSIX_TIMERS", Common, "posix-timers-{}.img"),
    /// sk-queues.img: queued socket data.
    SkQueues = (0x5626_4026, "SK_QUEUES", Common, "sk-queues.img"),
    /// utsns-N.img
    Utsns = (0x5447_3203, "UTSNS", Common, "utsns-{}.img"),
    /// creds-N.img: old-style credentials.
    Creds = (0x5402_3547, "CREDS", Common, "creds-{}.img"),
    /// reg-files.img: old-style regular files.
    RegFiles = (0x5036_3636, "REG_FILES", Common, "reg-files.img"),
    /// ext-files.img
    ExtFiles = (0x5925_5641, "EXT_FILES", Common, "ext-files.img"),
    /// fs-N.img: cwd, root, umask.
    Fs = (0x5140_3912, "FS", Common, "fs-{}.img"),
    /// mm-N.img: address space.
    Mm = (0x5749_2820, "MM", Common, "mm-{}.img"),
    /// remap-fpath.img
    RemapFpath = (0x5913_3954, "REMAP_FPATH", Common, "remap-fpath.img"),
    /// ghost-file-N.img (N in hex): contents of unlinked files.
    GhostFile = (0x5258_3605, "GHOST_FILE", Common, "ghost-file-{x}.img"),
    /// tcp-stream-N.img (N in hex, the socket inode).
    TcpStream = (0x5146_5506, "TCP_STREAM", Common, "tcp-stream-{x}.img"),
    /// eventfd.img
    EventfdFile = (0x4452_3722, "EVENTFD_FILE", Common, "eventfd.img"),
    /// eventpoll.img
    EventpollFile = (0x4502_3858, "EVENTPOLL_FILE", Common, "eventpoll.img"),
    /// eventpoll-tfd.img
    EventpollTfd = (0x4443_3746, "EVENTPOLL_TFD", Common, "eventpoll-tfd.img"),
    /// signalfd.img
    Signalfd = (0x5732_3820, "SIGNALFD", Common, "signalfd.img"),
    /// inotify.img
    InotifyFile = (0x4842_4431, "INOTIFY_FILE", Common, "inotify.img"),
    /// inotify-wd.img
    InotifyWd = (0x5456_2009, "INOTIFY_WD", Common, "inotify-wd.img"),
    /// fanotify.img
    FanotifyFile = (0x5509_6122, "FANOTIFY_FILE", Common, "fanotify.img"),
    /// fanotify-mark.img
    FanotifyMark = (0x5650_6035, "FANOTIFY_MARK", Common, "fanotify-mark.img"),
    /// mountpoints-N.img
    Mnts = (0x5556_3928, "MNTS", Common, "mountpoints-{}.img"),
    /// netdev-N.img
    Netdev = (0x5737_3951, "NETDEV", Common, "netdev-{}.img"),
    /// netns-N.img
    Netns = (0x5593_3752, "NETNS", Common, "netns-{}.img"),
    /// tty.img
    TtyFiles = (0x5943_3025, "TTY_FILES", Common, "tty.img"),
    /// tty-info.img
    TtyInfo = (0x5945_3036, "TTY_INFO", Common, "tty-info.img"),
    /// tty-data.img
    TtyData = (0x5941_3026, "TTY_DATA", Common, "tty-data.img"),
    /// filelocks.img
    FileLocks = (0x5432_3616, "FILE_LOCKS", Common, "filelocks.img"),
    /// rlimit-N.img: old-style rlimits.
    Rlimit = (0x5711_3925, "RLIMIT", Common, "rlimit-{}.img"),
    /// signal-s-N.img: shared pending signals (old style).
    Signal = (0x5925_5647, "SIGNAL", Common, "signal-s-{}.img"),
    /// signal-p-N.img: private pending signals; same magic as [`ImageKind::Signal`].
    Psignal = (0x5925_5647, "SIGNAL", Common, "signal-p-{}.img"),
    /// netlinksk.img
    NetlinkSk = (0x5800_5614, "NETLINK_SK", Common, "netlinksk.img"),
    /// ns-files.img
    NsFiles = (0x6139_4011, "NS_FILES", Common, "ns-files.img"),
    /// tunfile.img
    Tunfile = (0x5714_3751, "TUNFILE", Common, "tunfile.img"),
    /// cgroup.img
    Cgroup = (0x5938_3330, "CGROUP", Common, "cgroup.img"),
    /// timerfd.img
    Timerfd = (0x5049_3712, "TIMERFD", Common, "timerfd.img"),
    /// cpuinfo.img
    Cpuinfo = (0x6140_4013, "CPUINFO", Common, "cpuinfo.img"),
    /// userns-N.img
    Userns = (0x5547_4906, "USERNS", Common, "userns-{}.img"),
    /// seccomp.img
    Seccomp = (0x6441_3049, "SECCOMP", Common, "seccomp.img"),
    /// files.img: every open file description.
    Files = (0x5630_3138, "FILES", Common, "files.img"),
    /// memfd.img: memfd inodes.
    MemfdInode = (0x4845_3499, "MEMFD_INODE", Common, "memfd.img"),
    /// timens-N.img
    Timens = (0x4311_4433, "TIMENS", Common, "timens-{}.img"),
    /// ipcns-var-N.img: System V IPC limits.
    IpcVar = (0x5311_5007, "IPC_VAR", Common, "ipcns-var-{}.img"),
    /// ipcns-shm-N.img: shared memory segments and their contents.
    IpcnsShm = (0x4628_3044, "IPCNS_SHM", Common, "ipcns-shm-{}.img"),
    /// ipcns-msg-N.img: message queues and their messages.
    IpcnsMsg = (0x5545_3737, "IPCNS_MSG", Common, "ipcns-msg-{}.img"),
    /// ipcns-sem-N.img: semaphore sets and their values.
    IpcnsSem = (0x5957_3019, "IPCNS_SEM", Common, "ipcns-sem-{}.img"),
    /// pidns-N.img
    Pidns = (0x6115_7326, "PIDNS", Common, "pidns-{}.img"),
    /// bpfmap-file.img
    BpfmapFile = (0x5750_6142, "BPFMAP_FILE", Common, "bpfmap-file.img"),
    /// bpfmap-data.img: keys and values of BPF maps, as raw bytes after each entry.
    BpfmapData = (0x6432_4033, "BPFMAP_DATA", Common, "bpfmap-data.img"),
    /// apparmor.img: AppArmor namespaces and policies.
    Apparmor = (0x5942_3047, "APPARMOR", Common, "apparmor.img"),
    /// autofs-N.img
    Autofs = (0x4935_3943, "AUTOFS", Common, "autofs-{}.img"),
    /// binfmt-misc-N.img: binfmt_misc handlers (crit 4.2 has no handler for it).
    BinfmtMisc = (0x6734_3323, "BINFMT_MISC", Common, "binfmt-misc-{}.img"),
    /// pidfd.img: pidfds (crit 4.2 has no handler for it).
    Pidfd = (0x5443_5556, "PIDFD", Common, "pidfd.img"),
    /// ifaddr-N.img: raw, `ip addr save` output (iproute2's own magic, then
    /// `RTM_NEWADDR` messages); see [`crate::iproute`].
    Ifaddr = (0, "IFADDR", Raw, "ifaddr-{}.img"),
    /// route-N.img: raw, `ip route save` output (IPv4 routes); see [`crate::iproute`].
    Route = (0, "ROUTE", Raw, "route-{}.img"),
    /// route6-N.img: raw, `ip -6 route save` output; see [`crate::iproute`].
    Route6 = (0, "ROUTE6", Raw, "route6-{}.img"),
    /// rule-N.img: raw, `ip rule save` output; see [`crate::iproute`].
    Rule = (0, "RULE", Raw, "rule-{}.img"),
    /// iptables-N.img: raw, `iptables-save` text.
    Iptables = (0, "IPTABLES", Raw, "iptables-{}.img"),
    /// ip6tables-N.img: raw, `ip6tables-save` text.
    Ip6tables = (0, "IP6TABLES", Raw, "ip6tables-{}.img"),
    /// nftables-N.img: raw, `nft list ruleset` text.
    Nftables = (0, "NFTABLES", Raw, "nftables-{}.img"),
    /// netns-ct-N.img: raw conntrack entries.
    NetnsCt = (0, "NETNF_CT", Raw, "netns-ct-{}.img"),
    /// netns-exp-N.img: raw conntrack expectations.
    NetnsExp = (0, "NETNF_EXP", Raw, "netns-exp-{}.img"),
    /// tmpfs-dev-N.tar.gz.img: raw, a tmpfs superblock's contents as gzipped GNU tar;
    /// N is the superblock's `s_dev` in the kernel's encoding (`major << 20 | minor`);
    /// see [`crate::tar`].
    TmpfsDev = (0, "TMPFS_DEV", Raw, "tmpfs-dev-{}.tar.gz.img"),
    /// tmpfs-N.tar.gz.img: the older name of a tmpfs archive, by mount id (read only).
    TmpfsImg = (0, "TMPFS_IMG", Raw, "tmpfs-{}.tar.gz.img"),
    /// stats-dump (no .img suffix, as CRIU names it)
    StatsDump = (0x5709_3306, "STATS", Service, "stats-dump"),
    /// stats-restore; same magic as [`ImageKind::StatsDump`].
    StatsRestore = (0x5709_3306, "STATS", Service, "stats-restore"),
    /// irmap-cache
    IrmapCache = (0x5700_4059, "IRMAP_CACHE", Service, "irmap-cache"),
}

impl ImageKind {
    /// The kind whose magic is `magic`, if any. Where two kinds share a magic
    /// (signal-s/signal-p, stats-dump/stats-restore) the first is returned:
    /// their contents decode the same.
    pub fn from_magic(magic: u32) -> Option<ImageKind> {
        if magic == 0 {
            return None;
        }
        ImageKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.magic() == magic)
    }

    /// The kind crit calls `name` (`"CORE"`).
    pub fn from_name(name: &str) -> Option<ImageKind> {
        ImageKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
    }

    /// CRIU's file name for this kind and id: `core-4711.img`, `ghost-file-1a.img`, `files.img`.
    pub fn file_name(self, id: u64) -> String {
        let pattern = self.file_pattern();
        if pattern.contains("{x}") {
            pattern.replace("{x}", &format!("{id:x}"))
        } else {
            pattern.replace("{}", &id.to_string())
        }
    }

    /// Whether the file holds raw data with no CRIU header (pages, tmpfs archives,
    /// iproute2 streams, firewall text); crit cannot decode these and neither does
    /// [`crate::json`].
    pub fn is_raw(self) -> bool {
        self.framing() == Framing::Raw
    }

    /// Whether the file name depends on an id.
    pub fn is_per_id(self) -> bool {
        self.file_pattern().contains('{')
    }

    /// The kind and id a CRIU file name stands for (`core-4711.img` -> `(Core, 4711)`).
    pub fn from_file_name(file_name: &str) -> Option<(ImageKind, u64)> {
        for &kind in ImageKind::ALL {
            let pattern = kind.file_pattern();
            let Some(open) = pattern.find('{') else {
                if pattern == file_name {
                    return Some((kind, 0));
                }
                continue;
            };
            let close = pattern.find('}').expect("pattern has a closing brace");
            let (prefix, suffix) = (&pattern[..open], &pattern[close + 1..]);
            let hex = &pattern[open..=close] == "{x}";
            let Some(middle) = file_name
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(suffix))
            else {
                continue;
            };
            let parsed = if hex {
                u64::from_str_radix(middle, 16)
            } else {
                middle.parse()
            };
            if let Ok(id) = parsed {
                if !middle.is_empty() && middle.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Some((kind, id));
                }
            }
        }
        None
    }
}

impl std::fmt::Display for ImageKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_criu() {
        assert_eq!(ImageKind::Core.file_name(4711), "core-4711.img");
        assert_eq!(ImageKind::Pages.file_name(1), "pages-1.img");
        assert_eq!(ImageKind::GhostFile.file_name(26), "ghost-file-1a.img");
        assert_eq!(ImageKind::Files.file_name(9), "files.img");
        assert_eq!(ImageKind::Psignal.file_name(3), "signal-p-3.img");
    }

    #[test]
    fn file_names_parse_back() {
        for &kind in ImageKind::ALL {
            let name = kind.file_name(42);
            let (parsed_kind, id) = ImageKind::from_file_name(&name).expect("own file name parses");
            assert_eq!(parsed_kind, kind, "{name}");
            assert_eq!(id, if kind.is_per_id() { 42 } else { 0 });
        }
        assert_eq!(
            ImageKind::from_file_name("pagemap-12.img"),
            Some((ImageKind::Pagemap, 12))
        );
        assert_eq!(ImageKind::from_file_name("core-.img"), None);
        assert_eq!(
            ImageKind::from_file_name("tmpfs-dev-42.tar.gz.img"),
            Some((ImageKind::TmpfsDev, 42))
        );
        assert_eq!(
            ImageKind::from_file_name("tmpfs-68.tar.gz.img"),
            Some((ImageKind::TmpfsImg, 68))
        );
        assert_eq!(
            ImageKind::from_file_name("route6-10.img"),
            Some((ImageKind::Route6, 10))
        );
        assert_eq!(
            ImageKind::from_file_name("netns-ct-10.img"),
            Some((ImageKind::NetnsCt, 10))
        );
        assert_eq!(
            ImageKind::from_file_name("netns-10.img"),
            Some((ImageKind::Netns, 10))
        );
    }

    #[test]
    fn magics_round_trip() {
        for &kind in ImageKind::ALL {
            if kind.framing() == Framing::Raw {
                assert_eq!(ImageKind::from_magic(kind.magic()), None);
                continue;
            }
            let back = ImageKind::from_magic(kind.magic()).expect("known magic");
            assert_eq!(back.magic(), kind.magic());
            assert_eq!(back.name(), kind.name());
        }
        assert_eq!(ImageKind::from_magic(0x5505_3847), Some(ImageKind::Core));
        assert_eq!(ImageKind::from_name("CORE"), Some(ImageKind::Core));
    }
}
