//! Crash safety: a child process (`crash_writer`) writes leads to a database with
//! `synchronous=FULL` and reports each commit on stdout; the test kills it with SIGKILL after a
//! random number of reported commits, several times on the same database. After every kill the
//! database must open, its hash chain must verify, its projections must equal a replay, and
//! every commit the child reported must be there: the position with the same chain hash, and
//! each stream at least at the reported version; each reported line must be one whole
//! transaction, and at most one transaction may have committed after the last line (the one
//! the kill caught between its commit and its report).
//!
//! Kill points come from a seeded generator; set `LEADFLOW_CRASH_SEED` to try other ones (the
//! seed in use is printed when the test fails).

use leadflow_engine::StreamId;
use leadflow_store::{Options, Store, to_hex};
use leadflow_testkit::{
    all_events, assert_log_is_sound, exec_as, ivanov, memory_store, numbered_lead,
};
use leadflow_tests::Rng;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// A transaction the child said it had committed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Commit {
    position: i64,
    hash: String,
    streams: Vec<(StreamId, i64)>,
}

fn parse(line: &str) -> Commit {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("committed"), "unexpected line {line:?}");
    let position = words.next().and_then(|p| p.parse().ok());
    let hash = words.next().map(str::to_owned);
    let (Some(position), Some(hash)) = (position, hash) else {
        panic!("malformed line {line:?}")
    };
    let streams = words
        .map(|w| {
            let (s, v) = w
                .split_once('@')
                .unwrap_or_else(|| panic!("malformed stream in {line:?}"));
            (s.parse().unwrap(), v.parse().unwrap())
        })
        .collect();
    Commit {
        position,
        hash,
        streams,
    }
}

fn spawn_writer(db: &Path, seed: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(db)
        .arg(seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the crash_writer binary starts")
}

/// Reads `kill_after` commit lines, kills the child with SIGKILL, and returns every complete
/// line it had written (including those still in the pipe when it died) and how it ended.
fn kill_after_commits(mut child: Child, kill_after: usize) -> (Vec<Commit>, ExitStatus) {
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut commits = Vec::new();
    let mut line = String::new();
    while commits.len() < kill_after {
        line.clear();
        let n = stdout
            .read_line(&mut line)
            .expect("child stdout is readable");
        if n == 0 {
            let status = child.wait().expect("wait for the child");
            panic!(
                "the writer stopped by itself after {} commits ({status}); see its stderr above",
                commits.len()
            );
        }
        commits.push(parse(&line));
    }
    child.kill().expect("kill the writer");
    let status = child.wait().expect("wait for the killed writer");
    // Whatever is left in the pipe was written before the kill; a last line without its
    // newline was cut short and reports nothing reliable.
    let mut rest = String::new();
    stdout
        .read_to_string(&mut rest)
        .expect("child stdout is readable");
    commits.extend(
        rest.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(parse),
    );
    (commits, status)
}

#[cfg(unix)]
fn assert_killed(status: ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the writer was not ended by our SIGKILL: {status}"
    );
}

#[cfg(not(unix))]
fn assert_killed(status: ExitStatus) {
    assert!(!status.success(), "the writer exited normally: {status}");
}

/// Everything the children have reported so far must be in the database.
fn assert_reported_commits_survive(store: &Store, reported: &[Commit]) {
    let events = all_events(store);
    for c in reported {
        let at = usize::try_from(c.position - 1)
            .ok()
            .and_then(|i| events.get(i))
            .unwrap_or_else(|| {
                panic!(
                    "reported position {} is gone; the log ends at {}",
                    c.position,
                    events.len()
                )
            });
        assert_eq!(at.position, c.position, "positions are not contiguous");
        assert_eq!(
            to_hex(&at.hash),
            c.hash,
            "the event at reported position {} is not the one committed",
            c.position
        );
        for (stream, version) in &c.streams {
            let now = store.stream_version(*stream).unwrap();
            assert!(
                now >= *version,
                "{stream} was reported at version {version} but is at {now}"
            );
            let events = store.read_stream(*stream).unwrap();
            assert!(
                events.iter().any(|e| e.version == *version),
                "{stream} has no event with reported version {version}"
            );
        }
    }
}

/// What this run's writer committed, as the log holds it, against what it reported: each
/// reported line is one whole transaction (the writer gives each transaction its own business
/// time, a millisecond or more after the previous one, so one transaction is one
/// `occurred_at`), and after the last report at most one more transaction was committed — the
/// one the kill interrupted between its commit and its line. More would mean lost reports
/// (stdout not flushed before the next transaction) or a torn transaction.
fn assert_at_most_one_unreported_transaction(
    store: &Store,
    known_end: i64,
    commits: &[Commit],
    end: i64,
) -> Result<(), String> {
    let events: Vec<_> = all_events(store)
        .into_iter()
        .filter(|e| e.position > known_end)
        .collect();
    if events.len() as i64 != end - known_end {
        return Err(format!("positions {known_end}..{end} are not contiguous"));
    }
    let times = |from: i64, to: i64| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e.position > from && e.position <= to)
            .map(|e| e.occurred_at.clone())
            .collect()
    };
    let mut from = known_end;
    for c in commits {
        let t = times(from, c.position);
        if t.len() != 1 {
            return Err(format!(
                "the line reporting position {} covers positions {}..={} with {} business times: not one transaction",
                c.position,
                from + 1,
                c.position,
                t.len()
            ));
        }
        from = c.position;
    }
    let tail = times(from, end);
    if tail.len() > 1 {
        return Err(format!(
            "{} transactions after the last reported position {from} (the log ends at {end}): the writer committed more than it reported",
            tail.len()
        ));
    }
    Ok(())
}

#[test]
fn the_unreported_tail_check_fails_on_lost_reports() {
    // The check above on a log of three one-event transactions: all reported is fine, the last
    // unreported is fine, two unreported or two in one line are not.
    let config = leadflow_testkit::config();
    let mut store = memory_store();
    let t0 = leadflow_testkit::t0();
    let mut commits = Vec::new();
    for n in 0..3u64 {
        let at = t0 + chrono::Duration::milliseconds(n as i64 + 1);
        let e = exec_as(&mut store, &config, ivanov(), at, &numbered_lead(n));
        let position = e.appended.unwrap().last_position;
        commits.push(Commit {
            position,
            hash: String::new(),
            streams: vec![],
        });
    }
    let ok = |c: &[Commit]| assert_at_most_one_unreported_transaction(&store, 0, c, 3);
    assert_eq!(ok(&commits), Ok(()));
    assert_eq!(ok(&commits[..2]), Ok(()));
    assert!(
        ok(&commits[..1])
            .unwrap_err()
            .contains("2 transactions after")
    );
    assert!(
        ok(&[commits[0].clone(), commits[2].clone()])
            .unwrap_err()
            .contains("not one transaction")
    );
}

#[test]
fn a_writer_killed_at_random_moments_never_loses_a_reported_commit() {
    let seed: u64 = std::env::var("LEADFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1EAD_F10E);
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut reported: Vec<Commit> = Vec::new();
    let mut kills = Vec::new();
    // Where the log ended when it was last checked.
    let mut known_end = 0;
    for run in 0..6 {
        // The first run must leave something behind so the later ones start from a non-empty
        // log; later runs may also die before their first commit (during open or recovery).
        let kill_after = if run == 0 {
            rng.range(5, 25)
        } else {
            rng.range(0, 30)
        } as usize;
        kills.push(kill_after);
        let child = spawn_writer(&db, rng.next_u64());
        let (commits, status) = kill_after_commits(child, kill_after);
        assert_killed(status);
        for pair in commits.windows(2) {
            assert!(
                pair[0].position < pair[1].position,
                "seed {seed}, run {run}: reported positions go backwards: {pair:?}"
            );
        }
        if let (Some(last), Some(first)) = (reported.last(), commits.first()) {
            assert!(
                first.position > last.position,
                "seed {seed}, run {run}: a new run overwrote position {}",
                first.position
            );
        }
        reported.extend(commits.iter().cloned());

        let mut store = Store::open(
            &db,
            &Options {
                create: false,
                ..Options::default()
            },
        )
        .unwrap_or_else(|e| panic!("seed {seed}, run {run}: reopening failed: {e}"));
        assert_log_is_sound(&mut store);
        assert_eq!(
            store.checkpoint().unwrap(),
            store.last_position().unwrap(),
            "seed {seed}, run {run}: projections are not at the head after reopening"
        );
        assert_reported_commits_survive(&store, &reported);
        let end = store.last_position().unwrap();
        assert_at_most_one_unreported_transaction(&store, known_end, &commits, end)
            .unwrap_or_else(|e| panic!("seed {seed}, run {run}: {e}"));
        known_end = end;
    }
    assert!(
        reported.len() >= 5,
        "seed {seed}: kills {kills:?} left too few commits to mean anything"
    );
}

#[test]
fn commit_lines_parse_into_positions_hashes_and_stream_versions() {
    let c = parse("committed 12 abcd lead-3@2 lead-4@1\n");
    assert_eq!(c.position, 12);
    assert_eq!(c.hash, "abcd");
    assert_eq!(
        c.streams,
        vec![
            ("lead-3".parse().unwrap(), 2),
            ("lead-4".parse().unwrap(), 1)
        ]
    );
}
