//! `command`: an external robot. A program gets the rule's context as JSON on stdin and
//! answers with JSON actions on stdout, which the built-in robots carry out.
//!
//! It never runs inside a write transaction. The rule's transaction records a
//! `robot.requested` event (the program, its arguments, its input, an idempotency key); after
//! that commits, the runtime runs the program ([`Call::call`]) and appends a
//! `robot.completed` event with its answer, error or timeout; processing that event applies
//! the answer's actions as the rule's effects ([`Call::apply`]), exactly once. A request
//! without an outcome (a crash while the program ran) is run again, with the same input and
//! key. Replay never runs it.
//!
//! The program runs directly (no shell), in its own process group, with a time limit; its
//! output is read up to [`OUTPUT_LIMIT`] per stream. Whatever goes wrong — it cannot start,
//! exits non-zero, runs too long, says too much, prints something that is not the expected
//! JSON, asks for an unknown action — is recorded as an incident that says so (rolling back
//! the actions already taken).

use crate::builtin::{Notify, RecordIncident, SetField, SetStage, text};
use crate::context::{Ctx, RobotError};
use crate::{Params, Robot};
use leadflow_engine::event::{Event, RobotCompleted, RobotOutcome, RobotRequested};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The most a program may print on stdout or on stderr.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// How long a program may run when the call gives no `timeout`.
pub const DEFAULT_TIMEOUT: &str = "10s";

/// An external robot's side that runs after the commit.
pub trait Call: Send + Sync {
    /// Carries out a request, outside any transaction; how it ended (`request` is left 0
    /// for the caller to fill in).
    fn call(&self, request: &RobotRequested) -> RobotCompleted;

    /// The longest a call of this request may take: after it (and a margin) a request without
    /// an outcome is taken for abandoned by its process.
    fn time_limit(&self, request: &RobotRequested) -> std::time::Duration;

    /// Applies an outcome as the rule's effects, in the transaction that processes it; an
    /// error is recorded as an incident.
    fn apply(
        &self,
        ctx: &mut Ctx<'_, '_>,
        request: &RobotRequested,
        completed: &RobotCompleted,
    ) -> Result<(), RobotError>;
}

/// `command`: runs `program` with `args`, the context on stdin, actions from stdout.
///
/// Stdin gets `{"rule": ..., "key": ..., "trigger": {"position", "type", "stream",
/// "payload"}, "vars": {...}}` (`vars` as conditions see them when the rule fires; `key` is
/// the same on every attempt, and also in the environment as `LEADFLOW_IDEMPOTENCY_KEY`).
/// Stdout must be one JSON object `{"actions": [...]}` whose actions, each an object with one
/// key, run in order:
/// `{"set_field": {"field", "value"}}`, `{"set_stage": {"stage", "reason"}}`,
/// `{"notify": {"to", "text", ...}}` (the `notify` robot's parameters) and
/// `{"incident": {"kind", "text"}}`. Texts are templates like the rule files' (`{{` for a
/// brace).
pub struct External;

/// A request's program, arguments and time limit, checked.
struct Invocation {
    program: String,
    args: Vec<String>,
    limit: Duration,
}

impl Invocation {
    fn of(params: &Params) -> Result<Invocation, RobotError> {
        let program = crate::builtin::required(params, "program")?.to_owned();
        let args: Vec<String> = match params.get("args") {
            None => vec![],
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(other) => {
                return Err(RobotError::Failed(format!(
                    "command: 'args' must be a list of words, not {other}"
                )));
            }
        };
        let limit_text = text(params, "timeout").unwrap_or(DEFAULT_TIMEOUT);
        let limit = leadflow_engine::config::parse_duration(limit_text)
            .ok()
            .and_then(|d| d.to_std().ok())
            .ok_or_else(|| {
                RobotError::Failed(format!(
                    "command: bad timeout '{limit_text}': write it like 10s or 1m"
                ))
            })?;
        Ok(Invocation {
            program,
            args,
            limit,
        })
    }

    fn shown(&self) -> String {
        shown(&self.program, &self.args)
    }
}

impl Robot for External {
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError> {
        // Checked now, so a bad call is an incident of the rule's own transaction.
        Invocation::of(params)?;
        let payload = serde_json::from_str::<Value>(&ctx.trigger.payload)
            .unwrap_or_else(|_| Value::String(ctx.trigger.payload.clone()));
        // Unique per request: the trigger, the rule, and the position the request will get.
        let key = format!(
            "{}-{}-{}",
            ctx.trigger.position,
            ctx.rule,
            ctx.ws.head_position() + 1
        );
        let input = json!({
            "rule": ctx.rule,
            "key": key,
            "trigger": {
                "position": ctx.trigger.position,
                "type": ctx.trigger.event_type,
                "stream": ctx.trigger.stream.to_string(),
                "payload": payload,
            },
            "vars": Value::Object(ctx.vars(leadflow_engine::react::Reads::All)?),
        });
        let request = RobotRequested {
            robot: "command".into(),
            rule: ctx.rule.to_owned(),
            ruleset: ctx.ruleset.to_owned(),
            params: params.clone(),
            input,
            key,
            then: ctx.then.to_vec(),
            survive_move: ctx.survive_move,
        };
        ctx.append_here(&[Event::RobotRequested(request)])
    }
}

impl Call for External {
    fn time_limit(&self, request: &RobotRequested) -> std::time::Duration {
        Invocation::of(&request.params).map_or(Duration::ZERO, |i| i.limit)
    }

    fn call(&self, request: &RobotRequested) -> RobotCompleted {
        let failed = |outcome, m: String| RobotCompleted {
            request: 0,
            outcome,
            actions: vec![],
            error: Some(m),
        };
        let inv = match Invocation::of(&request.params) {
            Ok(i) => i,
            Err(e) => return failed(RobotOutcome::Failed, e.to_string()),
        };
        let shown = inv.shown();
        let input = request.input.to_string().into_bytes();
        match run(&inv.program, &inv.args, &request.key, input, inv.limit) {
            Err(Ran::TimedOut(m)) => {
                failed(RobotOutcome::TimedOut, format!("command {shown}: {m}"))
            }
            Err(Ran::Failed(m)) => failed(RobotOutcome::Failed, format!("command {shown}: {m}")),
            Ok(stdout) => match parse(&stdout) {
                Ok(actions) => RobotCompleted {
                    request: 0,
                    outcome: RobotOutcome::Answered,
                    actions,
                    error: None,
                },
                Err(m) => failed(RobotOutcome::Failed, format!("command {shown}: {m}")),
            },
        }
    }

    fn apply(
        &self,
        ctx: &mut Ctx<'_, '_>,
        request: &RobotRequested,
        completed: &RobotCompleted,
    ) -> Result<(), RobotError> {
        if completed.outcome != RobotOutcome::Answered {
            return Err(RobotError::Failed(
                completed
                    .error
                    .clone()
                    .unwrap_or_else(|| "the command failed".into()),
            ));
        }
        let shown = Invocation::of(&request.params)
            .map(|i| i.shown())
            .unwrap_or_else(|_| "'?'".into());
        let actions = named_actions(&completed.actions)
            .map_err(|m| RobotError::Failed(format!("command {shown}: {m}")))?;
        for (i, (name, params)) in actions.iter().enumerate() {
            perform(ctx, name, params).map_err(|e| match e {
                RobotError::Store(s) => RobotError::Store(s),
                other => RobotError::Failed(format!(
                    "command {shown}: action {} ({name}): {other}",
                    i + 1
                )),
            })?;
        }
        Ok(())
    }
}

/// The command line as a message shows it, shortened.
fn shown(program: &str, args: &[String]) -> String {
    let mut s = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if s.chars().count() > 80 {
        s = s.chars().take(77).collect::<String>() + "...";
    }
    format!("'{s}'")
}

/// What one stream of the child gave: its bytes (at most the limit) and whether there was
/// more.
type Output = std::io::Result<(Vec<u8>, bool)>;

/// Reads a pipe to its end in a thread, keeping the first [`OUTPUT_LIMIT`] bytes.
fn drain(pipe: impl Read + Send + 'static) -> mpsc::Receiver<Output> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut limited = pipe.take(OUTPUT_LIMIT as u64 + 1);
        let result = limited.read_to_end(&mut kept).and_then(|_| {
            let over = kept.len() > OUTPUT_LIMIT;
            kept.truncate(OUTPUT_LIMIT);
            // Keep reading (and dropping) so the child never blocks on a full pipe.
            std::io::copy(&mut limited.into_inner(), &mut std::io::sink())?;
            Ok((kept, over))
        });
        let _ = tx.send(result);
    });
    rx
}

/// Why a program gave no answer.
enum Ran {
    /// It did not finish in time (and was killed).
    TimedOut(String),
    /// Anything else.
    Failed(String),
}

impl From<String> for Ran {
    fn from(m: String) -> Self {
        Ran::Failed(m)
    }
}

/// Runs the program; its stdout, or what went wrong.
fn run(
    program: &str,
    args: &[String],
    key: &str,
    input: Vec<u8>,
    limit: Duration,
) -> Result<Vec<u8>, Ran> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LEADFLOW_IDEMPOTENCY_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Ran::Failed(format!("cannot start: {e}")))?;
    let deadline = Instant::now() + limit;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that does not read its input must not block us: write from a thread, and
        // a closed pipe is its business.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let out = drain(child.stdout.take().expect("stdout is piped"));
    let err = drain(child.stderr.take().expect("stderr is piped"));
    let status = match wait(&mut child, deadline) {
        Some(s) => s,
        None => {
            kill(&mut child);
            return Err(Ran::TimedOut(format!(
                "did not finish within {}; it was killed",
                human(limit)
            )));
        }
    };
    // The program is done, but something it started may still hold its output open.
    let collect = |rx: mpsc::Receiver<Output>, what: &str| -> Result<(Vec<u8>, bool), String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.max(Duration::from_millis(100))) {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(format!("cannot read its {what}: {e}")),
            Err(_) => Err(format!(
                "its {what} stayed open after it exited (a background process?) past the {} limit",
                human(limit)
            )),
        }
    };
    let stderr = match collect(err, "stderr") {
        Ok((e, _)) => e,
        Err(m) => {
            kill(&mut child);
            return Err(Ran::TimedOut(m));
        }
    };
    let (stdout, over) = match collect(out, "stdout") {
        Ok(o) => o,
        Err(m) => {
            kill(&mut child);
            return Err(Ran::TimedOut(m));
        }
    };
    if !status.success() {
        let tail = tail(&stderr);
        return Err(Ran::Failed(if tail.is_empty() {
            format!("failed ({status})")
        } else {
            format!("failed ({status}): {tail}")
        }));
    }
    if over {
        return Err(Ran::Failed(format!(
            "printed more than {} KiB on stdout",
            OUTPUT_LIMIT / 1024
        )));
    }
    Ok(stdout)
}

/// Waits for the child until the deadline; `None` if it is still running then.
fn wait(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Kills the child and, where possible, everything it started (its process group), then
/// reaps it.
fn kill(child: &mut Child) {
    #[cfg(unix)]
    {
        // Safe Rust has no killpg; the `kill` utility does it. Best effort: if it is missing,
        // only the direct child dies below, and its leftovers end on their own.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `10s`, `1.5s`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The end of stderr, for a message: the last 500 characters, on one line.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let chars: Vec<char> = text.chars().collect();
    let start = chars.len().saturating_sub(500);
    let s: String = chars[start..].iter().collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The actions a program's stdout asks for, checked for their shape (each an object with one
/// key whose value is an object).
fn parse(stdout: &[u8]) -> Result<Vec<Value>, String> {
    let expected = "expected {\"actions\": [...]}";
    let text =
        std::str::from_utf8(stdout).map_err(|_| format!("its output is not UTF-8; {expected}"))?;
    if text.trim().is_empty() {
        return Err(format!("printed nothing; {expected}"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let start: String = text.trim().chars().take(60).collect();
        format!("its output is not JSON ({e}): '{start}'; {expected}")
    })?;
    let Value::Object(mut top) = value else {
        return Err(format!("its output is not a JSON object; {expected}"));
    };
    let actions = match top.remove("actions") {
        None => return Err(format!("its output has no \"actions\"; {expected}")),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(format!("\"actions\" is not a list; {expected}")),
    };
    named_actions(&actions)?;
    Ok(actions)
}

/// Stored actions as (name, parameters).
fn named_actions(actions: &[Value]) -> Result<Vec<(String, crate::Params)>, String> {
    actions
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let n = i + 1;
            let Value::Object(map) = a.clone() else {
                return Err(format!(
                    "action {n} is not an object like {{\"set_field\": {{...}}}}"
                ));
            };
            if map.len() != 1 {
                return Err(format!(
                    "action {n} must have exactly one key (the action), it has {}",
                    map.len()
                ));
            }
            let (name, params) = map.into_iter().next().expect("one key");
            let Value::Object(params) = params else {
                return Err(format!(
                    "action {n} ({name}): its parameters must be an object"
                ));
            };
            Ok((name, params.into_iter().collect()))
        })
        .collect()
}

/// Carries out one action through its built-in robot.
fn perform(ctx: &mut Ctx<'_, '_>, name: &str, params: &crate::Params) -> Result<(), RobotError> {
    let need = |key: &str, what: &str| -> Result<(), RobotError> {
        match params.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(()),
            _ => Err(RobotError::Failed(format!("'{key}' must be {what}"))),
        }
    };
    match name {
        "set_field" => {
            need("field", "a field name")?;
            if !params.contains_key("value") {
                return Err(RobotError::Failed("'value' is missing".into()));
            }
            SetField.run(ctx, params)
        }
        "set_stage" => {
            need("stage", "a stage id")?;
            SetStage.run(ctx, params)
        }
        "notify" => {
            need("text", "the message")?;
            match text(params, "to") {
                Some("responsible" | "manager") => {}
                Some("team") => match text(params, "team") {
                    Some(t) if ctx.config.teams.contains_key(&t.into()) => {}
                    _ => {
                        return Err(RobotError::Failed(
                            "to = \"team\" needs a known 'team'".into(),
                        ));
                    }
                },
                Some("employee") => match text(params, "employee") {
                    Some(e) if ctx.config.employee(&e.into()).is_some() => {}
                    _ => {
                        return Err(RobotError::Failed(
                            "to = \"employee\" needs a known 'employee'".into(),
                        ));
                    }
                },
                _ => {
                    return Err(RobotError::Failed(
                        "'to' must be responsible, manager, team or employee".into(),
                    ));
                }
            }
            match text(params, "channel") {
                None | Some("inbox" | "webhook" | "email") => {}
                Some(c) => {
                    return Err(RobotError::Failed(format!(
                        "unknown channel '{c}': expected inbox, webhook or email"
                    )));
                }
            }
            Notify.run(ctx, params)
        }
        "incident" => {
            need("kind", "the incident's kind")?;
            RecordIncident.run(ctx, params)
        }
        other => Err(RobotError::Failed(format!(
            "unknown action '{other}': expected set_field, set_stage, notify or incident"
        ))),
    }
}
