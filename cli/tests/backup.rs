//! `leadflow backup`, `restore`, `export` and `import-log`, the real binary: a backup taken
//! while `leadflow serve` writes is a consistent copy that verifies; `restore` replaces the
//! database only with a backup whose chain and projections verify and that reaches the kept
//! heads (the current database's, `--head`) unless `--force`, and never under a running
//! service, and a restore SIGKILLed at any moment leaves one whole database; an export imported into a new database gives the same log, head and projections;
//! a bad export line is named by file:line and leaves no database behind.

use leadflow_testkit::Db;
use leadflow_testkit::cli::*;
use leadflow_testkit::http::send;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What this file adds to the harness.
trait BackupEnv {
    /// A file in the folder.
    fn file(&self, name: &str) -> PathBuf;
    /// Runs `backup NAME`, which must succeed: the head it printed (`P:HASH`).
    fn backup(&self, name: &str) -> String;
    /// The head `verify --json` reports for the database at `db` (the folder's by default),
    /// which must verify.
    fn verified_head(&self, db: Option<&Path>) -> String;
    /// The log of the database at `db`, as `events --json` prints it.
    fn log_of(&self, db: &Path) -> String;
    /// Runs a command that must fail with `code` saying each of `needles`, and leave the
    /// folder's database exactly as it was (same log, still verifying).
    fn refused_unchanged(&self, args: &[&str], code: i32, needles: &[&str]) -> String;
}

impl BackupEnv for Env {
    fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    fn backup(&self, name: &str) -> String {
        let out = self.ok(&["backup", self.file(name).to_str().unwrap()]);
        out.lines()
            .find_map(|l| l.strip_prefix("head: "))
            .unwrap_or_else(|| panic!("no head in {out:?}"))
            .trim()
            .to_owned()
    }

    fn verified_head(&self, db: Option<&Path>) -> String {
        let db = db.map_or_else(|| self.db(), Path::to_owned);
        let out = self.ok(&["--json", "--db", db.to_str().unwrap(), "verify"]);
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        report["head"].as_str().expect("a head").to_owned()
    }

    fn log_of(&self, db: &Path) -> String {
        self.ok(&["--json", "--db", db.to_str().unwrap(), "events"])
    }

    fn refused_unchanged(&self, args: &[&str], code: i32, needles: &[&str]) -> String {
        let before = self.log_of(&self.db());
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: expected {needle:?} in {err:?}"
            );
        }
        assert_eq!(self.log_of(&self.db()), before, "{args:?} changed the log");
        self.verified_head(None);
        assert_no_scratch_files(self.path());
        err
    }
}

/// No temporary file of a backup, restore, export or import is left in `dir`.
fn assert_no_scratch_files(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.contains(".tmp-"))
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

/// A folder with the round-robin rules and a few leads (each also assigned by a robot).
fn with_leads(names: &[&str]) -> Env {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN_RULES);
    for (i, name) in names.iter().enumerate() {
        let phone = format!("+7912000{i:04}");
        env.ok(&[
            "lead", "create", "--name", name, "--phone", &phone, "--source", "web_form",
        ]);
    }
    env
}

/// An admin token: its secret.
fn admin_token(env: &Env) -> String {
    let out = env.ok(&["--json", "token", "create", "ops", "--role", "admin"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["secret"].as_str().unwrap().to_owned()
}

#[test]
fn a_backup_taken_while_serve_writes_is_a_consistent_copy_that_verifies() {
    let env = Env::with_rules("assign.toml", ROUND_ROBIN_RULES);
    let secret = admin_token(&env);
    let serving = env.serve("warn");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, addr, auth) = (stop.clone(), serving.addr, format!("Bearer {secret}"));
            std::thread::spawn(move || {
                let mut acked = 0;
                while !stop.load(Ordering::SeqCst) {
                    let body = json!({"title": format!("w{i}-{acked}")});
                    let r = send(
                        addr,
                        "POST",
                        "/api/v1/leads",
                        &[
                            ("content-type", "application/json"),
                            ("authorization", &auth),
                        ],
                        body.to_string().as_bytes(),
                    )
                    .unwrap();
                    assert_eq!(r.status, 201, "{}", r.text());
                    acked += 1;
                }
                acked
            })
        })
        .collect();
    let events = || env.sql().count("SELECT count(*) FROM events");
    let mut heads = Vec::new();
    for name in ["one.db", "two.db"] {
        let before = events();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while events() < before + 20 {
            assert!(
                std::time::Instant::now() < deadline,
                "serve wrote nothing: {}",
                serving.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        heads.push((name, env.backup(name)));
        // One self-contained file.
        assert!(!Path::new(&format!("{}-wal", env.file(name).display())).exists());
    }
    stop.store(true, Ordering::SeqCst);
    let acked: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    serving.stop();
    assert!(acked >= 40, "only {acked} leads were written");
    let live = env.verified_head(None);
    let mut positions = Vec::new();
    for (name, head) in &heads {
        // The copy verifies on its own (chain and projections) and holds the head it printed…
        assert_eq!(&env.verified_head(Some(&env.file(name))), head, "{name}");
        // …which is a head of the live log: the copy is a prefix of it, not a mixture.
        env.ok(&["verify", "--head", head]);
        let position: i64 = head.split(':').next().unwrap().parse().unwrap();
        positions.push(position);
    }
    let live_position: i64 = live.split(':').next().unwrap().parse().unwrap();
    assert!(
        positions[0] > 0 && positions[0] < positions[1] && positions[1] <= live_position,
        "backups at {positions:?}, the log at {live_position}: the writes did not overlap the backups"
    );
    assert_no_scratch_files(env.path());
    // A backup never overwrites a file.
    let first = std::fs::read(env.file("one.db")).unwrap();
    let out = env.run(&["backup", env.file("one.db").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    assert_eq!(std::fs::read(env.file("one.db")).unwrap(), first);
}

#[test]
fn restore_refuses_a_tampered_backup_even_with_force_and_replaces_nothing() {
    let env = with_leads(&["Ivan", "Olga", "Pavel"]);
    env.backup("edited.db");
    env.backup("projected.db");
    env.create_lead("Irina");
    // A byte of a payload flipped in the backup's log: its chain breaks there.
    let edited = Db::at(env.file("edited.db"));
    let position: i64 =
        edited.value("SELECT min(position) FROM events WHERE payload LIKE '%Olga%'");
    edited.tamper(&format!(
        "UPDATE events SET payload = replace(payload, 'Olga', 'Olgb') WHERE position = {position}"
    ));
    let file = env.file("edited.db");
    for force in [false, true] {
        let mut args = vec!["restore", file.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        env.refused_unchanged(
            &args,
            1,
            &[
                &format!("chain: broken at position {position}: hash mismatch"),
                "does not verify",
                "nothing was replaced",
            ],
        );
    }
    // A copy of the broken log is still written (for the investigation), and says so; its
    // export is refused, since it would not import.
    let again = env.file("again.db");
    let out = env.run(&[
        "--db",
        file.to_str().unwrap(),
        "backup",
        again.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("chain: broken at position {position}")),
        "{}",
        stderr(&out)
    );
    assert!(again.exists());
    let out = env.run(&[
        "--db",
        file.to_str().unwrap(),
        "export",
        "--out",
        env.file("broken.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "the log is broken at position {position}: hash mismatch; refusing to export it"
        )),
        "{}",
        stderr(&out)
    );
    assert!(!env.file("broken.jsonl").exists());
    assert_no_scratch_files(env.path());
    // A projection row edited in the backup (its log intact): a fresh replay disagrees.
    let projected = Db::at(env.file("projected.db"));
    projected.tamper("UPDATE leads SET title = 'Edited' WHERE id = 2");
    let file = env.file("projected.db");
    env.refused_unchanged(
        &["restore", file.to_str().unwrap(), "--force"],
        1,
        &[
            "projections: table leads differs from a fresh replay",
            "nothing was replaced",
        ],
    );
    // The backup file itself is read, never changed by a restore.
    assert_eq!(
        projected.value::<String>("SELECT title FROM leads WHERE id = 2"),
        "Edited"
    );
    // Not a backup at all.
    env.write("notes.db", "not a database");
    env.refused_unchanged(
        &["restore", env.file("notes.db").to_str().unwrap(), "--force"],
        2,
        &["is not a database file"],
    );
    env.refused_unchanged(
        &["restore", env.file("absent.db").to_str().unwrap()],
        2,
        &["no backup at"],
    );
}

#[test]
fn restore_refuses_an_older_backup_or_another_history_unless_forced() {
    let env = with_leads(&["Ivan", "Olga"]);
    let old = env.backup("old.db");
    env.create_lead("Pavel");
    let newer = env.verified_head(None);
    let old_position: i64 = old.split(':').next().unwrap().parse().unwrap();
    let new_position: i64 = newer.split(':').next().unwrap().parse().unwrap();
    let file = env.file("old.db");
    let file = file.to_str().unwrap();
    env.refused_unchanged(
        &["restore", file],
        1,
        &[
            &format!(
                "the backup ends at position {old_position}, before the current database's head at position {new_position}: restoring it would lose {} events",
                new_position - old_position
            ),
            "pass --force",
            "nothing was replaced",
        ],
    );
    // A backup of another folder's log, even a longer one, is not a copy of this history.
    let other = with_leads(&["Zoe", "Yan", "Xenia", "Wanda"]);
    let stranger = other.backup("stranger.db");
    let stranger = stranger.split(':').next().unwrap();
    assert!(stranger.parse::<i64>().unwrap() > new_position);
    env.refused_unchanged(
        &["restore", other.file("stranger.db").to_str().unwrap()],
        1,
        &["differs from the current database's head there: it is not a copy of this history"],
    );
    // --force restores the older backup: the log is the backup's, and verifies.
    let out = env.run(&["restore", file, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("restoring it would lose"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.verified_head(None), old);
    assert_eq!(env.log_of(&env.db()), env.log_of(&env.file("old.db")));
    assert_no_scratch_files(env.path());
    // Now the database agrees with the backup; a head kept from before still refuses it.
    env.ok(&["restore", file]);
    env.refused_unchanged(
        &["restore", file, "--head", &newer],
        1,
        &[&format!("before --head's head at position {new_position}")],
    );
    // And the restored database takes new writes on top of the backup's chain.
    env.create_lead("Vera");
    env.verified_head(None);
}

#[test]
fn restore_refuses_while_serve_has_the_database_open() {
    let env = with_leads(&["Ivan"]);
    let head = env.backup("copy.db");
    let serving = env.serve("warn");
    let file = env.file("copy.db");
    env.refused_unchanged(
        &["restore", file.to_str().unwrap(), "--force"],
        1,
        &[
            "is open in another process",
            "stop it first",
            "nothing was replaced",
        ],
    );
    // The service never noticed: it still answers and writes to the same file.
    assert_eq!(
        leadflow_testkit::http::Client::new(serving.addr)
            .get("/readyz")
            .status,
        200
    );
    serving.stop();
    // Stopped, the database is replaced (here by an equal copy).
    env.ok(&["restore", file.to_str().unwrap()]);
    assert_eq!(env.verified_head(None), head);
    // Another process holding the write lock is named as a writer.
    let lock = env.sql().hold_write_lock();
    let out = env.run(&["restore", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another process is writing"),
        "{}",
        stderr(&out)
    );
    drop(lock);
}

/// A log with every kind of thing the chain must carry exactly: robots' events, a moved lead,
/// an API token, and a webhook endpoint whose signing secret `events --json` masks.
fn varied() -> Env {
    let env = with_leads(&["Ivan", "Olga", "Pavel"]);
    env.ok(&["lead", "move", "1", "in_work"]);
    env.ok(&["token", "create", "crm", "--role", "sales"]);
    env.ok(&[
        "webhook",
        "add",
        "http://127.0.0.1:9/h",
        "--events",
        "lead.*",
        "--secret",
        "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
    ]);
    env
}

/// Every table of the database at `db` but the full-text index (derived from `search_text`,
/// which is compared), as text: each row's values quoted, rows sorted, by table name.
fn tables(db: &Path) -> Vec<(String, String)> {
    let db = Db::at(db);
    db.column::<String>(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name NOT LIKE 'search_fts%' ORDER BY name",
    )
    .into_iter()
    .map(|t| {
        let columns = db.column::<String>(&format!("SELECT name FROM pragma_table_info('{t}')"));
        let row = columns
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let text = db.value::<Option<String>>(&format!(
            "SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r FROM \"{t}\" ORDER BY r)"
        ));
        (t, text.unwrap_or_default())
    })
    .collect()
}

#[test]
fn export_then_import_log_rebuilds_the_same_log_head_and_projections() {
    let env = varied();
    let out = env.ok(&["export", "--out", env.file("log.jsonl").to_str().unwrap()]);
    let exported = std::fs::read_to_string(env.file("log.jsonl")).unwrap();
    assert_eq!(env.ok(&["export"]), exported, "stdout and --out differ");
    let head = env.verified_head(None);
    assert!(out.contains(&format!("head: {head}")), "{out}");
    // One line per event, with the fields of `events --json`, and the secret kept; then the
    // end line with the count and the head.
    let mut lines = json_lines(&exported);
    let log = env.log();
    let end = lines.pop().unwrap();
    assert_eq!(end["end"]["events"], log.len() as i64, "{end}");
    assert_eq!(end["end"]["head"], log.last().unwrap()["hash"], "{end}");
    assert_eq!(lines.len(), log.len());
    for (line, event) in lines.iter().zip(&log) {
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(line), keys(event));
        assert_eq!(line["hash"], event["hash"]);
    }
    assert!(exported.contains("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="));
    // Into a new folder's empty database (as `init` made it).
    let moved = Env::new();
    let out = moved.ok(&["import-log", env.file("log.jsonl").to_str().unwrap()]);
    assert!(
        out.contains(&format!("imported {} events", log.len())),
        "{out}"
    );
    assert_eq!(moved.verified_head(None), head);
    assert_eq!(moved.log_of(&moved.db()), env.log_of(&env.db()));
    for list in [
        &["lead", "list"][..],
        &["token", "list"],
        &["webhook", "list"],
    ] {
        let args: Vec<&str> = std::iter::once("--json")
            .chain(list.iter().copied())
            .collect();
        assert_eq!(moved.ok(&args), env.ok(&args), "{list:?}");
    }
    let mut original = tables(&env.db());
    let mut imported = tables(&moved.db());
    assert!(
        original
            .iter()
            .any(|(t, rows)| t == "leads" && rows.contains("'Olga'"))
    );
    // The service's remembered responses are not in the log (docs/OPERATIONS.md).
    original.retain(|(t, _)| t != "rule_cursor" && t != "responses");
    imported.retain(|(t, _)| t != "rule_cursor" && t != "responses");
    assert_eq!(imported, original);
    // Or into a file that does not exist yet, with --db.
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.db");
    env.ok(&[
        "--db",
        new.to_str().unwrap(),
        "import-log",
        env.file("log.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(env.verified_head(Some(&new)), head);
    // And the imported database goes on: its writes chain on the imported head.
    moved.create_lead("Vera");
    moved.verified_head(None);
}

#[test]
fn import_log_names_the_bad_line_and_leaves_no_database() {
    let env = varied();
    let good = env.ok(&["export"]);
    let lines: Vec<&str> = good.lines().collect();
    assert!(lines.len() >= 6, "{good}");
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.db");
    let refused = |name: &str, text: String, needles: &[&str]| {
        let file = env.file(name);
        std::fs::write(&file, text).unwrap();
        let out = env.run(&[
            "--db",
            new.to_str().unwrap(),
            "import-log",
            file.to_str().unwrap(),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{name}: expected {needle:?} in {err:?}"
            );
        }
        assert!(err.contains("nothing was imported"), "{name}: {err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
    };
    let with = |i: usize, line: &str| {
        let mut v = lines.clone();
        v[i] = line;
        v.join("\n") + "\n"
    };
    let n = lines.len();
    // Cut off in the middle of its last line.
    let last = lines[n - 1];
    let cut = lines[..n - 1].join("\n") + "\n" + &last[..last.len() / 2];
    refused(
        "cut.jsonl",
        cut,
        &[&format!("cut.jsonl:{n}: the line is cut short")],
    );
    // Cut at a line boundary: the end line is missing.
    refused(
        "short.jsonl",
        lines[..n - 2].join("\n") + "\n",
        &[&format!(
            "short.jsonl:{}: the export stops after this line without its end line",
            n - 2
        )],
    );
    // A line removed: a gap in the positions.
    let mut gap = lines.clone();
    gap.remove(1);
    refused(
        "gap.jsonl",
        gap.join("\n"),
        &["gap.jsonl:2: position 3 follows position 1: a gap (position 2 is missing)"],
    );
    // A payload edited: its hash no longer chains.
    let olga = lines.iter().position(|l| l.contains("Olga")).unwrap();
    refused(
        "edited.jsonl",
        with(olga, &lines[olga].replacen("Olga", "Olgb", 1)),
        &[&format!(
            "edited.jsonl:{}: the hash does not chain",
            olga + 1
        )],
    );
    // A version that skips one.
    let line: Value = serde_json::from_str(lines[3]).unwrap();
    let version = line["version"].as_i64().unwrap();
    let skipped = lines[3].replacen(
        &format!("\"version\":{version}"),
        &format!("\"version\":{}", version + 1),
        1,
    );
    refused(
        "version.jsonl",
        with(3, &skipped),
        &["version.jsonl:4: version", "is out of order"],
    );
    // Not JSON, and JSON that is not an event.
    refused(
        "json.jsonl",
        with(1, "{\"position\": 2,, }"),
        &["json.jsonl:2: bad JSON at column"],
    );
    refused(
        "fields.jsonl",
        with(1, "{\"position\": 2}"),
        &["fields.jsonl:2: not an exported event: missing field"],
    );
    // `events --json` re-serialises payloads and masks secrets: not an export.
    let shown = env.ok(&["--json", "events"]);
    let file = env.file("shown.jsonl");
    std::fs::write(&file, &shown).unwrap();
    let out = env.run(&[
        "--db",
        new.to_str().unwrap(),
        "import-log",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the hash does not chain"),
        "{}",
        stderr(&out)
    );
    assert!(!new.exists());
    // A database that holds events is never imported into.
    std::fs::write(env.file("good.jsonl"), &good).unwrap();
    let out = env.run(&["import-log", env.file("good.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("import-log builds a new database"),
        "{}",
        stderr(&out)
    );
    assert_no_scratch_files(env.path());
    env.verified_head(None);
}

#[test]
fn restore_replaces_a_database_that_does_not_open_only_with_force() {
    let env = with_leads(&["Ivan", "Olga"]);
    let head = env.backup("good.db");
    let file = env.file("good.db");
    let file = file.to_str().unwrap();
    // The database is overwritten with garbage: its head cannot be compared.
    std::fs::write(env.db(), "garbage, not a database at all").unwrap();
    let out = env.run(&["restore", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be compared with the backup's; pass --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(env.db()).unwrap(),
        "garbage, not a database at all"
    );
    let out = env.run(&["restore", file, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.verified_head(None), head);
    // A database that is gone is simply restored.
    std::fs::remove_file(env.db()).unwrap();
    env.ok(&["restore", file]);
    assert_eq!(env.verified_head(None), head);
    assert_no_scratch_files(env.path());
}

#[test]
fn a_restore_killed_at_any_moment_leaves_the_old_database_or_the_restored_one() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = leadflow_in(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let head = || {
        let out = run(&["--json", "verify"]);
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        report["head"].as_str().unwrap().to_owned()
    };
    // A few thousand events, so that a restore takes a while to copy and verify.
    run(&["demo", dir.path().to_str().unwrap(), "--leads", "300"]);
    run(&["backup", "old.db"]);
    let old = head();
    // Killed ever later, from 10 ms in, until a restore completes before its kill.
    let mut ms = 10;
    for round in 0.. {
        run(&[
            "--backdate",
            "lead",
            "create",
            "--name",
            &format!("After {round}"),
            "--phone",
            &format!("+7912555{round:04}"),
        ]);
        let newer = head();
        let mut child = leadflow_in(dir.path())
            .args(["restore", "old.db", "--force"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
        // Whatever moment it died at: one whole database or the other, and it verifies.
        let now = head();
        assert!(
            now == newer || now == old,
            "killed after {ms} ms: head {now}, neither {newer} nor {old}"
        );
        if now == old {
            break;
        }
        assert!(ms < 30_000, "no restore completed in {ms} ms");
        ms *= 2;
    }
    assert!(
        ms > 10,
        "a whole restore took under 10 ms: no kill came in the middle of one"
    );
}

/// A backup, an export and the database import-log builds hold the webhook endpoints' signing
/// secrets and the clients' personal data: only their owner may read them.
#[cfg(unix)]
#[test]
fn backups_exports_copies_and_imported_databases_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = with_leads(&["Ivan"]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let copy = env.path().join("copy.db");
    env.ok(&["backup", copy.to_str().unwrap()]);
    assert_eq!(mode(&copy), 0o600, "the backup");
    let log = env.path().join("log.jsonl");
    env.ok(&["export", "--out", log.to_str().unwrap()]);
    assert_eq!(mode(&log), 0o600, "the export");
    let moved = env.path().join("moved.db");
    env.ok(&[
        "--db",
        moved.to_str().unwrap(),
        "import-log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(mode(&moved), 0o600, "the imported database");
    let then = env.path().join("then.db");
    env.ok(&["replay", "--until", "1", "--into", then.to_str().unwrap()]);
    assert_eq!(mode(&then), 0o600, "the copy replay --into writes");
}
