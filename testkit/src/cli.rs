//! The harness the binary's tests share: a temporary folder `leadflow init` has set up, and
//! the real `leadflow` binary run in it with a fixed clock ([`NOW`]) and none of the caller's
//! `LEADFLOW_*` settings.
//!
//! Each test file uses a subset of it; what only one file needs stays in that file, as an
//! `impl Env` block of its own (through an extension trait) or as free functions taking
//! `&Env`.
//!
//! The binary is found through `CARGO_BIN_EXE_leadflow`, which cargo sets for the
//! `leadflow-cli` package's integration tests and benches while they run ([`bin`]).

use crate::Db;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use crate::time::NOW;

/// The `leadflow` binary cargo built for the running test (`CARGO_BIN_EXE_leadflow`, set at
/// run time for the integration tests and benches of the `leadflow-cli` package).
pub fn bin() -> PathBuf {
    std::env::var_os("CARGO_BIN_EXE_leadflow")
        .map(PathBuf::from)
        .expect("CARGO_BIN_EXE_leadflow is set: run the binary's tests with `cargo test -p leadflow-cli`")
}

/// A temporary folder with the default configuration, an empty database and `init`'s `rules/`.
pub struct Env {
    dir: tempfile::TempDir,
    rust_log: &'static str,
    remove_rules_var: bool,
}

/// How an [`Env`] runs the binary, for the few files that differ from [`Env::new`].
pub struct EnvBuilder {
    rust_log: &'static str,
    remove_rules_var: bool,
}

impl EnvBuilder {
    /// `RUST_LOG` for every command (default `off`).
    pub fn rust_log(mut self, level: &'static str) -> EnvBuilder {
        self.rust_log = level;
        self
    }

    /// Leaves `LEADFLOW_RULES` as the caller's environment has it instead of removing it.
    pub fn keep_rules_var(mut self) -> EnvBuilder {
        self.remove_rules_var = false;
        self
    }

    /// Runs `leadflow init` in a new temporary folder.
    pub fn init(self) -> Env {
        let env = self.bare_in(tempfile::tempdir().unwrap());
        let out = env.run(&["init", env.path().to_str().unwrap()]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        env
    }

    /// An `Env` on `dir` as it is: nothing is run, not even `init`.
    pub fn bare_in(self, dir: tempfile::TempDir) -> Env {
        Env {
            dir,
            rust_log: self.rust_log,
            remove_rules_var: self.remove_rules_var,
        }
    }
}

impl Env {
    /// A folder with the default configuration, an empty database and `init`'s `rules/`.
    #[allow(
        clippy::new_without_default,
        reason = "new runs `leadflow init`: no mere default"
    )]
    pub fn new() -> Env {
        Env::builder().init()
    }

    /// The defaults of [`Env::new`], to change before [`EnvBuilder::init`].
    pub fn builder() -> EnvBuilder {
        EnvBuilder {
            rust_log: "off",
            remove_rules_var: true,
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The database `init` created.
    pub fn db(&self) -> PathBuf {
        self.path().join("leadflow.db")
    }

    /// Writes `text` to the file `name` in the folder, creating its parent folders.
    pub fn write(&self, name: &str, text: &str) {
        let p = self.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// The binary in the folder, at [`NOW`], without `LEADFLOW_CONFIG`, `LEADFLOW_DB`,
    /// `LEADFLOW_AS` and `LEADFLOW_RULES` from the caller, and `RUST_LOG=off` (see
    /// [`leadflow_in`]; the builder may keep `LEADFLOW_RULES` or set another `RUST_LOG`).
    pub fn cmd(&self) -> Command {
        let mut c = leadflow_in(self.path());
        if let Some(rules) = std::env::var_os("LEADFLOW_RULES").filter(|_| !self.remove_rules_var) {
            c.env("LEADFLOW_RULES", rules);
        }
        c.env("RUST_LOG", self.rust_log);
        c
    }

    /// [`Env::cmd`] on the wall clock: without `LEADFLOW_NOW`.
    pub fn wall_clock_cmd(&self) -> Command {
        let mut c = self.cmd();
        c.env_remove("LEADFLOW_NOW");
        c
    }

    /// Runs a command and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The binary run in `dir` at [`NOW`], without `LEADFLOW_CONFIG`, `LEADFLOW_DB`, `LEADFLOW_AS`
/// and `LEADFLOW_RULES` from the caller, and `RUST_LOG=off`: for a folder that is not an
/// [`Env`]'s.
pub fn leadflow_in(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir)
        .env_remove("LEADFLOW_CONFIG")
        .env_remove("LEADFLOW_DB")
        .env_remove("LEADFLOW_AS")
        .env_remove("LEADFLOW_RULES")
        .env("LEADFLOW_NOW", NOW)
        .env("RUST_LOG", "off");
    c
}

/// A command's stderr, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's stdout, lossily decoded.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One JSON value per line of `text`; panics naming a line that is not JSON.
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The log helpers several files share (named apart from the files' own `events`/`refused`,
/// which count or check differently).
impl Env {
    /// A folder as [`Env::new`] makes it, with the rule file `rules/NAME` besides.
    pub fn with_rules(name: &str, text: &str) -> Env {
        let env = Env::new();
        env.write_rules(name, text);
        env
    }

    /// Writes the rule file `rules/NAME`.
    pub fn write_rules(&self, name: &str, text: &str) {
        std::fs::write(self.path().join("rules").join(name), text).unwrap();
    }

    /// The log as JSON values.
    pub fn log(&self) -> Vec<Value> {
        json_lines(&self.ok(&["--json", "events"]))
    }

    /// The types of the log's events, in order.
    pub fn log_types(&self) -> Vec<String> {
        self.log()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Runs a command that must fail with `code`, append nothing, and say `needle` on stderr;
    /// returns stderr.
    pub fn refused_quietly(&self, args: &[&str], code: i32, needle: &str) -> String {
        self.refused_saying(args, code, &[needle])
    }

    /// Runs a command that must fail with `code`, append nothing, and say each of `needles`
    /// on stderr; returns stderr.
    pub fn refused_saying(&self, args: &[&str], code: i32, needles: &[&str]) -> String {
        let before = self.log().len();
        let out = self.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: expected {needle:?} in {err:?}"
            );
        }
        assert_eq!(self.log().len(), before, "{args:?} appended events");
        err
    }

    /// Creates a lead named `name` with the phone `8 912 345-67-89`.
    pub fn create_lead(&self, name: &str) {
        self.ok(&[
            "lead",
            "create",
            "--name",
            name,
            "--phone",
            "8 912 345-67-89",
        ]);
    }

    /// The folder's database, to read (or tamper with) with SQL behind the binary's back.
    pub fn sql(&self) -> Db {
        Db::at(self.db())
    }
}

/// Leads from the web form are assigned round robin in the first line.
pub const ROUND_ROBIN_RULES: &str = r#"
[[rules]]
id = "assign-first-line"
trigger = { on = "created", entity = "lead", sources = ["web_form"] }

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"
"#;

/// A call-back deadline two hours after a lead arrives (round robin in the first line); missing
/// it notifies the responsible (high priority), records an incident and escalates at once.
pub const CALL_BACK_RULES: &str = r#"
[[rules]]
id = "call-back"
trigger = { on = "created", entity = "lead" }

  [[rules.robots]]
  robot = "assign"
  strategy = "round_robin"
  team = "first_line"

  [[rules.robots]]
  robot = "schedule_deadline"
  name = "call_back"
  after = "2h"

[[rules]]
id = "call-back-missed"
trigger = { on = "deadline_elapsed", name = "call_back" }

  [[rules.robots]]
  robot = "notify"
  to = "responsible"
  text = "call {lead.title} back"
  priority = "high"

  [[rules.robots]]
  robot = "record_incident"
  kind = "missed_call_back"

  [[rules.robots]]
  robot = "escalate_to_manager"
  kind = "missed_call_back"
  threshold = 1
"#;

/// A running `leadflow serve` started by [`Env::serve`]: its process, the address it said it
/// listens on, and everything it printed (stdout and stderr, as they come). Killed when
/// dropped, so a failing test leaves no service running.
pub struct Serving {
    /// The process (for signals and `wait`).
    pub child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Env {
    /// Starts `leadflow serve --listen 127.0.0.1:0` on the wall clock with `RUST_LOG=rust_log`
    /// and waits until `/readyz` answers 200 (the rule set active).
    pub fn serve(&self, rust_log: &str) -> Serving {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        use std::sync::{Arc, Mutex};
        let mut child = self
            .wall_clock_cmd()
            .env("RUST_LOG", rust_log)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let log = Arc::new(Mutex::new(line.clone()));
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let sink = log.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push_str(&(l + "\n"));
                }
            });
        };
        collect(Box::new(stdout));
        collect(Box::new(child.stderr.take().unwrap()));
        let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|a| a.parse().ok())
        else {
            let _ = child.kill();
            panic!("serve said no address: {line:?}");
        };
        let s = Serving { child, addr, log };
        let c = crate::http::Client::new(addr);
        let ready = (0..500).any(|_| {
            let ok = c.get("/readyz").status == 200;
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            ok
        });
        assert!(ready, "serve never got ready: {}", s.log());
        s
    }
}

impl Serving {
    /// Everything it printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends it `sig` (`TERM`, `HUP`, `KILL`…).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, and it must exit 0 (its log in the failure).
    pub fn stop(mut self) {
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve: {status}: {}", self.log());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
