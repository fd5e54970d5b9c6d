//! The host layout a restore is planned against, read once before planning: crust's
//! own mappings and vDSO block, the page size, the restorer's size, the kernel features
//! and crust's own credentials. Planning never reads /proc itself, so a plan is a pure
//! function of the images and this value, and every arch's plan can be made (and
//! snapshotted) on any machine from a recorded layout.
//!
//! Also the pure questions asked of it: where a free gap is, and whether the image's
//! vDSO block has this kernel's layout.

use std::fs;

use crust_arch::Abi;
use crust_images::pb;

use crate::model::vma as vs;
use crate::procfs;
use crate::restore::plan::PlanError;

/// crust's own credentials (a restored thread starts with them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCreds {
    /// Real, effective, saved and filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved and filesystem gid.
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
}

/// What planning needs to know about the host.
#[derive(Clone, Debug)]
pub struct HostLayout {
    pub page_size: u64,
    /// crust's own mappings, (start, end), in address order.
    pub own_maps: Vec<(u64, u64)>,
    /// crust's own vvar and vDSO areas in address order: (start, end, is the vDSO).
    pub own_special: Vec<(u64, u64, bool)>,
    /// Bytes of the restorer blob.
    pub restorer_code_size: u64,
    /// `PR_TIMER_CREATE_RESTORE_IDS` (Linux 6.17): timers get their ids asked for.
    pub timer_restore_ids: bool,
    /// The tick (µs) the kernel adds to a CPU-time itimer as it is set.
    pub cpu_itimer_tick_us: u64,
    pub own_creds: OwnCreds,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last_cap: u64,
}

impl HostLayout {
    /// Reads the layout of this host and of crust itself (`pid`: the root being
    /// restored, named in errors).
    pub(crate) fn read(pid: i32, restorer_code_size: u64) -> Result<HostLayout, PlanError> {
        let maps = fs::read_to_string("/proc/self/maps").map_err(crate::restore::plan::io_err(pid, "read /proc/self/maps"))?;
        let own = procfs::parse_maps(&maps).map_err(|e| PlanError::Host { pid, what: e.to_string() })?;
        let own_special = own
            .iter()
            .filter(|m| m.name == "[vdso]" || m.name.starts_with("[vvar"))
            .map(|m| (m.start, m.end, m.name == "[vdso]"))
            .collect();
        let status = procfs::parse_key_values(&fs::read_to_string("/proc/thread-self/status").unwrap_or_default());
        let quad = |key: &str| status.get(key).and_then(|v| procfs::parse_id_quad(v)).unwrap_or([0; 4]);
        let caps = |key: &str| status.get(key).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
        let own_creds = OwnCreds {
            uid: quad("Uid"),
            gid: quad("Gid"),
            groups: status.get("Groups").map(|g| procfs::parse_groups(g)).unwrap_or_default(),
            cap_inh: caps("CapInh"),
            cap_prm: caps("CapPrm"),
            cap_eff: caps("CapEff"),
            cap_bnd: caps("CapBnd"),
            cap_amb: caps("CapAmb"),
        };
        Ok(HostLayout {
            page_size: crate::sys::page_size(),
            own_maps: own.iter().map(|m| (m.start, m.end)).collect(),
            own_special,
            restorer_code_size,
            timer_restore_ids: crate::sys::timer_restore_ids_supported(),
            cpu_itimer_tick_us: crate::sys::cpu_itimer_tick_us(),
            own_creds,
            cap_last_cap: fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(40),
        })
    }

    /// crust's own vvar and vDSO areas, in address order.
    pub fn own_vdso_block(&self) -> Vec<(u64, u64)> {
        self.own_special.iter().map(|&(start, end, _)| (start, end)).collect()
    }

    /// An address range of `size` bytes free both in the target's layout (`mm`) and in
    /// crust's own, and outside `also_used`, for the restorer.
    pub fn find_gap<A: Abi>(&self, pid: i32, mm: &pb::MmEntry, size: u64, also_used: &[(u64, u64)]) -> Result<u64, PlanError> {
        let mut used: Vec<(u64, u64)> = mm.vmas.iter().map(|v| (v.start, v.end)).collect();
        used.extend(self.own_maps.iter().copied());
        used.extend(also_used.iter().copied());
        self.gap_below_top::<A>(pid, used, size)
    }

    /// The highest gap of `size` bytes (with guard pages) below the top 1 GiB of the
    /// address space that overlaps nothing in `used`.
    pub fn gap_below_top<A: Abi>(&self, pid: i32, mut used: Vec<(u64, u64)>, size: u64) -> Result<u64, PlanError> {
        used.retain(|&(s, _)| s < A::TASK_SIZE);
        used.sort_unstable();
        let page = self.page_size;
        let guard = 16 * page;
        let mut candidate_end = A::TASK_SIZE - (1 << 30);
        for &(start, end) in used.iter().rev() {
            if end + guard + size + guard <= candidate_end && end < candidate_end {
                return Ok((candidate_end - guard - size) / page * page);
            }
            candidate_end = candidate_end.min(start);
        }
        if candidate_end > size + 2 * guard + (1 << 20) {
            return Ok(candidate_end - guard - size);
        }
        Err(PlanError::Unsupported { pid, what: "an address space with no room for the restorer".into() })
    }

    /// Checks that this kernel's vDSO and vvar pages have the sizes and relative places
    /// the image recorded, and returns where the block of vvar and vDSO pages starts.
    /// Adjacent vvar areas count as one on both sides: CRIU 4.2 writes `[vvar]` and
    /// `[vvar_vclock]` as one area, as crust does too.
    pub fn check_vdso_layout(&self, pid: i32, mm: &pb::MmEntry) -> Result<Option<u64>, PlanError> {
        let image_special: Vec<(u64, u64, bool)> = mm
            .vmas
            .iter()
            .filter(|v| v.status & (vs::VDSO | vs::VVAR) != 0)
            .map(|v| (v.start, v.end, v.status & vs::VDSO != 0))
            .collect();
        let Some(&(vdso_start, _, _)) = image_special.iter().find(|v| v.2) else { return Ok(None) };
        let own_vdso = self.own_special.iter().find(|v| v.2).map(|v| v.0).unwrap_or(0);
        let relative = |list: &[(u64, u64, bool)], base: u64| -> Vec<(i64, u64, bool)> {
            let mut out: Vec<(i64, u64, bool)> = Vec::new();
            for &(s, e, is_vdso) in list {
                match out.last_mut() {
                    Some(last) if !last.2 && !is_vdso && last.0 + last.1 as i64 == s as i64 - base as i64 => last.1 += e - s,
                    _ => out.push((s as i64 - base as i64, e - s, is_vdso)),
                }
            }
            out
        };
        if relative(&image_special, vdso_start) != relative(&self.own_special, own_vdso) {
            return Err(PlanError::Unsupported {
                pid,
                what: format!(
                    "a vdso/vvar layout {:?} that differs from this kernel's {:?}",
                    relative(&image_special, vdso_start),
                    relative(&self.own_special, own_vdso)
                ),
            });
        }
        Ok(image_special.iter().map(|v| v.0).min())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crust_arch::x86_64::X86_64;

    fn layout(own_maps: Vec<(u64, u64)>, own_special: Vec<(u64, u64, bool)>) -> HostLayout {
        HostLayout {
            page_size: 4096,
            own_maps,
            own_special,
            restorer_code_size: 4096,
            timer_restore_ids: true,
            cpu_itimer_tick_us: 0,
            own_creds: OwnCreds::default(),
            cap_last_cap: 40,
        }
    }

    #[test]
    fn the_gap_is_the_highest_below_the_top_gigabyte_with_guards() {
        let top = X86_64::TASK_SIZE - (1 << 30);
        let host = layout(vec![], vec![]);
        // Nothing used: right below the top gigabyte, 16 guard pages off.
        assert_eq!(host.gap_below_top::<X86_64>(1, vec![], 0x10000).expect("gap"), (top - 16 * 4096 - 0x10000) / 4096 * 4096);
        // Something near the top: below it.
        let used = vec![(top - 0x100000, top + 0x1000)];
        let gap = host.gap_below_top::<X86_64>(1, used, 0x10000).expect("gap");
        assert_eq!(gap, top - 0x100000 - 16 * 4096 - 0x10000);
        // A full address space: no room.
        let error = host.gap_below_top::<X86_64>(1, vec![(0, X86_64::TASK_SIZE)], 0x10000).expect_err("full").to_string();
        assert_eq!(error, "restore pid 1: an address space with no room for the restorer is not supported yet");
    }

    #[test]
    fn the_vdso_block_must_have_this_kernels_layout() {
        let special = |start: u64, end: u64, vdso: bool| pb::VmaEntry {
            start,
            end,
            status: vs::REGULAR | if vdso { vs::VDSO } else { vs::VVAR },
            ..Default::default()
        };
        let mm = pb::MmEntry { vmas: vec![special(0x7000_0000, 0x7000_4000, false), special(0x7000_4000, 0x7000_6000, true)], ..Default::default() };
        let same = layout(vec![], vec![(0x9000_0000, 0x9000_4000, false), (0x9000_4000, 0x9000_6000, true)]);
        assert_eq!(same.check_vdso_layout(3, &mm).expect("same layout"), Some(0x7000_0000));
        let other = layout(vec![], vec![(0x9000_0000, 0x9000_3000, false), (0x9000_3000, 0x9000_5000, true)]);
        let error = other.check_vdso_layout(3, &mm).expect_err("other layout").to_string();
        assert!(error.starts_with("restore pid 3: a vdso/vvar layout"), "{error}");
        assert_eq!(same.check_vdso_layout(3, &pb::MmEntry::default()).expect("no vdso"), None);
        // [vvar] and [vvar_vclock] in one area (CRIU 4.2's form, and crust's) against
        // this kernel's two.
        let split = layout(Vec::new(), vec![(0x1000_0000, 0x1000_4000, false), (0x1000_4000, 0x1000_6000, false), (0x1000_6000, 0x1000_8000, true)]);
        let merged = pb::MmEntry { vmas: vec![special(0x7000_0000, 0x7000_6000, false), special(0x7000_6000, 0x7000_8000, true)], ..Default::default() };
        assert_eq!(split.check_vdso_layout(3, &merged).expect("merged vvar"), Some(0x7000_0000));
    }
}
