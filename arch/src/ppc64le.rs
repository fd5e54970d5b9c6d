//! ppc64le backend: not written yet beyond what lets the workspace build for ppc64le hosts.
//! Every host operation reports `Unsupported`.

use crate::{Abi, Sys};

/// The ppc64le backend.
pub struct Ppc64le;

impl Abi for Ppc64le {
    const NAME: &'static str = "ppc64le";
    const CORE_MTYPE: i32 = 0;
    type Regs = [u64; 32];
    const SYSCALL_INSN: &'static [u8] = &[];

    fn syscall_number(_call: Sys) -> Option<u64> {
        None
    }
    fn ip(_regs: &Self::Regs) -> u64 {
        0
    }
    fn sp(_regs: &Self::Regs) -> u64 {
        0
    }
    fn syscall_regs(saved: &Self::Regs, _ip: u64, _nr: u64, _args: [u64; 6]) -> Self::Regs {
        *saved
    }
    fn syscall_result(_regs: &Self::Regs) -> i64 {
        -38
    }
    fn resume_regs(regs: &Self::Regs, _restart_block_usable: bool) -> Self::Regs {
        *regs
    }
    fn regs_to_bytes(regs: &Self::Regs) -> Vec<u8> {
        regs.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }
    fn regs_from_bytes(_bytes: &[u8]) -> Option<Self::Regs> {
        None
    }
    const TASK_SIZE: u64 = 0;
    const MOVES_OWN_VDSO: bool = true;
    fn map_vdso_ops(_target: u64, _own_block: &[(u64, u64)], _scratch: u64) -> Vec<crate::RestorerOp> {
        Vec::new()
    }
    fn regs_to_core(_core: &mut crust_images::pb::CoreEntry, _regs: &crate::ThreadRegs<Self::Regs>, _clear_tid_addr: u64) {}
    fn regs_from_core(_core: &crust_images::pb::CoreEntry, _ext: &[u8]) -> Result<crate::ThreadRegs<Self::Regs>, String> {
        Err(format!("{} registers are not supported yet", Self::NAME))
    }
}

#[cfg(target_arch = "powerpc64")]
impl crate::Host for Ppc64le {
    fn read_regs(_tid: i32) -> Result<crate::ThreadRegs<Self::Regs>, crate::HostError> {
        Err(crate::HostError::Unsupported(Self::NAME))
    }
    fn write_gpr(_tid: i32, _regs: &Self::Regs) -> Result<(), crate::HostError> {
        Err(crate::HostError::Unsupported(Self::NAME))
    }
    fn write_ext(_tid: i32, _ext: &[u8]) -> Result<(), crate::HostError> {
        Err(crate::HostError::Unsupported(Self::NAME))
    }
    fn restorer_blob() -> &'static [u8] {
        &[]
    }
    fn restorer_entry_offset() -> usize {
        0
    }
    fn restorer_syscall_offset() -> usize {
        0
    }
    fn restorer_outcome(_regs: &Self::Regs, _program: u64) -> crate::RestorerOutcome {
        crate::RestorerOutcome::Failed { index: 0, result: -38 }
    }
    fn thread_pointer() -> u64 {
        0
    }
    fn enter_restorer(_entry: u64, _program: u64) -> ! {
        std::process::abort()
    }
}
