//! crit's verbs inside crust: show, decode, encode, x, info.

/// Image inspection commands (crit-compatible).
#[derive(clap::Subcommand)]
pub enum CritCmd {
    /// Print an image as JSON (crit show)
    Show {
        /// image file
        image: std::path::PathBuf,
    },
}

/// Runs one crit verb; returns the process exit code.
pub fn run(cmd: CritCmd) -> anyhow::Result<i32> {
    match cmd {
        CritCmd::Show { image } => anyhow::bail!("show {}: not implemented yet", image.display()),
    }
}
