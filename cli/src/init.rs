//! `init [DIR]`: scaffold a configuration, an empty database and a rule folder.

use crate::error::CliError;
use leadflow_engine::config::DEFAULT_CONFIG;
use leadflow_store::{Options, Store};
use std::path::Path;

/// The rule file `init` leaves in `rules/`: every line a comment, so the rule set is empty (and
/// commands run as without rules) until one is uncommented.
pub(crate) const EXAMPLE_RULES: &str = r##"# Rules: trigger -> optional condition -> robots. Every *.toml file in this folder is part of
# the rule set; `leadflow rules check` reports every problem with file:line:col, and commands
# refuse to run while the rule set does not load. Triggers, conditions and robots are described
# in docs/RULES.md; `leadflow rules schema` prints a JSON Schema for editors.
#
# To try the example, uncomment everything from the first [[rules]] down (remove one leading
# "# " from each line). It assigns new web-form leads that have no responsible round robin
# within the first line and gives every new web-form lead two working hours (one working day
# with only an e-mail) to be qualified; `leadflow tick` or the `leadflow run` service fires the
# deadline. A lead qualified or lost in time calls the deadline off, so only a real miss
# notifies, journals and escalates.
#
# [[rules]]
# id = "assign-first-line"
# trigger = { on = "created", entity = "lead", sources = ["web_form"] }
# # A lead given a responsible (by hand, or in an import) keeps them.
# condition = '!has(lead.responsible)'
#
#   [[rules.robots]]
#   robot = "assign"
#   strategy = "round_robin"
#   team = "first_line"
#
# [[rules]]
# id = "qualification-deadline"
# trigger = { on = "created", entity = "lead", sources = ["web_form"] }
#
#   [[rules.robots]]
#   robot = "schedule_deadline"
#   name = "qualification"
#   after = [{ if = "size(lead.phones) > 0", after = "2h" }, { after = "1d" }]
#   working_time = true
#
# [[rules]]
# id = "qualified-in-time"
# trigger = { on = "stage_entered", entity = "lead", stage = "qualified" }
#
#   [[rules.robots]]
#   robot = "cancel_deadline"
#   name = "qualification"
#
# [[rules]]
# id = "lost-in-time"
# trigger = { on = "lost", entity = "lead" }
#
#   [[rules.robots]]
#   robot = "cancel_deadline"
#   name = "qualification"
#
# [[rules]]
# id = "qualification-missed"
# trigger = { on = "deadline_elapsed", name = "qualification" }
# # Only a lead still waiting to be qualified has missed it.
# condition = 'lead.stage == "new" || lead.stage == "in_work"'
#
#   [[rules.robots]]
#   robot = "notify"
#   to = "responsible"
#   text = "{lead.title}: the qualification deadline has passed"
#   priority = "high"
#
#   [[rules.robots]]
#   robot = "record_incident"
#   kind = "missed_deadline"
#
#   [[rules.robots]]
#   robot = "escalate_to_manager"
#   kind = "missed_deadline"
"##;

/// Writes `leadflow.toml`, creates `leadflow.db`, and `rules/example.toml` unless a `rules/`
/// folder is already there.
pub(crate) fn init(dir: &Path, force: bool) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let config = dir.join("leadflow.toml");
    if config.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            config.display()
        )));
    }
    std::fs::write(&config, DEFAULT_CONFIG).map_err(|e| CliError::io(&config, e))?;
    let db = dir.join("leadflow.db");
    let store = Store::open(&db, &Options::default())?;
    drop(store);
    let rules = dir.join("rules");
    if !rules.exists() {
        std::fs::create_dir(&rules).map_err(|e| CliError::io(&rules, e))?;
        let example = rules.join("example.toml");
        std::fs::write(&example, EXAMPLE_RULES).map_err(|e| CliError::io(&example, e))?;
    }
    outln!(
        "created {}, {} and {}",
        config.display(),
        db.display(),
        rules.display()
    );
    outln!(
        "next: edit the teams, employees and pipelines in leadflow.toml, then try `leadflow lead create --name Ivan --phone '+7 912 345-67-89'`"
    );
    Ok(())
}
