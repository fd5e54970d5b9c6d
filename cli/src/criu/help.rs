//! `--help`: the verbs, then every option by section, with what crust does with it,
//! written from `table.rs`.

use super::table::{Arg, Group, Spec, State, OPTIONS};
use super::Program;

/// The short usage printed for a command line without a verb.
pub fn usage(program: Program) -> String {
    let name = program.name();
    let mut out = format!(
        "Usage:\n  {name} dump|pre-dump -t PID [<options>]\n  {name} restore [<options>]\n  {name} check [--feature FEAT | --extra | --experimental | --all]\n"
    );
    if program == Program::Crust {
        out.push_str("  crust show|decode|encode|x|info ...   (crit's verbs, see crust show --help)\n");
    }
    out.push_str(&format!("Try {name} --help for every option.\n"));
    out
}

/// The whole `--help` text.
pub fn text(program: Program) -> String {
    let name = program.name();
    let mut out = usage(program);
    out.push_str(&format!(
        "\nCommands:\n\
         \x20 dump           checkpoint a process tree (killed afterwards unless --leave-running)\n\
         \x20 pre-dump       a dump the tree survives, for a later dump --prev-images-dir to build on\n\
         \x20 restore        restore a process tree from its images, with the same pids\n\
         \x20 check          check the kernel: what crust needs, or one feature (--feature NAME)\n\
         \x20 swrk FD        serve CRIU's RPC on the inherited socket FD (how runc and podman call criu)\n\
         \x20 service        serve CRIU's RPC on a unix socket (--address, --daemon, --pidfile, --status-fd)\n\
         \x20 page-server, lazy-pages, dedup, cpuinfo dump, cpuinfo check:\n\
         \x20                CRIU's, not supported yet (one-line error, exit 1)\n\
         {}\n\
         \nOptions go before or after the command. Long options take --opt VALUE or --opt=VALUE and\n\
         may be shortened to a unique prefix; an optional value is --opt=VALUE (or the next word when\n\
         it is a valid value). Flags marked [no-] also have a --no- form that turns them off.\n\
         Options are also read from /etc/criu/default.conf and ~/.criu/default.conf (unless --config\n\
         or --no-default-config is given), then $CRIU_CONFIG_FILE, then --config FILE, then the\n\
         command line; a later one wins. Exit codes are CRIU's: 0, or 1 on any error.\n\
         Below each option: `accepted:` crust already behaves as asked, and why; `not yet:` it is\n\
         refused in one line (`{name}: --OPTION is not supported yet`); otherwise it is implemented.\n",
        if program == Program::Crust {
            "  exec           deprecated in CRIU (exit 255)\n  show, decode, encode, x, info: crit's verbs (crust show --help)"
        } else {
            "  exec, show     deprecated in CRIU (exit 255)"
        }
    ));
    for group in Group::ALL {
        let specs: Vec<&Spec> = OPTIONS.iter().filter(|s| s.group == group && !s.hidden).collect();
        if specs.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{}:\n", group.title()));
        for spec in specs {
            let head = option_head(spec);
            let pad = 30usize;
            if head.len() + 2 < pad {
                out.push_str(&format!("  {head:<width$}", width = pad - 2));
            } else {
                out.push_str(&format!("  {head}\n{:pad$}", ""));
            }
            out.push_str(&wrap(spec.help, pad));
            let note = match spec.state {
                State::Implemented => None,
                State::ImplementedNote(why) => Some(format!("note: {why}")),
                State::Accepted(_) | State::NotYet(_) => spec.state.why().map(|why| format!("{}: {why}", spec.state.label())),
                State::ByValue(why) => Some(why.to_string()),
                State::Deprecated => Some(format!("deprecated: {name} refuses it, as CRIU does")),
            };
            if let Some(note) = note {
                out.push_str(&format!("{:pad$}", ""));
                out.push_str(&wrap(&note, pad));
            }
        }
    }
    out
}

/// `-t|--tree PID`, `   --[no-]link-remap`, `   --cpu-cap[=CAP]`.
pub fn option_head(spec: &Spec) -> String {
    let short = match spec.short {
        Some(letter) => format!("-{letter}|"),
        None => "   ".to_string(),
    };
    let no = if spec.negatable { "[no-]" } else { "" };
    let value = match spec.arg {
        Arg::None => String::new(),
        Arg::Required(name) => format!(" {name}"),
        Arg::Optional(name) => format!("[={name}]"),
    };
    format!("{short}--{no}{}{value}", spec.long)
}

/// `text` wrapped at 100 columns, continuation lines indented to `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let width = 100usize.saturating_sub(indent).max(40);
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_visible_option_with_its_note() {
        let help = text(Program::Crust);
        for spec in OPTIONS.iter().filter(|s| !s.hidden) {
            assert!(help.contains(&option_head(spec)), "--{} missing", spec.long);
        }
        assert!(help.contains("not yet: page server connections over TLS"));
        assert!(!help.contains("fault-inject"));
        assert!(text(Program::Criu).starts_with("Usage:\n  criu dump"));
    }

    /// The README's option table, written from the same table as `--help`.
    fn readme_table() -> String {
        let mut out = String::from("| option | state | why / what it needs |\n|---|---|---|\n");
        for spec in OPTIONS.iter().filter(|s| !s.hidden) {
            let head = option_head(spec).trim().replace('|', "\\|");
            let why = spec.state.why().unwrap_or("").replace('|', "\\|");
            out.push_str(&format!("| `{head}` | {} | {why} |\n", spec.state.label()));
        }
        out
    }

    /// The README holds the option table as the code has it (`CRUST_BLESS_README=1`
    /// rewrites it).
    #[test]
    fn readme_option_table_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- options:begin -->\n", "<!-- options:end -->");
        let start = readme.find(begin).expect("README has the options:begin marker") + begin.len();
        let stop = readme.find(end).expect("README has the options:end marker");
        let table = readme_table();
        if readme[start..stop] != table {
            if std::env::var_os("CRUST_BLESS_README").is_some() {
                std::fs::write(&path, format!("{}{table}{}", &readme[..start], &readme[stop..])).unwrap();
            } else {
                panic!("README's option table is stale; run with CRUST_BLESS_README=1:\n{table}");
            }
        }
    }

    #[test]
    fn wrapping_keeps_lines_short() {
        for line in text(Program::Crust).lines() {
            assert!(line.chars().count() <= 110, "{line}");
        }
    }
}
