//! `crust`: the command-line front end. CRIU's verbs (dump, restore, pre-dump, check),
//! its RPC verbs (swrk, service) and crit's verbs (show, decode, encode, x, info), each a
//! thin layer over `crust-engine` and `crust-images`.

mod crit;
mod cr;
mod rpc;

use clap::Parser;

/// Checkpoint/restore for Linux processes, wire-compatible with CRIU's images.
#[derive(Parser)]
#[command(name = "crust", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    #[command(flatten)]
    Cr(cr::CrCmd),
    #[command(flatten)]
    Rpc(rpc::RpcCmd),
    #[command(flatten)]
    Crit(crit::CritCmd),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Cr(cmd) => cr::run(cmd),
        Command::Rpc(cmd) => rpc::run(cmd),
        Command::Crit(cmd) => crit::run(cmd),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            // Library errors already carry their cause's text: print each cause once.
            let mut message = error.to_string();
            for cause in error.chain().skip(1) {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
            }
            eprintln!("crust: {message}");
            std::process::exit(1);
        }
    }
}
