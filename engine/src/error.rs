//! Error pieces shared by every stage and subsystem: how a failed step of one process
//! (an I/O error with what crust was doing) becomes the error of the stage or
//! subsystem it happened in. Each of those types keeps its own message form; this only
//! saves writing the same closure in each.

/// For an error enum whose `Io { pid, what, source }` variant says "step `what` of
/// process `pid` failed with `source`": defines, in the invoking module, `io_err(pid,
/// what)`, the closure for `map_err` that makes that variant.
macro_rules! io_failure {
    ($type:ident) => {
        /// For `map_err`: the error saying that step `what` of process `pid` failed.
        #[allow(dead_code)]
        pub(crate) fn io_err(pid: i32, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> $type {
            let what = what.into();
            move |source| $type::Io { pid, what, source }
        }
    };
}
pub(crate) use io_failure;
