//! Loading: the files' sections gathered, then each section checked and built by its own
//! method — settings (currency, default actor, intake sources), calendar, teams, employees,
//! fields, pipelines with their stages, `[bitrix24]` (in `bitrix24.rs`) — every problem
//! collected with its location.

use super::raw::{
    RawCalendar, RawConditional, RawEmployee, RawField, RawFile, RawPipeline, RawRole, RawStage,
    RawTeam,
};
use super::{
    ConditionalRequirement, Config, Employee, FieldDef, Pipeline, Requirement, Semantic, Stage,
    Team, builtin_fields,
};
use crate::access::{Action, Role, Scope};
use crate::calendar::{self, Calendar};
use crate::diag::{Diagnostic, Diagnostics, FileIndex, Source};
use crate::field::FieldType;
use crate::ids::{EmployeeId, EntityKind, PipelineId, StageId, TeamId};
use crate::time::parse_duration;
use std::collections::{BTreeMap, BTreeSet};
use toml::Spanned;

/// The sources when the configuration names none.
fn default_sources() -> Vec<String> {
    ["web_form", "call", "email", "manual", "import"]
        .map(String::from)
        .to_vec()
}

impl Config {
    /// Loads and validates a configuration from one or more files.
    pub fn load(sources: &[Source]) -> Result<Config, Diagnostics> {
        Loader::default().load(sources)
    }

    /// Parses a single TOML text (handy in tests).
    pub fn from_toml(path: &str, text: &str) -> Result<Config, Diagnostics> {
        Config::load(&[Source {
            path: path.to_owned(),
            text: text.to_owned(),
        }])
    }
}

/// Collects the problems of a configuration as it is checked.
#[derive(Default)]
pub(super) struct Loader {
    errors: Vec<Diagnostic>,
}

/// Something read from a file, with the file.
struct Located<'a, T> {
    file: &'a FileIndex<'a>,
    item: T,
}

impl<'a, T> Located<'a, T> {
    /// Each of a file's items, with the file.
    fn all(file: &'a FileIndex<'a>, items: Vec<T>) -> impl Iterator<Item = Located<'a, T>> {
        items.into_iter().map(move |item| Located { file, item })
    }
}

/// Every file's sections, gathered before they are checked against each other: settings set in
/// one file only, lists joined in file order.
#[derive(Default)]
struct Gathered<'a> {
    currency: Option<String>,
    default_actor: Option<Located<'a, Spanned<String>>>,
    sources: Option<Vec<String>>,
    calendar: Option<Calendar>,
    delivery: Option<super::Delivery>,
    ui: Option<super::UiConfig>,
    employees: Vec<Located<'a, RawEmployee>>,
    teams: Vec<Located<'a, RawTeam>>,
    fields: Vec<Located<'a, RawField>>,
    pipelines: Vec<Located<'a, RawPipeline>>,
    server: Option<super::service::ServerConfig>,
    forms: Vec<Located<'a, (Spanned<String>, super::service::RawForm)>>,
    bitrix24: Option<Located<'a, super::bitrix24::RawBitrix24>>,
    roles: Vec<Located<'a, (Spanned<String>, RawRole)>>,
}

/// The ids every file defines, for checking references across files.
struct Known {
    pipelines: BTreeMap<String, EntityKind>,
    teams: BTreeSet<String>,
    employees: BTreeSet<String>,
}

impl Known {
    fn of(g: &Gathered<'_>) -> Known {
        Known {
            pipelines: g
                .pipelines
                .iter()
                .filter_map(|p| {
                    p.item
                        .entity
                        .get_ref()
                        .parse::<EntityKind>()
                        .ok()
                        .map(|k| (p.item.id.get_ref().clone(), k))
                })
                .collect(),
            teams: g
                .teams
                .iter()
                .map(|t| t.item.id.get_ref().clone())
                .collect(),
            employees: g
                .employees
                .iter()
                .map(|e| e.item.id.get_ref().clone())
                .collect(),
        }
    }
}

impl Loader {
    pub(super) fn err(
        &mut self,
        file: &FileIndex<'_>,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) {
        self.errors.push(file.error(span.start, message));
    }

    /// Loads and validates a configuration: whole, or every problem.
    fn load(mut self, sources: &[Source]) -> Result<Config, Diagnostics> {
        let indexes: Vec<FileIndex<'_>> = sources.iter().map(FileIndex::of).collect();
        let files = self.parse(&indexes);
        let mut g = Gathered::default();
        for (src, raw) in files {
            self.gather(&mut g, src, raw);
        }
        let known = Known::of(&g);
        let teams = self.teams(&g.teams, &known);
        let employees = self.employees(&g.employees, &known, &teams);
        self.default_actor(g.default_actor.as_ref(), &known);
        let fields = self.fields(&g.fields);
        let pipelines = self.pipelines(&g.pipelines, &fields);
        self.one_lead_pipeline(&pipelines, &g.pipelines, &indexes);
        let sources = g.sources.clone().unwrap_or_else(default_sources);
        let mut forms = BTreeMap::new();
        for f in g.forms {
            let (name, raw) = f.item;
            let form = self.form(f.file, &name, raw, &sources, &fields);
            if forms.insert(form.name.clone(), form).is_some() {
                self.err(
                    f.file,
                    name.span(),
                    format!("[forms.{}] is set twice", name.get_ref()),
                );
            }
        }
        let bitrix24 = match g.bitrix24 {
            Some(Located { file, item }) => {
                let known = super::bitrix24::Known {
                    employees: &employees,
                    sources: &sources,
                    pipelines: &pipelines,
                    fields: &fields,
                };
                super::bitrix24::load(file, item, &known, &mut self.errors)
            }
            None => Default::default(),
        };
        let roles = self.roles(g.roles);

        if !self.errors.is_empty() {
            return Err(Diagnostics(self.errors));
        }
        let access = crate::access::Access::new(roles, &employees, &teams);
        Ok(Config {
            currency: g.currency.unwrap_or_else(|| "RUB".to_owned()),
            default_actor: g.default_actor.map(|a| EmployeeId(a.item.into_inner())),
            sources,
            employees,
            teams,
            fields,
            pipelines,
            calendar: g.calendar.unwrap_or_default(),
            server: g.server.unwrap_or_default(),
            forms,
            bitrix24,
            access,
            delivery: g.delivery.unwrap_or_default(),
            ui: g.ui.unwrap_or_default(),
        })
    }

    /// The TOML of every file; a file that is not valid TOML (or has unknown keys) is a problem.
    fn parse<'a>(&mut self, sources: &'a [FileIndex<'a>]) -> Vec<(&'a FileIndex<'a>, RawFile)> {
        let mut files = Vec::new();
        for src in sources {
            match toml::from_str::<RawFile>(src.text()) {
                Ok(raw) => files.push((src, raw)),
                Err(e) => self.errors.push(src.toml_error(&e)),
            }
        }
        if sources.is_empty() {
            self.errors.push(Diagnostic {
                file: "(none)".into(),
                line: 1,
                col: 1,
                message: "no configuration files were given".into(),
            });
        }
        files
    }

    /// Takes one file's sections into `g`: its settings (each allowed in one file only) are
    /// checked now, its lists later against everything.
    fn gather<'a>(&mut self, g: &mut Gathered<'a>, src: &'a FileIndex<'a>, raw: RawFile) {
        if let Some(c) = raw.calendar {
            if g.calendar.is_some() {
                self.err(src, c.span(), "[calendar] is set in more than one file");
            }
            g.calendar = Some(self.calendar(src, c.into_inner()));
        }
        if let Some(d) = raw.delivery {
            if g.delivery.is_some() {
                self.err(src, d.span(), "[delivery] is set in more than one file");
            }
            g.delivery = Some(self.delivery(src, d.into_inner()));
        }
        if let Some(u) = raw.ui {
            if g.ui.is_some() {
                self.err(src, u.span(), "[ui] is set in more than one file");
            }
            g.ui = Some(self.ui(src, u.into_inner()));
        }
        if let Some(c) = raw.currency {
            if g.currency.is_some() {
                self.err(src, c.span(), "currency is set in more than one file");
            }
            g.currency = Some(self.currency(src, c));
        }
        if let Some(a) = raw.default_actor {
            if g.default_actor.is_some() {
                self.err(src, a.span(), "default_actor is set in more than one file");
            }
            g.default_actor = Some(Located { file: src, item: a });
        }
        if let Some(list) = raw.sources {
            if g.sources.is_some() {
                self.err(src, list[0].span(), "sources are set in more than one file");
            }
            g.sources = Some(self.sources(src, list));
        }
        if let Some(sv) = raw.server {
            if g.server.is_some() {
                self.err(src, sv.span(), "[server] is set in more than one file");
            }
            g.server = Some(self.server(src, sv.into_inner()));
        }
        g.forms
            .extend(Located::all(src, raw.forms.into_iter().collect()));
        if let Some(b) = raw.bitrix24 {
            if g.bitrix24.is_some() {
                self.err(src, b.span(), "[bitrix24] is set in more than one file");
            }
            g.bitrix24 = Some(Located {
                file: src,
                item: b.into_inner(),
            });
        }
        g.employees.extend(Located::all(src, raw.employees));
        g.teams.extend(Located::all(src, raw.teams));
        g.fields.extend(Located::all(src, raw.fields));
        g.pipelines.extend(Located::all(src, raw.pipelines));
        g.roles
            .extend(Located::all(src, raw.roles.into_iter().collect()));
    }

    /// `currency`: a code like `RUB`.
    fn currency(&mut self, src: &FileIndex<'_>, c: Spanned<String>) -> String {
        let code = c.get_ref();
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
            self.err(
                src,
                c.span(),
                format!("currency '{code}' is not a code like RUB"),
            );
        }
        c.into_inner()
    }

    /// `sources`: the intake sources, each an id, none twice.
    fn sources(&mut self, src: &FileIndex<'_>, list: Vec<Spanned<String>>) -> Vec<String> {
        let mut seen = BTreeSet::new();
        for s in &list {
            if !seen.insert(s.get_ref().clone()) {
                self.err(
                    src,
                    s.span(),
                    format!("source '{}' is listed twice", s.get_ref()),
                );
            }
            self.check_ident(src, s, "source");
        }
        list.into_iter().map(Spanned::into_inner).collect()
    }

    /// `default_actor`: an employee, or `system`.
    fn default_actor(&mut self, actor: Option<&Located<'_, Spanned<String>>>, known: &Known) {
        if let Some(Located { file, item: a }) = actor
            && !known.employees.contains(a.get_ref())
            && a.get_ref() != "system"
        {
            self.err(
                file,
                a.span(),
                format!("unknown employee '{}' as default_actor", a.get_ref()),
            );
        }
    }

    /// `[[teams]]`: their managers and pipelines must exist.
    fn teams(&mut self, teams: &[Located<'_, RawTeam>], known: &Known) -> BTreeMap<TeamId, Team> {
        let mut out = BTreeMap::new();
        for Located { file, item: t } in teams {
            self.check_ident(file, &t.id, "team id");
            if let Some(m) = &t.manager
                && !known.employees.contains(m.get_ref())
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
                if !known.pipelines.contains_key(p.get_ref()) {
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
            if let Some(plan) = &t.plan
                && *plan.get_ref() < 1
            {
                self.err(
                    file,
                    plan.span(),
                    format!(
                        "plan of team '{}' must be a positive number of leads in work, not {}",
                        t.id.get_ref(),
                        plan.get_ref()
                    ),
                );
            }
            let team = Team {
                id: TeamId(t.id.get_ref().clone()),
                plan: t.plan.as_ref().map(|p| *p.get_ref()),
                name: t.name.clone(),
                manager: t.manager.as_ref().map(|m| EmployeeId(m.get_ref().clone())),
                pipelines: t
                    .pipelines
                    .iter()
                    .map(|p| PipelineId(p.get_ref().clone()))
                    .collect(),
            };
            if out.insert(team.id.clone(), team).is_some() {
                self.err(
                    file,
                    t.id.span(),
                    format!("team '{}' is defined twice", t.id.get_ref()),
                );
            }
        }
        out
    }

    /// `[[employees]]`: teams and managers must exist; without a manager of their own,
    /// employees report to their team's.
    fn employees(
        &mut self,
        employees: &[Located<'_, RawEmployee>],
        known: &Known,
        teams: &BTreeMap<TeamId, Team>,
    ) -> BTreeMap<EmployeeId, Employee> {
        let mut out = BTreeMap::new();
        for Located { file, item: e } in employees {
            self.check_ident(file, &e.id, "employee id");
            if e.id.get_ref() == "system" {
                self.err(
                    file,
                    e.id.span(),
                    "'system' is reserved for the engine's own actions",
                );
            }
            if let Some(t) = &e.team
                && !known.teams.contains(t.get_ref())
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
                && !known.employees.contains(m.get_ref())
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
                        .and_then(|t| teams.get(t))
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
            if out.insert(id, employee).is_some() {
                self.err(
                    file,
                    e.id.span(),
                    format!("employee '{}' is defined twice", e.id.get_ref()),
                );
            }
        }
        out
    }

    /// `[[fields]]`: custom fields of leads, deals, contacts and companies, typed; an enum has
    /// options and nothing else does.
    fn fields(&mut self, fields: &[Located<'_, RawField>]) -> Vec<FieldDef> {
        let mut out: Vec<FieldDef> = Vec::new();
        for Located { file, item: f } in fields {
            self.check_ident(file, &f.id, "field id");
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
            if out
                .iter()
                .any(|o| o.entity == entity && &o.id == f.id.get_ref())
            {
                self.err(
                    file,
                    f.id.span(),
                    format!("{entity} field '{}' is defined twice", f.id.get_ref()),
                );
            }
            out.push(FieldDef {
                id: f.id.get_ref().clone(),
                entity,
                ty,
                label: f.label.clone().unwrap_or_else(|| f.id.get_ref().clone()),
                group: f.group.clone(),
                options: f.options.clone(),
            });
        }
        out
    }

    /// `[[pipelines]]`: lead or deal pipelines, each with at least one stage, the first open.
    fn pipelines(
        &mut self,
        pipelines: &[Located<'_, RawPipeline>],
        fields: &[FieldDef],
    ) -> Vec<Pipeline> {
        let mut out: Vec<Pipeline> = Vec::new();
        for Located { file, item: p } in pipelines {
            self.check_ident(file, &p.id, "pipeline id");
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
            if out.iter().any(|o| o.id.as_str() == p.id.get_ref()) {
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
            let stages = self.stages(file, p, entity, fields);
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
            out.push(Pipeline {
                id: PipelineId(p.id.get_ref().clone()),
                name: p.name.clone(),
                entity,
                stages,
            });
        }
        out
    }

    /// The stages of one pipeline (at least one): ids unique, targets durations, requirements
    /// and conditions naming fields of the pipeline's entity, `from` naming its stages.
    fn stages(
        &mut self,
        file: &FileIndex<'_>,
        p: &RawPipeline,
        entity: EntityKind,
        fields: &[FieldDef],
    ) -> Vec<Stage> {
        let stage_ids: BTreeSet<&String> =
            p.stages.get_ref().iter().map(|s| s.id.get_ref()).collect();
        let mut stages: Vec<Stage> = Vec::new();
        for s in p.stages.get_ref() {
            self.check_ident(file, &s.id, "stage id");
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
            let required = self.requirements(file, s, &s.required, entity, fields);
            let mut required_when = Vec::new();
            for c in &s.required_when {
                required_when.push(self.conditional(file, s, c, entity, fields));
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
        stages
    }

    /// A stage's `required` list: each `a|b` names fields of `entity`.
    fn requirements(
        &mut self,
        file: &FileIndex<'_>,
        s: &RawStage,
        list: &[Spanned<String>],
        entity: EntityKind,
        fields: &[FieldDef],
    ) -> Vec<Requirement> {
        list.iter()
            .map(|r| {
                let any_of: Vec<String> = r
                    .get_ref()
                    .split('|')
                    .map(|a| a.trim().to_owned())
                    .collect();
                for a in &any_of {
                    if !known_field(entity, fields, a) {
                        self.err(
                            file,
                            r.span(),
                            format!(
                                "unknown {entity} field '{a}' in the requirements of stage '{}'",
                                s.id.get_ref()
                            ),
                        );
                    }
                }
                Requirement { any_of }
            })
            .collect()
    }

    /// One of a stage's `required_when`: a known field, and requirements.
    fn conditional(
        &mut self,
        file: &FileIndex<'_>,
        s: &RawStage,
        c: &RawConditional,
        entity: EntityKind,
        fields: &[FieldDef],
    ) -> ConditionalRequirement {
        if !known_field(entity, fields, c.field.get_ref()) {
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
        ConditionalRequirement {
            field: c.field.get_ref().clone(),
            equals: c.equals.clone(),
            required: self.requirements(file, s, &c.required, entity, fields),
        }
    }

    /// Exactly one pipeline is the lead pipeline (checked only when all else is right).
    fn one_lead_pipeline(
        &mut self,
        pipelines: &[Pipeline],
        raw: &[Located<'_, RawPipeline>],
        sources: &[FileIndex<'_>],
    ) {
        let lead_pipelines = pipelines
            .iter()
            .filter(|p| p.entity == EntityKind::Lead)
            .count();
        if lead_pipelines != 1 && self.errors.is_empty() {
            let (file, span) = match raw.iter().find(|p| p.item.entity.get_ref() == "lead") {
                Some(p) if lead_pipelines > 1 => (p.file, p.item.entity.span()),
                _ => (&sources[0], 0..0),
            };
            self.err(
                file,
                span,
                format!("exactly one pipeline must have entity = \"lead\", found {lead_pipelines}"),
            );
        }
    }

    /// `[calendar]`: time zone, working days and hours, holidays and working weekend days.
    fn calendar(&mut self, src: &FileIndex<'_>, raw: RawCalendar) -> Calendar {
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
        cal.holidays = self.dates(src, &raw.holidays);
        cal.working_weekends = self.dates(src, &raw.working_weekends);
        cal
    }

    /// A list of dates like `2026-01-07`.
    fn dates(
        &mut self,
        src: &FileIndex<'_>,
        list: &[Spanned<String>],
    ) -> BTreeSet<chrono::NaiveDate> {
        list.iter()
            .filter_map(
                |d| match chrono::NaiveDate::parse_from_str(d.get_ref(), "%Y-%m-%d") {
                    Ok(date) => Some(date),
                    Err(_) => {
                        self.err(
                            src,
                            d.span(),
                            format!("bad date '{}': write it like 2026-01-07", d.get_ref()),
                        );
                        None
                    }
                },
            )
            .collect()
    }

    /// An id: a lowercase letter first, then a-z, 0-9, `_`, `-` or `.`.
    fn check_ident(&mut self, file: &FileIndex<'_>, id: &Spanned<String>, what: &str) {
        let s = id.get_ref();
        let ok = !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.'
            })
            && s.starts_with(|c: char| c.is_ascii_lowercase());
        if !ok {
            self.err(
                file,
                id.span(),
                format!(
                    "{what} '{s}' must start with a lowercase letter and use only a-z, 0-9, _ - ."
                ),
            );
        }
    }
}

/// Whether stage requirements may name this field of `entity`: built in, or a custom field.
fn known_field(entity: EntityKind, fields: &[FieldDef], name: &str) -> bool {
    builtin_fields(entity).contains(&name)
        || fields.iter().any(|f| f.entity == entity && f.id == name)
}

/// `[roles.NAME]` (issue 10, access).
impl Loader {
    /// The roles the files define, each a whole role replacing the default of its name.
    fn roles(
        &mut self,
        raw: Vec<Located<'_, (Spanned<String>, RawRole)>>,
    ) -> BTreeMap<String, Role> {
        let mut out = BTreeMap::new();
        for Located {
            file,
            item: (name, role),
        } in raw
        {
            let span = name.span();
            let name = name.into_inner();
            if !valid_role_name(&name) {
                self.err(
                    file,
                    span.clone(),
                    format!("role name '{name}' must be lowercase letters, digits and '_'"),
                );
            }
            if out.contains_key(&name) {
                self.err(
                    file,
                    span,
                    format!("role '{name}' is defined more than once"),
                );
                continue;
            }
            let built = self.role(file, role);
            out.insert(name, built);
        }
        out
    }

    fn role(&mut self, file: &FileIndex<'_>, raw: RawRole) -> Role {
        let mut role = Role {
            description: raw.description.clone().unwrap_or_default(),
            ..Role::default()
        };
        if let Some(s) = &raw.scope {
            match s.get_ref().parse::<Scope>() {
                Ok(scope) => role.scope = scope,
                Err(m) => self.err(file, s.span(), m),
            }
        }
        for (resource, actions) in raw.grants() {
            let Some(actions) = actions else { continue };
            let mut granted = Vec::new();
            for a in actions.into_inner() {
                let word = a.get_ref().as_str();
                let applicable = resource.actions();
                let list = || {
                    applicable
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let these: Vec<Action> = match word {
                    "all" => applicable.to_vec(),
                    "write" => Action::WRITE
                        .into_iter()
                        .filter(|a| applicable.contains(a))
                        .collect(),
                    other => match Action::ALL.iter().find(|a| a.as_str() == other) {
                        Some(a) => vec![*a],
                        None => {
                            self.err(
                                file,
                                a.span(),
                                format!(
                                    "unknown action '{other}' on {resource}; actions are read, write (create, update, move, assign, complete, delete), admin and all"
                                ),
                            );
                            continue;
                        }
                    },
                };
                if these.is_empty() || these.iter().any(|x| !applicable.contains(x)) {
                    self.err(
                        file,
                        a.span(),
                        format!(
                            "'{word}' does not apply to {resource}, which takes: {}",
                            list()
                        ),
                    );
                    continue;
                }
                granted.extend(these);
            }
            role.grant(resource, &granted);
        }
        role
    }
}

/// Whether `s` is a role name: lowercase letters, digits and `_`, not empty.
fn valid_role_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
