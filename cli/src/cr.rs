//! CRIU's verbs: check, dump, pre-dump, restore.

/// Checkpoint/restore commands (CRIU-compatible).
#[derive(clap::Subcommand)]
pub enum CrCmd {
    /// Check that the kernel has what crust needs
    Check,
}

/// Runs one C/R verb; returns the process exit code.
pub fn run(cmd: CrCmd) -> anyhow::Result<i32> {
    match cmd {
        CrCmd::Check => anyhow::bail!("check: not implemented yet"),
    }
}
