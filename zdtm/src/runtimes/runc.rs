//! The runc flows: a bundle per flow (`runc spec`, edited: the counter as pid 1, a cgroup
//! below the run's, optional bind mount), `runc run -d`, `runc checkpoint` in the
//! flow's way, `runc restore -d`, and the checks: the count carries on from the dumped
//! value and the long-lived processes keep their pids inside the container.
//!
//! runc keeps its state under the run's own `--root`, so nothing of it is shared with
//! other users of runc on the machine; `--criu` names the criu under test.

use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::exec::{self, Ran};
use super::{FlowContext, Timing};

/// What one runc flow does besides a checkpoint and a restore.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuncFlow {
    /// `checkpoint --leave-running`: the container runs on; it is stopped before the
    /// restore.
    pub leave_running: bool,
    /// `checkpoint --pre-dump` first, then the checkpoint with `--parent-path`.
    pub pre_dump: bool,
    /// A host directory bind-mounted at `/data`, where the counter writes.
    pub bind: bool,
    /// Two processes over loopback TCP (`--tcp-established` on both sides).
    pub tcp: bool,
}

/// Port of the TCP flow's server inside the container.
const TCP_PORT: u16 = 7000;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
const LOG_TIMEOUT: Duration = Duration::from_secs(30);
/// Counts awaited before the checkpoint and after the restore.
const COUNTS: usize = 3;

/// Runs one runc flow in `ctx.dir`; the container is deleted by the run's guard
/// whatever happens.
pub fn run_flow(ctx: &FlowContext, flow: RuncFlow) -> anyhow::Result<Timing> {
    let id = format!("{}-{}", ctx.run.name_prefix, ctx.name);
    let bundle = ctx.dir.join("bundle");
    let hostdir = ctx.dir.join("hostdir");
    std::fs::create_dir_all(&hostdir).with_context(|| format!("create {}", hostdir.display()))?;
    super::rootfs::build(&bundle.join("rootfs"), &ctx.run.busybox)?;
    let (script, log_inside) = if flow.tcp {
        (super::counter::tcp_script("/log", TCP_PORT), "/log")
    } else if flow.bind {
        (super::counter::counting_script("/data/log"), "/data/log")
    } else {
        (super::counter::counting_script("/log"), "/log")
    };
    let log = if flow.bind { hostdir.join("log") } else { bundle.join("rootfs").join(log_inside.trim_start_matches('/')) };
    // A TCP connection survives runc's checkpoint only in a network namespace runc does
    // not own: runc always asks for an empty one otherwise (`empty_ns`), whose `lo` is
    // down, so a loopback connection cannot be put back. The flow makes one with `ip
    // netns add` (lo up) and names it in the config, as runc's own tests do; runc then
    // passes it as an external namespace at both ends.
    let netns = if flow.tcp {
        let name = format!("{}-{}", ctx.run.name_prefix, ctx.name);
        ctx.run.guard.netns(&name);
        exec::run_ok(&ctx.run.reaper, Command::new("ip").args(["netns", "add", &name]), &ctx.dir, COMMAND_TIMEOUT)?;
        exec::run_ok(&ctx.run.reaper, Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]), &ctx.dir, COMMAND_TIMEOUT)?;
        Some(Path::new("/run/netns").join(name))
    } else {
        None
    };
    write_config(ctx, &bundle, &script, flow.bind.then_some(hostdir.as_path()), netns.as_deref())?;

    ctx.run.guard.runc_container(&id);
    let runc = |args: &[&str]| -> Command {
        let mut command = Command::new(&ctx.run.runc);
        command.arg("--root").arg(&ctx.run.runc_root).arg("--log").arg(ctx.dir.join("runc.log"));
        command.arg("--criu").arg(&ctx.criu.path);
        command.args(args);
        command.current_dir(&ctx.dir);
        command
    };
    let bundle_arg = bundle.display().to_string();
    let ran = exec::run_detached(&ctx.run.reaper, &mut runc(&["run", "-d", "--bundle", &bundle_arg, &id]), &ctx.dir, COMMAND_TIMEOUT)?;
    if !ran.success() {
        bail!("runc run: {}", runc_error(&std::fs::read_to_string(ctx.dir.join("runc.log")).unwrap_or_default()).unwrap_or_default());
    }
    exec::wait_for_log(&log, COUNTS, LOG_TIMEOUT)?;
    let init = init_pid(ctx, &runc(&["state", &id]))?;
    let before = exec::lasting(&exec::namespace_processes(init)?);
    let low = *exec::read_log(&log)?.last().context("a count")?;

    // Absolute: `runc restore --bundle` resolves relative paths from the bundle.
    let at = |name: &str| ctx.dir.join(name).display().to_string();
    let (images, work, pre_images, pre_work, restore_work) = (at("images"), at("work"), at("pre"), at("pre-work"), at("restore-work"));
    let mut timing = Timing::default();
    if flow.pre_dump {
        let pre = ctx.dir.join("pre");
        let args = ["checkpoint", "--pre-dump", "--image-path", &pre_images, "--work-path", &pre_work, &id];
        let ran = exec::run(&ctx.run.reaper, &mut runc(&args), &ctx.dir, COMMAND_TIMEOUT)?;
        if !ran.success() && ran.stderr.contains("CRIU is missing features") {
            // runc asks FEATURE_CHECK for mem_track before a pre-dump; CRIU tracks memory
            // with soft-dirty bits, which this kernel lacks.
            return Err(super::Skip(format!("{} answers FEATURE_CHECK without mem_track (runc: CRIU is missing features)", ctx.criu.label)).into());
        }
        check_ran(ctx, &ran, "checkpoint --pre-dump", &ctx.dir.join("pre-work"), "dump.log")?;
        timing.pre_dump = Some(ran.elapsed);
        if !pre.join("inventory.img").exists() {
            bail!("checkpoint --pre-dump wrote no inventory.img in {}", pre.display());
        }
        expect_running(ctx, &runc(&["state", &id]), "after checkpoint --pre-dump")?;
    }
    let mut args = vec!["checkpoint", "--image-path", &images, "--work-path", &work];
    if flow.leave_running {
        args.push("--leave-running");
    }
    if flow.pre_dump {
        args.extend(["--parent-path", "../pre"]);
    }
    if flow.tcp {
        args.push("--tcp-established");
    }
    args.push(&id);
    let ran = exec::run(&ctx.run.reaper, &mut runc(&args), &ctx.dir, COMMAND_TIMEOUT)?;
    check_ran(ctx, &ran, "checkpoint", &ctx.dir.join("work"), "dump.log")?;
    timing.checkpoint = Some(ran.elapsed);

    let high;
    if flow.leave_running {
        high = *exec::read_log(&log)?.last().context("a count")?;
        expect_running(ctx, &runc(&["state", &id]), "after checkpoint --leave-running")?;
        let counted = exec::wait_for_log(&log, exec::read_log(&log)?.len() + COUNTS, LOG_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("the container left running stopped counting: {e}"))?;
        super::counter::check_counting(&counted).map_err(|why| anyhow::anyhow!("left running: {why}"))?;
        let still = exec::lasting(&exec::namespace_processes(init)?);
        if still != before {
            bail!("left running: processes inside changed from {before:?} to {still:?}");
        }
        exec::run_ok(&ctx.run.reaper, &mut runc(&["delete", "-f", &id]), &ctx.dir, COMMAND_TIMEOUT)?;
    } else {
        if state_exists(ctx, &runc(&["state", &id]))? {
            bail!("the container still exists after the checkpoint");
        }
        high = *exec::read_log(&log)?.last().context("a count")?;
    }
    // The dumped count, when the checkpoint stopped the container, is its last.
    let low = if flow.leave_running { low } else { high };
    let cut = exec::read_log(&log)?.len();

    let mut args = vec!["restore", "-d", "--bundle", &bundle_arg, "--image-path", &images, "--work-path", &restore_work];
    if flow.tcp {
        args.push("--tcp-established");
    }
    args.push(&id);
    let ran = exec::run_detached(&ctx.run.reaper, &mut runc(&args), &ctx.dir, COMMAND_TIMEOUT)?;
    let checkpointed = timing.checkpoint.unwrap_or_default().as_secs_f64();
    check_ran(ctx, &ran, "restore", &ctx.dir.join("restore-work"), "restore.log")
        .map_err(|e| anyhow::anyhow!("checkpoint passed in {checkpointed:.2} s; {e}"))?;
    timing.restore = Some(ran.elapsed);

    let counted = exec::wait_for_log(&log, cut + COUNTS, LOG_TIMEOUT).map_err(|e| anyhow::anyhow!("after the restore: {e}"))?;
    super::counter::check_continues(&counted, cut, low, high, COUNTS).map_err(|why| anyhow::anyhow!("{why}"))?;
    let restored = init_pid(ctx, &runc(&["state", &id]))?;
    let after = exec::lasting(&exec::namespace_processes(restored)?);
    if after != before {
        bail!("processes inside: {before:?} before the checkpoint, {after:?} after the restore");
    }
    exec::run_ok(&ctx.run.reaper, &mut runc(&["delete", "-f", &id]), &ctx.dir, COMMAND_TIMEOUT)?;
    Ok(timing)
}

/// A failed runc command becomes one line: runc's error and the criu log's first error.
fn check_ran(ctx: &FlowContext, ran: &Ran, what: &str, work: &Path, log_name: &str) -> anyhow::Result<()> {
    if ran.success() {
        return Ok(());
    }
    let runc_said = runc_error(&ran.stderr).or_else(|| runc_error(&std::fs::read_to_string(ctx.dir.join("runc.log")).unwrap_or_default()));
    let criu_log = work.join(log_name);
    let criu_said = exec::first_log_error(&criu_log).unwrap_or_else(|| format!("no {}", criu_log.display()));
    bail!("runc {what}: {}; {} log: {criu_said}", runc_said.unwrap_or_else(|| ran.status.to_string()), ctx.criu.label)
}

/// What runc said went wrong: its `criu failed: type X errno N` line (without the log
/// file's name, shown beside it), else the message of its last `level=error` line, else
/// its last line.
fn runc_error(text: &str) -> Option<String> {
    if let Some(at) = text.find("criu failed: ") {
        let line = text[at..].lines().next().unwrap_or_default();
        let line = line.split("\\n").next().unwrap_or(line);
        return Some(line.trim_end_matches('"').trim().to_string());
    }
    let line = text.lines().rev().find(|line| line.contains("level=error")).or_else(|| text.lines().rev().find(|l| !l.trim().is_empty()))?;
    Some(match line.find("msg=") {
        Some(at) => line[at + 4..].trim().trim_matches('"').replace("\\n", " ").replace("\\\"", "\"").to_string(),
        None => line.trim().to_string(),
    })
}

fn state_json(ctx: &FlowContext, state: &Command) -> anyhow::Result<Option<serde_json::Value>> {
    let mut command = Command::new(state.get_program());
    command.args(state.get_args());
    let ran = exec::run(&ctx.run.reaper, &mut command, &ctx.dir, COMMAND_TIMEOUT)?;
    if !ran.success() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&ran.stdout).context("runc state prints JSON")?))
}

fn state_exists(ctx: &FlowContext, state: &Command) -> anyhow::Result<bool> {
    Ok(state_json(ctx, state)?.is_some())
}

fn expect_running(ctx: &FlowContext, state: &Command, when: &str) -> anyhow::Result<()> {
    let status = state_json(ctx, state)?.and_then(|json| json["status"].as_str().map(str::to_string));
    if status.as_deref() != Some("running") {
        bail!("{when}: the container is {}", status.as_deref().unwrap_or("gone"));
    }
    Ok(())
}

/// The container's init as the host sees it (`runc state`'s pid).
fn init_pid(ctx: &FlowContext, state: &Command) -> anyhow::Result<i32> {
    let json = state_json(ctx, state)?.context("runc state: no such container")?;
    json["pid"].as_i64().and_then(|pid| i32::try_from(pid).ok()).filter(|pid| *pid > 0).context("runc state: no pid")
}

/// `runc spec`'s config, edited: the script as pid 1 without a terminal, a writable
/// rootfs, the container's cgroup below the run's, hostname `crustbox`, and `hostdir`
/// bind-mounted at `/data`, the network namespace at `netns` instead of a new one.
fn write_config(ctx: &FlowContext, bundle: &Path, script: &str, hostdir: Option<&Path>, netns: Option<&Path>) -> anyhow::Result<()> {
    let config_path = bundle.join("config.json");
    let _ = std::fs::remove_file(&config_path);
    let mut spec = Command::new(&ctx.run.runc);
    spec.args(["spec", "--bundle"]).arg(bundle);
    exec::run_ok(&ctx.run.reaper, &mut spec, &ctx.dir, COMMAND_TIMEOUT)?;
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("read {}", config_path.display()))?;
    let mut config: serde_json::Value = serde_json::from_str(&text).context("runc spec's config.json")?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    config["root"]["readonly"] = false.into();
    config["hostname"] = "crustbox".into();
    config["linux"]["cgroupsPath"] = format!("/{}/{}", ctx.run.cgroup_parent, ctx.name).into();
    if let Some(hostdir) = hostdir {
        let mounts = config["mounts"].as_array_mut().context("config.json has mounts")?;
        mounts.push(serde_json::json!({
            "destination": "/data", "type": "bind", "source": hostdir.display().to_string(), "options": ["rbind", "rw"]
        }));
    }
    if let Some(file) = &ctx.run.criu_config {
        config["annotations"]["org.criu.config"] = file.display().to_string().into();
    }
    if let Some(netns) = netns {
        let namespaces = config["linux"]["namespaces"].as_array_mut().context("config.json has namespaces")?;
        for namespace in namespaces.iter_mut().filter(|ns| ns["type"] == "network") {
            namespace["path"] = netns.display().to_string().into();
        }
    }
    std::fs::write(&config_path, serde_json::to_string_pretty(&config)?).with_context(|| format!("write {}", config_path.display()))?;
    Ok(())
}
