//! Unix98 pseudo-terminals whose master is in the dumped tree. As CRIU writes them,
//! each pty is two tty-info.img entries, one per side: the master's (id 2N+1, rdev of
//! /dev/ptmx, the session and foreground group) and the slave's (id 2N, rdev of
//! /dev/pts/N); both carry the index, termios, locked termios (`c_cc` packed four
//! characters a word, as CRIU keeps the kernel's array), window size, lock, packet mode
//! and exclusive mode. Each open end is a TTY file of files.img naming its side's entry,
//! with its path as a reg entry. Restore also reads crust's older form (one entry per
//! pty, named by both ends, one character a word). It opens /dev/ptmx until the kernel
//! hands out the dumped index, sets the state, opens each slave description by path;
//! the session leader takes the pty as its controlling terminal again and the
//! foreground group is set back (`restore::process_main`). Unread data in the pty's
//! buffers is not kept.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;
use super::{file_io, FileError};
use crust_images::pb;


use std::collections::BTreeMap;

/// Kernel NCCS: control characters kept.
const NCCS: usize = 19;

/// The rdev of /dev/ptmx (TTYAUX_MAJOR 5, minor 2): a master side's tty-info entry.
pub(crate) const PTMX_RDEV: u32 = (5 << 8) | 2;

/// The tty-info ids of pty `index`'s sides, as CRIU numbers them: (slave, master).
pub(crate) fn info_ids(index: u32) -> (u32, u32) {
    (index * 2, index * 2 + 1)
}

/// The kernel's control characters as CRIU keeps them: packed four to a word, little
/// endian, in as many words as characters (`termios_entry.c_cc`).
pub(crate) fn pack_c_cc(chars: &[u8]) -> Vec<u32> {
    let mut bytes = chars.to_vec();
    bytes.resize(NCCS * 4, 0);
    bytes.chunks_exact(4).take(NCCS).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The control characters of `termios_entry.c_cc`: packed four to a word (CRIU, and
/// crust since 2026-12-06), or one to a word (crust before), told apart by a word
/// above 255 (a packed array of real characters always has one: VINTR and VQUIT sit
/// in its first word).
pub(crate) fn unpack_c_cc(words: &[u32]) -> Vec<u8> {
    if words.iter().any(|&w| w > 0xff) {
        words.iter().flat_map(|w| w.to_le_bytes()).take(NCCS).collect()
    } else {
        words.iter().take(NCCS).map(|&w| w as u8).collect()
    }
}

fn termios_entry(termios: &libc::termios) -> pb::TermiosEntry {
    pb::TermiosEntry {
        c_iflag: termios.c_iflag,
        c_oflag: termios.c_oflag,
        c_cflag: termios.c_cflag,
        c_lflag: termios.c_lflag,
        c_line: termios.c_line as u32,
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: pack_c_cc(&termios.c_cc[..NCCS]),
    }
}

fn termios_of(entry: &pb::TermiosEntry) -> libc::termios {
    let mut termios = sys::tty::zeroed_termios();
    termios.c_iflag = entry.c_iflag;
    termios.c_oflag = entry.c_oflag;
    termios.c_cflag = entry.c_cflag;
    termios.c_lflag = entry.c_lflag;
    termios.c_line = entry.c_line as libc::cc_t;
    for (slot, c) in termios.c_cc.iter_mut().zip(unpack_c_cc(&entry.c_cc)) {
        *slot = c as libc::cc_t;
    }
    termios
}

/// Whether a termios entry holds nothing (no locked bit or character).
fn is_unset(t: &pb::TermiosEntry) -> bool {
    t.c_iflag == 0 && t.c_oflag == 0 && t.c_cflag == 0 && t.c_lflag == 0 && t.c_line == 0 && unpack_c_cc(&t.c_cc).iter().all(|&c| c == 0)
}

/// Whether a tty-info entry is a master side's (CRIU's form).
pub(crate) fn is_master_info(info: &pb::TtyInfoEntry) -> bool {
    info.rdev == PTMX_RDEV
}

/// Each pty's state by index, and each tty-info id's pty index.
pub(crate) type MergedPtys = (BTreeMap<u32, pb::TtyInfoEntry>, BTreeMap<u32, u32>);

/// The ptys of tty-info.img, one state per pty index, and each entry id's index.
/// CRIU's two entries per pty (and crust's) are merged: the termios, window size and
/// exclusive mode from the slave's, the session, foreground group, lock and packet mode
/// from the master's; a single entry (crust before 2026-12-06) is the whole state.
/// Pure.
pub(crate) fn merge_infos(infos: &[pb::TtyInfoEntry]) -> Result<MergedPtys, FileError> {
    let mut sides: BTreeMap<u32, (Option<&pb::TtyInfoEntry>, Option<&pb::TtyInfoEntry>)> = BTreeMap::new();
    let mut index_of = BTreeMap::new();
    for info in infos {
        let index = info.pty.as_ref().map(|p| p.index).ok_or_else(|| FileError::refused(format!("tty-info {} of type PTY without a pty index (tty_info_entry.pty)", info.id)))?;
        if index_of.insert(info.id, index).is_some() {
            return Err(FileError::refused(format!("tty-info id {} twice", info.id)));
        }
        let side = sides.entry(index).or_default();
        let slot = if is_master_info(info) { &mut side.1 } else { &mut side.0 };
        if slot.replace(info).is_some() {
            return Err(FileError::refused(format!("pty {index}: two {} entries in tty-info.img", if is_master_info(info) { "master" } else { "slave" })));
        }
    }
    let mut merged = BTreeMap::new();
    for (index, (slave, master)) in sides {
        let mut state = slave.or(master).expect("one side at least").clone();
        if let (Some(slave), Some(master)) = (slave, master) {
            state.sid = master.sid;
            state.pgrp = master.pgrp;
            state.locked = master.locked;
            state.packet_mode = master.packet_mode;
            state.exclusive = slave.exclusive;
        }
        state.id = index;
        merged.insert(index, state);
    }
    Ok((merged, index_of))
}

/// The index of a pty from a slave path (`/dev/pts/N`).
pub(crate) fn slave_index(path: &str) -> Option<u32> {
    path.strip_prefix("/dev/pts/")?.parse().ok()
}

/// Whether a path is a pty master.
pub(crate) fn is_master(path: &str) -> bool {
    path == "/dev/ptmx" || path == "/dev/pts/ptmx"
}

/// The index of the pty a master fd (crust's copy) drives.
pub(crate) fn master_index(master: &OwnedFd) -> Result<u32, FileError> {
    sys::tty::ioctl_int_arg(master.as_raw_fd(), libc::TIOCGPTN, 0).map(|v| v as u32).map_err(file_io("TIOCGPTN"))
}

/// The state of pty `index` through its master, as its slave side's tty-info entry
/// (sid and pgrp as this host numbers them, 0: none; the caller converts them and makes
/// the master side's entry with [`master_info`]).
pub(crate) fn dump_info(index: u32, master: &OwnedFd) -> Result<pb::TtyInfoEntry, FileError> {
    let m = master.as_raw_fd();
    let get = |request: u64| sys::tty::ioctl_int_arg(m, request, 0);
    let locked = get(libc::TIOCGPTLCK).map_err(file_io("TIOCGPTLCK"))? != 0;
    let packet_mode = get(libc::TIOCGPKT).map_err(file_io("TIOCGPKT"))? != 0;
    // On the master these tell the slave's session and foreground group.
    let sid = get(libc::TIOCGSID).unwrap_or(0).max(0) as u32;
    let pgrp = get(libc::TIOCGPGRP).unwrap_or(0).max(0) as u32;
    // The slave through its master (TIOCGPTPEER), not by path: the pty may be of a
    // devpts instance of the tree's own, which crust's /dev/pts does not show.
    let path = format!("/dev/pts/{index}");
    let slave = sys::tty::open_peer(m, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK).map_err(file_io(format!("open {path} through its master (TIOCGPTPEER)")))?;
    let exclusive = sys::tty::ioctl_int_arg(slave.as_raw_fd(), libc::TIOCGEXCL, 0).map_err(file_io("TIOCGEXCL"))? != 0;
    let (termios, winsize) = sys::tty::terminal_state(slave.as_raw_fd()).map_err(file_io(format!("{path}: termios")))?;
    let locked_termios = sys::tty::locked_termios(slave.as_raw_fd()).map_err(file_io(format!("{path}: locked termios")))?;
    let meta = std::fs::File::from(slave).metadata().map_err(file_io(format!("stat {path}")))?;
    use std::os::unix::fs::MetadataExt;
    Ok(pb::TtyInfoEntry {
        id: info_ids(index).0,
        r#type: pb::TtyType::Pty as i32,
        locked,
        exclusive,
        packet_mode,
        sid,
        pgrp,
        rdev: meta.rdev() as u32,
        termios: Some(termios_entry(&termios)),
        termios_locked: Some(termios_entry(&locked_termios)),
        winsize: Some(pb::WinsizeEntry {
            ws_row: winsize.ws_row as u32,
            ws_col: winsize.ws_col as u32,
            ws_xpixel: winsize.ws_xpixel as u32,
            ws_ypixel: winsize.ws_ypixel as u32,
        }),
        pty: Some(pb::TtyPtyEntry { index }),
        dev: None,
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
    })
}

/// The master side's entry of the pty whose slave side's entry is `slave`: the same
/// state under the master's id and rdev; the session and foreground group move to it.
pub(crate) fn master_info(slave: &mut pb::TtyInfoEntry) -> pb::TtyInfoEntry {
    let index = slave.pty.as_ref().map(|p| p.index).unwrap_or(slave.id / 2);
    let master = pb::TtyInfoEntry { id: info_ids(index).1, rdev: PTMX_RDEV, ..slave.clone() };
    slave.sid = 0;
    slave.pgrp = 0;
    master
}

/// Opens /dev/ptmx until the kernel hands out pty `index` (lower free indices are held
/// meanwhile, then closed), and gives it the dumped state.
pub(crate) fn create(info: &pb::TtyInfoEntry) -> Result<OwnedFd, FileError> {
    let index = info.pty.as_ref().map(|p| p.index).ok_or_else(|| FileError::refused(format!("tty-info {} of type PTY without a pty index (tty_info_entry.pty)", info.id)))?;
    let mut held = Vec::new();
    let master = loop {
        let master = sys::file::open_path("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY).map_err(file_io("open /dev/ptmx"))?;
        let got = master_index(&master)?;
        if got == index {
            break master;
        }
        if got > index || held.len() > 4096 {
            return Err(FileError::refused(format!("pty {index} is in use on this machine (/dev/ptmx gave {got})")));
        }
        held.push(master);
    };
    drop(held);
    let m = master.as_raw_fd();
    sys::tty::ioctl_int_arg(m, libc::TIOCSPTLCK, 0).map_err(file_io(format!("unlock pty {index}")))?;
    let path = format!("/dev/pts/{index}");
    let slave = sys::file::open_path(&path, libc::O_RDWR | libc::O_NOCTTY).map_err(file_io(format!("open {path}")))?;
    if let (Some(t), Some(w)) = (&info.termios, &info.winsize) {
        let termios = termios_of(t);
        let winsize = libc::winsize { ws_row: w.ws_row as u16, ws_col: w.ws_col as u16, ws_xpixel: w.ws_xpixel as u16, ws_ypixel: w.ws_ypixel as u16 };
        sys::tty::set_terminal_state(slave.as_raw_fd(), &termios, &winsize).map_err(file_io(format!("{path}: termios")))?;
    }
    if let Some(locked) = info.termios_locked.as_ref().filter(|t| !is_unset(t)) {
        sys::tty::set_locked_termios(slave.as_raw_fd(), &termios_of(locked)).map_err(file_io(format!("{path}: locked termios")))?;
    }
    if info.packet_mode {
        sys::tty::ioctl_int_arg(m, libc::TIOCPKT, 1).map_err(file_io(format!("pty {index}: packet mode")))?;
    }
    if info.exclusive {
        sys::tty::ioctl_value(slave.as_raw_fd(), libc::TIOCEXCL, 0).map_err(file_io(format!("pty {index}: exclusive")))?;
    }
    if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
        let _ = std::os::unix::fs::chown(&path, Some(uid), Some(gid));
    }
    if info.locked {
        sys::tty::ioctl_int_arg(m, libc::TIOCSPTLCK, 1).map_err(file_io(format!("lock pty {index}")))?;
    }
    Ok(master)
}

/// In the restored session leader `sid`: pty `index` becomes its controlling terminal
/// again, and, when the leader's own group was in the foreground, the foreground group.
pub(crate) fn take_controlling(index: u32, foreground: Option<i32>) -> Result<(), FileError> {
    let path = format!("/dev/pts/{index}");
    let slave = sys::file::open_path(&path, libc::O_RDWR | libc::O_NOCTTY).map_err(file_io(format!("open {path}")))?;
    sys::tty::ioctl_value(slave.as_raw_fd(), libc::TIOCSCTTY, 0).map_err(file_io(format!("{path}: TIOCSCTTY")))?;
    if let Some(pgrp) = foreground {
        sys::tty::ioctl_int_arg(slave.as_raw_fd(), libc::TIOCSPGRP, pgrp).map_err(file_io(format!("{path}: TIOCSPGRP {pgrp}")))?;
    }
    Ok(())
}

/// In the restored leader of group `pgrp`: makes it the foreground group of pty `index`
/// (its session's controlling terminal).
pub(crate) fn set_foreground(index: u32, pgrp: i32) -> Result<(), FileError> {
    let path = format!("/dev/pts/{index}");
    let slave = sys::file::open_path(&path, libc::O_RDWR | libc::O_NOCTTY).map_err(file_io(format!("open {path}")))?;
    sys::tty::block_sigttou(true).map_err(file_io("block SIGTTOU"))?;
    let result = sys::tty::ioctl_int_arg(slave.as_raw_fd(), libc::TIOCSPGRP, pgrp);
    let _ = sys::tty::block_sigttou(false);
    result.map(|_| ()).map_err(file_io(format!("{path}: TIOCSPGRP {pgrp}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_packed_four_to_a_word() {
        let chars: Vec<u8> = (1..=19).collect();
        let packed = pack_c_cc(&chars);
        assert_eq!(packed.len(), 19);
        assert_eq!(packed[0], 0x0403_0201);
        assert_eq!(packed[4], 0x0013_1211);
        assert_eq!(&packed[5..], &[0; 14]);
        assert_eq!(unpack_c_cc(&packed), chars);
        // crust's older form: one character a word.
        assert_eq!(unpack_c_cc(&chars.iter().map(|&c| c as u32).collect::<Vec<_>>()), chars);
    }

    #[test]
    fn two_sides_merge_into_one_pty() {
        let side = |id: u32, rdev: u32, sid: u32| pb::TtyInfoEntry {
            id,
            r#type: pb::TtyType::Pty as i32,
            rdev,
            sid,
            pgrp: sid,
            exclusive: rdev != PTMX_RDEV,
            pty: Some(pb::TtyPtyEntry { index: 3 }),
            ..Default::default()
        };
        // CRIU's form: master 7 with the session, slave 6 without.
        let (ptys, index_of) = merge_infos(&[side(7, PTMX_RDEV, 40), side(6, (136 << 8) | 3, 0)]).expect("merge");
        assert_eq!(index_of, BTreeMap::from([(6, 3), (7, 3)]));
        assert_eq!((ptys[&3].sid, ptys[&3].pgrp, ptys[&3].exclusive, ptys[&3].rdev), (40, 40, true, (136 << 8) | 3));
        // crust's older form: one entry, named by its index.
        let (ptys, index_of) = merge_infos(&[pb::TtyInfoEntry { id: 3, ..side(3, (136 << 8) | 3, 40) }]).expect("merge");
        assert_eq!((index_of[&3], ptys[&3].sid), (3, 40));
        assert!(merge_infos(&[side(7, PTMX_RDEV, 1), side(9, PTMX_RDEV, 1)]).is_err());
    }

    #[test]
    fn the_master_side_takes_the_session() {
        let mut slave = pb::TtyInfoEntry { id: 4, sid: 9, pgrp: 10, rdev: (136 << 8) | 2, pty: Some(pb::TtyPtyEntry { index: 2 }), ..Default::default() };
        let master = master_info(&mut slave);
        assert_eq!((master.id, master.rdev, master.sid, master.pgrp), (5, PTMX_RDEV, 9, 10));
        assert_eq!((slave.sid, slave.pgrp), (0, 0));
    }
}
