//! `cargo xtest fuzz`: runs the cargo-fuzz targets in fuzz/.

/// Entry point of the fuzz verb.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("fuzz: not implemented yet")
}
