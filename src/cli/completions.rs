//! `reproq completions <shell>`: a completion script generated from the clap
//! definitions. Completions offer the `--flag` spelling; the Go spellings (`-flag`,
//! `-flag=value`) keep working when typed.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Flags of `reproq completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to generate for (bash, zsh, fish, elvish, powershell)
    #[arg(value_enum)]
    shell: Shell,
}

impl CompletionsArgs {
    /// Prints the script on stdout (a closed pipe is an error, not a panic).
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let mut command = super::Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut command, "reproq", &mut script);
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&script)?;
        stdout.flush()?;
        Ok(ExitCode::SUCCESS)
    }
}
