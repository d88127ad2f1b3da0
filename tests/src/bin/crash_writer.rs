//! The child process of the crash test: it writes to a leadflow database as fast as it can until
//! it is killed, and reports every transaction the moment it has committed.
//!
//! Usage: `crash_writer DATABASE SEED [MAX_COMMITS]`.
//!
//! The database is opened with `synchronous=FULL`. Each transaction is one of: a single lead
//! created, a lead assigned, a lead moved to `in_work`, an import batch of many leads in one
//! `write`, or a mixed batch (create + assign + move of one lead and a comment on another). After
//! each commit one line goes to stdout, and stdout is flushed before the next transaction starts:
//!
//! ```text
//! committed <last position> <head hash hex> <stream>@<version> [<stream>@<version> …]
//! ```
//!
//! where each `<stream>@<version>` is the version a stream reached in that transaction. Anything
//! unexpected (a rejection, an I/O error) ends the process with status 2 and a message on
//! stderr, so the parent can tell a crash it caused from one it did not.

use leadflow_engine::command::NewLead;
use leadflow_engine::{Command, Config, StreamId};
use leadflow_store::{Error, Executed, Options, Store, Synchronous, Tx, to_hex};
use leadflow_testkit::{config, ivanov, meta, t0};
use leadflow_tests::Rng;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// What the writer remembers about a lead it created in this run.
struct Lead {
    id: i64,
    responsible: Option<&'static str>,
    in_work: bool,
}

const FIRST_LINE: [&str; 3] = ["ivanov", "petrova", "sidorov"];

#[allow(clippy::print_stderr)] // the child's usage and failures go to stderr, for the parent
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: crash_writer DATABASE SEED [MAX_COMMITS]");
        return ExitCode::from(2);
    };
    let max_commits: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5000);
    match write_until_killed(path, seed, max_commits) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_writer: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why the writer stopped on its own.
#[derive(Debug)]
enum Failure {
    Store(Error),
    Report(std::io::Error),
    NoOp(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Store(e) => write!(f, "{e}"),
            Failure::Report(e) => write!(f, "cannot report a commit on stdout: {e}"),
            Failure::NoOp(what) => write!(f, "{what} appended nothing"),
        }
    }
}

fn write_until_killed(path: &str, seed: u64, max_commits: u64) -> Result<(), Failure> {
    let options = Options {
        synchronous: Synchronous::Full,
        ..Options::default()
    };
    let mut store = Store::open(path, &options)?;
    let config = config();
    let mut rng = Rng::new(seed);
    let mut leads: Vec<Lead> = Vec::new();
    let mut phone = seed % 1_000_000;
    // Business time moves on from run to run, as it would in production.
    let mut at = t0() + chrono::Duration::seconds(store.last_position()?);
    let stdout = std::io::stdout();
    for _ in 0..max_commits {
        at += chrono::Duration::milliseconds(rng.range(1, 90_000) as i64);
        let mut reached: BTreeMap<StreamId, i64> = BTreeMap::new();
        let choice = if leads.is_empty() { 0 } else { rng.range(0, 9) };
        match choice {
            // An import batch: many leads, one transaction.
            0..=2 => {
                let n = if rng.range(0, 3) == 0 {
                    rng.range(50, 400)
                } else {
                    rng.range(1, 20)
                };
                let created = store.write(at, |tx| {
                    let mut out = Vec::new();
                    for _ in 0..n {
                        phone += 1;
                        out.push(exec(tx, &config, &lead_command(phone), at)?);
                    }
                    Ok::<_, Error>(out)
                })?;
                for e in created {
                    record(&mut reached, &e)?;
                    leads.push(Lead {
                        id: e.stream.id,
                        responsible: None,
                        in_work: false,
                    });
                }
            }
            // Assign a lead to someone else on the first line.
            3..=5 => {
                let i = rng.range(0, leads.len() as u64 - 1) as usize;
                let lead = &mut leads[i];
                let to = *rng.pick(&FIRST_LINE);
                let to = if Some(to) == lead.responsible {
                    FIRST_LINE[(FIRST_LINE.iter().position(|e| *e == to).unwrap() + 1) % 3]
                } else {
                    to
                };
                let cmd = Command::AssignLead {
                    id: lead.id,
                    to: to.into(),
                };
                let e = store.write(at, |tx| exec(tx, &config, &cmd, at))?;
                record(&mut reached, &e)?;
                lead.responsible = Some(to);
            }
            // Take an assigned lead in work (or, if none is left, create one).
            6..=7 => {
                let ready = leads
                    .iter()
                    .position(|l| l.responsible.is_some() && !l.in_work);
                if let Some(i) = ready {
                    let cmd = Command::MoveLead {
                        id: leads[i].id,
                        stage: "in_work".into(),
                        reason: None,
                    };
                    let e = store.write(at, |tx| exec(tx, &config, &cmd, at))?;
                    record(&mut reached, &e)?;
                    leads[i].in_work = true;
                } else {
                    phone += 1;
                    let e = store.write(at, |tx| exec(tx, &config, &lead_command(phone), at))?;
                    record(&mut reached, &e)?;
                    leads.push(Lead {
                        id: e.stream.id,
                        responsible: None,
                        in_work: false,
                    });
                }
            }
            // A mixed batch: a lead created, assigned and taken in work, and a comment on an
            // older lead, all in one transaction.
            _ => {
                phone += 1;
                let other = leads[rng.range(0, leads.len() as u64 - 1) as usize].id;
                let comment = format!("called back at {at}");
                let cmds = |id: i64| {
                    vec![
                        Command::AssignLead {
                            id,
                            to: "petrova".into(),
                        },
                        Command::MoveLead {
                            id,
                            stage: "in_work".into(),
                            reason: None,
                        },
                        Command::UpdateLead {
                            id: other,
                            changes: [("comment".to_owned(), comment.clone().into())]
                                .into_iter()
                                .collect(),
                        },
                    ]
                };
                let executed = store.write(at, |tx| {
                    let created = exec(tx, &config, &lead_command(phone), at)?;
                    let mut out = vec![created.clone()];
                    for cmd in cmds(created.stream.id) {
                        out.push(exec(tx, &config, &cmd, at)?);
                    }
                    Ok::<_, Error>(out)
                })?;
                for e in &executed {
                    record(&mut reached, e)?;
                }
                leads.push(Lead {
                    id: executed[0].stream.id,
                    responsible: Some("petrova"),
                    in_work: true,
                });
            }
        }
        let Some((position, hash)) = store.head()? else {
            return Err(Failure::NoOp("a whole transaction".into()));
        };
        let mut line = format!("committed {position} {}", to_hex(&hash));
        for (stream, version) in &reached {
            line += &format!(" {stream}@{version}");
        }
        let mut out = stdout.lock();
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(Failure::Report)?;
    }
    Ok(())
}

fn lead_command(n: u64) -> Command {
    Command::CreateLead(NewLead {
        name: Some(format!("Imported {n}")),
        phones: vec![format!("+7 913 {:07}", n % 10_000_000)],
        source: Some("import".into()),
        ..Default::default()
    })
}

fn exec(
    tx: &mut Tx<'_>,
    config: &Config,
    cmd: &Command,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<Executed, Error> {
    tx.execute(config, cmd, &meta(at, ivanov()))
}

/// Notes the version a command took its stream to; every command the writer sends must append.
fn record(reached: &mut BTreeMap<StreamId, i64>, e: &Executed) -> Result<(), Failure> {
    let a = e
        .appended
        .as_ref()
        .ok_or_else(|| Failure::NoOp(format!("a command on {}", e.stream)))?;
    let v = reached.entry(a.stream).or_default();
    *v = (*v).max(a.version);
    Ok(())
}
