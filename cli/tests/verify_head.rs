//! `leadflow verify --head POS:HASH`, the real binary: a head kept elsewhere reveals what the
//! chain alone cannot — a log cut short, or a history rewritten with every hash recomputed.
//!
//! The rewritten history is made the strongest way: a copy of the database taken at a fork
//! point and continued by leadflow itself with other commands, so every row after the fork is
//! correctly hashed and the copy's own chain verifies.

use serde_json::Value;
use std::path::PathBuf;

use leadflow_testkit::cli::*;

/// What this file adds to the harness.
trait HeadEnv {
    /// A folder whose database is a copy of `other`'s as it stands now.
    fn copy_of(other: &Env) -> Env;
    /// The head `verify --json` reports, as `POS:HASH`.
    fn head(&self) -> String;
    fn refused_head(&self, head: &str, needle: &str);
}

impl HeadEnv for Env {
    fn copy_of(other: &Env) -> Env {
        let env = Env::new();
        for suffix in ["", "-wal"] {
            let from = PathBuf::from(format!("{}{suffix}", other.db().display()));
            let to = PathBuf::from(format!("{}{suffix}", env.db().display()));
            let _ = std::fs::remove_file(&to);
            if from.exists() {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        let _ = std::fs::remove_file(format!("{}-shm", env.db().display()));
        env
    }

    fn head(&self) -> String {
        let report: Value = serde_json::from_str(self.ok(&["--json", "verify"]).trim()).unwrap();
        report["head"].as_str().expect("a head").to_owned()
    }

    fn refused_head(&self, head: &str, needle: &str) {
        let out = self.run(&["verify", "--head", head]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify --head {head} did not fail: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
        let out = self.run(&["--json", "verify", "--head", head]);
        assert_eq!(out.status.code(), Some(1));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["ok"], false, "{report}");
    }
}

/// The original log forks after four leads; returns it and its head at the fork.
fn forked() -> (Env, String) {
    let original = Env::new();
    for name in ["Ivan", "Olga", "Pavel", "Irina"] {
        original.create_lead(name);
    }
    let fork = original.head();
    assert!(fork.starts_with("4:"), "{fork}");
    (original, fork)
}

#[test]
fn verify_head_refuses_a_history_rewritten_with_recomputed_hashes() {
    let (original, fork) = forked();
    let forged = Env::copy_of(&original);
    for name in ["Anna", "Boris", "Vera"] {
        original.create_lead(name);
    }
    // The forger writes other events after the fork, through leadflow, up to the same length.
    for name in ["Anna", "Boris", "Gleb"] {
        forged.create_lead(name);
    }
    let kept = original.head();
    assert!(kept.starts_with("7:"), "{kept}");
    let out = original.ok(&["verify", "--head", &kept]);
    assert!(out.contains("head: matches the kept head"), "{out}");
    let out = forged.ok(&["verify"]);
    assert!(
        out.contains("chain: ok, 7 events"),
        "the forged chain verifies: {out}"
    );
    assert_ne!(forged.head(), kept);
    forged.refused_head(
        &kept,
        "head: the hash at position 7 differs from the kept head",
    );
    // A head kept before the fork still matches: only what came after was rewritten.
    let out = forged.ok(&["verify", "--head", &fork]);
    assert!(out.contains("head: matches the kept head"), "{out}");
}

#[test]
fn verify_head_refuses_a_log_cut_short_before_the_kept_head() {
    let (original, _) = forked();
    let cut = Env::copy_of(&original);
    original.create_lead("Anna");
    let kept = original.head();
    assert!(cut.ok(&["verify"]).contains("chain: ok, 4 events"));
    cut.refused_head(
        &kept,
        "the kept head is at position 5, but the log ends at 4",
    );
}
