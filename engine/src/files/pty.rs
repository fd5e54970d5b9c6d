//! Unix98 pseudo-terminals whose master is in the dumped tree. Each pty is one
//! tty-info.img entry (index, termios, window size, lock, packet mode, exclusive,
//! session and foreground group) and each open end a TTY file of files.img naming it,
//! with its path as a reg entry. Restore opens /dev/ptmx until the kernel hands out the
//! dumped index, sets the state, opens each slave description by path; the session
//! leader takes the pty as its controlling terminal again and the foreground group is
//! set back (`restore::process_main`). Unread data in the pty's buffers is not kept.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;
use super::{file_io, FileError};
use crust_images::pb;


/// Kernel NCCS: control characters kept.
const NCCS: usize = 19;

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

/// The state of pty `index` through its master: sid and pgrp as this host numbers
/// them (0: none), converted by the caller.
pub(crate) fn dump_info(index: u32, master: &OwnedFd) -> Result<pb::TtyInfoEntry, FileError> {
    let m = master.as_raw_fd();
    let get = |request: u64| sys::tty::ioctl_int_arg(m, request, 0);
    let locked = get(libc::TIOCGPTLCK).map_err(file_io("TIOCGPTLCK"))? != 0;
    let packet_mode = get(libc::TIOCGPKT).map_err(file_io("TIOCGPKT"))? != 0;
    // On the master these tell the slave's session and foreground group.
    let sid = get(libc::TIOCGSID).unwrap_or(0).max(0) as u32;
    let pgrp = get(libc::TIOCGPGRP).unwrap_or(0).max(0) as u32;
    let path = format!("/dev/pts/{index}");
    let slave = sys::file::open_path(&path, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK).map_err(file_io(format!("open {path}")))?;
    let exclusive = sys::tty::ioctl_int_arg(slave.as_raw_fd(), libc::TIOCGEXCL, 0).map_err(file_io("TIOCGEXCL"))? != 0;
    let (termios, winsize) = sys::tty::terminal_state(slave.as_raw_fd()).map_err(file_io(format!("{path}: termios")))?;
    let meta = std::fs::metadata(&path).map_err(file_io(format!("stat {path}")))?;
    use std::os::unix::fs::MetadataExt;
    Ok(pb::TtyInfoEntry {
        id: index,
        r#type: pb::TtyType::Pty as i32,
        locked,
        exclusive,
        packet_mode,
        sid,
        pgrp,
        rdev: meta.rdev() as u32,
        termios: Some(pb::TermiosEntry {
            c_iflag: termios.c_iflag,
            c_oflag: termios.c_oflag,
            c_cflag: termios.c_cflag,
            c_lflag: termios.c_lflag,
            c_line: termios.c_line as u32,
            c_ispeed: 0,
            c_ospeed: 0,
            c_cc: termios.c_cc[..NCCS].iter().map(|&c| c as u32).collect(),
        }),
        termios_locked: None,
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
        let mut termios = sys::tty::zeroed_termios();
        termios.c_iflag = t.c_iflag;
        termios.c_oflag = t.c_oflag;
        termios.c_cflag = t.c_cflag;
        termios.c_lflag = t.c_lflag;
        termios.c_line = t.c_line as libc::cc_t;
        for (slot, &c) in termios.c_cc.iter_mut().zip(&t.c_cc) {
            *slot = c as libc::cc_t;
        }
        let winsize = libc::winsize { ws_row: w.ws_row as u16, ws_col: w.ws_col as u16, ws_xpixel: w.ws_xpixel as u16, ws_ypixel: w.ws_ypixel as u16 };
        sys::tty::set_terminal_state(slave.as_raw_fd(), &termios, &winsize).map_err(file_io(format!("{path}: termios")))?;
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
