//! The help of the real binary: a command lists only the global options it uses, and an
//! option's text fits the command it is shown on.

use std::path::Path;
use std::process::{Command, Output};

fn leadflow(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_leadflow"))
        .args(args)
        .current_dir(dir)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("LEADFLOW_DB")
        .env_remove("LEADFLOW_AS")
        .env_remove("LEADFLOW_NOW")
        .env_remove("LEADFLOW_RULES")
        .env_remove("LEADFLOW_SYNCHRONOUS")
        .output()
        .unwrap()
}

/// The help of `args`, which must succeed.
fn help(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = leadflow(&[args, &["-h"]].concat(), dir.path());
    assert!(
        out.status.success(),
        "{args:?} -h: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The options listed under the heading `Global options` (none if there is no such heading).
fn global_options(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            inside = line == "Global options:";
        } else if inside && line.trim_start().starts_with("--") {
            out.push(line.split_whitespace().next().unwrap().to_owned());
        }
    }
    out
}

/// The help line of the option `--name`.
fn option_line<'h>(help: &'h str, name: &str) -> &'h str {
    help.lines()
        .find(|l| l.trim_start().starts_with(&format!("--{name} ")))
        .unwrap_or_else(|| panic!("no --{name} in {help}"))
}

#[test]
fn init_and_demo_list_no_global_options_and_simulate_only_config_and_json() {
    for args in [&["init"][..], &["demo"]] {
        let help = help(args);
        assert!(!help.contains("Global options"), "{args:?}: {help}");
        for unused in [
            "--db",
            "--as",
            "--now",
            "--backdate",
            "--rules",
            "--synchronous",
        ] {
            assert!(!help.contains(unused), "{args:?} lists {unused}: {help}");
        }
    }
    let help = help(&["simulate"]);
    assert_eq!(global_options(&help), ["--config", "--json"], "{help}");
    // A command that uses them still lists them all.
    assert_eq!(
        global_options(&self::help(&["lead", "create"])),
        [
            "--config",
            "--db",
            "--as",
            "--now",
            "--backdate",
            "--json",
            "--rules",
            "--synchronous"
        ]
    );
}

#[test]
fn a_global_option_hidden_from_the_help_is_still_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let out = leadflow(
        &["init", ".", "--synchronous", "normal", "--json"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("leadflow.toml").is_file());
}

#[test]
fn only_the_update_commands_say_that_phones_and_emails_replace_the_list() {
    for kind in ["lead", "contact", "company"] {
        let create = help(&[kind, "create"]);
        let update = help(&[kind, "update"]);
        for option in ["phone", "email"] {
            let on_create = option_line(&create, option);
            assert!(
                on_create.ends_with("repeat for several") && !on_create.contains("update"),
                "{kind} create: {on_create}"
            );
            let on_update = option_line(&update, option);
            assert!(
                on_update.ends_with("repeat for several (replaces the list)"),
                "{kind} update: {on_update}"
            );
        }
    }
}
