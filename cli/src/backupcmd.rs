//! `backup`, `restore`, `export` and `import-log`: copies of the database and of its log, and
//! the way back. The store's `backup` module does the copying, checking and swapping; this
//! decides what to refuse (a backup that does not verify, one older than a kept head) and says
//! what happened.
//!
//! `restore` and `import-log` open no [`Ctx`] store: they must be the only connection of this
//! process to the database they replace (see `Staged::install`), and must work when the
//! current database does not open at all.

use crate::cli::{BackupArgs, Cli, Command, ExportArgs, ImportLogArgs, RestoreArgs};
use crate::ctx::{self, Access, Ctx};
use crate::error::CliError;
use crate::logcmd::{parse_head, progress};
use crate::output::json_line;
use leadflow_store::{BackupError, Checked, Hash, Options, Staged, Store, to_hex};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::Path;

/// Runs one of the four commands.
pub(crate) fn run(cli: &Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Backup(a) => backup(cli, a),
        Command::Restore(a) => restore(cli, a),
        Command::Export(a) => export(cli, a),
        Command::ImportLog(a) => import_log(cli, a),
        _ => unreachable!("main dispatches only the backup commands here"),
    }
}

/// `P:HASH`, or `empty` for an empty log.
fn shown(head: Option<(i64, Hash)>) -> String {
    head.map_or_else(|| "empty".into(), |(p, h)| format!("{p}:{}", to_hex(&h)))
}

/// One message per error; `file` is the export or backup the command reads.
fn failed(e: BackupError, file: &Path) -> CliError {
    match e {
        BackupError::Store(leadflow_store::Error::Missing { path }) if path == file => {
            CliError::Usage(format!("no backup at {}", path.display()))
        }
        BackupError::Store(e) => CliError::Store(e),
        BackupError::Io { path, source } => CliError::io(path, source),
        BackupError::Line { line, why } => CliError::Import {
            file: file.display().to_string(),
            line,
            message: why,
        },
        other @ (BackupError::Exists { .. } | BackupError::NotEmpty { .. }) => {
            CliError::Usage(other.to_string())
        }
        other @ (BackupError::Busy { .. }
        | BackupError::InUse { .. }
        | BackupError::Changed { .. }
        | BackupError::Broken { .. }) => CliError::Refused(other.to_string()),
    }
}

fn backup(cli: &Cli, a: &BackupArgs) -> Result<(), CliError> {
    let ctx = Ctx::open(cli, Access::Log)?;
    let report = ctx
        .store
        .backup_to(&a.file)
        .map_err(|e| failed(e, &a.file))?;
    let head = shown(report.head);
    let problem = report
        .problem
        .as_ref()
        .map(|p| format!("chain: broken at position {}: {}", p.position, p.why));
    if ctx.json {
        json_line(&json!({
            "backup": a.file.display().to_string(),
            "events": report.events,
            "head": report.head.map(|_| head.clone()),
            "ok": problem.is_none(),
            "problems": problem.iter().collect::<Vec<_>>(),
        }));
    } else {
        outln!("backed up {} events to {}", report.events, a.file.display());
        outln!("head: {head}");
        if report.head.is_some() && problem.is_none() {
            outln!(
                "      (keep this elsewhere: `leadflow verify --head {head}` and `leadflow restore --head {head}` refuse a log that does not reach it)"
            );
        }
    }
    match problem {
        None => Ok(()),
        Some(p) => {
            errln!("{p}");
            Err(CliError::Verify(format!(
                "{} was written, but the log it copies is broken: `leadflow restore` will refuse it",
                a.file.display()
            )))
        }
    }
}

/// The current database's head, if there is a database: `Ok(None)` when there is none (or it
/// is empty), `Err` with why it cannot be read.
fn current_head(target: &Path) -> Result<Option<(i64, Hash)>, String> {
    if !std::fs::metadata(target).is_ok_and(|m| m.len() > 0) {
        return Ok(None);
    }
    let store = Store::open_read_log(target, &Options::default()).map_err(|e| e.to_string())?;
    store.head().map_err(|e| e.to_string())
}

/// Refuses a staged database that does not verify, printing each problem.
fn refuse_unverified(checked: &Checked, what: &str) -> Result<(), CliError> {
    let problems = checked.problems();
    if problems.is_empty() {
        return Ok(());
    }
    for p in &problems {
        errln!("{p}");
    }
    Err(CliError::Verify(format!(
        "{what} does not verify ({} problem{}); nothing was replaced",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )))
}

fn check(staged: &mut Staged) -> Result<Checked, CliError> {
    let total = staged.head()?.map_or(0, |(p, _)| p);
    let bar = progress(total as u64, "verify");
    let checked = staged.check(&mut |p| bar.set_position(p as u64))?;
    bar.finish_and_clear();
    Ok(checked)
}

fn restore(cli: &Cli, a: &RestoreArgs) -> Result<(), CliError> {
    let config_path = ctx::find_config(cli.config.as_deref())?;
    let target = ctx::db_path(cli, &config_path);
    let given = a.head.as_deref().map(parse_head).transpose()?;
    let current = match current_head(&target) {
        Ok(head) => head,
        Err(why) if a.force => {
            errln!("warning: the current database cannot be read ({why}); replacing it (--force)");
            None
        }
        Err(why) => {
            return Err(CliError::Refused(format!(
                "the current database cannot be read ({why}), so its head cannot be compared with the backup's; pass --force to replace it anyway — nothing was replaced"
            )));
        }
    };
    let mut staged = Staged::restore(&a.file, &target).map_err(|e| failed(e, &a.file))?;
    let checked = check(&mut staged)?;
    refuse_unverified(&checked, &format!("the backup {}", a.file.display()))?;
    let head = checked.chain.head;
    let reached = head.map_or(0, |(p, _)| p);
    let mut older = Vec::new();
    for (what, kept) in [("the current database", current), ("--head", given)] {
        let Some((position, hash)) = kept else {
            continue;
        };
        match staged.hash_at(position)? {
            None => older.push(format!(
                "the backup ends at position {reached}, before {what}'s head at position {position}: restoring it would lose {} events",
                position - reached
            )),
            Some(h) if h != hash => older.push(format!(
                "the backup's event at position {position} differs from {what}'s head there: it is not a copy of this history"
            )),
            Some(_) => {}
        }
    }
    if !older.is_empty() {
        if !a.force {
            for o in &older {
                errln!("{o}");
            }
            return Err(CliError::Refused(format!(
                "refusing to restore {}: pass --force to replace the database with it anyway; nothing was replaced",
                a.file.display()
            )));
        }
        for o in &older {
            errln!("warning: {o} (--force)");
        }
    }
    // The database as it was when its head was read: a process that wrote meanwhile makes
    // the restore refuse (it would lose those writes without the checks above seeing them).
    staged.install(current).map_err(|e| failed(e, &a.file))?;
    if cli.json {
        json_line(&json!({
            "restored": a.file.display().to_string(),
            "into": target.display().to_string(),
            "events": checked.chain.events,
            "head": head.map(|_| shown(head)),
            "forced": !older.is_empty(),
        }));
    } else {
        outln!(
            "restored {} into {}: {} events; chain ok, projections equal a fresh replay",
            a.file.display(),
            target.display(),
            checked.chain.events
        );
        outln!("head: {}", shown(head));
    }
    Ok(())
}

fn export(cli: &Cli, a: &ExportArgs) -> Result<(), CliError> {
    let ctx = Ctx::open(cli, Access::Log)?;
    let total = ctx.store.last_position()?;
    let bar = progress(total as u64, "export");
    let mut tick = |p: i64| bar.set_position(p as u64);
    let head = match &a.out {
        None => ctx
            .store
            .export_log(
                &mut |line| {
                    outln!("{line}");
                    Ok(())
                },
                &mut tick,
            )
            .map_err(|e| exported(e, Path::new("stdout")))?,
        Some(out) => {
            let tmp = out.with_file_name(format!(
                ".{}.export-{}.tmp",
                out.file_name()
                    .map_or_else(|| "export".into(), |n| n.to_string_lossy()),
                std::process::id()
            ));
            let written = write_export(&ctx.store, &tmp, out, &mut tick);
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written?
        }
    };
    bar.finish_and_clear();
    let events = head.map_or(0, |(p, _)| p);
    if cli.json && a.out.is_some() {
        json_line(&json!({"events": events, "head": head.map(|_| shown(head))}));
    } else if let Some(out) = &a.out {
        outln!("exported {events} events to {}", out.display());
        outln!("head: {}", shown(head));
    } else {
        errln!("exported {events} events; head: {}", shown(head));
    }
    Ok(())
}

/// Writes the export to `tmp`, fsyncs it, renames it to `out` and fsyncs the folder.
fn write_export(
    store: &Store,
    tmp: &Path,
    out: &Path,
    tick: &mut dyn FnMut(i64),
) -> Result<Option<(i64, Hash)>, CliError> {
    // Owner-only: an export holds the webhook endpoints' signing secrets.
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let file = open.open(tmp).map_err(|e| CliError::io(tmp, e))?;
    let mut w = std::io::BufWriter::new(file);
    let head = store
        .export_log(&mut |line| writeln!(w, "{line}"), tick)
        .map_err(|e| exported(e, out))?;
    let file = w
        .into_inner()
        .map_err(|e| CliError::io(out, e.into_error()))?;
    file.sync_all().map_err(|e| CliError::io(out, e))?;
    std::fs::rename(tmp, out).map_err(|e| CliError::io(out, e))?;
    leadflow_store::sync_folder_of(out).map_err(|e| CliError::io(out, e))?;
    Ok(head)
}

fn exported(e: leadflow_store::ExportError, out: &Path) -> CliError {
    match e {
        leadflow_store::ExportError::Backup(e) => failed(e, out),
        leadflow_store::ExportError::Sink(e) => CliError::io(out, e),
    }
}

fn import_log(cli: &Cli, a: &ImportLogArgs) -> Result<(), CliError> {
    let config_path = ctx::find_config(cli.config.as_deref())?;
    let target = ctx::db_path(cli, &config_path);
    let file = std::fs::File::open(&a.file).map_err(|e| CliError::io(&a.file, e))?;
    let size = file.metadata().map_or(0, |m| m.len());
    let mut staged = Staged::empty(&target).map_err(|e| failed(e, &a.file))?;
    let bar = progress(size / 400, "import");
    let mut lines = std::io::BufReader::new(file).lines();
    let head = staged
        .import(&mut lines, &mut |p| bar.set_position(p as u64))
        .map_err(|e| failed(e, &a.file))?;
    bar.finish_and_clear();
    let checked = check(&mut staged)?;
    refuse_unverified(&checked, &format!("the import of {}", a.file.display()))?;
    // The target held no events when the import began, and still holds none.
    staged.install(None).map_err(|e| failed(e, &a.file))?;
    let events = head.map_or(0, |(p, _)| p);
    if cli.json {
        json_line(&json!({
            "imported": a.file.display().to_string(),
            "into": target.display().to_string(),
            "events": events,
            "head": head.map(|_| shown(head)),
        }));
    } else {
        outln!(
            "imported {events} events from {} into {}; chain ok, projections equal a fresh replay",
            a.file.display(),
            target.display()
        );
        outln!("head: {}", shown(head));
    }
    Ok(())
}
