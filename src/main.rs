//! The `eie` command-line tool. Run `eie --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
