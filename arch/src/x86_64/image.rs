//! x86_64 registers to and from the image's `thread_info_x86`: the GPRs one to one, the
//! XSAVE area split into CRIU's legacy FPU fields and per-component xsave fields.

use super::{xsave, Regs};
use crate::{RegsFromCoreError, ThreadRegs};
use crust_images::pb;

fn u16_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as u32).unwrap_or(0)
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes"))).unwrap_or(0)
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes"))).unwrap_or(0)
}
fn u32s(b: &[u8], off: usize, count: usize) -> Vec<u32> {
    (0..count).map(|i| u32_at(b, off + i * 4)).collect()
}
fn u64s(b: &[u8], off: usize, count: usize) -> Vec<u64> {
    (0..count).map(|i| u64_at(b, off + i * 8)).collect()
}
fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}
fn put_u32s(b: &mut [u8], off: usize, values: &[u32]) {
    for (i, v) in values.iter().enumerate() {
        put(b, off + i * 4, &v.to_le_bytes());
    }
}
fn put_u64s(b: &mut [u8], off: usize, values: &[u64]) {
    for (i, v) in values.iter().enumerate() {
        put(b, off + i * 8, &v.to_le_bytes());
    }
}

/// The image message for a thread's registers.
pub fn thread_info(regs: &ThreadRegs<Regs>, clear_tid_addr: u64, layout: &xsave::Layout) -> pb::ThreadInfoX86 {
    let r = &regs.gpr;
    let x = &regs.ext;
    let gpregs = pb::UserX86RegsEntry {
        r15: r.r15, r14: r.r14, r13: r.r13, r12: r.r12, bp: r.bp, bx: r.bx, r11: r.r11,
        r10: r.r10, r9: r.r9, r8: r.r8, ax: r.ax, cx: r.cx, dx: r.dx, si: r.si, di: r.di,
        orig_ax: r.orig_ax, ip: r.ip, cs: r.cs, flags: r.flags, sp: r.sp, ss: r.ss,
        fs_base: r.fs_base, gs_base: r.gs_base, ds: r.ds, es: r.es, fs: r.fs, gs: r.gs,
        mode: Some(pb::UserX86RegsMode::Native as i32),
    };
    let xstate_bv = u64_at(x, xsave::HEADER_OFFSET);
    let component = |bit: u32| layout.iter().find(|c| c.0 == bit).map(|c| (c.1, c.2)).unwrap_or((usize::MAX / 2, 0));
    let has = |bit: u32| xstate_bv & (1 << bit) != 0 && x.len() >= { let (o, s) = component(bit); o + s };
    let xsave_entry = (x.len() > xsave::LEGACY_SIZE).then(|| pb::UserX86XsaveEntry {
        xstate_bv,
        ymmh_space: if has(2) { u32s(x, component(2).0, 64) } else { Vec::new() },
        bndreg_state: if has(3) { u64s(x, component(3).0, 8) } else { Vec::new() },
        bndcsr_state: if has(4) { u64s(x, component(4).0, 8) } else { Vec::new() },
        opmask_reg: if has(5) { u64s(x, component(5).0, 8) } else { Vec::new() },
        zmm_upper: if has(6) { u64s(x, component(6).0, 64) } else { Vec::new() },
        hi16_zmm: if has(7) { u64s(x, component(7).0, 128) } else { Vec::new() },
        pkru: if has(9) { u32s(x, component(9).0, 2) } else { Vec::new() },
        ..Default::default()
    });
    let fpregs = pb::UserX86FpregsEntry {
        cwd: u16_at(x, 0),
        swd: u16_at(x, 2),
        twd: u16_at(x, 4),
        fop: u16_at(x, 6),
        rip: u64_at(x, 8),
        rdp: u64_at(x, 16),
        mxcsr: u32_at(x, 24),
        mxcsr_mask: u32_at(x, 28),
        st_space: u32s(x, 32, 32),
        xmm_space: u32s(x, 160, 64),
        padding: u32s(x, 416, 24),
        xsave: xsave_entry,
    };
    pb::ThreadInfoX86 { clear_tid_addr, gpregs, fpregs, tls: Vec::new() }
}

/// A thread's registers from the image; the extended state is laid into a copy of
/// `ext_template` (the host's own XSAVE area, for its size).
pub fn thread_regs(
    info: &pb::ThreadInfoX86,
    ext_template: &[u8],
    layout: &xsave::Layout,
) -> Result<ThreadRegs<Regs>, RegsFromCoreError> {
    let g = &info.gpregs;
    let gpr = Regs {
        r15: g.r15, r14: g.r14, r13: g.r13, r12: g.r12, bp: g.bp, bx: g.bx, r11: g.r11,
        r10: g.r10, r9: g.r9, r8: g.r8, ax: g.ax, cx: g.cx, dx: g.dx, si: g.si, di: g.di,
        orig_ax: g.orig_ax, ip: g.ip, cs: g.cs, flags: g.flags, sp: g.sp, ss: g.ss,
        fs_base: g.fs_base, gs_base: g.gs_base, ds: g.ds, es: g.es, fs: g.fs, gs: g.gs,
    };
    let f = &info.fpregs;
    let mut x = ext_template.to_vec();
    if x.len() < xsave::LEGACY_SIZE {
        return Err(RegsFromCoreError::XsaveAreaTooSmall { len: x.len() });
    }
    put(&mut x, 0, &(f.cwd as u16).to_le_bytes());
    put(&mut x, 2, &(f.swd as u16).to_le_bytes());
    put(&mut x, 4, &(f.twd as u16).to_le_bytes());
    put(&mut x, 6, &(f.fop as u16).to_le_bytes());
    put(&mut x, 8, &f.rip.to_le_bytes());
    put(&mut x, 16, &f.rdp.to_le_bytes());
    put(&mut x, 24, &f.mxcsr.to_le_bytes());
    put(&mut x, 28, &f.mxcsr_mask.to_le_bytes());
    put_u32s(&mut x, 32, &f.st_space);
    put_u32s(&mut x, 160, &f.xmm_space);
    if let Some(xs) = &f.xsave {
        // The image carries x87, SSE and the components in BITS; nothing else.
        let carried = xsave::BITS.iter().fold(0b11u64, |acc, bit| acc | (1 << bit));
        let bv = xs.xstate_bv & carried;
        for &bit in xsave::BITS.iter().filter(|&&bit| bv & (1 << bit) != 0) {
            match layout.iter().find(|c| c.0 == bit) {
                Some(&(_, off, size)) if x.len() >= off + size => {}
                _ => return Err(RegsFromCoreError::XsaveFeatureMissing { bit, xstate_bv: xs.xstate_bv, len: x.len() }),
            }
        }
        put(&mut x, xsave::HEADER_OFFSET, &bv.to_le_bytes());
        let place32 = |x: &mut Vec<u8>, bit: u32, v: &[u32]| {
            if bv & (1 << bit) != 0 {
                if let Some(&(_, off, _)) = layout.iter().find(|c| c.0 == bit) {
                    put_u32s(x, off, v);
                }
            }
        };
        let place64 = |x: &mut Vec<u8>, bit: u32, v: &[u64]| {
            if bv & (1 << bit) != 0 {
                if let Some(&(_, off, _)) = layout.iter().find(|c| c.0 == bit) {
                    put_u64s(x, off, v);
                }
            }
        };
        place32(&mut x, 2, &xs.ymmh_space);
        place64(&mut x, 3, &xs.bndreg_state);
        place64(&mut x, 4, &xs.bndcsr_state);
        place64(&mut x, 5, &xs.opmask_reg);
        place64(&mut x, 6, &xs.zmm_upper);
        place64(&mut x, 7, &xs.hi16_zmm);
        place32(&mut x, 9, &xs.pkru);
    }
    Ok(ThreadRegs { gpr, ext: x })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsave_round_trip_through_image() {
        let mut ext = vec![0u8; 2696];
        for (i, b) in ext.iter_mut().enumerate() {
            *b = (i * 7 % 251) as u8;
        }
        // A valid header: AVX-512 and PKRU present, compaction off, reserved zero.
        ext[512..520].copy_from_slice(&0x2e7u64.to_le_bytes());
        ext[520..576].fill(0);
        let regs = ThreadRegs { gpr: Regs { ip: 0x401000, sp: 0x7ffe0000, ..Default::default() }, ext: ext.clone() };
        let layout = xsave::intel_layout();
        let info = thread_info(&regs, 0x1234, &layout);
        assert_eq!(info.clear_tid_addr, 0x1234);
        assert_eq!(info.fpregs.xsave.as_ref().unwrap().zmm_upper.len(), 64);
        let back = thread_regs(&info, &ext, &layout).unwrap();
        assert_eq!(back.gpr, regs.gpr);
        // Everything the image carries comes back; the padding and sw bytes stay as the
        // host template had them, which here is the same.
        assert_eq!(back.ext, ext);
    }

    #[test]
    fn amd_layout_moves_components() {
        // AMD has no MPX hole: AVX-512 state starts right after AVX.
        let amd: xsave::Layout = vec![(2, 576, 256), (5, 832, 64), (6, 896, 512), (7, 1408, 1024)];
        let mut ext = vec![0u8; 2432];
        ext[512..520].copy_from_slice(&0xe7u64.to_le_bytes());
        ext[832] = 0x5a; // k0
        ext[1408] = 0xa5; // zmm16
        let regs = ThreadRegs { gpr: Regs::default(), ext: ext.clone() };
        let info = thread_info(&regs, 0, &amd);
        let xs = info.fpregs.xsave.as_ref().unwrap();
        assert_eq!(xs.opmask_reg[0], 0x5a);
        assert_eq!(xs.hi16_zmm[0], 0xa5);
        // Restored on an Intel layout, the values land at Intel's offsets.
        let intel = xsave::intel_layout();
        let back = thread_regs(&info, &vec![0u8; 2696], &intel).unwrap();
        assert_eq!(back.ext[1088], 0x5a);
        assert_eq!(back.ext[1664], 0xa5);
    }
}
