//! `cargo xtest zdtm` and `cargo xtest demo`.

/// Entry point of the zdtm verb.
pub fn run_zdtm(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("zdtm: not implemented yet")
}

/// Entry point of the demo verb.
pub fn run_demo(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("demo: not implemented yet")
}
