//! `kawaii generate-docs`: man pages (clap_mangen) and shell completions (clap_complete), both
//! derived from the clap definitions so they never disagree with `--help`. The Debian package
//! ships what this writes (see `scripts/deb`).

use anyhow::Context;
use clap_complete::Shell;
use std::path::Path;
use std::process::ExitCode;

/// Writes `OUT/man/kawaii.1`, one `kawaii-SUB[-SUB].1` per visible subcommand, and
/// `OUT/completions/{kawaii.bash,_kawaii,kawaii.fish}`.
pub fn generate(mut cli: clap::Command, out: &Path) -> anyhow::Result<ExitCode> {
    cli.build();
    let man = out.join("man");
    std::fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    write_pages(&cli, "kawaii", &man)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("creating {}", completions.display()))?;
    for (shell, file) in [
        (Shell::Bash, "kawaii.bash"),
        (Shell::Zsh, "_kawaii"),
        (Shell::Fish, "kawaii.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cli.clone(), "kawaii", &mut text);
        let path = completions.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `cmd` (named `name`), then one for each of its visible subcommands.
fn write_pages(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every visible subcommand path, e.g. `["lab", "up"]`.
    fn paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            paths(sub, &path, out);
            out.push(path);
        }
    }

    #[test]
    fn man_pages_and_completions_cover_every_subcommand() {
        let dir = tempfile::tempdir().expect("tempdir");
        generate(crate::Cli::command(), dir.path()).expect("generate");
        let mut all = Vec::new();
        paths(&crate::Cli::command(), &[], &mut all);
        assert!(all.len() > 15, "{all:?}");
        let read = |p: &Path| std::fs::read_to_string(p).expect("read generated file");
        let top = read(&dir.path().join("man/kawaii.1"));
        assert!(top.contains(".TH kawaii 1"), "{top}");
        for path in &all {
            let page = dir.path().join(format!("man/kawaii-{}.1", path.join("-")));
            let text = read(&page);
            assert!(text.starts_with(".ie \\n(.g .ds Aq"), "{}", page.display());
            assert!(text.contains(".SH NAME"), "{}", page.display());
            let leaf = path.last().expect("non-empty path");
            for file in ["kawaii.bash", "_kawaii", "kawaii.fish"] {
                let text = read(&dir.path().join("completions").join(file));
                assert!(text.contains(leaf.as_str()), "{leaf} missing from {file}");
            }
        }
        // The top page lists the first-level subcommands; hidden ones are left out.
        for path in all.iter().filter(|p| p.len() == 1) {
            assert!(top.contains(&format!("kawaii\\-{}", path[0])), "{path:?}");
        }
        assert!(!dir.path().join("man/kawaii-generate-docs.1").exists());
    }
}
