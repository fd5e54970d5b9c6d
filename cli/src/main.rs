//! `crust`: the command-line front end. CRIU's command line (`criu/`: every verb and
//! option of CRIU 4.2, its configuration files and exit codes; the same under the name
//! `criu`), CRIU's RPC server (`rpc/`: `swrk`, `service`) and crit's verbs (show,
//! decode, encode, x, info), each a thin layer over `crust-engine` and `crust-images`.
//! `hooks` holds the points of a dump or restore both CRIU front ends report.
#![deny(unsafe_code)]

mod crit;
mod criu;
mod hooks;
mod rpc;
mod sys;

use clap::Parser;

use criu::Program;

/// crit's verbs inside crust (called as `crust`).
#[derive(Parser)]
#[command(name = "crust", version, about = "Image inspection (crit's verbs); `crust --help` lists CRIU's", long_about = None)]
struct CritCli {
    #[command(subcommand)]
    command: crit::CritCmd,
}

/// The words that start crit's verbs.
const CRIT_VERBS: [&str; 5] = ["show", "decode", "encode", "x", "info"];

fn main() {
    let mut argv = std::env::args_os();
    let program = Program::from_argv0(argv.next().as_deref());
    let mut args = Vec::new();
    for (index, arg) in argv.enumerate() {
        match arg.into_string() {
            Ok(text) => args.push(text),
            Err(raw) => {
                eprintln!("{}: argument {} is not UTF-8: {}", program.name(), index + 1, raw.to_string_lossy());
                std::process::exit(1);
            }
        }
    }
    if args.first().is_some_and(|verb| verb == crust_engine::GUARDIAN_VERB) {
        // The dump's guardian (started by the engine itself, never by a user).
        std::process::exit(crust_engine::guardian_main(std::io::stdin().lock()));
    }
    if program == Program::Crust && args.first().is_some_and(|verb| CRIT_VERBS.contains(&verb.as_str())) {
        std::process::exit(crit_main(&args));
    }
    std::process::exit(criu::main(program, &args));
}

fn crit_main(args: &[String]) -> i32 {
    let cli = match CritCli::try_parse_from(std::iter::once("crust").chain(args.iter().map(String::as_str))) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = error.print();
                return 0;
            }
            // One line, not clap's usage text.
            let text = error.to_string();
            let first = text.lines().next().unwrap_or("bad arguments").trim_start_matches("error: ");
            eprintln!("crust: {first} (crust {} --help)", args[0]);
            return 1;
        }
    };
    match crit::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("crust: {}", criu::one_line(&error));
            1
        }
    }
}
