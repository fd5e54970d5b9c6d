//! The 512-byte header block of GNU tar's format: field offsets, numeric fields (octal
//! or GNU base-256) and the checksum, both directions. Pure.
//!
//! Layout (GNU tar's documented `struct posix_header` / `struct oldgnu_header`):
//! name 0..100, mode 100..108, uid 108..116, gid 116..124, size 124..136,
//! mtime 136..148, chksum 148..156, typeflag 156, linkname 157..257, magic 257..265,
//! uname 265..297, gname 297..329, devmajor 329..337, devminor 337..345; the old GNU
//! header then has atime, ctime, offset, longnames, four sparse slots of two 12-byte
//! numbers at 386..482, isextended at 482 and realsize 483..495. A sparse extension
//! block holds 21 slots and isextended at 504. POSIX ustar puts a 155-byte name prefix
//! at 345 instead.

use std::ops::Range;

/// Bytes in a tar block.
pub const BLOCK: usize = 512;

pub const NAME: Range<usize> = 0..100;
pub const MODE: Range<usize> = 100..108;
pub const UID: Range<usize> = 108..116;
pub const GID: Range<usize> = 116..124;
pub const SIZE: Range<usize> = 124..136;
pub const MTIME: Range<usize> = 136..148;
pub const CHECKSUM: Range<usize> = 148..156;
pub const TYPEFLAG: usize = 156;
pub const LINKNAME: Range<usize> = 157..257;
pub const MAGIC: Range<usize> = 257..265;
pub const DEVMAJOR: Range<usize> = 329..337;
pub const DEVMINOR: Range<usize> = 337..345;
/// POSIX ustar only (overlaps the old GNU fields below).
pub const USTAR_PREFIX: Range<usize> = 345..500;
/// Old GNU: the first of four sparse slots (offset, numbytes: 12 bytes each).
pub const SPARSE_SLOTS: usize = 386;
pub const SPARSE_SLOTS_IN_HEADER: usize = 4;
pub const IS_EXTENDED: usize = 482;
pub const REAL_SIZE: Range<usize> = 483..495;
/// Sparse slots in an extension block, and where its own isextended byte is.
pub const SPARSE_SLOTS_IN_EXTENSION: usize = 21;
pub const EXTENSION_IS_EXTENDED: usize = 504;
/// Bytes of one sparse slot.
pub const SPARSE_SLOT: usize = 24;

/// GNU tar's magic and version in one 8-byte field (`OLDGNU_MAGIC`, "ustar  \0").
pub const GNU_MAGIC: &[u8; 8] = b"ustar  \0";
/// POSIX ustar's magic and version ("ustar\0" "00").
pub const USTAR_MAGIC: &[u8; 8] = b"ustar\x0000";
/// The name GNU tar gives the pseudo-entries that carry a long name or link target.
pub const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Entry types (`typeflag`).
pub mod typeflag {
    pub const REGULAR: u8 = b'0';
    pub const REGULAR_OLD: u8 = 0;
    pub const HARD_LINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR_DEVICE: u8 = b'3';
    pub const BLOCK_DEVICE: u8 = b'4';
    pub const DIRECTORY: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const CONTIGUOUS: u8 = b'7';
    /// GNU: the next entry's long link target.
    pub const LONG_LINK: u8 = b'K';
    /// GNU: the next entry's long name.
    pub const LONG_NAME: u8 = b'L';
    /// GNU: an old-format sparse file.
    pub const SPARSE: u8 = b'S';
    /// GNU: an incremental dump's directory listing (a directory with data).
    pub const DUMP_DIR: u8 = b'D';
    /// GNU: a volume label.
    pub const VOLUME_LABEL: u8 = b'V';
}

/// Why a numeric field could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    /// A byte that is no octal digit, space or NUL, or a base-256 lead byte other
    /// than 0x80/0xff.
    NotANumber,
    /// The value does not fit the type asked for.
    OutOfRange,
}

/// Reads a numeric field: octal digits after optional spaces, ended by a space or NUL
/// (an empty field is 0), or GNU base-256 (lead byte 0x80: positive, 0xff: negative,
/// the other bytes big-endian two's complement).
pub fn parse_number(field: &[u8]) -> Result<i128, NumberError> {
    let Some(&lead) = field.first() else {
        return Ok(0);
    };
    if lead & 0x80 != 0 {
        let negative = match lead {
            0x80 => false,
            0xff => true,
            _ => return Err(NumberError::NotANumber),
        };
        // 11 bytes at most in the fields we read: fits an i128 either way.
        if field.len() > 13 {
            return Err(NumberError::OutOfRange);
        }
        let mut value: i128 = if negative { -1 } else { 0 };
        for &byte in &field[1..] {
            value = (value << 8) | i128::from(byte);
        }
        return Ok(value);
    }
    let mut digits = field.iter().skip_while(|&&byte| byte == b' ').peekable();
    let mut value: i128 = 0;
    while let Some(&byte) = digits.next() {
        match byte {
            b'0'..=b'7' => {
                value = value
                    .checked_mul(8)
                    .and_then(|value| value.checked_add(i128::from(byte - b'0')))
                    .ok_or(NumberError::OutOfRange)?;
            }
            b' ' | 0 => {
                // the terminator; what follows must be padding
                if digits.any(|&rest| rest != b' ' && rest != 0) {
                    return Err(NumberError::NotANumber);
                }
                break;
            }
            _ => return Err(NumberError::NotANumber),
        }
    }
    Ok(value)
}

/// Writes `value` as GNU tar does: octal digits with leading zeros filling all but the
/// last byte, which is NUL; a value that does not fit (or is negative) in base-256
/// (lead byte 0x80, or 0xff when negative). Returns false when not even base-256 fits.
pub fn write_number(field: &mut [u8], value: i128) -> bool {
    let digits = field.len() - 1;
    let octal_limit: i128 = 1 << (3 * digits);
    if (0..octal_limit).contains(&value) {
        let mut rest = value;
        for byte in field[..digits].iter_mut().rev() {
            *byte = b'0' + (rest & 7) as u8;
            rest >>= 3;
        }
        field[digits] = 0;
        return true;
    }
    let bits = 8 * digits as u32;
    let fits = if value < 0 {
        bits >= 127 || value >= -(1i128 << bits)
    } else {
        bits >= 127 || value < (1i128 << bits)
    };
    if !fits {
        return false;
    }
    field[0] = if value < 0 { 0xff } else { 0x80 };
    let mut rest = value;
    for byte in field[1..].iter_mut().rev() {
        *byte = (rest & 0xff) as u8;
        rest >>= 8;
    }
    true
}

/// The checksum GNU tar writes: the unsigned sum of the block's bytes with the checksum
/// field counted as spaces.
pub fn checksum(block: &[u8; BLOCK]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(index, &byte)| {
            if CHECKSUM.contains(&index) {
                u32::from(b' ')
            } else {
                u32::from(byte)
            }
        })
        .sum()
}

/// The same sum over signed bytes, as some old tars computed it.
pub fn signed_checksum(block: &[u8; BLOCK]) -> i32 {
    block
        .iter()
        .enumerate()
        .map(|(index, &byte)| {
            if CHECKSUM.contains(&index) {
                i32::from(b' ')
            } else {
                i32::from(byte as i8)
            }
        })
        .sum()
}

/// Fills the checksum field of a finished header: six octal digits, NUL, space.
pub fn seal(block: &mut [u8; BLOCK]) {
    let sum = checksum(block);
    let field = &mut block[CHECKSUM];
    let mut rest = sum;
    for byte in field[..6].iter_mut().rev() {
        *byte = b'0' + (rest & 7) as u8;
        rest >>= 3;
    }
    field[6] = 0;
    field[7] = b' ';
}

/// The bytes of a NUL-terminated text field (all of it when there is no NUL).
pub fn text(field: &[u8]) -> &[u8] {
    let end = field
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(field.len());
    &field[..end]
}

/// Bytes of padding after `length` bytes of data to the next block boundary.
pub fn padding(length: u64) -> u64 {
    (BLOCK as u64 - length % BLOCK as u64) % BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_gnu_octal() {
        let mut field = [0u8; 8];
        assert!(write_number(&mut field, 0o644));
        assert_eq!(&field, b"0000644\0");
        let mut size = [0u8; 12];
        assert!(write_number(&mut size, 4_100_096));
        assert_eq!(&size, b"00017510000\0");
        assert_eq!(parse_number(&size), Ok(4_100_096));
        assert_eq!(parse_number(b"  644 \0\0"), Ok(0o644));
        assert_eq!(parse_number(b"\0\0\0\0"), Ok(0));
        assert_eq!(parse_number(b"0008\0"), Err(NumberError::NotANumber));
        assert_eq!(parse_number(b"12 3\0"), Err(NumberError::NotANumber));
    }

    #[test]
    fn large_and_negative_numbers_are_base_256() {
        let mut uid = [0u8; 8];
        assert!(write_number(&mut uid, 0o7777777));
        assert_eq!(&uid, b"7777777\0");
        assert!(write_number(&mut uid, 4_294_967_294));
        assert_eq!(uid, [0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(parse_number(&uid), Ok(4_294_967_294));
        let mut mtime = [0u8; 12];
        assert!(write_number(&mut mtime, -5));
        assert_eq!(
            mtime,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfb]
        );
        assert_eq!(parse_number(&mtime), Ok(-5));
        assert!(write_number(&mut mtime, 10 << 30));
        assert_eq!(parse_number(&mtime), Ok(10 << 30));
        let mut tiny = [0u8; 2];
        assert!(!write_number(&mut tiny, 300));
        assert_eq!(parse_number(&[0x81, 0]), Err(NumberError::NotANumber));
    }

    #[test]
    fn checksum_is_six_digits_nul_space() {
        let mut block = [0u8; BLOCK];
        block[0] = b'a';
        seal(&mut block);
        assert_eq!(&block[CHECKSUM], b"000541\0 ");
        assert_eq!(checksum(&block), 0o541);
    }
}
