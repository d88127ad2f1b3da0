//! leadflow's robots and the rules runtime.
//!
//! Each built-in robot has a [`RobotSpec`] (its parameters, checked when a rule set loads) and
//! an implementation of the [`Robot`] trait; the [`Registry`] holds both. The [`runtime`]
//! matches the log's events to rules and runs their robots, exactly once per event.

pub mod backtest;
pub mod builtin;
pub mod client;
pub mod context;
pub mod convert;
pub mod external;
pub mod panics;
pub mod report;
pub mod require;
pub mod runtime;
pub mod scenario;

pub use context::{Ctx, RobotError};
pub use runtime::{Advanced, Report, Runtime};

use leadflow_engine::EntityKind;
use leadflow_engine::robot::{Emits, ParamKind, ParamSpec, RobotCatalog, RobotSpec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A robot call's parameters, as JSON.
pub type Params = BTreeMap<String, serde_json::Value>;

/// A robot: given its context and parameters, it appends its effects (or fails, which the
/// runtime records as an incident; nothing it appended before failing is kept).
pub trait Robot: Send + Sync {
    /// Runs the robot once.
    fn run(&self, ctx: &mut Ctx<'_, '_>, params: &Params) -> Result<(), RobotError>;
}

const fn req(name: &'static str, kind: ParamKind, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: true,
        doc,
    }
}

const fn opt(name: &'static str, kind: ParamKind, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required: false,
        doc,
    }
}

const RECIPIENTS: &[&str] = &["responsible", "manager", "team", "employee"];
const TASK_KINDS: &[&str] = &["call", "email", "meeting", "send_offer", "other"];

/// The robots a rule set can call: their specs and implementations.
#[derive(Clone)]
pub struct Registry {
    robots: Vec<RobotSpec>,
    impls: HashMap<&'static str, Arc<dyn Robot>>,
    /// The external robots' after-commit side, by robot name.
    calls: HashMap<&'static str, Arc<dyn external::Call>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "robots",
                &self.robots.iter().map(|r| r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::builtin()
    }
}

impl Registry {
    /// Every built-in robot of SPEC §5.
    pub fn builtin() -> Registry {
        use ParamKind as K;
        let robots = vec![
            RobotSpec {
                name: "set_stage",
                doc: "moves the lead or deal to a stage; a failure stage takes a reason",
                params: vec![
                    req("stage", K::Stage, "the stage to move to"),
                    opt("reason", K::Text, "why (for failure stages)"),
                ],
                emits: vec![Emits::StageFromParam("stage")],
            },
            RobotSpec {
                name: "set_field",
                doc: "sets a built-in or custom field",
                params: vec![
                    req("field", K::Field, "the field"),
                    req(
                        "value",
                        K::Value,
                        "the new value, checked against the field's type",
                    ),
                ],
                emits: vec![Emits::FieldFromParam("field")],
            },
            RobotSpec {
                name: "assign",
                doc: "picks the responsible: round robin or least loaded within a team, the creator, or a named employee",
                params: vec![
                    req(
                        "strategy",
                        K::OneOf(&["round_robin", "least_loaded", "creator", "named"]),
                        "how to pick",
                    ),
                    opt(
                        "team",
                        K::Team,
                        "the team to pick from (round_robin, least_loaded)",
                    ),
                    opt("employee", K::Employee, "the employee (named)"),
                ],
                emits: vec![Emits::Field("responsible")],
            },
            RobotSpec {
                name: "convert_lead",
                doc: "creates contact, company and/or deal from the lead (or attaches existing ones), links them and marks the lead converted",
                params: vec![
                    opt("contact", K::Bool, "create (or attach) a contact"),
                    opt("company", K::Bool, "create (or attach) a company"),
                    opt("deal", K::Bool, "create a deal"),
                    opt(
                        "pipeline",
                        K::Pipeline,
                        "the deal's pipeline; its team provides the responsible",
                    ),
                    opt(
                        "assign",
                        K::OneOf(&["round_robin", "least_loaded", "lead_responsible"]),
                        "how the deal's responsible is picked",
                    ),
                    opt(
                        "attach_existing",
                        K::Bool,
                        "link the lead's Client instead of creating a duplicate",
                    ),
                    opt("copy_fields", K::List, "lead fields copied to the deal"),
                    opt(
                        "lead_stage",
                        K::Stage,
                        "the stage the lead moves to (default: its success stage)",
                    ),
                ],
                emits: vec![
                    Emits::Created(EntityKind::Deal),
                    Emits::Created(EntityKind::Contact),
                    Emits::AnyField,
                    Emits::StageFromParam("lead_stage"),
                ],
            },
            RobotSpec {
                name: "schedule_deadline",
                doc: "sets a named deadline after a duration, optionally in working time; the duration may depend on a condition",
                params: vec![
                    req(
                        "name",
                        K::DeadlineName,
                        "the deadline's name, for deadline_elapsed triggers",
                    ),
                    req(
                        "after",
                        K::DurationCases,
                        "\"2h\", or [{ if = \"...\", after = \"2h\" }, { after = \"1d\" }]",
                    ),
                    opt(
                        "working_time",
                        K::Bool,
                        "count only working hours of the calendar",
                    ),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "cancel_deadline",
                doc: "cancels a pending named deadline of the lead or deal",
                params: vec![req("name", K::DeadlineName, "the deadline's name")],
                emits: vec![],
            },
            RobotSpec {
                name: "wait",
                doc: "delays the robots after it in the rule",
                params: vec![
                    req("for", K::Duration, "how long"),
                    opt("working_time", K::Bool, "count only working hours"),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "require_fields",
                doc: "checks required (and conditionally required) fields; records what is missing and asks the responsible for it",
                params: vec![
                    req(
                        "fields",
                        K::Requirements,
                        "fields to check; a|b means either",
                    ),
                    opt(
                        "when",
                        K::Condition,
                        "check only when this holds (legal entity ⇒ INN…)",
                    ),
                    opt(
                        "incident",
                        K::DeadlineName,
                        "record an incident of this kind when something is missing",
                    ),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "detect_repeat",
                doc: "matches normalised phones, e-mails and INN against contacts and companies; links the Client and marks the lead repeat",
                params: vec![opt(
                    "by",
                    K::List,
                    "what to match: phone, email, inn (default all)",
                )],
                emits: vec![Emits::RepeatDetected, Emits::AnyField],
            },
            RobotSpec {
                name: "find_or_create_company",
                doc: "finds the company by INN (checksum validated) or creates it with bank account and BIK, and links it",
                params: vec![],
                emits: vec![Emits::Created(EntityKind::Company), Emits::Field("company")],
            },
            RobotSpec {
                name: "notify",
                doc: "notifies the responsible, their manager, a team or an employee through the inbox, a webhook or e-mail",
                params: vec![
                    req("to", K::OneOf(RECIPIENTS), "who"),
                    opt("team", K::Team, "the team (to = \"team\")"),
                    opt("employee", K::Employee, "the employee (to = \"employee\")"),
                    opt(
                        "channel",
                        K::OneOf(&["inbox", "webhook", "email"]),
                        "how (default inbox)",
                    ),
                    req(
                        "text",
                        K::Template,
                        "the message; {lead.title}-style placeholders",
                    ),
                    opt("priority", K::OneOf(&["normal", "high"]), "priority"),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "create_task",
                doc: "sets a task with an assignee and a due time",
                params: vec![
                    req("kind", K::OneOf(TASK_KINDS), "the kind of task"),
                    req("title", K::Template, "what to do"),
                    opt(
                        "assignee",
                        K::OneOf(&["responsible", "manager", "employee"]),
                        "who (default the responsible)",
                    ),
                    opt(
                        "employee",
                        K::Employee,
                        "the employee (assignee = \"employee\")",
                    ),
                    opt("due", K::Duration, "due after (default 1d)"),
                    opt("working_time", K::Bool, "count only working hours"),
                ],
                emits: vec![Emits::Created(EntityKind::Task)],
            },
            RobotSpec {
                name: "record_incident",
                doc: "writes to the incident journal",
                params: vec![
                    req(
                        "kind",
                        K::DeadlineName,
                        "the incident's kind, e.g. missed_deadline",
                    ),
                    opt("text", K::Template, "details"),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "escalate_to_manager",
                doc: "when the responsible's incidents of a kind within a window reach a threshold, notifies their manager and records an escalation",
                params: vec![
                    req("kind", K::DeadlineName, "the incident kind counted"),
                    opt("threshold", K::Int, "how many (default 3)"),
                    opt("window", K::Duration, "within how long (default 30d)"),
                    opt("text", K::Template, "the message to the manager"),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "send_report",
                doc: "sends a KPI summary per employee (leads in, converted, lost, overdue tasks): to = manager gives each team manager their teams' rows; team gives every member of the team the team's rows; employee gives one employee the rows of the team, or of everyone",
                params: vec![
                    req(
                        "to",
                        K::OneOf(&["manager", "team", "employee"]),
                        "who gets it",
                    ),
                    opt(
                        "team",
                        K::Team,
                        "the team (required for to = team; limits manager and employee reports to it)",
                    ),
                    opt("employee", K::Employee, "the employee (to = employee)"),
                    opt("period", K::Duration, "the period covered (default 1d)"),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "webhook",
                doc: "posts the context as JSON to a URL through the outbox, with retries and an idempotency key",
                params: vec![
                    req("url", K::Text, "where to post"),
                    opt(
                        "body",
                        K::Template,
                        "the body (default: the context as JSON)",
                    ),
                ],
                emits: vec![],
            },
            RobotSpec {
                name: "command",
                doc: "runs an external program with the context as JSON on stdin; it answers with JSON actions on stdout",
                params: vec![
                    req("program", K::Text, "the program"),
                    opt("args", K::List, "its arguments"),
                    opt("timeout", K::Duration, "how long it may take (default 10s)"),
                ],
                emits: vec![Emits::AnyField],
            },
        ];
        let mut impls: HashMap<&'static str, Arc<dyn Robot>> = HashMap::new();
        impls.insert("set_stage", Arc::new(builtin::SetStage));
        impls.insert("set_field", Arc::new(builtin::SetField));
        impls.insert("assign", Arc::new(builtin::Assign));
        impls.insert("schedule_deadline", Arc::new(builtin::ScheduleDeadline));
        impls.insert("cancel_deadline", Arc::new(builtin::CancelDeadline));
        impls.insert("notify", Arc::new(builtin::Notify));
        impls.insert("webhook", Arc::new(builtin::Webhook));
        impls.insert("create_task", Arc::new(builtin::CreateTask));
        impls.insert("record_incident", Arc::new(builtin::RecordIncident));
        impls.insert("escalate_to_manager", Arc::new(builtin::EscalateToManager));
        impls.insert("convert_lead", Arc::new(convert::ConvertLead));
        impls.insert("require_fields", Arc::new(require::RequireFields));
        impls.insert("detect_repeat", Arc::new(client::DetectRepeat));
        impls.insert(
            "find_or_create_company",
            Arc::new(client::FindOrCreateCompany),
        );
        impls.insert("send_report", Arc::new(report::SendReport));
        impls.insert("command", Arc::new(external::External));
        let mut calls: HashMap<&'static str, Arc<dyn external::Call>> = HashMap::new();
        calls.insert("command", Arc::new(external::External));
        Registry {
            robots,
            impls,
            calls,
        }
    }

    /// Adds (or replaces) a robot.
    pub fn with(mut self, spec: RobotSpec, robot: Arc<dyn Robot>) -> Registry {
        self.robots.retain(|r| r.name != spec.name);
        self.impls.insert(spec.name, robot);
        self.robots.push(spec);
        self
    }

    /// The after-commit side of the external robot called `name`.
    pub fn call(&self, name: &str) -> Option<&Arc<dyn external::Call>> {
        self.calls.get(name)
    }

    /// The implementation of the robot called `name` (`wait` has none: the runtime handles
    /// it).
    pub fn implementation(&self, name: &str) -> Option<&Arc<dyn Robot>> {
        self.impls.get(name)
    }
}

impl RobotCatalog for Registry {
    fn robot(&self, name: &str) -> Option<&RobotSpec> {
        self.robots.iter().find(|r| r.name == name)
    }

    fn robots(&self) -> Vec<&RobotSpec> {
        self.robots.iter().collect()
    }
}
