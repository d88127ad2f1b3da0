//! `lead`, `deal`, `contact`, `company` and `task`: commands that change entities, and the
//! `show` and `list` queries over the projections.

use crate::automation;
use crate::cli::{
    AssignArgs, CompanyCmd, ContactCmd, DealCmd, DealFields, DeleteArgs, LeadCmd, LeadFields,
    ListArgs, MoveArgs, PartyFields, Requisites, SortBy, TaskCmd,
};
use crate::ctx::{Ctx, parse_time};
use crate::error::CliError;
use crate::output::{Table, clip, human_duration, json_line, json_pretty, opt, phone, time};
use leadflow_engine::command::FieldInputs;
use leadflow_engine::field::format_money;
use leadflow_engine::verb::{self, Verb};
use leadflow_engine::{Command, Entity, EntityKind, StreamId};
use leadflow_store::Executed;
use leadflow_store::query::{self, ListFilter, Search, Sort, TaskFilter};
use serde_json::{Map, Value, json};

/// Parses `42` or `lead-42` as the id of an entity of `kind`.
pub(crate) fn parse_id(kind: EntityKind, text: &str) -> Result<i64, CliError> {
    let t = text.trim();
    let digits = match t.split_once('-') {
        Some((k, rest)) if k == kind.as_str() => rest,
        Some(_) => {
            return Err(CliError::Usage(format!(
                "'{t}' is not a {kind} id; write 42 or {kind}-42"
            )));
        }
        None => t,
    };
    match digits.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(CliError::Usage(format!(
            "'{t}' is not a {kind} id; write 42 or {kind}-42"
        ))),
    }
}

/// A command's named arguments, put together from the command line's options under the names
/// [`leadflow_engine::verb`] takes (the names scenario steps write), which turns them into the
/// command. What only the command line has — ids typed as `42` or `lead-42`, `--field
/// NAME=VALUE` — is read here, with the command line's messages.
#[derive(Default)]
struct Named(Map<String, Value>);

impl Named {
    /// The changes of an update: the custom fields of `--field NAME=VALUE` options (by their
    /// ids, beside the built-in names the other options add).
    fn changes(pairs: &[String]) -> Result<Named, CliError> {
        Ok(Named(parse_fields(pairs)?.into_iter().collect()))
    }

    /// `key` = the text, when given.
    fn text(&mut self, key: &str, value: &Option<String>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(key.to_owned(), Value::from(v.as_str()));
        }
        self
    }

    /// `key` = the list, when not empty (`--phone` and `--email`, repeated).
    fn list(&mut self, key: &str, values: &[String]) -> &mut Self {
        if !values.is_empty() {
            self.0.insert(key.to_owned(), Value::from(values.to_vec()));
        }
        self
    }

    /// `key` = the id of an entity of `kind`, when given (see [`parse_id`]).
    fn id(&mut self, key: &str, kind: EntityKind, text: &Option<String>) -> Result<(), CliError> {
        if let Some(t) = text {
            self.0
                .insert(key.to_owned(), Value::from(parse_id(kind, t)?));
        }
        Ok(())
    }

    /// `fields` = the custom fields of `--field NAME=VALUE` options.
    fn fields(&mut self, pairs: &[String]) -> Result<(), CliError> {
        let fields = parse_fields(pairs)?;
        if !fields.is_empty() {
            self.0
                .insert("fields".into(), Value::Object(fields.into_iter().collect()));
        }
        Ok(())
    }

    /// The command `verb` gives with these arguments.
    fn command(&self, ctx: &Ctx, verb: Verb) -> Result<Command, CliError> {
        verb::build(verb, &self.0, ctx.clock.now(), &ctx.config).map_err(CliError::Usage)
    }
}

/// Parses `NAME=VALUE` pairs.
pub(crate) fn parse_fields(pairs: &[String]) -> Result<FieldInputs, CliError> {
    let mut out = FieldInputs::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("bad --field '{p}': write NAME=VALUE")))?;
        out.insert(k.trim().to_owned(), Value::from(v));
    }
    Ok(out)
}

fn clears(out: &mut FieldInputs, fields: &[String]) {
    for f in fields {
        out.insert(f.clone(), Value::Null);
    }
}

/// A command's outcome: what it appended, and what the rules did after it (`None` without a
/// rule set).
pub(crate) struct Done {
    /// The command's own events.
    pub out: Executed,
    /// The robots' events it caused.
    pub effects: Option<automation::Effects>,
}

/// Runs a command in one write transaction, optionally checking the entity's version first,
/// then the rules until they have reacted to it.
fn execute(ctx: &mut Ctx, cmd: Command, expect: Option<i64>) -> Result<Done, CliError> {
    ctx.check_backdate()?;
    let rules = automation::before_command(ctx)?;
    let meta = ctx.meta();
    let config = &ctx.config;
    let out = ctx.store.write_with(ctx.recorded_at(), |tx| {
        if let (Some(expected), leadflow_engine::command::Target::Existing(stream)) =
            (expect, cmd.target())
        {
            let actual = tx.load(stream)?.map_or(0, |e| e.version());
            if actual != expected {
                return Err(leadflow_store::Error::Conflict {
                    stream,
                    expected,
                    actual,
                });
            }
        }
        tx.execute(config, &cmd, &meta)
    })?;
    let effects = match &rules {
        Some(rt) => {
            let done = match &out.appended {
                Some(a) => format!("{} was recorded (position {})", out.stream, a.last_position),
                None => format!("{} was unchanged", out.stream),
            };
            Some(automation::settle(
                ctx,
                rt,
                Some(&out),
                &done,
                meta.occurred_at,
            )?)
        }
        None => None,
    };
    Ok(Done { out, effects })
}

/// Runs the update `verb` of entity `id` with `changes` plus the fields to clear; refuses an
/// empty one.
fn update(
    ctx: &mut Ctx,
    verb: Verb,
    id: i64,
    changes: Named,
    clear: &[String],
    expect: Option<i64>,
) -> Result<(), CliError> {
    let mut changes: FieldInputs = changes.0.into_iter().collect();
    clears(&mut changes, clear);
    if changes.is_empty() {
        return Err(CliError::Usage(
            "nothing to update: give at least one field".into(),
        ));
    }
    let cmd = verb::update(verb, id, changes).expect("an update verb");
    let out = execute(ctx, cmd, expect)?;
    report(ctx, &out, "updated");
    Ok(())
}

/// `lead move` and `deal move`.
fn move_to(ctx: &mut Ctx, verb: Verb, args: MoveArgs) -> Result<(), CliError> {
    let mut a = Named::default();
    a.id("id", verb.kind(), &Some(args.id))?;
    a.text("stage", &Some(args.stage.clone()))
        .text("reason", &args.reason);
    let cmd = a.command(ctx, verb)?;
    let out = execute(ctx, cmd, args.expect.expect_version)?;
    report(ctx, &out, &format!("moved to {}", args.stage));
    Ok(())
}

/// `lead delete`, `deal delete`, `contact delete`, `company delete`.
fn delete(ctx: &mut Ctx, kind: EntityKind, args: DeleteArgs) -> Result<(), CliError> {
    let id = parse_id(kind, &args.id)?;
    let reason = args.reason.clone();
    let cmd = match kind {
        EntityKind::Lead => Command::DeleteLead { id, reason },
        EntityKind::Deal => Command::DeleteDeal { id, reason },
        EntityKind::Contact => Command::DeleteContact { id, reason },
        _ => Command::DeleteCompany { id, reason },
    };
    let out = execute(ctx, cmd, args.expect.expect_version)?;
    report(ctx, &out, "deleted");
    Ok(())
}

/// `lead assign` and `deal assign`.
fn assign(ctx: &mut Ctx, verb: Verb, args: AssignArgs) -> Result<(), CliError> {
    let mut a = Named::default();
    a.id("id", verb.kind(), &Some(args.id))?;
    a.text("to", &Some(args.employee.clone()));
    let cmd = a.command(ctx, verb)?;
    let out = execute(ctx, cmd, args.expect.expect_version)?;
    report(ctx, &out, &format!("assigned to {}", args.employee));
    Ok(())
}

fn report(ctx: &Ctx, done: &Done, what: &str) {
    let out = &done.out;
    if ctx.json {
        let events: Vec<Value> = match &out.appended {
            Some(a) => out
                .events
                .iter()
                .zip(a.first_position..)
                .map(|(e, p)| json!({"position": p, "type": e.event_type()}))
                .collect(),
            None => vec![],
        };
        let mut v = json!({"stream": out.stream.to_string(), "id": out.stream.id, "changed": out.appended.is_some(), "events": events});
        if let Some(effects) = &done.effects {
            v["robots"] = automation::effects_json(effects);
            v["incidents"] = effects.incidents.into();
        }
        json_line(&v);
    } else {
        match &out.appended {
            Some(a) => outln!(
                "{} {what} (position {}, version {})",
                out.stream,
                a.last_position,
                a.version
            ),
            None => outln!("{} unchanged: nothing to do", out.stream),
        }
        if let Some(effects) = &done.effects {
            automation::print_effects(effects);
        }
    }
}

/// The changes of `lead update`.
fn lead_changes(f: &LeadFields) -> Result<Named, CliError> {
    let mut a = Named::changes(&f.fields)?;
    a.text("title", &f.title)
        .text("name", &f.name)
        .text("source", &f.source)
        .text("client_type", &f.client_type)
        .text("comment", &f.comment)
        .text("contact", &f.contact)
        .text("company", &f.company)
        .list("phones", &f.phones)
        .list("emails", &f.emails);
    Ok(a)
}

pub(crate) fn lead(ctx: &mut Ctx, cmd: LeadCmd) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    match cmd {
        LeadCmd::Create {
            fields,
            responsible,
            stage,
        } => {
            let mut a = Named::default();
            a.fields(&fields.fields)?;
            a.id("contact", EntityKind::Contact, &fields.contact)?;
            a.id("company", EntityKind::Company, &fields.company)?;
            a.text("title", &fields.title)
                .text("name", &fields.name)
                .list("phones", &fields.phones)
                .list("emails", &fields.emails)
                .text("source", &fields.source)
                .text("client_type", &fields.client_type)
                .text("responsible", &responsible)
                .text("stage", &stage)
                .text("comment", &fields.comment);
            let cmd = a.command(ctx, Verb::LeadCreate)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "created");
        }
        LeadCmd::Update {
            id,
            fields,
            clear,
            expect,
        } => {
            let id = parse_id(EntityKind::Lead, &id)?;
            update(
                ctx,
                Verb::LeadUpdate,
                id,
                lead_changes(&fields)?,
                &clear,
                expect.expect_version,
            )?;
        }
        LeadCmd::Delete(args) => delete(ctx, EntityKind::Lead, args)?,
        LeadCmd::Move(args) => move_to(ctx, Verb::LeadMove, args)?,
        LeadCmd::Assign(args) => assign(ctx, Verb::LeadAssign, args)?,
        LeadCmd::Show { id, as_of } => show_at(
            ctx,
            StreamId::new(EntityKind::Lead, parse_id(EntityKind::Lead, &id)?),
            as_of,
        )?,
        LeadCmd::List(args) => {
            let leads = query::leads(&ctx.store, &filter(ctx, &args, EntityKind::Lead)?)?;
            let ids: Vec<i64> = leads.iter().map(|l| l.id).collect();
            let repeat = query::repeat_leads(&ctx.store, &ids)?;
            if ctx.json {
                for l in &leads {
                    let mut v = serde_json::to_value(l).expect("serialisable");
                    v["repeat"] = repeat.contains(&l.id).into();
                    json_line(&v);
                }
                return Ok(());
            }
            if leads.is_empty() {
                outln!("no matching leads");
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID",
                "STAGE",
                "RESPONSIBLE",
                "TITLE",
                "PHONE",
                "SOURCE",
                "REPEAT",
                "CREATED",
            ]);
            for l in &leads {
                t.row(vec![
                    l.id.to_string(),
                    l.stage.to_string(),
                    opt(&l.responsible),
                    clip(&l.title, 32),
                    l.phones.first().map_or_else(|| "-".into(), |p| phone(p)),
                    l.source.clone(),
                    if repeat.contains(&l.id) { "yes" } else { "no" }.into(),
                    time(tz, l.created_at),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// What `--search` text is: a phone, an e-mail, an INN, or text.
fn search(text: &str) -> Search {
    Search::parse(text)
}

/// Refuses a name `flag` gives that the configuration does not know (exit 1), listing those
/// it does.
fn known<'a>(
    flag: &str,
    what: &str,
    given: &Option<String>,
    known: impl IntoIterator<Item = &'a str>,
) -> Result<(), CliError> {
    let Some(given) = given else {
        return Ok(());
    };
    let known: Vec<&str> = known.into_iter().collect();
    if known.contains(&given.as_str()) {
        return Ok(());
    }
    Err(CliError::Unknown(format!(
        "unknown {what} '{given}' in {flag}; the configuration lists: {}",
        known.join(", ")
    )))
}

/// The filter of `lead list` (`kind` a lead) or `deal list`; a pipeline, stage, employee or
/// source the configuration does not know is refused (exit 1), as are the lead-only options
/// for deals (exit 2).
fn filter(ctx: &Ctx, args: &ListArgs, kind: EntityKind) -> Result<ListFilter, CliError> {
    if kind != EntityKind::Lead {
        for (flag, given) in [
            ("--source", args.source.is_some()),
            ("--repeat", args.repeat),
            ("--first-time", args.first_time),
        ] {
            if given {
                return Err(CliError::Usage(format!(
                    "{flag} is for leads only; deal list does not take it"
                )));
            }
        }
    }
    let cfg = &ctx.config;
    let pipelines: Vec<_> = cfg.pipelines.iter().filter(|p| p.entity == kind).collect();
    known(
        "--pipeline",
        "pipeline",
        &args.pipeline,
        pipelines.iter().map(|p| p.id.as_str()),
    )?;
    let in_pipeline: Vec<_> = pipelines
        .iter()
        .filter(|p| {
            args.pipeline
                .as_deref()
                .is_none_or(|id| p.id.as_str() == id)
        })
        .collect();
    let mut stages: Vec<&str> = in_pipeline
        .iter()
        .flat_map(|p| p.stages.iter().map(|s| s.id.as_str()))
        .collect();
    stages.sort();
    stages.dedup();
    known("--stage", "stage", &args.stage, stages)?;
    known(
        "--responsible",
        "employee",
        &args.responsible,
        cfg.employees.keys().map(|e| e.as_str()),
    )?;
    if !cfg.sources.is_empty() {
        known(
            "--source",
            "source",
            &args.source,
            cfg.sources.iter().map(String::as_str),
        )?;
    }
    let time = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(|t| {
                parse_time(t, &ctx.config, Some(ctx.clock.now()))
                    .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
            })
            .transpose()
    };
    let responsible_in = match &args.team {
        None => None,
        Some(team) => {
            if !ctx.config.teams.keys().any(|t| t.as_str() == team) {
                let known: Vec<&str> = ctx.config.teams.keys().map(|t| t.as_str()).collect();
                return Err(CliError::Unknown(format!(
                    "unknown team '{team}' in --team; the configuration lists: {}",
                    known.join(", ")
                )));
            }
            Some(
                ctx.config
                    .employees
                    .values()
                    .filter(|e| e.team.as_ref().is_some_and(|t| t.as_str() == team))
                    .map(|e| e.id.to_string())
                    .collect(),
            )
        }
    };
    Ok(ListFilter {
        pipeline: args.pipeline.clone(),
        pipeline_in: None,
        stage: args.stage.clone(),
        responsible: args.responsible.clone(),
        responsible_in,
        source: args.source.clone(),
        search: args.search.as_deref().map(search),
        repeat: if args.repeat {
            Some(true)
        } else if args.first_time {
            Some(false)
        } else {
            None
        },
        created_since: time(&args.created_since, "--created-since")?,
        created_until: time(&args.created_until, "--created-until")?,
        updated_since: time(&args.updated_since, "--updated-since")?,
        updated_until: time(&args.updated_until, "--updated-until")?,
        sort: match args.sort {
            SortBy::Created => Sort::Created,
            SortBy::Updated => Sort::Updated,
            SortBy::Title => Sort::Title,
            SortBy::Stage => Sort::Stage,
            SortBy::Responsible => Sort::Responsible,
        },
        ascending: args.asc,
        limit: args.limit,
        offset: args.offset,
        after_id: None,
    })
}

/// The changes of `deal update`.
fn deal_changes(f: &DealFields) -> Result<Named, CliError> {
    let mut a = Named::changes(&f.fields)?;
    a.text("title", &f.title)
        .text("amount", &f.amount)
        .text("contact", &f.contact)
        .text("company", &f.company)
        .text("comment", &f.comment);
    Ok(a)
}

pub(crate) fn deal(ctx: &mut Ctx, cmd: DealCmd) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    match cmd {
        DealCmd::Create {
            fields,
            pipeline,
            stage,
            responsible,
            lead,
        } => {
            if fields.title.is_none() {
                return Err(CliError::Usage("a deal needs --title".into()));
            }
            let mut a = Named::default();
            a.id("contact", EntityKind::Contact, &fields.contact)?;
            a.id("company", EntityKind::Company, &fields.company)?;
            a.id("lead", EntityKind::Lead, &lead)?;
            a.fields(&fields.fields)?;
            a.text("title", &fields.title)
                .text("pipeline", &pipeline)
                .text("stage", &stage)
                .text("amount", &fields.amount)
                .text("responsible", &responsible)
                .text("comment", &fields.comment);
            let cmd = a.command(ctx, Verb::DealCreate)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "created");
        }
        DealCmd::Update {
            id,
            fields,
            clear,
            expect,
        } => {
            let id = parse_id(EntityKind::Deal, &id)?;
            update(
                ctx,
                Verb::DealUpdate,
                id,
                deal_changes(&fields)?,
                &clear,
                expect.expect_version,
            )?;
        }
        DealCmd::Delete(args) => delete(ctx, EntityKind::Deal, args)?,
        DealCmd::Move(args) => move_to(ctx, Verb::DealMove, args)?,
        DealCmd::Assign(args) => assign(ctx, Verb::DealAssign, args)?,
        DealCmd::Show { id, as_of } => show_at(
            ctx,
            StreamId::new(EntityKind::Deal, parse_id(EntityKind::Deal, &id)?),
            as_of,
        )?,
        DealCmd::List(args) => {
            let deals = query::deals(&ctx.store, &filter(ctx, &args, EntityKind::Deal)?)?;
            if ctx.json {
                deals.iter().for_each(json_line);
                return Ok(());
            }
            if deals.is_empty() {
                outln!("no matching deals");
                return Ok(());
            }
            let mut t = Table::new(&[
                "ID",
                "PIPELINE",
                "STAGE",
                "RESPONSIBLE",
                "TITLE",
                "AMOUNT",
                "CREATED",
            ]);
            for d in &deals {
                t.row(vec![
                    d.id.to_string(),
                    d.pipeline.to_string(),
                    d.stage.to_string(),
                    opt(&d.responsible),
                    clip(&d.title, 32),
                    d.amount.map_or_else(
                        || "-".into(),
                        |a| format!("{} {}", format_money(a), d.currency),
                    ),
                    time(tz, d.created_at),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// The changes of `contact update` and `company update`.
fn party_changes(f: &PartyFields, company: &Option<String>) -> Result<Named, CliError> {
    let mut out = Named::changes(&f.fields)?;
    out.text("name", &f.name)
        .text("company", company)
        .list("phones", &f.phones)
        .list("emails", &f.emails);
    if f.responsible.is_some() {
        return Err(CliError::Usage(
            "the responsible of an existing contact or company cannot be changed yet".into(),
        ));
    }
    Ok(out)
}

pub(crate) fn contact(ctx: &mut Ctx, cmd: ContactCmd) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    match cmd {
        ContactCmd::Create { fields, company } => {
            if fields.name.is_none() {
                return Err(CliError::Usage("a contact needs --name".into()));
            }
            let mut a = Named::default();
            a.id("company", EntityKind::Company, &company)?;
            a.fields(&fields.fields)?;
            a.text("name", &fields.name)
                .list("phones", &fields.phones)
                .list("emails", &fields.emails)
                .text("responsible", &fields.responsible);
            let cmd = a.command(ctx, Verb::ContactCreate)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "created");
        }
        ContactCmd::Update {
            id,
            fields,
            company,
            clear,
        } => {
            let id = parse_id(EntityKind::Contact, &id)?;
            let changes = party_changes(&fields, &company)?;
            update(ctx, Verb::ContactUpdate, id, changes, &clear, None)?;
        }
        ContactCmd::Delete(args) => delete(ctx, EntityKind::Contact, args)?,
        ContactCmd::Show { id, as_of } => show_at(
            ctx,
            StreamId::new(EntityKind::Contact, parse_id(EntityKind::Contact, &id)?),
            as_of,
        )?,
        ContactCmd::List { limit } => {
            let rows = query::contacts(&ctx.store, limit)?;
            if ctx.json {
                rows.iter().for_each(json_line);
                return Ok(());
            }
            if rows.is_empty() {
                outln!("no contacts");
                return Ok(());
            }
            let mut t = Table::new(&["ID", "NAME", "PHONE", "EMAIL", "COMPANY", "CREATED"]);
            for c in &rows {
                t.row(vec![
                    c.id.to_string(),
                    clip(&c.name, 32),
                    c.phones.first().map_or_else(|| "-".into(), |p| phone(p)),
                    c.emails.first().cloned().unwrap_or_else(|| "-".into()),
                    opt(&c.company),
                    time(tz, c.created_at),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

pub(crate) fn company(ctx: &mut Ctx, cmd: CompanyCmd) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    match cmd {
        CompanyCmd::Create {
            fields,
            requisites:
                Requisites {
                    inn,
                    bank_account,
                    bik,
                },
        } => {
            if fields.name.is_none() {
                return Err(CliError::Usage("a company needs --name".into()));
            }
            let mut a = Named::default();
            a.fields(&fields.fields)?;
            a.text("name", &fields.name)
                .text("inn", &inn)
                .text("bank_account", &bank_account)
                .text("bik", &bik)
                .list("phones", &fields.phones)
                .list("emails", &fields.emails)
                .text("responsible", &fields.responsible);
            let cmd = a.command(ctx, Verb::CompanyCreate)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "created");
        }
        CompanyCmd::Update {
            id,
            fields,
            requisites,
            clear,
        } => {
            let id = parse_id(EntityKind::Company, &id)?;
            let mut changes = party_changes(&fields, &None)?;
            changes
                .text("inn", &requisites.inn)
                .text("bank_account", &requisites.bank_account)
                .text("bik", &requisites.bik);
            update(ctx, Verb::CompanyUpdate, id, changes, &clear, None)?;
        }
        CompanyCmd::Delete(args) => delete(ctx, EntityKind::Company, args)?,
        CompanyCmd::Show { id, as_of } => show_at(
            ctx,
            StreamId::new(EntityKind::Company, parse_id(EntityKind::Company, &id)?),
            as_of,
        )?,
        CompanyCmd::List { limit } => {
            let rows = query::companies(&ctx.store, limit)?;
            if ctx.json {
                rows.iter().for_each(json_line);
                return Ok(());
            }
            if rows.is_empty() {
                outln!("no companies");
                return Ok(());
            }
            let mut t = Table::new(&["ID", "NAME", "INN", "BIK", "ACCOUNT", "CREATED"]);
            for c in &rows {
                t.row(vec![
                    c.id.to_string(),
                    clip(&c.name, 32),
                    opt(&c.inn),
                    opt(&c.bik),
                    opt(&c.bank_account),
                    time(tz, c.created_at),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

pub(crate) fn task(ctx: &mut Ctx, cmd: TaskCmd) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    match cmd {
        TaskCmd::Create {
            kind,
            title,
            assignee,
            due,
            lead,
            deal,
        } => {
            // `--due` is a time or `+2h` from now; the command takes the moment it names.
            let due_at = parse_time(&due, &ctx.config, Some(ctx.clock.now()))?;
            let mut a = Named::default();
            a.id("lead", EntityKind::Lead, &lead)?;
            a.id("deal", EntityKind::Deal, &deal)?;
            a.text("kind", &Some(kind))
                .text("title", &Some(title))
                .text("assignee", &Some(assignee))
                .text(
                    "due_at",
                    &Some(due_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                );
            let cmd = a.command(ctx, Verb::TaskCreate)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "created");
        }
        TaskCmd::Complete { id, result } => {
            let mut a = Named::default();
            a.id("id", EntityKind::Task, &Some(id))?;
            a.text("result", &result);
            let cmd = a.command(ctx, Verb::TaskComplete)?;
            let out = execute(ctx, cmd, None)?;
            report(ctx, &out, "completed");
        }
        TaskCmd::List {
            assignee,
            open,
            overdue,
            limit,
        } => {
            let now = ctx.clock.now();
            let f = TaskFilter {
                assignee,
                open,
                overdue_at: overdue.then_some(now),
                limit,
            };
            let rows = query::tasks(&ctx.store, &f)?;
            if ctx.json {
                rows.iter().for_each(json_line);
                return Ok(());
            }
            if rows.is_empty() {
                outln!("no matching tasks");
                return Ok(());
            }
            let mut t = Table::new(&["ID", "KIND", "ASSIGNEE", "DUE", "STATUS", "ABOUT", "TITLE"]);
            for task in &rows {
                let status = match task.completed_at {
                    Some(_) => "done",
                    None if task.due_at < now => "overdue",
                    None => "open",
                };
                let about = match (task.lead, task.deal) {
                    (Some(l), _) => format!("lead-{l}"),
                    (None, Some(d)) => format!("deal-{d}"),
                    _ => "-".into(),
                };
                t.row(vec![
                    task.id.to_string(),
                    task.kind.as_str().into(),
                    task.assignee.to_string(),
                    time(tz, task.due_at),
                    status.into(),
                    about,
                    clip(&task.title, 40),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// `show`, or with `--as-of` the entity as it was then: the same view, of a scratch copy of
/// the log up to that position with its projections (`history::as_of_store`), so the stage
/// history, timers, tasks and notifications are those of then too.
fn show_at(ctx: &mut Ctx, stream: StreamId, as_of: Option<String>) -> Result<(), CliError> {
    let Some(text) = as_of else {
        return show(ctx, stream, None);
    };
    let (position, then) = crate::history::resolve_at(ctx, &text, "--as-of")?;
    crate::history::existed(ctx, stream, position)?;
    let (dir, scratch) = crate::history::as_of_store(ctx, position)?;
    // Durations (time in stage, a timer's "in") count from then, not from now.
    let live = std::mem::replace(&mut ctx.store, scratch);
    let clock = std::mem::replace(&mut ctx.clock, Box::new(crate::ctx::FixedClock(then)));
    let out = show(ctx, stream, Some(position));
    ctx.clock = clock;
    drop(std::mem::replace(&mut ctx.store, live));
    drop(dir);
    out
}

/// The entity with its stage history, pending timers, open tasks, latest notifications and
/// incidents; `as_of`: the position the store stands at, for a scratch copy of then.
fn show(ctx: &Ctx, stream: StreamId, as_of: Option<i64>) -> Result<(), CliError> {
    let tz = ctx.config.calendar.timezone;
    let entity = match query::lookup(&ctx.store, stream)? {
        query::Lookup::Found(e) => *e,
        query::Lookup::Deleted { position, at } => {
            return Err(CliError::Unknown(format!(
                "{stream} was deleted at {} (position {position}); `leadflow events --stream {stream}` shows its history",
                time(ctx.config.calendar.timezone, at)
            )));
        }
        query::Lookup::Missing => {
            return Err(
                leadflow_store::Error::Rejected(leadflow_engine::Rejection::NotFound { stream })
                    .into(),
            );
        }
    };
    let store = &ctx.store;
    let history = query::stage_history(store, stream)?;
    let name = stream.to_string();
    // What is still to come and what was said about it.
    const LATEST: usize = 5;
    let timers = query::timers(
        store,
        &query::TimerFilter {
            stream: Some(stream),
            ..Default::default()
        },
    )?;
    let tasks = match stream.kind {
        EntityKind::Lead | EntityKind::Deal => query::open_tasks_of(store, stream)?,
        _ => Vec::new(),
    };
    let notifications = query::inbox(
        store,
        None,
        &query::InboxFilter {
            stream: Some(name.clone()),
            limit: LATEST,
            ..Default::default()
        },
    )?;
    let incidents = query::incidents_of(store, &name, LATEST)?;
    let repeat = match stream.kind {
        EntityKind::Lead => query::repeat_of(store, stream.id)?,
        _ => None,
    };
    if ctx.json {
        let state = match &entity {
            Entity::Lead(l) => serde_json::to_value(l),
            Entity::Deal(d) => serde_json::to_value(d),
            Entity::Contact(c) => serde_json::to_value(c),
            Entity::Company(c) => serde_json::to_value(c),
            Entity::Task(t) => serde_json::to_value(t),
        }
        .expect("serialisable");
        let mut v = json!({
            "stream": name,
            "state": state,
            "stage_history": history,
            "timers": timers.iter().map(crate::journal::timer_json).collect::<Vec<_>>(),
            "open_tasks": tasks,
            "notifications": notifications,
            "incidents": incidents,
        });
        if stream.kind == EntityKind::Lead {
            v["repeat"] = repeat.is_some().into();
            v["repeat_of"] = serde_json::to_value(&repeat).expect("serialisable");
        }
        if let Some(p) = as_of {
            v["as_of"] = p.into();
        }
        json_pretty(&v);
        return Ok(());
    }
    if let Some(p) = as_of {
        outln!("as of position {p}");
    }
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| lines.push((k.to_owned(), v));
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    let fields = |f: &std::collections::BTreeMap<String, Value>,
                  entity: EntityKind,
                  put: &mut dyn FnMut(&str, String)| {
        for (k, v) in f {
            let def = ctx.config.field(entity, k);
            let shown = match (def.map(|d| d.ty), v) {
                (Some(leadflow_engine::field::FieldType::Money), Value::Number(n)) => {
                    format!(
                        "{} {}",
                        format_money(n.as_i64().unwrap_or_default()),
                        ctx.config.currency
                    )
                }
                (_, Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            };
            let label = def.map_or(k.clone(), |d| format!("{} ({k})", d.label));
            put(&label, shown);
        }
    };
    match &entity {
        Entity::Lead(l) => {
            put("lead", format!("{} — {}", stream, l.title));
            put(
                "stage",
                format!(
                    "{} / {}{}",
                    l.pipeline,
                    l.stage,
                    l.stage_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            );
            put("responsible", opt(&l.responsible));
            put("name", opt(&l.name));
            put("phones", phones(&l.phones));
            put("e-mails", list(&l.emails));
            put("source", l.source.clone());
            put("client type", opt(&l.client_type.map(|c| c.as_str())));
            put(
                "client",
                match (l.contact, l.company) {
                    (None, None) => "-".into(),
                    (c, co) => [
                        c.map(|c| format!("contact-{c}")),
                        co.map(|c| format!("company-{c}")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                },
            );
            put("comment", opt(&l.comment));
            put(
                "repeat",
                match &repeat {
                    None => "no".into(),
                    Some(r) => {
                        let known: Vec<String> =
                            (r.contacts.iter().map(|c| format!("contact-{c}")))
                                .chain(r.companies.iter().map(|c| format!("company-{c}")))
                                .chain(r.leads.iter().map(|l| format!("lead-{l}")))
                                .collect();
                        format!("yes: {} (by {})", known.join(", "), r.by.join(", "))
                    }
                },
            );
            fields(&l.fields, EntityKind::Lead, &mut put);
            put("created", time(tz, l.created_at));
            put("updated", time(tz, l.updated_at));
            put("version", l.version.to_string());
        }
        Entity::Deal(d) => {
            put("deal", format!("{} — {}", stream, d.title));
            put(
                "stage",
                format!(
                    "{} / {}{}",
                    d.pipeline,
                    d.stage,
                    d.stage_reason
                        .as_ref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            );
            put(
                "amount",
                d.amount.map_or_else(
                    || "-".into(),
                    |a| format!("{} {}", format_money(a), d.currency),
                ),
            );
            put("responsible", opt(&d.responsible));
            put("contact", opt(&d.contact.map(|c| format!("contact-{c}"))));
            put("company", opt(&d.company.map(|c| format!("company-{c}"))));
            put("lead", opt(&d.lead.map(|c| format!("lead-{c}"))));
            put("comment", opt(&d.comment));
            fields(&d.fields, EntityKind::Deal, &mut put);
            put("created", time(tz, d.created_at));
            put("updated", time(tz, d.updated_at));
            put("version", d.version.to_string());
        }
        Entity::Contact(c) => {
            put("contact", format!("{} — {}", stream, c.name));
            put("phones", phones(&c.phones));
            put("e-mails", list(&c.emails));
            put("company", opt(&c.company.map(|c| format!("company-{c}"))));
            put("responsible", opt(&c.responsible));
            fields(&c.fields, EntityKind::Contact, &mut put);
            put("created", time(tz, c.created_at));
            put("version", c.version.to_string());
        }
        Entity::Company(c) => {
            put("company", format!("{} — {}", stream, c.name));
            put("INN", opt(&c.inn));
            put("BIK", opt(&c.bik));
            put("bank account", opt(&c.bank_account));
            put("phones", phones(&c.phones));
            put("e-mails", list(&c.emails));
            put("responsible", opt(&c.responsible));
            fields(&c.fields, EntityKind::Company, &mut put);
            put("created", time(tz, c.created_at));
            put("version", c.version.to_string());
        }
        Entity::Task(t) => {
            put("task", format!("{} — {}", stream, t.title));
            put("kind", t.kind.as_str().into());
            put("assignee", t.assignee.to_string());
            put("due", time(tz, t.due_at));
            put("completed", opt(&t.completed_at.map(|t| time(tz, t))));
        }
    }
    let width = lines
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in &lines {
        outln!("{k:<width$}  {v}");
    }
    if !history.is_empty() {
        outln!("\nstage history:");
        let mut t = Table::new(&["STAGE", "ENTERED", "LEFT", "TIME IN STAGE"]);
        let now = ctx.clock.now();
        for v in &history {
            // A won or lost item is closed: its time stops when it entered the final stage.
            let closed = v.left_at.is_none()
                && ctx
                    .config
                    .pipeline(&v.pipeline.as_str().into())
                    .and_then(|p| p.stage(&v.stage.as_str().into()))
                    .is_some_and(|s| s.semantic != leadflow_engine::config::Semantic::InProgress);
            let (left, spent) = match v.left_at {
                Some(left) => (time(tz, left), human_duration(left - v.entered_at)),
                None if closed => ("(closed)".into(), "-".into()),
                None => ("(current)".into(), human_duration(now - v.entered_at)),
            };
            t.row(vec![v.stage.clone(), time(tz, v.entered_at), left, spent]);
        }
        t.print();
    }
    if !timers.is_empty() {
        outln!("\npending timers:");
        crate::journal::timer_table(ctx, &timers).print();
    }
    if !tasks.is_empty() {
        outln!("\nopen tasks:");
        let now = ctx.clock.now();
        let mut t = Table::new(&["TASK", "KIND", "ASSIGNEE", "DUE", "TITLE"]);
        for task in &tasks {
            t.row(vec![
                format!("task-{}", task.id),
                task.kind.as_str().into(),
                task.assignee.to_string(),
                format!(
                    "{}{}",
                    time(tz, task.due_at),
                    if task.due_at < now { " (overdue)" } else { "" }
                ),
                clip(&task.title, 40),
            ]);
        }
        t.print();
    }
    if !notifications.is_empty() {
        outln!("\nlatest notifications:");
        let mut t = Table::new(&["#", "!", "AT", "TO", "READ", "TEXT"]);
        for n in &notifications {
            t.row(vec![
                n.position.to_string(),
                if n.priority == "high" { "!" } else { "" }.into(),
                time(tz, n.at),
                n.employee.clone(),
                if n.read_at.is_some() { "read" } else { "new" }.into(),
                clip(&n.text, 60),
            ]);
        }
        t.print();
    }
    if !incidents.is_empty() {
        outln!("\nlatest incidents:");
        let mut t = Table::new(&["POS", "AT", "KIND", "EMPLOYEE", "RULE", "TEXT"]);
        for i in &incidents {
            t.row(vec![
                i.position.to_string(),
                time(tz, i.at),
                i.kind.clone(),
                opt(&i.employee),
                opt(&i.rule),
                clip(i.text.as_deref().unwrap_or("-"), 60),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// Stored phones for people: `+79378922084 ext. 12, +79120000001`.
fn phones(list: &[String]) -> String {
    if list.is_empty() {
        "-".into()
    } else {
        list.iter().map(|p| phone(p)).collect::<Vec<_>>().join(", ")
    }
}
