//! The process configuration: employees, teams, pipelines with their stages, custom fields and
//! intake sources, read from one `leadflow.toml` or a folder of TOML files.
//!
//! Loading is whole-or-nothing: every problem in every file is collected and reported with its
//! file, line and column, and no partial configuration is ever returned. The engine never reads
//! files itself; the caller passes the texts as [`Source`]s.

use crate::calendar::{self, Calendar};
use crate::field::FieldType;
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, TeamId};
use chrono::Duration;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::Spanned;

/// One configuration file's name (as shown in errors) and text.
#[derive(Debug, Clone)]
pub struct Source {
    /// The path shown in error messages.
    pub path: String,
    /// The file's TOML text.
    pub text: String,
}

/// One problem in a configuration file, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given in its [`Source`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the configuration has {n} error{}",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

/// Whether a stage is still open, or ends the lead/deal as won or lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Semantic {
    /// Work goes on.
    InProgress,
    /// Won: converted lead, closed deal. Final.
    Success,
    /// Lost: junk lead, failed deal. May be reopened.
    Failure,
}

impl Semantic {
    /// The name used in config files and projections.
    pub fn as_str(self) -> &'static str {
        match self {
            Semantic::InProgress => "in_progress",
            Semantic::Success => "success",
            Semantic::Failure => "failure",
        }
    }
}

/// A set of field names of which at least one must be filled (`company_name|inn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The alternatives; any one filled satisfies the requirement.
    pub any_of: Vec<String>,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.any_of.join(" or "))
    }
}

/// Requirements that apply only when a field has a given value (legal entity ⇒ INN…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalRequirement {
    /// The field whose value is tested.
    pub field: String,
    /// The value that switches the requirements on.
    pub equals: String,
    /// What is then required.
    pub required: Vec<Requirement>,
}

/// One stage of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Id, unique within the pipeline.
    pub id: StageId,
    /// Display name.
    pub name: String,
    /// Open, won or lost.
    pub semantic: Semantic,
    /// Target time in the stage, for reports.
    pub target: Option<Duration>,
    /// Fields that must be filled to enter the stage.
    pub required: Vec<Requirement>,
    /// Fields that must be filled to enter the stage when a condition holds.
    pub required_when: Vec<ConditionalRequirement>,
    /// If set, the only stages from which this one may be entered.
    pub from: Option<Vec<StageId>>,
    /// For failure stages: the allowed reasons; when non-empty a reason is required.
    pub reasons: Vec<String>,
}

/// An ordered list of stages for leads or for deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Id, e.g. `lead`, `goods`.
    pub id: PipelineId,
    /// Display name.
    pub name: String,
    /// `Lead` or `Deal`.
    pub entity: EntityKind,
    /// The stages in order; the first is where new items start.
    pub stages: Vec<Stage>,
}

impl Pipeline {
    /// The stage with this id.
    pub fn stage(&self, id: &StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| &s.id == id)
    }

    /// Where new items start.
    pub fn first_stage(&self) -> &Stage {
        &self.stages[0]
    }
}

/// A person who works leads and deals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    /// Id used on the command line (`--as petrova`).
    pub id: EmployeeId,
    /// Full name.
    pub name: String,
    /// The team the employee belongs to.
    pub team: Option<TeamId>,
    /// The employee's manager: set explicitly, or the team's manager.
    pub manager: Option<EmployeeId>,
    /// E-mail for notifications.
    pub email: Option<String>,
    /// Inactive employees keep their history but cannot be given work.
    pub active: bool,
}

/// A group of employees that owns pipelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Id, e.g. `first_line`.
    pub id: TeamId,
    /// Display name.
    pub name: String,
    /// The head of the team.
    pub manager: Option<EmployeeId>,
    /// The pipelines this team works.
    pub pipelines: Vec<PipelineId>,
}

/// A typed custom field of leads, deals, contacts or companies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDef {
    /// Id used in commands and rules.
    pub id: String,
    /// The entity that has the field.
    pub entity: EntityKind,
    /// The value type.
    pub ty: FieldType,
    /// Display label.
    pub label: String,
    /// Group on the card (e.g. `product`, `client`).
    pub group: Option<String>,
    /// Options of an enum field.
    pub options: Vec<String>,
}

/// Built-in fields that stage requirements may name, per entity.
pub fn builtin_fields(entity: EntityKind) -> &'static [&'static str] {
    match entity {
        EntityKind::Lead => &[
            "title",
            "name",
            "phone",
            "email",
            "source",
            "client_type",
            "responsible",
            "comment",
            "contact",
            "company",
        ],
        EntityKind::Deal => &[
            "title",
            "amount",
            "contact",
            "company",
            "responsible",
            "lead",
            "comment",
        ],
        EntityKind::Contact => &["name", "phone", "email", "company", "responsible"],
        EntityKind::Company => &["name", "inn", "bank_account", "bik", "phone", "email"],
        EntityKind::Task | EntityKind::Ruleset | EntityKind::System => &[],
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Currency of amounts, e.g. `RUB`.
    pub currency: String,
    /// The actor used when a command names none.
    pub default_actor: Option<EmployeeId>,
    /// Where leads come from: `web_form`, `call`…
    pub sources: Vec<String>,
    /// Employees by id.
    pub employees: BTreeMap<EmployeeId, Employee>,
    /// Teams by id.
    pub teams: BTreeMap<TeamId, Team>,
    /// Custom fields, in file order.
    pub fields: Vec<FieldDef>,
    /// Pipelines, in file order.
    pub pipelines: Vec<Pipeline>,
    /// Working days and hours, for deadlines in working time.
    pub calendar: Calendar,
}

impl Config {
    /// Loads and validates a configuration from one or more files.
    pub fn load(sources: &[Source]) -> Result<Config, ConfigErrors> {
        Loader::default().load(sources)
    }

    /// Parses a single TOML text (handy in tests).
    pub fn from_toml(path: &str, text: &str) -> Result<Config, ConfigErrors> {
        Config::load(&[Source {
            path: path.to_owned(),
            text: text.to_owned(),
        }])
    }

    /// The pipeline with this id.
    pub fn pipeline(&self, id: &PipelineId) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| &p.id == id)
    }

    /// The lead pipeline (there is exactly one).
    pub fn lead_pipeline(&self) -> &Pipeline {
        self.pipelines
            .iter()
            .find(|p| p.entity == EntityKind::Lead)
            .expect("validated: exactly one lead pipeline")
    }

    /// The first deal pipeline, used when a deal names none.
    pub fn default_deal_pipeline(&self) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.entity == EntityKind::Deal)
    }

    /// The custom field `id` of `entity`.
    pub fn field(&self, entity: EntityKind, id: &str) -> Option<&FieldDef> {
        self.fields
            .iter()
            .find(|f| f.entity == entity && f.id == id)
    }

    /// The employee with this id.
    pub fn employee(&self, id: &EmployeeId) -> Option<&Employee> {
        self.employees.get(id)
    }

    /// The team that works `pipeline`, if any.
    pub fn team_of_pipeline(&self, pipeline: &PipelineId) -> Option<&Team> {
        self.teams.values().find(|t| t.pipelines.contains(pipeline))
    }

    /// Active members of a team, by id.
    pub fn members(&self, team: &TeamId) -> Vec<&Employee> {
        self.employees
            .values()
            .filter(|e| e.active && e.team.as_ref() == Some(team))
            .collect()
    }
}

// ---- raw file format ------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    currency: Option<Spanned<String>>,
    default_actor: Option<Spanned<String>>,
    sources: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    employees: Vec<RawEmployee>,
    #[serde(default)]
    teams: Vec<RawTeam>,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    pipelines: Vec<RawPipeline>,
    calendar: Option<Spanned<RawCalendar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    timezone: Option<Spanned<String>>,
    days: Option<Spanned<Vec<Spanned<String>>>>,
    hours: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default)]
    working_weekends: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmployee {
    id: Spanned<String>,
    name: String,
    team: Option<Spanned<String>>,
    manager: Option<Spanned<String>>,
    email: Option<Spanned<String>>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    id: Spanned<String>,
    name: String,
    manager: Option<Spanned<String>>,
    #[serde(default)]
    pipelines: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    id: Spanned<String>,
    entity: Spanned<String>,
    #[serde(rename = "type")]
    ty: Spanned<FieldType>,
    label: Option<String>,
    group: Option<String>,
    #[serde(default)]
    options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    id: Spanned<String>,
    name: String,
    entity: Spanned<String>,
    stages: Spanned<Vec<RawStage>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    id: Spanned<String>,
    name: String,
    #[serde(default = "in_progress")]
    semantic: Semantic,
    target: Option<Spanned<String>>,
    #[serde(default)]
    required: Vec<Spanned<String>>,
    #[serde(default)]
    required_when: Vec<RawConditional>,
    from: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    reasons: Vec<String>,
}

fn in_progress() -> Semantic {
    Semantic::InProgress
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConditional {
    field: Spanned<String>,
    equals: String,
    required: Vec<Spanned<String>>,
}

/// A duration as written (`1d 4h`, `2w`, `90min`), its days and weeks not yet given a length:
/// the one reader of duration syntax. [`parse_duration`] counts calendar days and weeks,
/// [`crate::calendar::Calendar::working_duration`] working ones; each gives the parts a length
/// and a bound through [`DurationParts::length`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationParts {
    /// The sum of the `w` tokens.
    pub weeks: i128,
    /// The sum of the `d` tokens.
    pub days: i128,
    /// The sum of the `s`, `m` (or `min`) and `h` tokens, in seconds.
    pub seconds: i128,
}

/// The nanoseconds of a duration, exactly.
fn nanos(d: Duration) -> i128 {
    i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())
}

impl DurationParts {
    /// Reads whitespace-separated tokens, each a whole number of digits (no sign) and a unit:
    /// `s`, `m` or `min`, `h`, `d`, `w`. The error says how to write a duration.
    pub fn parse(text: &str) -> Result<DurationParts, String> {
        let bad = || format!("bad duration '{text}': write it like 30m, 2h, 1d or 1d 4h");
        let mut parts = DurationParts {
            weeks: 0,
            days: 0,
            seconds: 0,
        };
        let mut seen = false;
        for part in text.split_whitespace() {
            let split = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let (n, unit) = part.split_at(split);
            let n = i128::from(n.parse::<i64>().map_err(|_| bad())?);
            // Sums saturate (far past any bound) rather than overflow.
            let (slot, scale) = match unit {
                "s" => (&mut parts.seconds, 1),
                "m" | "min" => (&mut parts.seconds, 60),
                "h" => (&mut parts.seconds, 3600),
                "d" => (&mut parts.days, 1),
                "w" => (&mut parts.weeks, 1),
                _ => return Err(bad()),
            };
            *slot = slot.saturating_add(n * scale);
            seen = true;
        }
        if !seen {
            return Err(bad());
        }
        Ok(parts)
    }

    /// The length, with a day `day` long and a week `week` long, if it is at most `max`;
    /// `None` if it is longer.
    pub fn length(&self, day: Duration, week: Duration, max: Duration) -> Option<Duration> {
        let total = self
            .weeks
            .saturating_mul(nanos(week))
            .saturating_add(self.days.saturating_mul(nanos(day)))
            .saturating_add(self.seconds.saturating_mul(1_000_000_000));
        if total > nanos(max) {
            return None;
        }
        // At most `max`, so both parts fit.
        let secs = i64::try_from(total / 1_000_000_000).ok()?;
        let sub = i64::try_from(total % 1_000_000_000).ok()?;
        Duration::try_seconds(secs)?.checked_add(&Duration::nanoseconds(sub))
    }
}

/// Parses durations like `90s`, `30m`, `2h`, `1d`, `1d 4h` (days are calendar days here), at
/// most [`crate::time::MAX_DURATION`] (3660 days, ten years) so that nothing computed from one
/// can overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    DurationParts::parse(text)?
        .length(
            Duration::days(1),
            Duration::weeks(1),
            crate::time::MAX_DURATION,
        )
        .ok_or_else(|| {
            format!(
                "duration '{}' is too long: at most 3660d (ten years)",
                text.trim()
            )
        })
}

#[derive(Default)]
struct Loader {
    errors: Vec<ConfigError>,
}

struct Located<'a, T> {
    file: &'a Source,
    item: T,
}

impl Loader {
    fn err(&mut self, src: &Source, span: std::ops::Range<usize>, message: impl Into<String>) {
        let (line, col) = line_col(&src.text, span.start);
        self.errors.push(ConfigError {
            file: src.path.clone(),
            line,
            col,
            message: message.into(),
        });
    }

    fn load(mut self, sources: &[Source]) -> Result<Config, ConfigErrors> {
        let mut files = Vec::new();
        for src in sources {
            match toml::from_str::<RawFile>(&src.text) {
                Ok(raw) => files.push((src, raw)),
                Err(e) => {
                    let span = e.span().unwrap_or(0..0);
                    let msg = e.message().trim().to_owned();
                    self.err(src, span, msg);
                }
            }
        }
        if sources.is_empty() {
            self.errors.push(ConfigError {
                file: "(none)".into(),
                line: 1,
                col: 1,
                message: "no configuration files were given".into(),
            });
        }

        let mut currency: Option<String> = None;
        let mut default_actor: Option<Located<Spanned<String>>> = None;
        let mut sources_list: Option<Vec<String>> = None;
        let mut employees = Vec::new();
        let mut teams = Vec::new();
        let mut fields = Vec::new();
        let mut pipelines = Vec::new();
        let mut calendar: Option<Calendar> = None;
        for (src, raw) in files {
            if let Some(c) = raw.calendar {
                if calendar.is_some() {
                    self.err(src, c.span(), "[calendar] is set in more than one file");
                }
                calendar = Some(self.calendar(src, c.into_inner()));
            }
            if let Some(c) = raw.currency {
                if currency.is_some() {
                    self.err(src, c.span(), "currency is set in more than one file");
                }
                let code = c.get_ref();
                if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
                    self.err(
                        src,
                        c.span(),
                        format!("currency '{code}' is not a code like RUB"),
                    );
                }
                currency = Some(c.into_inner());
            }
            if let Some(a) = raw.default_actor {
                if default_actor.is_some() {
                    self.err(src, a.span(), "default_actor is set in more than one file");
                }
                default_actor = Some(Located { file: src, item: a });
            }
            if let Some(list) = raw.sources {
                if sources_list.is_some() {
                    self.err(src, list[0].span(), "sources are set in more than one file");
                }
                let mut seen = BTreeSet::new();
                for s in &list {
                    if !seen.insert(s.get_ref().clone()) {
                        self.err(
                            src,
                            s.span(),
                            format!("source '{}' is listed twice", s.get_ref()),
                        );
                    }
                    check_ident(&mut self, src, s, "source");
                }
                sources_list = Some(list.into_iter().map(Spanned::into_inner).collect());
            }
            employees.extend(
                raw.employees
                    .into_iter()
                    .map(|item| Located { file: src, item }),
            );
            teams.extend(
                raw.teams
                    .into_iter()
                    .map(|item| Located { file: src, item }),
            );
            fields.extend(
                raw.fields
                    .into_iter()
                    .map(|item| Located { file: src, item }),
            );
            pipelines.extend(
                raw.pipelines
                    .into_iter()
                    .map(|item| Located { file: src, item }),
            );
        }

        let pipeline_ids: BTreeMap<String, EntityKind> = pipelines
            .iter()
            .filter_map(|p| {
                p.item
                    .entity
                    .get_ref()
                    .parse::<EntityKind>()
                    .ok()
                    .map(|k| (p.item.id.get_ref().clone(), k))
            })
            .collect();
        let team_ids: BTreeSet<String> =
            teams.iter().map(|t| t.item.id.get_ref().clone()).collect();
        let employee_ids: BTreeSet<String> = employees
            .iter()
            .map(|e| e.item.id.get_ref().clone())
            .collect();

        // Teams.
        let mut out_teams = BTreeMap::new();
        for Located { file, item: t } in &teams {
            check_ident(&mut self, file, &t.id, "team id");
            if let Some(m) = &t.manager
                && !employee_ids.contains(m.get_ref())
            {
                self.err(
                    file,
                    m.span(),
                    format!(
                        "unknown employee '{}' as manager of team '{}'",
                        m.get_ref(),
                        t.id.get_ref()
                    ),
                );
            }
            for p in &t.pipelines {
                if !pipeline_ids.contains_key(p.get_ref()) {
                    self.err(
                        file,
                        p.span(),
                        format!(
                            "unknown pipeline '{}' in team '{}'",
                            p.get_ref(),
                            t.id.get_ref()
                        ),
                    );
                }
            }
            let team = Team {
                id: TeamId(t.id.get_ref().clone()),
                name: t.name.clone(),
                manager: t.manager.as_ref().map(|m| EmployeeId(m.get_ref().clone())),
                pipelines: t
                    .pipelines
                    .iter()
                    .map(|p| PipelineId(p.get_ref().clone()))
                    .collect(),
            };
            if out_teams.insert(team.id.clone(), team).is_some() {
                self.err(
                    file,
                    t.id.span(),
                    format!("team '{}' is defined twice", t.id.get_ref()),
                );
            }
        }

        // Employees.
        let mut out_employees = BTreeMap::new();
        for Located { file, item: e } in &employees {
            check_ident(&mut self, file, &e.id, "employee id");
            if e.id.get_ref() == "system" {
                self.err(
                    file,
                    e.id.span(),
                    "'system' is reserved for the engine's own actions",
                );
            }
            if let Some(t) = &e.team
                && !team_ids.contains(t.get_ref())
            {
                self.err(
                    file,
                    t.span(),
                    format!(
                        "unknown team '{}' for employee '{}'",
                        t.get_ref(),
                        e.id.get_ref()
                    ),
                );
            }
            if let Some(m) = &e.manager
                && !employee_ids.contains(m.get_ref())
            {
                self.err(
                    file,
                    m.span(),
                    format!(
                        "unknown employee '{}' as manager of '{}'",
                        m.get_ref(),
                        e.id.get_ref()
                    ),
                );
            }
            let email = match &e.email {
                Some(addr) => match crate::field::normalize_email(addr.get_ref()) {
                    Ok(a) => Some(a),
                    Err(msg) => {
                        self.err(file, addr.span(), msg);
                        None
                    }
                },
                None => None,
            };
            let id = EmployeeId(e.id.get_ref().clone());
            let team = e.team.as_ref().map(|t| TeamId(t.get_ref().clone()));
            let manager = e
                .manager
                .as_ref()
                .map(|m| EmployeeId(m.get_ref().clone()))
                .or_else(|| {
                    team.as_ref()
                        .and_then(|t| out_teams.get(t))
                        .and_then(|t: &Team| t.manager.clone())
                        .filter(|m| m != &id)
                });
            let employee = Employee {
                id: id.clone(),
                name: e.name.clone(),
                team,
                manager,
                email,
                active: e.active,
            };
            if out_employees.insert(id, employee).is_some() {
                self.err(
                    file,
                    e.id.span(),
                    format!("employee '{}' is defined twice", e.id.get_ref()),
                );
            }
        }

        if let Some(Located { file, item: a }) = &default_actor
            && !employee_ids.contains(a.get_ref())
            && a.get_ref() != "system"
        {
            self.err(
                file,
                a.span(),
                format!("unknown employee '{}' as default_actor", a.get_ref()),
            );
        }

        // Fields.
        let mut out_fields: Vec<FieldDef> = Vec::new();
        for Located { file, item: f } in &fields {
            check_ident(&mut self, file, &f.id, "field id");
            let entity = match f.entity.get_ref().parse::<EntityKind>() {
                Ok(k) if k.is_entity() && k != EntityKind::Task => Some(k),
                _ => {
                    self.err(
                        file,
                        f.entity.span(),
                        format!(
                            "unknown entity '{}': expected lead, deal, contact or company",
                            f.entity.get_ref()
                        ),
                    );
                    None
                }
            };
            let ty = *f.ty.get_ref();
            if ty == FieldType::Enum && f.options.is_empty() {
                self.err(
                    file,
                    f.ty.span(),
                    format!("enum field '{}' needs options", f.id.get_ref()),
                );
            }
            if ty != FieldType::Enum && !f.options.is_empty() {
                self.err(
                    file,
                    f.ty.span(),
                    format!("field '{}' has options but is not an enum", f.id.get_ref()),
                );
            }
            let Some(entity) = entity else { continue };
            if builtin_fields(entity).contains(&f.id.get_ref().as_str()) {
                self.err(
                    file,
                    f.id.span(),
                    format!(
                        "field '{}' clashes with the built-in {entity} field of that name",
                        f.id.get_ref()
                    ),
                );
            }
            if out_fields
                .iter()
                .any(|o| o.entity == entity && &o.id == f.id.get_ref())
            {
                self.err(
                    file,
                    f.id.span(),
                    format!("{entity} field '{}' is defined twice", f.id.get_ref()),
                );
            }
            out_fields.push(FieldDef {
                id: f.id.get_ref().clone(),
                entity,
                ty,
                label: f.label.clone().unwrap_or_else(|| f.id.get_ref().clone()),
                group: f.group.clone(),
                options: f.options.clone(),
            });
        }

        // Pipelines.
        let mut out_pipelines: Vec<Pipeline> = Vec::new();
        for Located { file, item: p } in &pipelines {
            check_ident(&mut self, file, &p.id, "pipeline id");
            let entity = match p.entity.get_ref().as_str() {
                "lead" => EntityKind::Lead,
                "deal" => EntityKind::Deal,
                other => {
                    self.err(
                        file,
                        p.entity.span(),
                        format!("unknown pipeline entity '{other}': expected lead or deal"),
                    );
                    continue;
                }
            };
            if out_pipelines
                .iter()
                .any(|o| o.id.as_str() == p.id.get_ref())
            {
                self.err(
                    file,
                    p.id.span(),
                    format!("pipeline '{}' is defined twice", p.id.get_ref()),
                );
            }
            if p.stages.get_ref().is_empty() {
                self.err(
                    file,
                    p.stages.span(),
                    format!("pipeline '{}' has no stages", p.id.get_ref()),
                );
                continue;
            }
            let stage_ids: BTreeSet<&String> =
                p.stages.get_ref().iter().map(|s| s.id.get_ref()).collect();
            let known_field = |name: &str| {
                builtin_fields(entity).contains(&name)
                    || out_fields
                        .iter()
                        .any(|f| f.entity == entity && f.id == name)
            };
            let mut stages: Vec<Stage> = Vec::new();
            for s in p.stages.get_ref() {
                check_ident(&mut self, file, &s.id, "stage id");
                if stages.iter().any(|o| o.id.as_str() == s.id.get_ref()) {
                    self.err(
                        file,
                        s.id.span(),
                        format!(
                            "stage '{}' is defined twice in pipeline '{}'",
                            s.id.get_ref(),
                            p.id.get_ref()
                        ),
                    );
                }
                let target = match &s.target {
                    Some(t) => match parse_duration(t.get_ref()) {
                        Ok(d) => Some(d),
                        Err(msg) => {
                            self.err(file, t.span(), msg);
                            None
                        }
                    },
                    None => None,
                };
                let requirements = |list: &[Spanned<String>],
                                    this: &mut Loader|
                 -> Vec<Requirement> {
                    list.iter()
                        .map(|r| {
                            let any_of: Vec<String> =
                                r.get_ref().split('|').map(|a| a.trim().to_owned()).collect();
                            for a in &any_of {
                                if !known_field(a) {
                                    this.err(file, r.span(), format!("unknown {entity} field '{a}' in the requirements of stage '{}'", s.id.get_ref()));
                                }
                            }
                            Requirement { any_of }
                        })
                        .collect()
                };
                let required = requirements(&s.required, &mut self);
                let mut required_when = Vec::new();
                for c in &s.required_when {
                    if !known_field(c.field.get_ref()) {
                        self.err(
                            file,
                            c.field.span(),
                            format!(
                                "unknown {entity} field '{}' in a condition of stage '{}'",
                                c.field.get_ref(),
                                s.id.get_ref()
                            ),
                        );
                    }
                    required_when.push(ConditionalRequirement {
                        field: c.field.get_ref().clone(),
                        equals: c.equals.clone(),
                        required: requirements(&c.required, &mut self),
                    });
                }
                let from = s.from.as_ref().map(|list| {
                    list.iter()
                        .map(|f| {
                            if !stage_ids.contains(f.get_ref()) {
                                self.err(
                                    file,
                                    f.span(),
                                    format!(
                                        "unknown stage '{}' in 'from' of stage '{}'",
                                        f.get_ref(),
                                        s.id.get_ref()
                                    ),
                                );
                            }
                            StageId(f.get_ref().clone())
                        })
                        .collect()
                });
                if !s.reasons.is_empty() && s.semantic != Semantic::Failure {
                    self.err(
                        file,
                        s.id.span(),
                        format!(
                            "stage '{}' lists reasons but is not a failure stage",
                            s.id.get_ref()
                        ),
                    );
                }
                stages.push(Stage {
                    id: StageId(s.id.get_ref().clone()),
                    name: s.name.clone(),
                    semantic: s.semantic,
                    target,
                    required,
                    required_when,
                    from,
                    reasons: s.reasons.clone(),
                });
            }
            if stages[0].semantic != Semantic::InProgress {
                self.err(
                    file,
                    p.stages.get_ref()[0].id.span(),
                    format!(
                        "the first stage of pipeline '{}' must be in_progress",
                        p.id.get_ref()
                    ),
                );
            }
            out_pipelines.push(Pipeline {
                id: PipelineId(p.id.get_ref().clone()),
                name: p.name.clone(),
                entity,
                stages,
            });
        }
        let lead_pipelines = out_pipelines
            .iter()
            .filter(|p| p.entity == EntityKind::Lead)
            .count();
        if lead_pipelines != 1 && self.errors.is_empty() {
            let (file, span) = match pipelines.iter().find(|p| p.item.entity.get_ref() == "lead") {
                Some(p) if lead_pipelines > 1 => (p.file, p.item.entity.span()),
                _ => (&sources[0], 0..0),
            };
            self.err(
                file,
                span,
                format!("exactly one pipeline must have entity = \"lead\", found {lead_pipelines}"),
            );
        }

        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(Config {
            currency: currency.unwrap_or_else(|| "RUB".to_owned()),
            default_actor: default_actor.map(|a| EmployeeId(a.item.into_inner())),
            sources: sources_list.unwrap_or_else(|| {
                ["web_form", "call", "email", "manual", "import"]
                    .map(String::from)
                    .to_vec()
            }),
            employees: out_employees,
            teams: out_teams,
            fields: out_fields,
            pipelines: out_pipelines,
            calendar: calendar.unwrap_or_default(),
        })
    }

    fn calendar(&mut self, src: &Source, raw: RawCalendar) -> Calendar {
        let mut cal = Calendar::default();
        if let Some(tz) = &raw.timezone {
            match tz.get_ref().parse() {
                Ok(z) => cal.timezone = z,
                Err(_) => self.err(
                    src,
                    tz.span(),
                    format!(
                        "unknown time zone '{}': use an IANA name like Europe/Moscow",
                        tz.get_ref()
                    ),
                ),
            }
        }
        if let Some(days) = &raw.days {
            cal.weekdays = [false; 7];
            for d in days.get_ref() {
                match calendar::parse_weekday(d.get_ref()) {
                    Some(w) => cal.weekdays[w.num_days_from_monday() as usize] = true,
                    None => self.err(
                        src,
                        d.span(),
                        format!(
                            "unknown weekday '{}': use mon, tue, wed, thu, fri, sat, sun",
                            d.get_ref()
                        ),
                    ),
                }
            }
            if !cal.weekdays.contains(&true) {
                self.err(
                    src,
                    days.span(),
                    "the calendar needs at least one working weekday",
                );
            }
        }
        if let Some(hours) = &raw.hours {
            cal.hours.clear();
            for h in hours.get_ref() {
                match calendar::parse_hours(h.get_ref()) {
                    Some((a, b)) => {
                        if cal.hours.last().is_some_and(|(_, prev_end)| *prev_end > a) {
                            self.err(src, h.span(), format!("working hours '{}' overlap or come before the previous interval", h.get_ref()));
                        }
                        cal.hours.push((a, b));
                    }
                    None => self.err(
                        src,
                        h.span(),
                        format!(
                            "bad working hours '{}': write them like 09:00-18:00",
                            h.get_ref()
                        ),
                    ),
                }
            }
            if cal.hours.is_empty() {
                self.err(
                    src,
                    hours.span(),
                    "the calendar needs working hours, e.g. [\"09:00-18:00\"]",
                );
            }
        }
        let dates = |list: &[Spanned<String>], this: &mut Loader| -> BTreeSet<chrono::NaiveDate> {
            list.iter()
                .filter_map(
                    |d| match chrono::NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d") {
                        Ok(date) => Some(date),
                        Err(_) => {
                            this.err(
                                src,
                                d.span(),
                                format!("bad date '{}': write it like 2026-01-07", d.get_ref()),
                            );
                            None
                        }
                    },
                )
                .collect()
        };
        cal.holidays = dates(&raw.holidays, self);
        cal.working_weekends = dates(&raw.working_weekends, self);
        cal
    }
}

fn check_ident(loader: &mut Loader, file: &Source, id: &Spanned<String>, what: &str) {
    let s = id.get_ref();
    let ok = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.'
        })
        && s.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        loader.err(
            file,
            id.span(),
            format!("{what} '{s}' must start with a lowercase letter and use only a-z, 0-9, _ - ."),
        );
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The configuration `leadflow init` writes and `leadflow demo` uses: a first line that works
/// leads, two deal teams (goods, services), the default lead pipeline of the specification and
/// two deal pipelines, with the qualification card of a countertop workshop.
pub const DEFAULT_CONFIG: &str = include_str!("../../examples/leadflow.toml");

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        Config::from_toml("x.toml", text)
            .unwrap_err()
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const MINIMAL: &str = r#"
[[pipelines]]
id = "lead"
name = "Leads"
entity = "lead"
stages = [ { id = "new", name = "New" }, { id = "done", name = "Done", semantic = "success" } ]
"#;

    #[test]
    fn the_default_config_loads() {
        let config = Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap();
        assert_eq!(config.lead_pipeline().id.as_str(), "lead");
        assert!(config.pipeline(&"goods".into()).is_some());
        assert!(config.pipeline(&"services".into()).is_some());
    }

    #[test]
    fn a_minimal_config_loads() {
        let config = Config::from_toml("x.toml", MINIMAL).unwrap();
        assert_eq!(config.lead_pipeline().first_stage().id.as_str(), "new");
        assert_eq!(config.currency, "RUB");
    }

    #[test]
    fn toml_syntax_errors_carry_line_and_column() {
        let errs = errors("currency = \"RUB\"\n[[employees]\nid = 1\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("x.toml:2:"), "{errs:?}");
    }

    #[test]
    fn unknown_keys_are_reported_where_they_are() {
        let errs = errors(&format!(
            "{MINIMAL}\n[[employees]]\nid = \"a\"\nname = \"A\"\ncolour = \"red\"\n"
        ));
        assert!(errs[0].contains("unknown field `colour`"), "{errs:?}");
    }

    #[test]
    fn every_reference_error_is_reported_at_once() {
        let text = format!(
            "{MINIMAL}
[[employees]]
id = \"petrova\"
name = \"Petrova\"
team = \"nobody\"
manager = \"ghost\"

[[teams]]
id = \"sales\"
name = \"Sales\"
pipelines = [\"missing\"]
"
        );
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("x.toml:11:8: unknown team 'nobody'")),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.contains("unknown employee 'ghost'")));
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown pipeline 'missing'"))
        );
    }

    #[test]
    fn stage_requirements_must_name_known_fields() {
        let text = MINIMAL.replace(
            "{ id = \"done\", name = \"Done\", semantic = \"success\" }",
            "{ id = \"done\", name = \"Done\", semantic = \"success\", required = [\"budget\"], target = \"2 hours\" }",
        );
        let errs = errors(&text);
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown lead field 'budget'")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("bad duration '2 hours'")),
            "{errs:?}"
        );
    }

    #[test]
    fn a_config_needs_exactly_one_lead_pipeline() {
        let errs = errors("currency = \"RUB\"\n");
        assert!(
            errs[0].contains("exactly one pipeline must have entity = \"lead\""),
            "{errs:?}"
        );
    }

    #[test]
    fn the_calendar_is_read_and_checked() {
        let config = Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap();
        assert_eq!(config.calendar.timezone.name(), "Europe/Moscow");
        assert_eq!(config.calendar.day_length(), Duration::hours(8));
        let errs = errors(&format!(
            "{MINIMAL}\n[calendar]\ntimezone = \"Mars/Olympus\"\ndays = [\"mon\", \"funday\"]\nhours = [\"14:00-18:00\", \"09:00-13:00\", \"late\"]\nholidays = [\"2026-02-30\"]\n"
        ));
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(
            errs[0].contains("x.toml:9:12: unknown time zone 'Mars/Olympus'"),
            "{errs:?}"
        );
        assert!(errs[1].contains("unknown weekday 'funday'"), "{errs:?}");
        assert!(
            errs[2].contains("working hours '09:00-13:00' overlap"),
            "{errs:?}"
        );
        assert!(errs[3].contains("bad working hours 'late'"), "{errs:?}");
        assert!(errs[4].contains("bad date '2026-02-30'"), "{errs:?}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("1d 4h").unwrap(), Duration::hours(28));
        assert_eq!(parse_duration("30m").unwrap(), Duration::minutes(30));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_duration("3660d").unwrap(), Duration::days(3660));
        for long in [
            "3661d",
            "3000000d",
            "9999999999d",
            "523w",
            "87841h",
            "3660d 1s",
        ] {
            let e = parse_duration(long).unwrap_err();
            assert!(e.contains("too long: at most 3660d"), "{long}: {e}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(
            DurationParts::parse("2w 1d 90min 1h 5s"),
            Ok(DurationParts {
                weeks: 2,
                days: 1,
                seconds: 5405 + 3600
            })
        );
        assert!(DurationParts::parse("9223372036854775807w 9223372036854775807w").is_ok());
        assert!(parse_duration("9223372036854775807w 9223372036854775807w").is_err());
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\nпривет x", 16), (2, 8));
        assert_eq!(line_col("abc", 0), (1, 1));
    }
}
