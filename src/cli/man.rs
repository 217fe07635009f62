//! `reproq man [DIR]`: man pages generated from the clap definitions, `reproq.1` and
//! one `reproq-<subcommand>.1` per subcommand (nested ones too: `reproq-triage-list.1`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};

/// Flags of `reproq man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created if missing)
    #[arg(default_value = ".")]
    dir: PathBuf,
}

impl ManArgs {
    /// Writes the pages and prints each file's path.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut command = super::Cli::command()
            .version(crate::VERSION)
            .disable_help_subcommand(true);
        command.build();
        let mut written = Vec::new();
        write_pages(&command, &self.dir, &mut written)
            .with_context(|| format!("writing man pages into {}", self.dir.display()))?;
        for path in written {
            println!("{}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Writes `command`'s page, then its subcommands' pages, depth first.
fn write_pages(
    command: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(command.clone()).source(format!("reproq {}", crate::VERSION));
    written.push(man.generate_to(dir)?);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
