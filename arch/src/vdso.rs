//! Restorer ops that move a vDSO block (vvar pages and vDSO text) into place, for the
//! architectures without a "map the vDSO here" call ([`Abi::MOVES_OWN_VDSO`]): aarch64,
//! ppc64le and s390x keep crust's own block mapped and mremap it where the image had it.
//!
//! [`Abi::MOVES_OWN_VDSO`]: crate::Abi::MOVES_OWN_VDSO

use crate::RestorerOp;

/// Restorer ops that move crust's own vvar/vDSO block (`own_block`, sorted areas) so it
/// starts at `target_block_start`, keeping the areas' relative placement: each area is
/// first moved to `scratch` (free, as large as the block) and then to its place, since
/// the old and new places may overlap and mremap refuses overlapping moves.
/// `mremap_nr` is the architecture's mremap number.
pub fn move_vdso_block_ops(mremap_nr: u64, target_block_start: u64, own_block: &[(u64, u64)], scratch: u64) -> Vec<RestorerOp> {
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    let Some(own_start) = own_block.iter().map(|a| a.0).min() else { return Vec::new() };
    let hop = |from: u64, to: u64, len: u64| RestorerOp {
        nr: mremap_nr,
        args: [from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0],
        check: RestorerOp::CHECK_EQ,
        expect: to,
        ..Default::default()
    };
    let first = own_block.iter().map(|&(start, end)| hop(start, scratch + (start - own_start), end - start));
    let second = own_block
        .iter()
        .map(|&(start, end)| hop(scratch + (start - own_start), target_block_start + (start - own_start), end - start));
    first.chain(second).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_moves_in_two_hops_through_scratch() {
        let own = [(0x7000_0000, 0x7000_2000), (0x7000_2000, 0x7000_3000)];
        let ops = move_vdso_block_ops(216, 0x5000_0000, &own, 0x9000_0000);
        let moves: Vec<(u64, u64, u64)> = ops.iter().map(|o| (o.args[0], o.args[1], o.args[4])).collect();
        assert_eq!(
            moves,
            [
                (0x7000_0000, 0x2000, 0x9000_0000),
                (0x7000_2000, 0x1000, 0x9000_2000),
                (0x9000_0000, 0x2000, 0x5000_0000),
                (0x9000_2000, 0x1000, 0x5000_2000),
            ]
        );
        assert!(ops.iter().all(|o| o.nr == 216 && o.args[3] == 3 && o.check == RestorerOp::CHECK_EQ && o.expect == o.args[4]));
    }

    #[test]
    fn no_own_block_means_no_ops() {
        assert!(move_vdso_block_ops(216, 0x5000_0000, &[], 0x9000_0000).is_empty());
    }
}
