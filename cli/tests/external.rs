//! The `command` robot on the real binary: while one `leadflow` process waits for a slow
//! program its rule started, another process writes at once — the program runs after the
//! commit, holding no lock; its outcome and actions land when it answers.

use leadflow_testkit::cli::Env;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_slow_external_command_does_not_block_another_process_writing() {
    let env = Env::new();
    let (started, go, done) = (
        env.path().join("started"),
        env.path().join("go"),
        env.path().join("done"),
    );
    // Says it started, waits (up to 30 s) for `go`, says it is done, answers with an action.
    let script = format!(
        "cat >/dev/null; touch '{s}'; i=0; while [ ! -f '{g}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; touch '{d}'; echo '{{\"actions\": [{{\"set_field\": {{\"field\": \"material\", \"value\": \"granite\"}}}}]}}'",
        s = started.display(),
        g = go.display(),
        d = done.display()
    );
    env.write_rules(
        "ext.toml",
        &format!(
            "[[rules]]\nid = \"ext\"\ntrigger = {{ on = \"created\", entity = \"lead\" }}\ncondition = 'lead.name == \"Slow\"'\n[[rules.robots]]\nrobot = \"command\"\nprogram = \"sh\"\nargs = [\"-c\", {}]\ntimeout = \"60s\"\n",
            serde_json::to_string(&script).unwrap()
        ),
    );
    let mut first = env
        .cmd()
        .args([
            "lead",
            "create",
            "--name",
            "Slow",
            "--phone",
            "8 912 345-67-89",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < until, "the program never started");
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first command ended before its program started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first process is waiting for its program; a second one writes meanwhile.
    let began = Instant::now();
    env.ok(&[
        "lead",
        "create",
        "--name",
        "Quick",
        "--phone",
        "8 912 000-00-02",
    ]);
    assert!(
        !done.exists(),
        "the second write waited for the first process's program"
    );
    assert!(began.elapsed() < Duration::from_secs(10));
    std::fs::write(&go, "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types = env.log_types();
    let at = |t: &str| {
        types
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no {t}: {types:?}"))
    };
    // The request committed before the other process's lead; the outcome and its action
    // after it.
    let second_lead = types
        .iter()
        .enumerate()
        .filter(|(_, t)| *t == "lead.created")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    assert!(at("robot.requested") < second_lead, "{types:?}");
    assert!(at("robot.completed") > second_lead, "{types:?}");
    assert!(
        env.ok(&["lead", "show", "1"]).contains("granite"),
        "the answer's action was not applied"
    );
    env.ok(&["verify"]);
}
