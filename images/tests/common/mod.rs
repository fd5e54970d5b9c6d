//! Fixture images, built with our writer from hand-written messages. The committed
//! copies under `tests/fixtures/` are checked against these builders.

#![allow(dead_code)]

use crust_images::pb;
use crust_images::{ByteOrder, ImageKind, ImageWriter};

/// One fixture file: directory under `tests/fixtures/`, file name, bytes.
pub struct Fixture {
    pub dir: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

fn image<M: prost::Message>(kind: ImageKind, byte_order: ByteOrder, entries: &[M]) -> Vec<u8> {
    let mut writer =
        ImageWriter::with_sink(Vec::new(), kind.file_name(0), kind, byte_order).expect("vec sink");
    for entry in entries {
        writer.write_entry(entry).expect("vec sink");
    }
    writer.into_inner().expect("vec sink")
}

fn fown() -> pb::FownEntry {
    pb::FownEntry {
        uid: 0,
        euid: 0,
        signum: 0,
        pid_type: 0,
        pid: 0,
    }
}

fn sk_opts() -> pb::SkOptsEntry {
    pb::SkOptsEntry {
        so_sndbuf: 212992,
        so_rcvbuf: 212992,
        ..Default::default()
    }
}

pub const PAGE: u64 = 4096;

/// A small x86_64 dump of two processes (1000 with two threads, its child 1001).
pub fn dump_fixtures() -> Vec<Fixture> {
    let le = ByteOrder::Little;
    let mut files = Vec::new();
    let mut add = |name: String, bytes: Vec<u8>| {
        files.push(Fixture {
            dir: "dump",
            name,
            bytes,
        })
    };

    add(
        "inventory.img".into(),
        image(
            ImageKind::Inventory,
            le,
            &[pb::InventoryEntry {
                img_version: 2,
                fdinfo_per_id: Some(true),
                root_ids: Some(pb::TaskKobjIdsEntry {
                    vm_id: 1,
                    files_id: 2,
                    fs_id: 3,
                    sighand_id: 4,
                    pid_ns_id: Some(5),
                    ..Default::default()
                }),
                ns_per_id: Some(true),
                lsmtype: Some(pb::Lsmtype::NoLsm as i32),
                dump_uptime: Some(123_456_789),
                ..Default::default()
            }],
        ),
    );
    add(
        "pstree.img".into(),
        image(
            ImageKind::Pstree,
            le,
            &[
                pb::PstreeEntry {
                    pid: 1000,
                    ppid: 0,
                    pgid: 1000,
                    sid: 1000,
                    threads: vec![1000, 1002],
                },
                pb::PstreeEntry {
                    pid: 1001,
                    ppid: 1000,
                    pgid: 1000,
                    sid: 1000,
                    threads: vec![1001],
                },
            ],
        ),
    );
    for (pid, comm) in [(1000u32, "parent"), (1001, "child")] {
        add(
            ImageKind::Core.file_name(pid.into()),
            image(ImageKind::Core, le, &[x86_core(pid, comm)]),
        );
        add(
            ImageKind::Ids.file_name(pid.into()),
            image(
                ImageKind::Ids,
                le,
                &[pb::TaskKobjIdsEntry {
                    vm_id: pid,
                    files_id: pid,
                    fs_id: pid,
                    sighand_id: pid,
                    ..Default::default()
                }],
            ),
        );
        add(
            ImageKind::Fs.file_name(pid.into()),
            image(
                ImageKind::Fs,
                le,
                &[pb::FsEntry {
                    cwd_id: 1,
                    root_id: 2,
                    umask: Some(0o22),
                }],
            ),
        );
        add(
            ImageKind::Mm.file_name(pid.into()),
            image(ImageKind::Mm, le, &[mm_entry()]),
        );
        add(
            ImageKind::Fdinfo.file_name(pid.into()),
            image(
                ImageKind::Fdinfo,
                le,
                &[
                    pb::FdinfoEntry {
                        id: 3,
                        flags: 0,
                        r#type: pb::FdTypes::Reg as i32,
                        fd: 0,
                        xattr_security_selinux: None,
                    },
                    pb::FdinfoEntry {
                        id: 4,
                        flags: 1,
                        r#type: pb::FdTypes::Pipe as i32,
                        fd: 1,
                        xattr_security_selinux: None,
                    },
                    pb::FdinfoEntry {
                        id: 5,
                        flags: 0,
                        r#type: pb::FdTypes::Unixsk as i32,
                        fd: 2,
                        xattr_security_selinux: None,
                    },
                    pb::FdinfoEntry {
                        id: 6,
                        flags: 0,
                        r#type: pb::FdTypes::Inetsk as i32,
                        fd: 3,
                        xattr_security_selinux: None,
                    },
                    pb::FdinfoEntry {
                        id: 7,
                        flags: 0,
                        r#type: pb::FdTypes::Eventfd as i32,
                        fd: 4,
                        xattr_security_selinux: None,
                    },
                ],
            ),
        );
        let (pagemap, pages) = pagemap_and_pages(pid);
        add(ImageKind::Pagemap.file_name(pid.into()), pagemap);
        add(ImageKind::Pages.file_name(pid.into()), pages);
    }
    // thread 1002 of process 1000
    add(
        ImageKind::Core.file_name(1002),
        image(ImageKind::Core, le, &[x86_thread_core(1002)]),
    );
    add(
        "files.img".into(),
        image(ImageKind::Files, le, &file_entries()),
    );
    add("pipes-data.img".into(), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "pipes-data.img", ImageKind::PipesData, le)
                .expect("vec");
        writer
            .write_entry(&pb::PipeDataEntry {
                pipe_id: 77,
                bytes: 12,
                size: Some(65536),
            })
            .expect("vec");
        writer.write_payload(b"hello, pipe\n").expect("vec");
        writer.into_inner().expect("vec")
    });
    add("tcp-stream-1f.img".into(), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "tcp-stream-1f.img", ImageKind::TcpStream, le)
                .expect("vec");
        writer
            .write_entry(&pb::TcpStreamEntry {
                inq_len: 3,
                inq_seq: 1000,
                outq_len: 2,
                outq_seq: 2000,
                opt_mask: 0x7,
                snd_wscale: 7,
                mss_clamp: 1460,
                rcv_wscale: Some(7),
                timestamp: Some(99),
                ..Default::default()
            })
            .expect("vec");
        writer.write_payload(b"inqou").expect("vec");
        writer.into_inner().expect("vec")
    });
    add("bpfmap-data.img".into(), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "bpfmap-data.img", ImageKind::BpfmapData, le)
                .expect("vec");
        writer
            .write_entry(&pb::BpfmapDataEntry {
                map_id: 7,
                keys_bytes: 8,
                values_bytes: 6,
                count: 2,
            })
            .expect("vec");
        writer.write_payload(b"key1key2valval").expect("vec");
        writer.into_inner().expect("vec")
    });
    add(
        "apparmor.img".into(),
        image(
            ImageKind::Apparmor,
            le,
            &[pb::ApparmorEntry {
                namespaces: vec![pb::AaNamespace {
                    name: "root".into(),
                    policies: vec![pb::AaPolicy {
                        name: "crust-test".into(),
                        blob: b"\x04\x08policy".to_vec(),
                    }],
                    namespaces: vec![],
                }],
            }],
        ),
    );
    add("sk-queues.img".into(), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "sk-queues.img", ImageKind::SkQueues, le)
                .expect("vec");
        writer
            .write_entry(&pb::SkPacketEntry {
                id_for: 5,
                length: 4,
                scm: vec![],
            })
            .expect("vec");
        writer.write_payload(b"ping").expect("vec");
        writer.into_inner().expect("vec")
    });
    add(ImageKind::GhostFile.file_name(0x1a), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "ghost-file-1a.img", ImageKind::GhostFile, le)
                .expect("vec");
        writer
            .write_entry(&pb::GhostFileEntry {
                uid: 1000,
                gid: 1000,
                mode: 0o100644,
                dev: Some((8 << 20) | 1),
                ino: Some(4242),
                rdev: None,
                atim: Some(pb::Timeval {
                    tv_sec: 1,
                    tv_usec: 2,
                }),
                mtim: Some(pb::Timeval {
                    tv_sec: 3,
                    tv_usec: 4,
                }),
                chunks: None,
                size: Some(6),
                symlnk_target: None,
            })
            .expect("vec");
        writer.write_payload(b"ghost\n").expect("vec");
        writer.into_inner().expect("vec")
    });
    add(ImageKind::GhostFile.file_name(0x1b), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "ghost-file-1b.img", ImageKind::GhostFile, le)
                .expect("vec");
        writer
            .write_entry(&pb::GhostFileEntry {
                uid: 0,
                gid: 0,
                mode: 0o100600,
                chunks: Some(true),
                size: Some(8192),
                ..Default::default()
            })
            .expect("vec");
        writer
            .write_entry(&pb::GhostChunkEntry { len: 3, off: 0 })
            .expect("vec");
        writer.write_payload(b"abc").expect("vec");
        writer
            .write_entry(&pb::GhostChunkEntry { len: 2, off: 4096 })
            .expect("vec");
        writer.write_payload(b"xy").expect("vec");
        writer.into_inner().expect("vec")
    });
    add(
        ImageKind::Mnts.file_name(1),
        image(
            ImageKind::Mnts,
            le,
            &[pb::MntEntry {
                fstype: pb::Fstype::Tmpfs as u32,
                mnt_id: 22,
                root_dev: 45,
                parent_mnt_id: 1,
                flags: 0x6,
                root: "/".into(),
                mountpoint: "/tmp".into(),
                source: "tmpfs".into(),
                options: "size=65536k".into(),
                shared_id: Some(3),
                sb_flags: Some(0x1),
                ..Default::default()
            }],
        ),
    );
    let ipc_desc = |id: u32| pb::IpcDescEntry {
        key: 0x1234 + id,
        uid: 1000,
        gid: 1000,
        cuid: 1000,
        cgid: 1000,
        mode: 0o600,
        id,
    };
    add(
        ImageKind::IpcVar.file_name(1),
        image(
            ImageKind::IpcVar,
            le,
            &[pb::IpcVarEntry {
                sem_ctls: vec![32000, 1_024_000_000, 500, 32000],
                msg_ctlmax: 8192,
                msg_ctlmnb: 16384,
                msg_ctlmni: 32000,
                auto_msgmni: 0,
                shm_ctlmax: u64::MAX - (1 << 24),
                shm_ctlall: u64::MAX - (1 << 24),
                shm_ctlmni: 4096,
                shm_rmid_forced: 0,
                mq_queues_max: 256,
                mq_msg_max: 10,
                mq_msgsize_max: 8192,
                mq_msg_default: Some(10),
                mq_msgsize_default: Some(8192),
                msg_next_id: Some(u32::MAX),
                sem_next_id: None,
                shm_next_id: None,
            }],
        ),
    );
    add(ImageKind::IpcnsShm.file_name(1), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "ipcns-shm-1.img", ImageKind::IpcnsShm, le)
                .expect("vec");
        writer
            .write_entry(&pb::IpcShmEntry {
                desc: ipc_desc(1),
                size: 5,
                in_pagemaps: None,
                hugetlb_flag: None,
            })
            .expect("vec");
        writer.write_payload(b"shm!!\0\0\0").expect("vec");
        writer
            .write_entry(&pb::IpcShmEntry {
                desc: ipc_desc(2),
                size: 4096,
                in_pagemaps: Some(true),
                hugetlb_flag: None,
            })
            .expect("vec");
        writer.into_inner().expect("vec")
    });
    add(ImageKind::IpcnsSem.file_name(1), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "ipcns-sem-1.img", ImageKind::IpcnsSem, le)
                .expect("vec");
        writer
            .write_entry(&pb::IpcSemEntry {
                desc: ipc_desc(3),
                nsems: 3,
            })
            .expect("vec");
        writer
            .write_payload(&[1, 0, 2, 0, 0xff, 0xff, 0, 0])
            .expect("vec");
        writer.into_inner().expect("vec")
    });
    add(ImageKind::IpcnsMsg.file_name(1), {
        let mut writer =
            ImageWriter::with_sink(Vec::new(), "ipcns-msg-1.img", ImageKind::IpcnsMsg, le)
                .expect("vec");
        writer
            .write_entry(&pb::IpcMsgEntry {
                desc: ipc_desc(4),
                qbytes: 16384,
                qnum: 2,
            })
            .expect("vec");
        writer
            .write_entry(&pb::IpcMsg { mtype: 1, msize: 5 })
            .expect("vec");
        writer.write_payload(b"hello\0\0\0").expect("vec");
        writer
            .write_entry(&pb::IpcMsg { mtype: 7, msize: 9 })
            .expect("vec");
        writer
            .write_payload(b"123456789\0\0\0\0\0\0\0")
            .expect("vec");
        writer.into_inner().expect("vec")
    });
    add(
        "stats-dump".into(),
        image(
            ImageKind::StatsDump,
            le,
            &[pb::StatsEntry {
                dump: Some(pb::DumpStatsEntry {
                    freezing_time: 10,
                    frozen_time: 20,
                    memdump_time: 30,
                    memwrite_time: 40,
                    pages_scanned: 100,
                    pages_skipped_parent: 0,
                    pages_written: 9,
                    pages_lazy: 0,
                    ..Default::default()
                }),
                restore: None,
            }],
        ),
    );
    files
}

/// Images of other architectures, side by side: an s390x core written big-endian,
/// aarch64 and ppc64le cores.
pub fn arch_fixtures() -> Vec<Fixture> {
    let s390 = pb::CoreEntry {
        mtype: pb::core_entry::March::S390 as i32,
        ti_s390: Some(pb::ThreadInfoS390 {
            clear_tid_addr: 0x3ff_f7ff_0000,
            gpregs: pb::UserS390RegsEntry {
                psw_mask: 0x0705_0001_8000_0000,
                psw_addr: 0x1000_0a3c,
                gprs: (0..16).collect(),
                acrs: vec![0; 16],
                orig_gpr2: 0,
                system_call: 0,
            },
            fpregs: pb::UserS390FpregsEntry {
                fpc: 0,
                fprs: vec![0; 16],
            },
            ..Default::default()
        }),
        tc: Some(task_core("s390-task")),
        thread_core: Some(thread_core()),
        ..Default::default()
    };
    let aarch64 = pb::CoreEntry {
        mtype: pb::core_entry::March::Aarch64 as i32,
        ti_aarch64: Some(pb::ThreadInfoAarch64 {
            clear_tid_addr: 0xffff_8000_1000,
            tls: 0xffff_8000_2000,
            gpregs: pb::UserAarch64RegsEntry {
                regs: (0..31).collect(),
                sp: 0xffff_ffff_e000,
                pc: 0x40_0000,
                pstate: 0x6000_0000,
            },
            fpsimd: pb::UserAarch64FpsimdContextEntry {
                vregs: vec![0; 64],
                fpsr: 0,
                fpcr: 0,
            },
            pac_keys: None,
        }),
        tc: Some(task_core("arm-task")),
        thread_core: Some(thread_core()),
        ..Default::default()
    };
    let ppc64 = pb::CoreEntry {
        mtype: pb::core_entry::March::Ppc64 as i32,
        ti_ppc64: Some(pb::ThreadInfoPpc64 {
            clear_tid_addr: 0x7fff_b000_0000,
            gpregs: pb::UserPpc64RegsEntry {
                gpr: (0..32).collect(),
                nip: 0x1000_0000,
                msr: 0x8000_0000_0280_f033,
                orig_gpr3: 0,
                ctr: 0,
                link: 0,
                xer: 0,
                ccr: 0,
                trap: 0xc00,
                ..Default::default()
            },
            ..Default::default()
        }),
        tc: Some(task_core("ppc-task")),
        thread_core: Some(thread_core()),
        ..Default::default()
    };
    vec![
        Fixture {
            dir: "arch",
            name: "core-390.img".into(),
            bytes: image(ImageKind::Core, ByteOrder::Big, &[s390]),
        },
        Fixture {
            dir: "arch",
            name: "core-64.img".into(),
            bytes: image(ImageKind::Core, ByteOrder::Little, &[aarch64]),
        },
        Fixture {
            dir: "arch",
            name: "core-8.img".into(),
            bytes: image(ImageKind::Core, ByteOrder::Little, &[ppc64]),
        },
    ]
}

pub fn all_fixtures() -> Vec<Fixture> {
    let mut fixtures = dump_fixtures();
    fixtures.extend(arch_fixtures());
    fixtures
}

fn task_core(comm: &str) -> pb::TaskCoreEntry {
    pb::TaskCoreEntry {
        task_state: 1,
        exit_code: 0,
        personality: 0,
        flags: 0x40_0100,
        blk_sigset: 0x1_0000,
        comm: comm.into(),
        timers: Some(pb::TaskTimersEntry {
            real: pb::ItimerEntry {
                isec: 0,
                iusec: 0,
                vsec: 1,
                vusec: 500,
            },
            virt: pb::ItimerEntry::default(),
            prof: pb::ItimerEntry::default(),
            posix: vec![],
        }),
        rlimits: Some(pb::TaskRlimitsEntry {
            rlimits: vec![
                pb::RlimitEntry {
                    cur: 8 << 20,
                    max: u64::MAX,
                },
                pb::RlimitEntry {
                    cur: 1024,
                    max: 4096,
                },
            ],
        }),
        loginuid: Some(u32::MAX),
        oom_score_adj: Some(0),
        sigactions: vec![pb::SaEntry {
            sigaction: 0x40_1136,
            flags: 0x0400_0000,
            restorer: 0x7f00_0000_1000,
            mask: 0,
            compat_sigaction: None,
            mask_extended: None,
        }],
        child_subreaper: Some(false),
        ..Default::default()
    }
}

fn thread_core() -> pb::ThreadCoreEntry {
    pb::ThreadCoreEntry {
        futex_rla: 0,
        futex_rla_len: 24,
        sched_nice: Some(-5),
        sched_policy: Some(0),
        sched_prio: Some(0),
        blk_sigset: Some(0),
        sas: Some(pb::ThreadSasEntry {
            ss_sp: 0,
            ss_size: 0,
            ss_flags: 2,
        }),
        pdeath_sig: Some(0),
        signals_p: Some(pb::SignalQueueEntry {
            signals: vec![pb::SiginfoEntry {
                siginfo: vec![10, 0, 0, 0, 0, 0, 0, 0],
            }],
        }),
        creds: Some(pb::CredsEntry {
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            suid: 1000,
            sgid: 1000,
            fsuid: 1000,
            fsgid: 1000,
            cap_inh: vec![0, 0],
            cap_prm: vec![0, 0],
            cap_eff: vec![0, 0],
            cap_bnd: vec![u32::MAX, 0x1ff],
            secbits: 0,
            groups: vec![1000, 27],
            ..Default::default()
        }),
        seccomp_mode: Some(pb::SeccompMode::Disabled as i32),
        comm: Some("worker".into()),
        ..Default::default()
    }
}

fn x86_thread_info(tid: u32) -> pb::ThreadInfoX86 {
    pb::ThreadInfoX86 {
        clear_tid_addr: 0x7f12_3456_7a10,
        gpregs: pb::UserX86RegsEntry {
            ax: 0xffff_ffff_ffff_fe00,
            orig_ax: 230,
            ip: 0x7f12_3450_1234,
            sp: 0x7ffd_0000_1000 + u64::from(tid),
            cs: 0x33,
            ss: 0x2b,
            flags: 0x246,
            fs_base: 0x7f12_3456_7740,
            mode: Some(pb::UserX86RegsMode::Native as i32),
            ..Default::default()
        },
        fpregs: pb::UserX86FpregsEntry {
            cwd: 0x37f,
            mxcsr: 0x1f80,
            mxcsr_mask: 0xffff,
            st_space: vec![0; 32],
            xmm_space: vec![0; 64],
            xsave: Some(pb::UserX86XsaveEntry {
                xstate_bv: 0x7,
                ymmh_space: vec![0; 64],
                ..Default::default()
            }),
            ..Default::default()
        },
        tls: vec![pb::UserDescT {
            entry_number: 12,
            base_addr: 0,
            limit: 0,
            seg_32bit: false,
            contents_h: false,
            contents_l: false,
            read_exec_only: true,
            limit_in_pages: false,
            seg_not_present: true,
            usable: false,
        }],
    }
}

fn x86_core(pid: u32, comm: &str) -> pb::CoreEntry {
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(x86_thread_info(pid)),
        tc: Some(task_core(comm)),
        ids: None,
        thread_core: Some(thread_core()),
        ..Default::default()
    }
}

fn x86_thread_core(tid: u32) -> pb::CoreEntry {
    pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(x86_thread_info(tid)),
        thread_core: Some(thread_core()),
        ..Default::default()
    }
}

fn vma(start: u64, end: u64, prot: u32, flags: u32, status: u32, shmid: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid,
        prot,
        flags,
        status,
        fd: -1,
        madv: None,
        fdflags: None,
    }
}

pub fn mm_entry() -> pb::MmEntry {
    pb::MmEntry {
        mm_start_code: 0x40_0000,
        mm_end_code: 0x40_1000,
        mm_start_data: 0x60_0000,
        mm_end_data: 0x60_1000,
        mm_start_stack: 0x7ffd_0000_2000,
        mm_start_brk: 0x60_2000,
        mm_brk: 0x60_4000,
        mm_arg_start: 0x7ffd_0000_2100,
        mm_arg_end: 0x7ffd_0000_2110,
        mm_env_start: 0x7ffd_0000_2110,
        mm_env_end: 0x7ffd_0000_2200,
        exe_file_id: 3,
        mm_saved_auxv: vec![33, 0x7ffd_0000_5000, 0, 0],
        vmas: vec![
            vma(0x40_0000, 0x40_1000, 0x5, 0x2, 0x41, 3),
            vma(0x60_2000, 0x60_4000, 0x3, 0x22, 0x221, 0),
            vma(
                0x7f00_0000_0000,
                0x7f00_0000_4000,
                0x3,
                0x1,
                0x81 | 0x4000,
                8,
            ),
            vma(0x7ffd_0000_0000, 0x7ffd_0000_3000, 0x3, 0x122, 0x203, 0),
            vma(0x7ffd_0000_5000, 0x7ffd_0000_6000, 0x5, 0x22, 0x209, 0),
        ],
        dumpable: Some(1),
        aios: vec![],
        thp_disabled: Some(false),
    }
}

/// Pagemap covering the heap and part of the stack; the pages file holds 3 pages.
pub fn pagemap_and_pages(pid: u32) -> (Vec<u8>, Vec<u8>) {
    let mut writer =
        ImageWriter::with_sink(Vec::new(), "pagemap", ImageKind::Pagemap, ByteOrder::Little)
            .expect("vec");
    writer
        .write_entry(&pb::PagemapHead { pages_id: pid })
        .expect("vec");
    for entry in [
        pb::PagemapEntry::run(0x60_2000, 2, crust_images::PE_PRESENT),
        // as written before CRIU 4.2: the count only in compat_nr_pages
        pb::PagemapEntry {
            vaddr: 0x7ffd_0000_1000,
            compat_nr_pages: 1,
            in_parent: None,
            flags: Some(crust_images::PE_PARENT),
            nr_pages: None,
        },
        pb::PagemapEntry::run(0x7ffd_0000_2000, 1, crust_images::PE_PRESENT),
    ] {
        writer.write_entry(&entry).expect("vec");
    }
    let pagemap = writer.into_inner().expect("vec");
    let mut pages = Vec::new();
    for page in 0..3u8 {
        pages.extend(std::iter::repeat_n(page + 1, PAGE as usize));
    }
    (pagemap, pages)
}

fn file_entries() -> Vec<pb::FileEntry> {
    let reg = |id: u32, name: &str, flags: u32| pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags,
            pos: 0,
            fown: fown(),
            name: name.into(),
            mnt_id: Some(22),
            size: Some(4096),
            mode: Some(0o100755),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        reg(1, "/home/user", 0o200000),
        reg(2, "/", 0o200000),
        reg(3, "/usr/bin/sleeper", 0o2000000),
        pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id: 4,
            pipe: Some(pb::PipeEntry {
                id: 4,
                pipe_id: 77,
                flags: 0x801,
                fown: fown(),
            }),
            ..Default::default()
        },
        pb::FileEntry {
            r#type: pb::FdTypes::Unixsk as i32,
            id: 5,
            usk: Some(Box::new(pb::UnixSkEntry {
                id: 5,
                ino: 31337,
                r#type: 1,
                state: 1,
                flags: 0x2,
                uflags: 0,
                backlog: 0,
                peer: 31338,
                fown: fown(),
                opts: sk_opts(),
                name: b"\0abstract=sock".to_vec(),
                shutdown: Some(pb::SkShutdown::None as i32),
                ..Default::default()
            })),
            ..Default::default()
        },
        pb::FileEntry {
            r#type: pb::FdTypes::Inetsk as i32,
            id: 6,
            isk: Some(Box::new(pb::InetSkEntry {
                id: 6,
                ino: 0x1f,
                family: 2,
                r#type: 1,
                proto: 6,
                state: 1,
                src_port: 8080,
                dst_port: 50000,
                flags: 0x800,
                backlog: 0,
                src_addr: vec![u32::from_le_bytes([127, 0, 0, 1])],
                dst_addr: vec![u32::from_le_bytes([10, 1, 2, 3])],
                fown: fown(),
                opts: sk_opts(),
                ..Default::default()
            })),
            ..Default::default()
        },
        pb::FileEntry {
            r#type: pb::FdTypes::Eventfd as i32,
            id: 7,
            efd: Some(pb::EventfdFileEntry {
                id: 7,
                flags: 0x80002,
                fown: fown(),
                counter: 5,
            }),
            ..Default::default()
        },
        pb::FileEntry {
            r#type: pb::FdTypes::Inetsk as i32,
            id: 8,
            isk: Some(Box::new(pb::InetSkEntry {
                id: 8,
                ino: 0x20,
                family: 10,
                r#type: 2,
                proto: 17,
                state: 7,
                src_port: 53,
                dst_port: 0,
                flags: 0,
                backlog: 0,
                src_addr: ipv6_words("fe80::1"),
                dst_addr: ipv6_words("::"),
                fown: fown(),
                opts: sk_opts(),
                v6only: Some(true),
                ..Default::default()
            })),
            ..Default::default()
        },
    ]
}

fn ipv6_words(text: &str) -> Vec<u32> {
    let address: std::net::Ipv6Addr = text.parse().expect("literal address");
    address
        .octets()
        .chunks(4)
        .map(|chunk| u32::from_le_bytes(chunk.try_into().expect("4 bytes")))
        .collect()
}
