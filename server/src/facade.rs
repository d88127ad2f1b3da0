//! The Bitrix24-compatible REST facade: `/rest/{user}/{secret}/{method}` (any HTTP method,
//! JSON, PHP-style query strings or form bodies). The secret is an API token; `{user}` is the
//! Bitrix24 user id of the employee the call acts for (`[bitrix24] users`). The protocol is
//! [`crate::bitrix`]; this module implements its [`Crm`] over the read connections and the
//! writer, with the token's role checked on every call and every command of a batch.

use crate::api::entities::pipeline_of;
use crate::auth::{Caller, authenticate};
use crate::bitrix::dispatch::{Binding, Crm, Listed};
use crate::bitrix::error::Error;
use crate::bitrix::events;
use crate::bitrix::filter::{Cmp as BCmp, Condition, Direction, Field, ListRequest, Operand};
use crate::bitrix::mapping::Mapping;
use crate::bitrix::method::{Method, Op};
use crate::bitrix::records::{self, Found};
use crate::error::ApiError;
use crate::state::AppState;
use crate::writer::Answer;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use leadflow_engine::access::{Action, Resource, Want};
use leadflow_engine::command::Target;
use leadflow_engine::ids::{EntityKind, StreamId};
use leadflow_engine::model::Entity;
use leadflow_engine::{Command, EventMeta};
use leadflow_store::query::{self, Visit};
use leadflow_store::query::{Cmp, Filter, ListQuery, Order, PageSpec, SortKey, Start};
use serde_json::json;
use std::sync::Arc;

/// A facade answer: always JSON, with the Bitrix24 status.
fn answer(status: u16, body: String) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    // An outage or the rate limit: a client may try again shortly.
    if status == 503 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn error(e: &Error) -> Response {
    let mut r = answer(
        e.status(),
        json!({"error": e.code(), "error_description": e.to_string()}).to_string(),
    );
    // The address is refused for the failure window, not a second.
    if *e == Error::QueryLimitExceeded {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::auth::FAILURE_WINDOW.as_secs()),
        );
    }
    r
}

/// `/rest/{user}/{secret}/{*method}`.
pub(crate) async fn call(
    State(state): State<AppState>,
    Path((user, secret, method)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    parts: axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Bytes,
) -> Response {
    let started = state.clock.now();
    let mapping = Arc::new(Mapping::new(state.config.clone()));
    let Ok(user) = user.parse::<i64>() else {
        return error(&Error::NoAuthFound);
    };
    let Some(employee) = mapping.employee(user).cloned() else {
        return error(&Error::NoAuthFound);
    };
    let caller = match authenticate(&state, Some(parts.0.ip()), &secret, Some(employee)).await {
        Ok(c) => c,
        Err(ApiError::TooManyRequests(_)) => return error(&Error::QueryLimitExceeded),
        Err(ApiError::Unauthorized(_)) => return error(&Error::NoAuthFound),
        Err(e) => return error(&Error::Internal(e.to_string())),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let handle = tokio::runtime::Handle::current();
    let st = state.clone();
    // Held while this request is waited for: when the request times out (or its client goes)
    // this future is dropped with it, and the blocking task's writes give up their place in
    // the writer's queue, so a 503 never hides a later write.
    let (_waited_for, gone) = tokio::sync::watch::channel(());
    let done = tokio::task::spawn_blocking(move || {
        let mut crm = StoreCrm {
            state: st.clone(),
            caller,
            mapping: mapping.clone(),
            handle,
            gone,
        };
        crate::bitrix::dispatch::respond(
            &mapping,
            user,
            &method,
            query.as_deref(),
            content_type.as_deref(),
            &body,
            &mut crm,
            started,
            || st.clock.now(),
        )
    })
    .await;
    match done {
        Ok((status, body)) => answer(status, body),
        Err(e) => error(&Error::Internal(format!("the call failed: {e}"))),
    }
}

/// A `/rest/…` path without a method, or with a user or secret missing.
pub(crate) async fn incomplete() -> Response {
    error(&Error::MethodNotFound)
}

/// The [`Crm`] of the service: reads through the read pool, writes through the writer, as the
/// token's role allows. Called from a blocking task ([`tokio::runtime::Handle::block_on`]).
struct StoreCrm {
    state: AppState,
    caller: Caller,
    mapping: Arc<Mapping>,
    handle: tokio::runtime::Handle,
    /// Closes when nobody waits for the request any more.
    gone: tokio::sync::watch::Receiver<()>,
}

fn internal(e: ApiError) -> Error {
    match e {
        ApiError::Forbidden(m) => Error::AccessDenied(m),
        ApiError::NotFound(_) => Error::NotFound,
        ApiError::Conflict { message, .. } => Error::Conflict(message),
        ApiError::Unavailable(m) => Error::Unavailable(m),
        ApiError::Unprocessable { message, .. } | ApiError::BadRequest { message, .. } => {
            Error::Rejected(message)
        }
        other => Error::Internal(other.to_string()),
    }
}

impl StoreCrm {
    /// Runs `work` in the writer's next batch and waits for its commit — unless nobody waits
    /// for the request any more: then its job is dropped from the queue (the writer skips a
    /// job whose answer nobody takes) and the call fails.
    fn write(&self, work: crate::writer::Work) -> Result<Answer, ApiError> {
        let mut gone = self.gone.clone();
        let writer = self.state.writer.clone();
        self.handle.block_on(async move {
            tokio::select! {
                answer = writer.run(None, work) => answer,
                _ = gone.changed() => Err(ApiError::Unavailable(
                    "the request was given up before its write ran; nothing was written".into(),
                )),
            }
        })
    }

    /// Runs `commands` as one change through the writer, each checked against the token's
    /// role on the record as it stands; a refusal names the Bitrix24 fields. Answers the id
    /// the last create made, if any, and the position of the last event appended.
    fn run_commands(&self, commands: Vec<Command>) -> Result<(Option<i64>, i64), Error> {
        let who = self.caller.clone();
        let mapping = self.mapping.clone();
        let result = self.write(Box::new(move |tx, ctx| {
            let actor = who.actor();
            let (mut created, mut last) = (None, 0);
            for command in &commands {
                who.may_execute(tx, ctx.config, command)?;
                let out = tx.execute(
                    ctx.config,
                    command,
                    &EventMeta::root(ctx.now, actor.clone()),
                );
                let out = match out {
                    Ok(o) => o,
                    Err(leadflow_store::Error::Rejected(r)) => {
                        return Err(ApiError::Unprocessable {
                            code: "rejected",
                            message: records::rejected(&mapping, kind_of(command), &r).to_string(),
                            field: None,
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                if matches!(command.target(), Target::New(_)) {
                    created = Some(out.stream.id);
                }
                last = out.appended.as_ref().map_or(last, |a| a.last_position);
            }
            Ok(Answer::ok(json!({ "created": created, "last": last })))
        }));
        match result {
            Ok(a) => Ok((
                a.body["created"].as_i64(),
                a.body["last"].as_i64().unwrap_or(0),
            )),
            Err(ApiError::Unprocessable { message, .. }) => Err(Error::Rejected(message)),
            Err(e) => Err(internal(e)),
        }
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut leadflow_store::Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, Error> {
        self.handle
            .block_on(self.state.readers.read(f))
            .map_err(internal)
    }

    fn found(store: &leadflow_store::Store, e: Entity) -> Result<Found, ApiError> {
        let repeat = match &e {
            Entity::Lead(l) => query::repeat_of(store, l.id)?.is_some(),
            Entity::Deal(d) => match d.lead {
                Some(l) => query::repeat_of(store, l)?.is_some(),
                None => false,
            },
            _ => false,
        };
        Ok(Found { entity: e, repeat })
    }

    fn may(&self, want: &Want) -> Result<(), Error> {
        self.caller.may(&self.state, want).map_err(internal)
    }
}

impl Crm for StoreCrm {
    fn authorize(&self, method: Method) -> Result<(), Error> {
        let want = match method {
            Method::Crm(kind, op) => Want::new(
                Resource::of_stream(kind),
                match op {
                    Op::Add => Action::Create,
                    Op::Update => Action::Update,
                    Op::Delete => Action::Delete,
                    Op::Get | Op::List | Op::Fields => Action::Read,
                },
            ),
            Method::StageHistoryList => Want::new(Resource::Lead, Action::Read),
            Method::TimelineCommentAdd => Want::new(Resource::Lead, Action::Update),
            Method::EventBind | Method::EventUnbind => Want::new(Resource::Webhooks, Action::Admin),
            // Listing the subscriptions is a read of the webhooks.
            Method::EventGet => Want::new(Resource::Webhooks, Action::Read),
            Method::StatusList | Method::CategoryList | Method::UserCurrent | Method::Batch => {
                return Ok(());
            }
        };
        // The comment and the history are checked again on the record they touch.
        if matches!(
            method,
            Method::StageHistoryList | Method::TimelineCommentAdd
        ) {
            return Ok(());
        }
        // An update is a change of fields, a move (STATUS_ID/STAGE_ID) or an assignment
        // (ASSIGNED_BY_ID): a role that may do one of them passes here, and `execute` checks
        // each command the fields make on the record itself.
        if let Method::Crm(kind, Op::Update) = method {
            let resource = Resource::of_stream(kind);
            return self.may(&want).or_else(|refused| {
                [Action::Move, Action::Assign]
                    .into_iter()
                    .find(|a| self.may(&Want::new(resource, *a)).is_ok())
                    .map(|_| ())
                    .ok_or(refused)
            });
        }
        self.may(&want)
    }

    fn execute(&mut self, commands: Vec<Command>) -> Result<Option<i64>, Error> {
        self.run_commands(commands).map(|(created, _)| created)
    }

    fn get(&self, stream: StreamId) -> Result<Option<Found>, Error> {
        let found = self.read(move |s| {
            let Some(e) = s.load(stream)? else {
                return Ok(None);
            };
            let pipeline = pipeline_of(&e, &mut |x| crate::api::entities::stream_pipeline(s, x))?;
            Ok(Some((StoreCrm::found(s, e)?, pipeline)))
        })?;
        let Some((found, pipeline)) = found else {
            return Ok(None);
        };
        let mut want = Want::new(Resource::of_stream(stream.kind), Action::Read);
        want.pipeline = pipeline;
        self.may(&want)?;
        Ok(Some(found))
    }

    fn list(&self, request: &ListRequest) -> Result<Listed, Error> {
        let q = list_query(request)?;
        let kind = request.kind;
        let reach = self
            .state
            .config
            .access
            .pipelines(&self.caller.role, self.caller.employee.as_ref());
        let mut q = q;
        if let Some(leadflow_engine::access::Reach::Only(set)) = reach
            && matches!(kind, EntityKind::Lead | EntityKind::Deal)
        {
            q.filters.push(Filter::Pipeline(Cmp::In(
                set.iter().map(|p| p.as_str().to_owned()).collect(),
            )));
        }
        let page = self.handle.block_on(self.state.readers.read(move |s| {
            let page = query::list(s, &q)?;
            let mut rows = Vec::with_capacity(page.items.len());
            for e in page.items {
                rows.push(StoreCrm::found(s, e)?);
            }
            Ok((rows, page.total))
        }));
        // A filter the store cannot serve is the caller's mistake, named.
        let page = page.map_err(|e| match e {
            ApiError::BadRequest { message, .. } => Error::InvalidArgument(message),
            other => internal(other),
        })?;
        Ok(Listed {
            rows: page.0,
            total: page.1.map(|t| t as usize),
        })
    }

    fn delete(&mut self, stream: StreamId) -> Result<(), Error> {
        let command = match stream.kind {
            EntityKind::Lead => Command::DeleteLead {
                id: stream.id,
                reason: None,
            },
            EntityKind::Deal => Command::DeleteDeal {
                id: stream.id,
                reason: None,
            },
            EntityKind::Contact => Command::DeleteContact {
                id: stream.id,
                reason: None,
            },
            EntityKind::Company => Command::DeleteCompany {
                id: stream.id,
                reason: None,
            },
            _ => return Err(Error::NotFound),
        };
        self.execute(vec![command]).map(|_| ())
    }

    fn stage_history(&self, stream: StreamId) -> Result<Vec<Visit>, Error> {
        if self.get(stream)?.is_none() {
            return Err(Error::NotFound);
        }
        self.read(move |s| Ok(query::stage_history(s, stream)?))
    }

    fn add_comment(&mut self, stream: StreamId, text: &str) -> Result<i64, Error> {
        // A timeline comment is an event of the record's stream (`lead.commented`, …); its id
        // is the event's position in the log.
        let command = Command::Comment {
            stream,
            text: text.to_owned(),
        };
        self.run_commands(vec![command]).map(|(_, last)| last)
    }

    fn bind(&mut self, binding: Binding) -> Result<(), Error> {
        // The binding is a webhook endpoint in the Bitrix24 format, subscribed to the stored
        // events that raise its event: added by `decide` like every endpoint (an event, so the
        // log says who subscribed what), delivered by the outbox with retries.
        let types = events::leadflow_types(&binding.event).ok_or_else(|| {
            Error::InvalidArgument(format!("event {} is not served", binding.event))
        })?;
        let (command, _) =
            leadflow_delivery::manage::add_command(leadflow_delivery::manage::NewHook {
                url: binding.handler.clone(),
                events: types.iter().map(|t| (*t).to_owned()).collect(),
                format: Some("bitrix24".into()),
                secret: None,
            })
            .map_err(|e| Error::Internal(format!("cannot make the handler's secret: {e}")))?;
        let who = self.caller.clone();
        let result = self.write(Box::new(move |tx, ctx| {
            who.may_execute(tx, ctx.config, &command)?;
            // Already bound: an endpoint for the handler gets every stored type of the event.
            let bound = tx.endpoints(false)?.into_iter().any(|ep| {
                ep.format == "bitrix24"
                    && ep.url == binding.handler
                    && events::covers(&ep.events, &binding.event)
            });
            if bound {
                return Ok(Answer::ok(json!(false)));
            }
            tx.execute(ctx.config, &command, &EventMeta::root(ctx.now, who.actor()))?;
            Ok(Answer::ok(json!(true)))
        }));
        match result {
            Ok(a) if a.body == json!(true) => Ok(()),
            Ok(_) => Err(Error::HandlerAlreadyBound),
            Err(e) => Err(internal(e)),
        }
    }

    fn unbind(&mut self, event: &str, handler: Option<&str>) -> Result<usize, Error> {
        // Every Bitrix24 endpoint raising the event (of the handler, if given) is removed; an
        // endpoint added with `leadflow webhook add --format bitrix24 --events 'lead.*'` raises
        // several events and is removed whole.
        let who = self.caller.clone();
        let event = event.to_owned();
        let handler = handler.map(str::to_owned);
        let result = self.write(Box::new(move |tx, ctx| {
            let gone: Vec<i64> = tx
                .endpoints(false)?
                .into_iter()
                .filter(|ep| {
                    ep.format == "bitrix24"
                        && handler.as_deref().is_none_or(|h| h == ep.url)
                        && events::raised_by(&ep.events).contains(&event.as_str())
                })
                .map(|ep| ep.id)
                .collect();
            // `authorize` checked the webhooks right for the method.
            for id in &gone {
                let command = Command::RemoveEndpoint { id: *id };
                tx.execute(ctx.config, &command, &EventMeta::root(ctx.now, who.actor()))?;
            }
            Ok(Answer::ok(json!(gone.len())))
        }));
        match result {
            Ok(a) => Ok(a.body.as_u64().unwrap_or(0) as usize),
            Err(e) => Err(internal(e)),
        }
    }

    fn bindings(&self) -> Result<Vec<Binding>, Error> {
        // The application token lets a handler trust an event: only those who may bind
        // handlers see it (event.get itself is a read).
        let owner = self
            .may(&Want::new(Resource::Webhooks, Action::Admin))
            .is_ok();
        let endpoints = self.read(|s| Ok(query::endpoints(s, false)?))?;
        Ok(endpoints
            .into_iter()
            .filter(|ep| ep.format == "bitrix24")
            .flat_map(|ep| {
                let token = owner.then(|| events::application_token(&ep.secret));
                events::raised_by(&ep.events)
                    .into_iter()
                    .map(move |event| Binding {
                        event: event.to_owned(),
                        handler: ep.url.clone(),
                        auth_type: 0,
                        application_token: token.clone(),
                    })
            })
            .collect())
    }
}

/// The kind of entity a command is about.
fn kind_of(command: &Command) -> EntityKind {
    match command.target() {
        Target::New(k) => k,
        Target::Existing(s) => s.kind,
        Target::Token(_) => EntityKind::Token,
    }
}

/// The store's list query for a facade list request; a condition the store cannot serve
/// through an index is refused, naming the field.
fn list_query(r: &ListRequest) -> Result<ListQuery, Error> {
    let mut q = ListQuery::new(r.kind);
    for c in &r.conditions {
        q.filters.push(filter(r.kind, c)?);
    }
    if let Some((field, dir)) = r.order.first() {
        q.order = Order {
            key: match field {
                Field::Id => SortKey::Id,
                Field::Created => SortKey::CreatedAt,
                Field::Updated => SortKey::UpdatedAt,
                Field::Title => SortKey::Title,
                // A contact's NAME is what its lists sort by as a title.
                Field::Name if r.kind == EntityKind::Contact => SortKey::Title,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "order by {} is not supported: order by ID, TITLE, DATE_CREATE or DATE_MODIFY",
                        field_name(r.kind, other)
                    )));
                }
            },
            descending: *dir == Direction::Desc,
        };
    }
    q.page = PageSpec {
        start: Start::Offset(r.start.offset() as u64),
        limit: r.limit() as u32,
        total: !matches!(r.start, crate::bitrix::envelope::Start::NoCount),
    };
    Ok(q)
}

fn unsupported(kind: EntityKind, c: &Condition) -> Error {
    let prefix = match c.cmp {
        BCmp::Eq => "=",
        BCmp::NotEq => "!",
        BCmp::Gt => ">",
        BCmp::Ge => ">=",
        BCmp::Lt => "<",
        BCmp::Le => "<=",
        BCmp::In => "@",
        BCmp::NotIn => "!@",
        BCmp::Contains => "%",
        BCmp::NotContains => "!%",
        BCmp::Like => "=%",
    };
    let field = field_name(kind, &c.field);
    let takes = match c.field {
        Field::Title | Field::Name => "=, %, =% and their negations",
        Field::Phone | Field::Email => "=, @, % and their negations",
        Field::Id | Field::Amount | Field::Created | Field::Updated | Field::Custom(_) => {
            "=, @, ranges and their negations"
        }
        Field::Repeat => "no filter (it is worked out on reading)",
        _ => "= and @ and their negations",
    };
    Error::InvalidArgument(format!(
        "filter {prefix}{field} is not supported: {field} takes {takes}"
    ))
}

/// A field's Bitrix24 name, for messages.
fn field_name(kind: EntityKind, f: &Field) -> String {
    match f {
        Field::Id => "ID".into(),
        Field::Title => "TITLE".into(),
        Field::Name => "NAME".into(),
        Field::Stage if kind == EntityKind::Lead => "STATUS_ID".into(),
        Field::Stage => "STAGE_ID".into(),
        Field::Pipeline => "CATEGORY_ID".into(),
        Field::Responsible => "ASSIGNED_BY_ID".into(),
        Field::Source => "SOURCE_ID".into(),
        Field::Phone => "PHONE".into(),
        Field::Email => "EMAIL".into(),
        Field::Created => "DATE_CREATE".into(),
        Field::Updated => "DATE_MODIFY".into(),
        Field::Contact => "CONTACT_ID".into(),
        Field::Company => "COMPANY_ID".into(),
        Field::Lead => "LEAD_ID".into(),
        Field::Amount => "OPPORTUNITY".into(),
        Field::Repeat => "IS_RETURN_CUSTOMER".into(),
        Field::Custom(id) => format!("UF_CRM_{}", id.to_ascii_uppercase()),
    }
}

fn text(o: &Operand) -> Option<String> {
    match o {
        Operand::Text(t) => Some(t.clone()),
        Operand::Int(n) => Some(n.to_string()),
        Operand::Employee(e) => Some(e.as_str().to_owned()),
        Operand::Pipeline(p) => Some(p.as_str().to_owned()),
        Operand::Stage(_, s) => Some(s.as_str().to_owned()),
        Operand::Bool(b) => Some(if *b { "Y" } else { "N" }.into()),
        _ => None,
    }
}

fn list_of<T>(o: &Operand, f: impl Fn(&Operand) -> Option<T>) -> Option<Vec<T>> {
    match o {
        Operand::List(items) => items.iter().map(f).collect(),
        one => f(one).map(|v| vec![v]),
    }
}

fn cmp<T: Clone>(
    kind: EntityKind,
    c: &Condition,
    f: impl Fn(&Operand) -> Option<T>,
) -> Result<Cmp<T>, Error> {
    let one = || f(&c.value).ok_or_else(|| unsupported(kind, c));
    Ok(match c.cmp {
        BCmp::Eq => match &c.value {
            Operand::List(_) => Cmp::In(list_of(&c.value, &f).ok_or_else(|| unsupported(kind, c))?),
            _ => Cmp::Eq(one()?),
        },
        BCmp::In => Cmp::In(list_of(&c.value, &f).ok_or_else(|| unsupported(kind, c))?),
        BCmp::NotEq => Cmp::Ne(one()?),
        BCmp::Gt => Cmp::Gt(one()?),
        BCmp::Ge => Cmp::Ge(one()?),
        BCmp::Lt => Cmp::Lt(one()?),
        BCmp::Le => Cmp::Le(one()?),
        BCmp::NotIn | BCmp::Contains | BCmp::NotContains | BCmp::Like => {
            return Err(unsupported(kind, c));
        }
    })
}

fn int(o: &Operand) -> Option<i64> {
    match o {
        Operand::Int(n) => Some(*n),
        Operand::Text(t) => t.parse().ok(),
        _ => None,
    }
}

fn time(o: &Operand) -> Option<chrono::DateTime<chrono::Utc>> {
    match o {
        Operand::Time(t) => Some(*t),
        _ => None,
    }
}

fn filter(kind: EntityKind, c: &Condition) -> Result<Filter, Error> {
    // A negation is the store's `Not` of the condition it negates (a stage's `!=` is served
    // as two ranges of its index instead).
    let positive = match c.cmp {
        BCmp::NotEq if c.field != Field::Stage => Some(BCmp::Eq),
        BCmp::NotIn => Some(BCmp::In),
        BCmp::NotContains => Some(BCmp::Contains),
        _ => None,
    };
    if let Some(cmp) = positive {
        let c = Condition { cmp, ..c.clone() };
        return Ok(Filter::Not(Box::new(filter(kind, &c)?)));
    }
    // A company's TITLE is its name.
    let title = |t: &str| match (kind, &c.cmp) {
        (EntityKind::Company, BCmp::Eq) => Filter::NameIs(t.to_owned()),
        (EntityKind::Company, BCmp::Like) => Filter::NameLike(t.to_owned()),
        (EntityKind::Company, _) => Filter::Name(t.to_owned()),
        (_, BCmp::Eq) => Filter::TitleIs(t.to_owned()),
        (_, BCmp::Like) => Filter::TitleLike(t.to_owned()),
        _ => Filter::Title(t.to_owned()),
    };
    let name = |t: &str| match &c.cmp {
        BCmp::Eq => Filter::NameIs(t.to_owned()),
        BCmp::Like => Filter::NameLike(t.to_owned()),
        _ => Filter::Name(t.to_owned()),
    };
    let words = |make: &dyn Fn(&str) -> Filter| match (&c.cmp, &c.value) {
        (BCmp::Eq | BCmp::Contains | BCmp::Like, Operand::Text(t)) => Ok(make(t)),
        (BCmp::Eq | BCmp::Contains | BCmp::Like, Operand::Int(n)) => Ok(make(&n.to_string())),
        _ => Err(unsupported(kind, c)),
    };
    let substring = || match (&c.cmp, &c.value) {
        (BCmp::Contains, Operand::Text(t)) => Ok(t.clone()),
        _ => Err(unsupported(kind, c)),
    };
    Ok(match &c.field {
        Field::Id => Filter::Id(cmp(kind, c, int)?),
        Field::Title => words(&title)?,
        Field::Name => words(&name)?,
        Field::Stage => Filter::Stage(cmp(kind, c, text)?),
        Field::Pipeline => Filter::Pipeline(cmp(kind, c, text)?),
        Field::Responsible => Filter::Responsible(cmp(kind, c, text)?),
        Field::Source => Filter::Source(cmp(kind, c, text)?),
        // Phones are kept in E.164: their digits are searched.
        Field::Phone if c.cmp == BCmp::Contains => {
            Filter::PhoneText(substring()?.chars().filter(char::is_ascii_digit).collect())
        }
        Field::Email if c.cmp == BCmp::Contains => Filter::EmailText(substring()?),
        Field::Phone => Filter::Phone(cmp(kind, c, |o| {
            text(o).map(|t| {
                leadflow_engine::field::parse_phone(&t)
                    .map(|p| p.number)
                    .unwrap_or(t)
            })
        })?),
        Field::Email => Filter::Email(cmp(kind, c, |o| text(o).map(|t| t.to_lowercase()))?),
        Field::Created => Filter::CreatedAt(cmp(kind, c, time)?),
        Field::Updated => Filter::UpdatedAt(cmp(kind, c, time)?),
        Field::Contact => Filter::Contact(cmp(kind, c, int)?),
        Field::Company => Filter::Company(cmp(kind, c, int)?),
        Field::Lead => Filter::Lead(cmp(kind, c, int)?),
        Field::Custom(id) => Filter::Custom {
            field: id.clone(),
            cmp: cmp(kind, c, |o| match o {
                Operand::Text(t) => Some(json!(t)),
                Operand::Int(n) => Some(json!(n)),
                Operand::Bool(b) => Some(json!(b)),
                _ => None,
            })?,
        },
        Field::Amount => Filter::Amount(cmp(kind, c, int)?),
        Field::Repeat => return Err(unsupported(kind, c)),
    })
}
