//! The README as a new user follows it: every ```sh block of README.md runs, line by line and
//! in order, through the real `leadflow` binary in a fresh folder laid out like the repository
//! (its `examples/`), so that a step that stops working, or a doc line that goes stale, fails
//! here. Also what the demo tells a user to try next.

use leadflow_testkit::Db;
use leadflow_testkit::cli::bin;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root.
fn repo() -> PathBuf {
    leadflow_testkit::repo("")
}

/// `c` in `dir` with no `LEADFLOW_*` setting from the caller's environment and no logging.
fn without_leadflow_env(mut c: Command, dir: &Path) -> Command {
    c.current_dir(dir).env("RUST_LOG", "off");
    for (k, _) in std::env::vars() {
        if k.starts_with("LEADFLOW_") {
            c.env_remove(k);
        }
    }
    c
}

/// The binary in `dir`, with no `LEADFLOW_*` setting from the caller's environment.
fn leadflow(dir: &Path) -> Command {
    without_leadflow_env(Command::new(bin()), dir)
}

/// `line` without its trailing `# comment` (a `#` after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double, mut prev_space) = (false, false, true);
    for (i, ch) in line.char_indices() {
        match ch {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev_space => return line[..i].trim_end(),
            _ => {}
        }
        prev_space = ch.is_whitespace();
    }
    line.trim_end()
}

/// The commands of README.md's ```sh blocks, with their line numbers: comments dropped,
/// `cargo run --` read as `leadflow`, and the cargo lines that build or test the workspace
/// left out (the test runs the binary cargo built).
fn readme_commands() -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if !in_sh {
            in_sh = t == "```sh";
            continue;
        }
        if t == "```" {
            in_sh = false;
            continue;
        }
        let cmd = strip_comment(line).trim();
        if cmd.is_empty() || cmd.starts_with("cargo install") || cmd.starts_with("cargo test") {
            continue;
        }
        let cmd = match cmd.strip_prefix("cargo run -- ") {
            Some(rest) => format!("leadflow {rest}"),
            None => cmd.to_owned(),
        };
        out.push((i + 1, cmd));
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn strip_comment_keeps_quoted_hashes() {
    assert_eq!(strip_comment("leadflow run   # the rules"), "leadflow run");
    assert_eq!(
        strip_comment("leadflow lead create --name 'A #1' # c"),
        "leadflow lead create --name 'A #1'"
    );
    assert_eq!(strip_comment("a#b"), "a#b");
}

/// Every README command, in order, in one shell (so `cd` carries over) in a folder laid out
/// like the repository: each must exit 0, and none may print an error or a panic.
#[test]
fn readme_commands_work_in_order_on_a_fresh_init() {
    let commands = readme_commands();
    assert!(
        commands.iter().any(|(_, c)| c.starts_with("leadflow init")),
        "README.md has no `leadflow init` step: {commands:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("examples"), &dir.path().join("examples"));
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut script = String::from("set -u\n");
    for (n, cmd) in &commands {
        script.push_str(&format!(
            "{cmd}\nrc=$?; if [ $rc -ne 0 ]; then echo \"README.md:{n} exited $rc\" >&2; exit 1; fi\n"
        ));
    }
    let bin = bin();
    let bin_dir = bin.parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&script);
    let mut child = without_leadflow_env(sh, dir.path())
        .env("PATH", path)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(600) {
            child.kill().unwrap();
            panic!("the README's commands did not finish in 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |name: &str| {
        let mut s = String::new();
        std::fs::File::open(dir.path().join(name))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    };
    let (out, err) = (read("stdout"), read("stderr"));
    let failed = err
        .lines()
        .find_map(|l| l.strip_prefix("README.md:"))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| commands.iter().find(|(m, _)| *m == n));
    assert!(
        status.success(),
        "README step failed: {failed:?}\nstderr:\n{err}\nstdout (end):\n{}",
        out.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    for bad in ["error", "panicked", "warning"] {
        assert!(
            !err.to_lowercase().contains(bad),
            "a README step printed {bad:?}:\n{err}"
        );
    }
    // What the steps are there to show.
    assert!(out.contains("imported 3 leads"), "{out}");
    assert!(
        out.contains("no rules in"),
        "tick/run on a fresh init: {out}"
    );
    assert!(out.contains("A. Two-line sales: passed"), "{out}");
    // The service: the robots assigned the lead the API created, the Bitrix24 REST listed the
    // form's lead, and the local listener got signed webhooks.
    assert!(out.contains(r#""responsible":""#), "{out}");
    assert!(out.contains(r#""NAME":"Anna""#), "{out}");
    assert!(out.contains("signature: valid"), "{out}");
    assert!(!out.contains("signature: INVALID"), "{out}");
    assert!(out.contains(r#""type":"lead.created""#), "{out}");
    assert!(out.contains("passed"), "{out}");
}

fn events(db: &Path) -> i64 {
    Db::at(db).count("SELECT count(*) FROM events")
}

/// On a fresh `init` (only the commented example rule), `tick --now` with a time before the
/// log's last event says there are no rules and exits 0, as README says; it used to refuse
/// the "backdated" tick (exit 2) although a tick with no rules writes nothing.
#[test]
fn fresh_init_tick_with_an_earlier_now_says_no_rules() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let out = leadflow(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "."]);
    ok(&[
        "--now",
        "2026-03-05 10:00",
        "lead",
        "create",
        "--name",
        "Ivan",
    ]);
    let before = events(&dir.path().join("leadflow.db"));
    let said = ok(&["--now", "2026-03-02 15:00", "tick"]);
    assert!(said.contains("no rules in"), "{said}");
    assert_eq!(events(&dir.path().join("leadflow.db")), before);
}

/// The demo's "explore it" list suggests a stage that holds leads at the end of its week (it
/// suggested `--stage in_work`, empty by Friday evening: "no matching leads").
#[test]
fn the_demo_suggests_a_lead_list_that_lists_leads() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = leadflow(dir.path())
        .args(["demo", demo.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8(out.stdout).unwrap();
    let hint = said
        .lines()
        .map(|l| strip_comment(l).trim())
        .find(|l| l.starts_with("leadflow lead list"))
        .unwrap_or_else(|| panic!("no `leadflow lead list` hint in:\n{said}"));
    let args: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let out = leadflow(dir.path())
        .env("LEADFLOW_CONFIG", demo.join("leadflow.toml"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{hint}");
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.lines().count() > 1 && !listed.contains("no matching"),
        "`{hint}` lists nothing:\n{listed}"
    );
}

/// docs/RULES.md's example rule file loads as shipped (with the `#:schema` line the doc
/// suggests and the schema file beside it), and does what it says: taking a lead with a phone
/// in work delays the deadline robot 10 working minutes.
#[test]
fn the_rules_doc_example_loads_and_runs() {
    let text = std::fs::read_to_string(repo().join("docs/RULES.md")).unwrap();
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(!blocks.is_empty(), "docs/RULES.md has no toml example");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| leadflow(dir.path()).args(args).output().unwrap();
    let ok = |args: &[&str]| {
        let out = run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "."]);
    let schema = ok(&["rules", "schema"]);
    std::fs::write(dir.path().join("rules/rules.schema.json"), schema).unwrap();
    for (i, b) in blocks.iter().enumerate() {
        std::fs::write(
            dir.path().join(format!("rules/doc-{i}.toml")),
            format!("#:schema ./rules.schema.json\n{b}"),
        )
        .unwrap();
    }
    let said = ok(&["rules", "check"]);
    assert!(said.contains("no errors"), "{said}");
    ok(&[
        "--now",
        "2026-03-02 12:00",
        "lead",
        "create",
        "--name",
        "A",
        "--phone",
        "+7 912 345-67-80",
        "--source",
        "web_form",
    ]);
    ok(&[
        "--now",
        "2026-03-02 12:00",
        "lead",
        "assign",
        "1",
        "petrova",
    ]);
    let moved = ok(&["--now", "2026-03-02 12:00", "lead", "move", "1", "in_work"]);
    assert!(moved.contains("robots.delayed"), "{moved}");
    let timers = ok(&["timers"]);
    assert!(timers.contains("2026-03-02 12:10 MSK"), "{timers}");
}

/// An import with rules says what the rules then did and how long they took (it printed only
/// the import's own time, a fifth of the command's with the demo's rules).
#[test]
fn an_import_with_rules_reports_the_rules_work() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let out = leadflow(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "."]);
    std::fs::write(
        dir.path().join("rules/intake.toml"),
        "[[rules]]\nid = \"rr\"\ntrigger = { on = \"created\", entity = \"lead\" }\ncondition = '!has(lead.responsible)'\n\n  [[rules.robots]]\n  robot = \"assign\"\n  strategy = \"round_robin\"\n  team = \"first_line\"\n",
    )
    .unwrap();
    let sample = repo().join("examples/import/leads.csv");
    let said = ok(&["import", sample.to_str().unwrap()]);
    assert!(
        said.starts_with("imported 3 leads (lead-1..lead-3) in ")
            && said.contains("s; the rules then appended 2 events in "),
        "{said}"
    );
    let json = ok(&["--json", "import", sample.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["robot_events"], 2, "{json}");
}

/// `init`'s example rule, uncommented as its header says, keeps the responsible a lead is given:
/// the sample import's first row names petrova, and the round-robin robot used to hand it to
/// the next first-line operator anyway. A web-form lead still gets its qualification deadline.
#[test]
fn the_init_example_keeps_a_responsible_given_in_an_import() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let out = leadflow(dir.path()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "."]);
    let example = dir.path().join("rules/example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let start = text.find("# [[rules]]").unwrap();
    let body: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&example, format!("{}{body}", &text[..start])).unwrap();
    let sample = repo().join("examples/import/leads.csv");
    ok(&["import", sample.to_str().unwrap()]);
    let lead: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "lead", "show", "1"])).unwrap();
    assert_eq!(lead["state"]["responsible"], "petrova", "{lead}");
    assert_eq!(lead["state"]["source"], "web_form", "{lead}");
    let timers = ok(&["timers", "--stream", "lead-1"]);
    assert!(timers.contains("qualification"), "{timers}");
    // A web-form lead with nobody responsible is still assigned round robin.
    ok(&[
        "lead",
        "create",
        "--name",
        "Olga",
        "--phone",
        "+7 912 111-22-33",
        "--source",
        "web_form",
    ]);
    let lead: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "lead", "show", "4"])).unwrap();
    assert!(lead["state"]["responsible"].is_string(), "{lead}");
}

/// A one-shot command's warning is a message for the person who typed it, not a log line
/// stamped in UTC: a writer waiting for the write lock printed
/// `2026-12-01T22:50:35.962325Z  WARN leadflow_store: waiting for…`.
#[test]
fn a_commands_warning_carries_no_utc_log_stamp() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let out = leadflow(dir.path()).args(["init", "."]).output().unwrap();
    assert!(out.status.success());
    let lock = Db::at(dir.path().join("leadflow.db")).hold_write_lock();
    let mut child = leadflow(dir.path())
        .env_remove("RUST_LOG")
        .args(["lead", "create", "--name", "Olga"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    lock.commit();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(
        line.contains("waiting for the database write lock"),
        "{line:?}"
    );
    assert!(
        !line.contains("Z ") && !line.contains("leadflow_store") && !line.starts_with("20"),
        "{line:?}"
    );
}

/// An empty list says so, as `lead list` and `deal list` do, instead of a bare header.
#[test]
fn empty_lists_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let ok = |args: &[&str]| {
        let out = leadflow(dir.path()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    ok(&["init", "."]);
    assert_eq!(ok(&["contact", "list"]), "no contacts\n");
    assert_eq!(ok(&["company", "list"]), "no companies\n");
    assert_eq!(ok(&["task", "list"]), "no matching tasks\n");
    assert_eq!(ok(&["events"]), "no matching events\n");
    ok(&["lead", "create", "--name", "Ivan"]);
    assert_eq!(
        ok(&["events", "--stream", "lead-2"]),
        "no matching events\n"
    );
    assert!(ok(&["events"]).starts_with("POS "));
}
