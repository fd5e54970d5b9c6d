//! Reading CRIU's command line and configuration files into settings, the way CRIU's
//! getopt_long does: options anywhere (before or after the verb), `--opt=VALUE` and
//! `--opt VALUE`, short letters grouped (`-dj`) or with their value attached (`-D/dir`,
//! `-v4`, `-vvvv`), unique prefixes of long names (`--tcp-est`), `--no-` forms, and `--`
//! before `--exec-cmd`'s command. Pure: text in, settings out.

use std::path::{Path, PathBuf};

use super::table::{self, Arg, Spec};

/// One option as written, before its value is checked.
#[derive(Clone, Debug)]
pub struct Setting {
    pub spec: &'static Spec,
    /// False for the `--no-` form.
    pub on: bool,
    pub value: Option<String>,
    /// Where it was written, for error messages.
    pub origin: Origin,
}

/// Where a setting comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    CommandLine,
    /// A configuration file and a line number (from 1).
    File(PathBuf, usize),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::CommandLine => write!(f, "command line"),
            Origin::File(path, line) => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// A command line taken apart.
#[derive(Clone, Debug, Default)]
pub struct CommandLine {
    pub settings: Vec<Setting>,
    /// The verb and its own arguments (`cpuinfo dump`, `swrk FD`), in order.
    pub positionals: Vec<String>,
    /// What follows `--` (the command of `--exec-cmd`).
    pub after_dashes: Vec<String>,
}

/// A malformed command line or configuration file: the one-line reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Takes a command line (without the program name) apart.
pub fn parse_args(args: &[String]) -> Result<CommandLine, UsageError> {
    let mut out = CommandLine::default();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        if arg == "--" {
            out.after_dashes = args[index..].to_vec();
            break;
        }
        if let Some(body) = arg.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (body, None),
            };
            let (spec, on) = resolve_long(name)?;
            let shown = if on { format!("--{}", spec.long) } else { format!("--no-{}", spec.long) };
            let value = match (spec.arg, on) {
                (Arg::None, _) | (_, false) => {
                    if inline.is_some() {
                        return Err(UsageError(format!("option {shown} takes no argument")));
                    }
                    None
                }
                (Arg::Required(_), true) => match inline {
                    Some(value) => Some(value),
                    None => {
                        let value = args.get(index).ok_or_else(|| UsageError(format!("option {shown} needs an argument")))?;
                        index += 1;
                        Some(value.clone())
                    }
                },
                (Arg::Optional(_), true) => match inline {
                    Some(value) => Some(value),
                    None => match args.get(index) {
                        Some(next) if takes_detached_value(spec, next) => {
                            index += 1;
                            Some(next.clone())
                        }
                        _ => None,
                    },
                },
            };
            out.settings.push(Setting { spec, on, value, origin: Origin::CommandLine });
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            let letters: Vec<char> = arg[1..].chars().collect();
            let mut at = 0;
            while at < letters.len() {
                let letter = letters[at];
                at += 1;
                let spec = table::find_short(letter).ok_or_else(|| UsageError(format!("unknown option -{letter}")))?;
                let rest: String = letters[at..].iter().collect();
                let value = match spec.arg {
                    Arg::None => None,
                    Arg::Required(_) => {
                        at = letters.len();
                        if rest.is_empty() {
                            let value =
                                args.get(index).ok_or_else(|| UsageError(format!("option -{letter} needs an argument")))?;
                            index += 1;
                            Some(value.clone())
                        } else {
                            Some(rest)
                        }
                    }
                    Arg::Optional(_) => {
                        at = letters.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else {
                            match args.get(index) {
                                Some(next) if takes_detached_value(spec, next) => {
                                    index += 1;
                                    Some(next.clone())
                                }
                                _ => None,
                            }
                        }
                    }
                };
                out.settings.push(Setting { spec, on: true, value, origin: Origin::CommandLine });
            }
            continue;
        }
        out.positionals.push(arg.clone());
    }
    Ok(out)
}

/// Reads a configuration file's text: one option per line without the leading dashes,
/// its value after blanks (or `=`), in double quotes if it has blanks (`\"` for a
/// quote; other backslashes stay), `#` starting a comment anywhere. `config` and
/// `no-default-config` inside a file are ignored, as CRIU ignores them.
pub fn parse_config(text: &str, path: &Path) -> Result<Vec<Setting>, UsageError> {
    let mut out = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let origin = Origin::File(path.to_path_buf(), number + 1);
        let bad = |what: &str| UsageError(format!("{origin}: {what}"));
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let name_end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
        let name = &line[..name_end];
        let rest = line[name_end..].trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest);
        if name.starts_with('-') {
            return Err(bad(&format!("write `{}` without the leading dashes", name.trim_start_matches('-'))));
        }
        let value = if rest.is_empty() {
            None
        } else if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('"') => value.push('"'),
                        Some(other) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => value.push('\\'),
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => value.push(other),
                }
            }
            if !closed {
                return Err(bad("unterminated quote"));
            }
            if !chars.as_str().trim().is_empty() {
                return Err(bad("one option per line: text after the quoted value"));
            }
            Some(value)
        } else {
            if rest.split_whitespace().count() > 1 {
                return Err(bad("one option per line, with at most one value (quote a value that has blanks)"));
            }
            Some(rest.to_string())
        };
        let (spec, on) = resolve_long(name).map_err(|e| bad(&e.0))?;
        if matches!(spec.long, "config" | "no-default-config") {
            continue;
        }
        let value = match (spec.arg, on, value) {
            (Arg::None, _, Some(_)) | (_, false, Some(_)) => return Err(bad(&format!("option {name} takes no value"))),
            (Arg::Required(_), true, None) => return Err(bad(&format!("option {name} needs a value"))),
            (_, _, value) => value,
        };
        out.push(Setting { spec, on, value, origin });
    }
    Ok(out)
}

/// The option a long name (or a unique prefix of one) means, and whether it is the
/// option itself or its `--no-` form.
fn resolve_long(name: &str) -> Result<(&'static Spec, bool), UsageError> {
    let names = table::all_long_names();
    let chosen = if names.iter().any(|n| n == name) {
        name.to_string()
    } else {
        let candidates: Vec<&String> = names.iter().filter(|n| n.starts_with(name)).collect();
        match candidates.as_slice() {
            [one] if !name.is_empty() => (*one).clone(),
            [] | [_] => return Err(UsageError(format!("unknown option --{name}"))),
            many => {
                let list: Vec<String> = many.iter().map(|n| format!("--{n}")).collect();
                return Err(UsageError(format!("option --{name} is ambiguous: {}", list.join(", "))));
            }
        }
    };
    if let Some(spec) = table::find(&chosen) {
        return Ok((spec, true));
    }
    let base = chosen.strip_prefix("no-").and_then(table::find).filter(|s| s.negatable);
    base.map(|spec| (spec, false)).ok_or_else(|| UsageError(format!("unknown option --{name}")))
}

/// Whether the word after an option whose value is optional is that value: getopt
/// would leave it as a stray word, which CRIU then refuses ("excessive parameter"),
/// so taking it only where it is a valid value changes no working command line.
fn takes_detached_value(spec: &Spec, next: &str) -> bool {
    match spec.long {
        "verbosity" | "ext-unix-sk" => !next.is_empty() && next.bytes().all(|b| b.is_ascii_digit()),
        "manage-cgroups" => super::options::CgroupMode::parse(next).is_ok(),
        "cpu-cap" => !next.is_empty() && super::options::CpuCaps::parse(next).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    fn shown(line: &CommandLine) -> Vec<String> {
        line.settings
            .iter()
            .map(|s| {
                let name = if s.on { s.spec.long.to_string() } else { format!("no-{}", s.spec.long) };
                match &s.value {
                    Some(v) => format!("{name}={v}"),
                    None => name,
                }
            })
            .collect()
    }

    #[test]
    fn long_forms_short_clusters_and_verbs_anywhere() {
        let line = parse_args(&args("-v4 dump -t 42 --images-dir=/d -o x.log --tcp-est -Rj -D/e --no-shell-job")).unwrap();
        assert_eq!(line.positionals, ["dump"]);
        assert_eq!(
            shown(&line),
            [
                "verbosity=4",
                "tree=42",
                "images-dir=/d",
                "log-file=x.log",
                "tcp-established",
                "leave-running",
                "shell-job",
                "images-dir=/e",
                "no-shell-job"
            ]
        );
    }

    #[test]
    fn optional_values() {
        let line = parse_args(&args("restore -vvvv --manage-cgroups --manage-cgroups=full --manage-cgroups soft -v 3 -x --cpu-cap none"))
            .unwrap();
        assert_eq!(
            shown(&line),
            ["verbosity=vvv", "manage-cgroups", "manage-cgroups=full", "manage-cgroups=soft", "verbosity=3", "ext-unix-sk", "cpu-cap=none"]
        );
        assert_eq!(line.positionals, ["restore"]);
        // A word that is not a value of the option stays a word.
        let line = parse_args(&args("--manage-cgroups dump")).unwrap();
        assert_eq!(line.positionals, ["dump"]);
    }

    #[test]
    fn required_values_take_the_next_word_even_with_a_dash() {
        let line = parse_args(&args("dump -o -")).unwrap();
        assert_eq!(shown(&line), ["log-file=-"]);
    }

    #[test]
    fn exec_cmd_words_after_dashes() {
        let line = parse_args(&args("restore --exec-cmd -- /bin/sh -c x")).unwrap();
        assert_eq!(line.after_dashes, ["/bin/sh", "-c", "x"]);
    }

    #[test]
    fn errors_are_one_line_and_name_the_option() {
        let err = |text: &str| parse_args(&args(text)).unwrap_err().0;
        assert_eq!(err("dump --bogus"), "unknown option --bogus");
        assert_eq!(err("dump -Z"), "unknown option -Z");
        assert_eq!(err("dump --tree"), "option --tree needs an argument");
        assert_eq!(err("dump --tcp-established=1"), "option --tcp-established takes no argument");
        assert_eq!(err("dump --no-tcp-established=1"), "option --no-tcp-established takes no argument");
        assert!(err("dump --ve").starts_with("option --ve is ambiguous: --version, --veth-pair, --verbosity"), "{}", err("dump --ve"));
        assert_eq!(err("dump --no-tree"), "unknown option --no-tree");
    }

    #[test]
    fn config_file_format() {
        let text = "# a comment\n\n  tcp-established\nwork-dir \"/home/u/my \\\"work\\\" dir\"  # trailing\nno-restore-sibling\t# x\n\
                    ghost-limit=2M\nlog-file \"a\\nb\"\nmanage-cgroups full\nconfig /other.conf\n";
        let settings = parse_config(text, Path::new("/c.conf")).unwrap();
        let got: Vec<(String, bool, Option<String>)> =
            settings.iter().map(|s| (s.spec.long.to_string(), s.on, s.value.clone())).collect();
        assert_eq!(
            got,
            [
                ("tcp-established".into(), true, None),
                ("work-dir".into(), true, Some("/home/u/my \"work\" dir".into())),
                ("restore-sibling".into(), false, None),
                ("ghost-limit".into(), true, Some("2M".into())),
                ("log-file".into(), true, Some("a\\nb".into())),
                ("manage-cgroups".into(), true, Some("full".into())),
            ]
        );
        assert_eq!(settings[1].origin, Origin::File("/c.conf".into(), 4));
    }

    #[test]
    fn config_file_errors_name_file_and_line() {
        let err = |text: &str| parse_config(text, Path::new("/c.conf")).unwrap_err().0;
        assert_eq!(err("\nnetwork-lock foo bar\n"), "/c.conf:2: one option per line, with at most one value (quote a value that has blanks)");
        assert_eq!(err("bogus\n"), "/c.conf:1: unknown option --bogus");
        assert_eq!(err("--tcp-established\n"), "/c.conf:1: write `tcp-established` without the leading dashes");
        assert_eq!(err("tcp-established yes\n"), "/c.conf:1: option tcp-established takes no value");
        assert_eq!(err("images-dir\n"), "/c.conf:1: option images-dir needs a value");
        assert_eq!(err("work-dir \"/a\n"), "/c.conf:1: unterminated quote");
        // `#` starts a comment even inside quotes, as in CRIU.
        assert_eq!(err("work-dir \"/a#b\"\n"), "/c.conf:1: unterminated quote");
    }
}
