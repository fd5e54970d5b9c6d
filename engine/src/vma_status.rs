//! CRIU's `VmaEntry.status` bits (image ABI).

pub const REGULAR: u32 = 1 << 0;
pub const STACK: u32 = 1 << 1;
pub const VSYSCALL: u32 = 1 << 2;
pub const VDSO: u32 = 1 << 3;
pub const HEAP: u32 = 1 << 5;
pub const FILE_PRIVATE: u32 = 1 << 6;
pub const FILE_SHARED: u32 = 1 << 7;
pub const ANON_SHARED: u32 = 1 << 8;
pub const ANON_PRIVATE: u32 = 1 << 9;
pub const SYSVIPC: u32 = 1 << 10;
pub const VVAR: u32 = 1 << 12;
pub const MEMFD: u32 = 1 << 14;
