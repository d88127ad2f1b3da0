//! How the real `leadflow` binary opens its database: commands that only read never take the
//! write lock (they read while another process writes, and they read a read-only copy), a
//! writer says what it waits for, and `verify` reads one snapshot while others write.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use leadflow_testkit::cli::*;

/// A folder with the default configuration, an empty database and one lead, whose commands
/// run with `RUST_LOG=warn`.
fn with_lead() -> Env {
    let env = Env::builder().rust_log("warn").init();
    env.create_lead("Ivan");
    env
}

#[test]
fn reads_succeed_while_another_process_holds_the_write_lock() {
    let env = with_lead();
    let lock = env.sql().hold_write_lock();
    for args in [
        &["lead", "list"][..],
        &["lead", "show", "1"],
        &["events"],
        &["--json", "events"],
        &["journal"],
        &["inbox", "petrova"],
        &["verify"],
    ] {
        let started = std::time::Instant::now();
        let out = env.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed while another process writes: {}",
            stderr(&out)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} waited for the write lock"
        );
    }
    assert!(env.ok(&["lead", "list"]).contains("Ivan"));
    drop(lock);
}

#[test]
fn a_writer_says_it_waits_for_the_write_lock_and_goes_on_when_it_is_free() {
    let env = with_lead();
    let lock = env.sql().hold_write_lock();
    let mut child = env
        .cmd()
        .args(["lead", "create", "--name", "Olga"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The writer's first line on stderr must say what it waits for; only then is the lock let go.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("waiting for the database write lock")
            && line.contains("another leadflow process is writing")
            && line.contains("leadflow.db"),
        "{line:?}"
    );
    lock.commit();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("lead-2 created"));
}

/// Runs as an unprivileged user when the tests run as root (who ignores file permissions), so
/// that a read-only file or folder is read-only for the child too.
fn unprivileged(cmd: &mut Command, probe: &Path) {
    if std::fs::metadata(probe).unwrap().uid() == 0 {
        cmd.uid(65534).gid(65534);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Reads and verifies work on a read-only copy; a write says which file cannot be written.
fn check_read_only(env: &Env, expect_in_write_error: &str) {
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        unprivileged(&mut c, &env.db());
        c.args(args).output().unwrap()
    };
    for args in [
        &["lead", "list"][..],
        &["--json", "events"],
        &["lead", "show", "1"],
        &["verify"],
    ] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?} failed on a read-only database: {}",
            stderr(&out)
        );
    }
    assert!(String::from_utf8_lossy(&run(&["lead", "list"]).stdout).contains("Ivan"));
    let out = run(&["lead", "create", "--name", "Olga"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot write") && err.contains(expect_in_write_error),
        "{err}"
    );
}

#[test]
fn a_read_only_file_in_a_read_only_folder_is_read_and_verified_and_a_write_names_both() {
    let env = with_lead();
    chmod(&env.db(), 0o444);
    chmod(&env.path().join("leadflow.toml"), 0o444);
    chmod(env.path(), 0o555);
    check_read_only(
        &env,
        &format!(
            "the file {} is read-only, and so is its folder {}",
            env.db().display(),
            env.path().display()
        ),
    );
    chmod(env.path(), 0o755);
    chmod(&env.db(), 0o644);
    // Nothing was written: the owner still finds one lead and a sound log.
    assert_eq!(env.ok(&["--json", "lead", "list"]).lines().count(), 1);
    env.ok(&["verify"]);
}

#[test]
fn a_writable_file_in_a_read_only_folder_is_read_and_a_write_names_the_folder() {
    let env = with_lead();
    chmod(&env.db(), 0o666);
    chmod(&env.path().join("leadflow.toml"), 0o444);
    chmod(env.path(), 0o555);
    check_read_only(
        &env,
        &format!("its folder {} is read-only", env.path().display()),
    );
    chmod(env.path(), 0o755);
    chmod(&env.db(), 0o644);
    assert_eq!(env.ok(&["--json", "lead", "list"]).lines().count(), 1);
}

#[test]
fn a_read_only_file_in_a_writable_folder_is_read_and_a_write_names_the_file() {
    let env = with_lead();
    chmod(&env.db(), 0o444);
    chmod(env.path(), 0o777);
    check_read_only(
        &env,
        &format!("the file {} is read-only", env.db().display()),
    );
    chmod(env.path(), 0o755);
    chmod(&env.db(), 0o644);
}

#[test]
fn verify_passes_on_a_healthy_database_while_another_process_writes() {
    let env = Arc::new(with_lead());
    // Enough rows that a verify spans several of the writer's commits.
    let mut csv = String::from("name,phone\n");
    for i in 0..3000 {
        csv += &format!(
            "Imported {i},+7 913 {:03}-{:02}-{:02}\n",
            i / 10_000,
            i / 100 % 100,
            i % 100
        );
    }
    std::fs::write(env.path().join("leads.csv"), csv).unwrap();
    env.ok(&["import", "leads.csv"]);
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (env, stop, written) = (env.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = format!("Lead {i}");
                env.ok(&[
                    "lead",
                    "create",
                    "--name",
                    &name,
                    "--phone",
                    &format!("+7 912 000-{:02}-{:02}", i / 100 % 100, i % 100),
                ]);
                let id = (i + 3001).to_string();
                env.ok(&["lead", "assign", &id, "petrova"]);
                env.ok(&["lead", "move", &id, "in_work"]);
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let mut failures = Vec::new();
    for run in 0..20 {
        let out = env.run(&["verify"]);
        if !out.status.success() {
            failures.push(format!("run {run}: {}", stderr(&out)));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        written.load(Ordering::Relaxed) > 0,
        "the writer wrote nothing"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    env.ok(&["verify"]);
}

/// Whether a test that needs root (to mount a tmpfs, or to run a second user) runs. As root it
/// always runs, and a mount that fails fails it, unless `LEADFLOW_TEST_NO_MOUNT=1` says to skip
/// it. Not as root it is skipped with a line on stderr on a developer's machine, and fails under
/// CI (`CI=true`, where the tests run as root), so a skip cannot pass unnoticed there.
#[allow(clippy::print_stderr)] // the skip is said on the test's stderr
fn runs_as_root(test: &str) -> bool {
    if std::env::var("LEADFLOW_TEST_NO_MOUNT").as_deref() == Ok("1") {
        eprintln!("{test}: skipped (LEADFLOW_TEST_NO_MOUNT=1)");
        return false;
    }
    if running_as_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} needs root (to mount a tmpfs or run as a second user), and CI runs the tests as root: run it as root, or set LEADFLOW_TEST_NO_MOUNT=1 to skip it"
    );
    eprintln!("{test}: skipped (needs root, to mount a tmpfs or run as a second user)");
    false
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts one (the caller checked [`runs_as_root`]); a failed mount fails the test.
    fn mount(kib: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => SmallDisk(dir),
            Ok(o) => panic!(
                "cannot mount a tmpfs on {} as root: {}; set LEADFLOW_TEST_NO_MOUNT=1 to skip the tests that need one",
                dir.display(),
                stderr(&o).trim()
            ),
            Err(e) => panic!(
                "cannot run mount: {e}; set LEADFLOW_TEST_NO_MOUNT=1 to skip the tests that need it"
            ),
        }
    }

    /// Fills the disk up with a file of zeros.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = [0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_is_reported_as_full_naming_the_file() {
    // store/tests/open.rs checks the same messages without a disk.
    if !runs_as_root("a_full_disk_is_reported_as_full_naming_the_file") {
        return;
    }
    // Room for `init` (an empty database of about 300 KiB, written through the WAL) and
    // little more.
    let disk = SmallDisk::mount(1024);
    let run = |args: &[&str]| leadflow_in(&disk.0).args(args).output().unwrap();
    assert!(run(&["init", "."]).status.success());
    disk.fill();
    let db = disk.0.join("leadflow.db").display().to_string();
    // A write (the WAL cannot grow) and a read (the -shm file cannot be made): both say the
    // disk is full and name the file.
    for args in [&["lead", "create", "--name", "Ivan"][..], &["lead", "list"]] {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("is full") && err.contains(&db) && !err.contains("disk I/O error"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_read_only_mount_is_read_and_verified_and_a_write_says_it_is_read_only() {
    if !runs_as_root("a_read_only_mount_is_read_and_verified_and_a_write_says_it_is_read_only") {
        return;
    }
    let disk = SmallDisk::mount(4096);
    let env = Env::builder()
        .rust_log("warn")
        .bare_in(tempfile::tempdir_in(&disk.0).unwrap());
    let out = env.run(&["init", env.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["lead", "create", "--name", "Ivan"]);
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.0)
        .output()
        .unwrap();
    assert!(remount.status.success(), "{}", stderr(&remount));
    // Root cannot write to a read-only mount either: no unprivileged user needed.
    for args in [&["lead", "list"][..], &["--json", "events"], &["verify"]] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let out = env.run(&["lead", "create", "--name", "Olga"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cannot write")
            && err.contains(&format!(
                "{} is on a read-only file system",
                env.db().display()
            )),
        "{err}"
    );
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&disk.0)
        .output();
}

#[test]
fn a_folder_its_owner_may_write_is_not_read_without_locks_by_another_user() {
    // Needs a second user: the owner writes the folder, the reader may not.
    if !runs_as_root("a_folder_its_owner_may_write_is_not_read_without_locks_by_another_user") {
        return;
    }
    let env = with_lead();
    chmod(env.path(), 0o755);
    // The owner (root) can write here, so reading without the -shm file's locks could see a
    // half-written change: the reader says so instead of guessing.
    let out = {
        let mut c = env.cmd();
        c.uid(65534).gid(65534);
        c.args(["lead", "list"]).output().unwrap()
    };
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot read {}", env.db().display()))
            && err.contains("a user who can write the folder"),
        "{err}"
    );
}

/// Makes the database look like one written before `match_keys` and `inbox_read` existed
/// (schema version 2).
fn make_old(env: &Env) {
    env.sql()
        .tamper("DROP TABLE match_keys; DROP TABLE inbox_read; DROP TABLE responses; PRAGMA user_version = 2;");
}

#[test]
fn a_database_from_before_the_new_projections_is_read_after_the_upgrade() {
    let env = with_lead();
    make_old(&env);
    // The first read migrates it once (the file is writable), then reads.
    assert!(env.ok(&["lead", "list"]).contains("Ivan"));
    assert!(env.ok(&["events"]).contains("lead.created"));
    let version: i64 = env.sql().value("PRAGMA user_version");
    assert_eq!(version, 5, "migrated to the current schema version");
    env.ok(&["verify"]);
    // The rebuilt match_keys find the repeat lead.
    assert!(
        env.ok(&["lead", "list", "--search", "+7 912 345 67 89"])
            .contains("Ivan")
    );
}

#[test]
fn an_old_read_only_copy_reads_its_log_and_says_what_to_do_for_the_rest() {
    let env = with_lead();
    make_old(&env);
    chmod(&env.db(), 0o444);
    chmod(env.path(), 0o555);
    let run = |args: &[&str]| {
        let mut c = env.cmd();
        unprivileged(&mut c, &env.db());
        c.args(args).output().unwrap()
    };
    for args in [&["events"][..], &["verify", "--chain-only"]] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert!(String::from_utf8_lossy(&run(&["events"]).stdout).contains("lead.created"));
    let out = run(&["lead", "list"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&env.db().display().to_string())
            && err.contains("cannot be written here")
            && err.contains("leadflow replay"),
        "{err}"
    );
    chmod(env.path(), 0o755);
    chmod(&env.db(), 0o644);
}

/// Every `recorded_at` in position order, as stored.
fn recorded_ats(env: &Env) -> Vec<String> {
    env.sql()
        .column("SELECT recorded_at FROM events ORDER BY position")
}

#[test]
fn recorded_at_is_taken_once_the_write_lock_is_held_and_never_goes_back() {
    let env = with_lead();
    let lock = env.sql().hold_write_lock();
    let mut child = env
        .cmd()
        .args(["lead", "create", "--name", "Olga"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The writer says it waits (after a second); the lock is let go only then.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("waiting for the database write lock"),
        "{line:?}"
    );
    // SQLite's clock, to the millisecond, in the stored format's first 23 characters.
    let released: String = lock.value("SELECT strftime('%Y-%m-%dT%H:%M:%f', 'now')");
    lock.commit();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["lead", "create", "--name", "Petr"]);
    let stamps = recorded_ats(&env);
    let olga = &stamps[stamps.len() - 2];
    assert!(
        olga[..23] >= *released,
        "recorded_at {olga} is before the write lock was released at {released}"
    );
    for pair in stamps.windows(2) {
        assert!(pair[0] <= pair[1], "recorded_at goes back: {pair:?}");
    }
}

/// Runs `leadflow` as the user who owns the database (uid 65534 when the tests run as root,
/// who ignores file permissions: everything is handed to that user first).
fn as_owner(env: &Env, args: &[&str]) -> Output {
    let mut c = env.cmd();
    if running_as_root() {
        c.uid(65534).gid(65534);
    }
    c.args(args).output().unwrap()
}

/// Whether the tests run as root (who owns the files they create).
fn running_as_root() -> bool {
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

/// Hands the folder and everything in it to uid 65534 when running as root.
fn hand_to_nobody(env: &Env) {
    if !running_as_root() {
        return;
    }
    let out = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "chown: {}", stderr(&out));
}

#[test]
fn a_read_of_a_read_only_file_leaves_no_read_only_shm_or_wal_behind() {
    let env = with_lead();
    hand_to_nobody(&env);
    chmod(&env.db(), 0o444);
    let out = as_owner(&env, &["lead", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for side in ["-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{side}", env.db().display()));
        if let Ok(m) = std::fs::metadata(&p) {
            assert!(
                m.permissions().mode() & 0o200 != 0,
                "{} left with mode {:o}",
                p.display(),
                m.permissions().mode()
            );
        }
    }
    // Writable again: the owner writes.
    chmod(&env.db(), 0o644);
    let out = as_owner(&env, &["lead", "create", "--name", "Olga"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_write_blocked_by_a_read_only_wal_file_names_it() {
    let env = with_lead();
    let side = |s: &str| PathBuf::from(format!("{}{s}", env.db().display()));
    // A read of the read-only file leaves -wal and -shm files, owned by the test's user.
    chmod(&env.db(), 0o444);
    env.ok(&["lead", "list"]);
    chmod(&env.db(), 0o644);
    let root = std::fs::metadata(side("-wal")).unwrap().uid() == 0;
    if root {
        // Everything else to the writer (uid 65534): the -wal and -shm stay root's.
        hand_to_nobody(&env);
        let out = Command::new("chown")
            .arg("0:0")
            .args([side("-wal"), side("-shm")])
            .output()
            .unwrap();
        assert!(out.status.success(), "chown: {}", stderr(&out));
    }
    chmod(&side("-wal"), 0o444);
    chmod(&side("-shm"), 0o444);
    let out = as_owner(&env, &["lead", "create", "--name", "Olga"]);
    if !root {
        // The writer owns them and makes them writable.
        assert!(out.status.success(), "{}", stderr(&out));
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the file {}-wal is read-only", env.db().display()))
            && err.contains("chmod u+w"),
        "{err}"
    );
}

#[test]
fn a_database_without_the_journals_indexes_gets_them_from_the_first_command_that_writes() {
    let env = with_lead();
    env.sql().tamper(
        "DROP INDEX incidents_since_escalation; DROP INDEX escalations_by_employee; DROP INDEX timer_events;",
    );
    let count = "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('incidents_since_escalation', 'escalations_by_employee', 'timer_events')";
    // A command that only reads reads it as it is (no write lock taken for an index).
    assert!(env.ok(&["lead", "list"]).contains("Ivan"));
    assert_eq!(env.sql().value::<i64>(count), 0);
    env.ok(&["tick"]);
    assert_eq!(
        env.sql().value::<i64>(count),
        3,
        "every index made by the first command that writes"
    );
    let version: i64 = env.sql().value("PRAGMA user_version");
    assert_eq!(version, 5, "no schema step: older leadflows still read it");
    env.ok(&["verify"]);
}
