//! The podman flows (podman over runc): `container checkpoint` and `container restore`
//! of one container, and `checkpoint --export` then `restore --import` under a new
//! name. podman runs with the run's own configuration (`CONTAINERS_CONF`: runc as the
//! runtime, cgroupfs, `default_ulimits = []`, state under the run's directory) and
//! storage (`CONTAINERS_STORAGE_CONF`: vfs under the run's directory); it finds criu in
//! `PATH`, where the directory of the criu under test comes first. The image is made by
//! `podman import` of a busybox rootfs.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::exec;
use super::{FlowContext, RunContext, Timing};

pub const IMAGE: &str = "localhost/crust-busybox";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
const LOG_TIMEOUT: Duration = Duration::from_secs(30);
const COUNTS: usize = 3;

/// podman's private configuration under `dir`: `containers.conf` and `storage.conf`.
pub fn write_config(dir: &Path) -> anyhow::Result<()> {
    let at = |name: &str| dir.join(name).display().to_string();
    let containers = format!(
        "# crust's runtime flows: podman's own state stays in this directory.\n\
         [containers]\n\
         # podman 4.3 sets RLIMIT_NOFILE/NPROC from the default ulimits, which this machine refuses.\n\
         default_ulimits = []\n\
         [network]\n\
         network_config_dir = \"{}\"\n\
         [engine]\n\
         runtime = \"runc\"\n\
         cgroup_manager = \"cgroupfs\"\n\
         events_logger = \"file\"\n\
         events_logfile_path = \"{}\"\n\
         tmp_dir = \"{}\"\n\
         volume_path = \"{}\"\n\
         [engine.runtimes]\n\
         runc = [\"/usr/sbin/runc\", \"/usr/bin/runc\"]\n",
        at("cni"),
        at("events.log"),
        at("tmp"),
        at("volumes"),
    );
    let storage = format!("[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n", at("run"), at("root"));
    for sub in ["cni", "tmp", "volumes", "run", "root"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("create {}", dir.join(sub).display()))?;
    }
    std::fs::write(dir.join("containers.conf"), containers).context("write containers.conf")?;
    std::fs::write(dir.join("storage.conf"), storage).context("write storage.conf")?;
    Ok(())
}

/// `podman ARGS` with the run's configuration and `criu_dir` first in `PATH`.
pub fn podman(run: &RunContext, criu_dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(&run.podman);
    command.env("CONTAINERS_CONF", run.podman_dir.join("containers.conf"));
    command.env("CONTAINERS_STORAGE_CONF", run.podman_dir.join("storage.conf"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![criu_dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    command.env("PATH", std::env::join_paths(dirs).unwrap_or(path));
    command.args(args);
    command
}

/// Imports the image from a tar of a fresh busybox rootfs (once per run).
pub fn import_image(run: &RunContext) -> anyhow::Result<()> {
    let rootfs = run.podman_dir.join("image-rootfs");
    super::rootfs::build(&rootfs, &run.busybox)?;
    let tarball = run.podman_dir.join("image.tar");
    let mut tar = Command::new("tar");
    tar.arg("-C").arg(&rootfs).arg("-cf").arg(&tarball).arg(".");
    exec::run_ok(&run.reaper, &mut tar, &run.podman_dir, COMMAND_TIMEOUT)?;
    let tarball = tarball.display().to_string();
    exec::run_ok(&run.reaper, &mut podman(run, &run.podman_dir, &["import", &tarball, IMAGE]), &run.podman_dir, COMMAND_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("podman import: {e}"))?;
    Ok(())
}

/// One podman flow: `export` checkpoints with `--export` and restores with `--import`
/// under a new name, else in place.
pub fn run_flow(ctx: &FlowContext, export: bool) -> anyhow::Result<Timing> {
    let name = format!("{}-{}", ctx.run.name_prefix, ctx.name);
    let criu_dir = ctx.criu.dir.as_path();
    let cmd = |args: &[&str]| {
        let mut command = podman(ctx.run, criu_dir, args);
        command.current_dir(&ctx.dir);
        command
    };
    let script = super::counter::counting_script("/log");
    let parent = format!("/{}/podman", ctx.run.cgroup_parent);
    ctx.run.guard.podman_container(&name);
    let annotation = ctx.run.criu_config.as_ref().map(|file| format!("org.criu.config={}", file.display()));
    let mut run_args = vec!["run", "-d", "--name", &name, "--network", "none", "--cgroup-parent", &parent];
    if let Some(annotation) = &annotation {
        run_args.extend(["--annotation", annotation]);
    }
    run_args.extend([IMAGE, "/bin/sh", "-c", &script]);
    exec::run_ok(&ctx.run.reaper, &mut cmd(&run_args), &ctx.dir, COMMAND_TIMEOUT).map_err(|e| anyhow::anyhow!("start: {e}"))?;
    let log = rootfs_of(ctx, &cmd, &name)?.join("log");
    exec::wait_for_log(&log, COUNTS, LOG_TIMEOUT)?;
    let init = init_pid(ctx, &cmd, &name)?;
    let before = exec::lasting(&exec::namespace_processes(init)?);

    let mut timing = Timing::default();
    let archive = ctx.dir.join("checkpoint.tar.gz").display().to_string();
    let mut args = vec!["container", "checkpoint"];
    if export {
        args.extend(["--export", &archive]);
    }
    args.push(&name);
    let ran = exec::run(&ctx.run.reaper, &mut cmd(&args), &ctx.dir, COMMAND_TIMEOUT)?;
    if !ran.success() {
        bail!("podman container checkpoint: {}{}", podman_error(&ran.stderr), criu_log_of(ctx, &cmd, &name, "dump.log"));
    }
    timing.checkpoint = Some(ran.elapsed);
    let ran_checkpoint = ran.elapsed.as_secs_f64();
    let state = inspect(ctx, &cmd, &name, "{{.State.Status}}")?;
    if state == "running" {
        bail!("the container still runs after the checkpoint");
    }
    let dumped = exec::read_log(&log)?;
    let cut = dumped.len();
    let last = *dumped.last().context("a count")?;

    let restored_name = if export { format!("{name}-imported") } else { name.clone() };
    let mut args = vec!["container", "restore"];
    if export {
        ctx.run.guard.podman_container(&restored_name);
        args.extend(["--import", &archive, "--name", &restored_name]);
    } else {
        args.push(&name);
    }
    let ran = exec::run(&ctx.run.reaper, &mut cmd(&args), &ctx.dir, COMMAND_TIMEOUT)?;
    if !ran.success() {
        bail!("checkpoint passed in {:.2} s; podman container restore: {}{}", ran_checkpoint, podman_error(&ran.stderr), criu_log_of(ctx, &cmd, &restored_name, "restore.log"));
    }
    timing.restore = Some(ran.elapsed);

    let log = rootfs_of(ctx, &cmd, &restored_name)?.join("log");
    let counted = exec::wait_for_log(&log, cut + COUNTS, LOG_TIMEOUT).map_err(|e| anyhow::anyhow!("after the restore: {e}"))?;
    super::counter::check_continues(&counted, cut, last, last, COUNTS).map_err(|why| anyhow::anyhow!("{why}"))?;
    let restored = init_pid(ctx, &cmd, &restored_name)?;
    let after = exec::lasting(&exec::namespace_processes(restored)?);
    if after != before {
        bail!("processes inside: {before:?} before the checkpoint, {after:?} after the restore");
    }
    for container in [&name, &restored_name] {
        exec::run_ok(&ctx.run.reaper, &mut cmd(&["rm", "-f", "-t", "0", container]), &ctx.dir, COMMAND_TIMEOUT)?;
    }
    Ok(timing)
}

/// podman's last error line, with a runtime command it quotes shortened to its verb:
/// "Error: `/usr/sbin/runc checkpoint --image-path ... ID` failed: exit status 1"
/// becomes "runc checkpoint failed: exit status 1".
fn podman_error(stderr: &str) -> String {
    // runc's own words when criu failed ("criu failed: type RESTORE errno 95", its log
    // file's name on the next line).
    if let Some(at) = stderr.find("criu failed: ") {
        let line = stderr[at..].lines().next().unwrap_or_default();
        return line.split("\\n").next().unwrap_or(line).trim_end_matches('"').trim().to_string();
    }
    let line = exec::last_line(stderr);
    let Some(quoted) = line.strip_prefix("Error: `") else { return line };
    let Some((command, rest)) = quoted.split_once('`') else { return line };
    let mut words = command.split_whitespace();
    let program = words.next().map(|p| Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).unwrap_or_default();
    format!("{program} {}{rest}", words.next().unwrap_or_default())
}

fn inspect(ctx: &FlowContext, cmd: &dyn Fn(&[&str]) -> Command, name: &str, format: &str) -> anyhow::Result<String> {
    let ran = exec::run_ok(&ctx.run.reaper, &mut cmd(&["inspect", "--format", format, name]), &ctx.dir, COMMAND_TIMEOUT)?;
    Ok(ran.stdout.trim().to_string())
}

fn init_pid(ctx: &FlowContext, cmd: &dyn Fn(&[&str]) -> Command, name: &str) -> anyhow::Result<i32> {
    let pid = inspect(ctx, cmd, name, "{{.State.Pid}}")?;
    pid.parse::<i32>().ok().filter(|pid| *pid > 0).with_context(|| format!("podman inspect {name}: pid {pid:?}"))
}

/// The container's root directory on the host (`podman mount`; with vfs, the layer's
/// directory itself).
fn rootfs_of(ctx: &FlowContext, cmd: &dyn Fn(&[&str]) -> Command, name: &str) -> anyhow::Result<PathBuf> {
    let ran = exec::run_ok(&ctx.run.reaper, &mut cmd(&["mount", name]), &ctx.dir, COMMAND_TIMEOUT)?;
    Ok(PathBuf::from(ran.stdout.trim()))
}

/// "; criu log: FIRST ERROR" from the container's userdata directory, where podman has
/// runc write the criu logs.
fn criu_log_of(ctx: &FlowContext, cmd: &dyn Fn(&[&str]) -> Command, name: &str, log_name: &str) -> String {
    let Ok(ran) = exec::run(&ctx.run.reaper, &mut cmd(&["inspect", "--format", "{{.StaticDir}}", name]), &ctx.dir, COMMAND_TIMEOUT) else {
        return String::new();
    };
    let dir = PathBuf::from(ran.stdout.trim());
    match exec::first_log_error(&dir.join(log_name)) {
        Some(error) => format!("; {} log: {error}", ctx.criu.label),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_commands_in_errors_are_shortened() {
        let stderr = "Error: `/usr/sbin/runc checkpoint --image-path /x/checkpoint --work-path /x 70d5` failed: exit status 1\n";
        assert_eq!(podman_error(stderr), "runc checkpoint failed: exit status 1");
        assert_eq!(podman_error("Error: no such container x\n"), "Error: no such container x");
        let stderr = "Error: OCI runtime error: runc: criu failed: type RESTORE errno 95\nlog file: /x/restore.log\n";
        assert_eq!(podman_error(stderr), "criu failed: type RESTORE errno 95");
    }
}
