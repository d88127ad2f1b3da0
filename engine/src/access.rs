//! Access: roles, what each may do, and the check a request handler makes. Pure: the caller
//! says who (a role and the employee acted for) and what the request wants; [`Access::check`]
//! answers yes, or a [`Denied`] whose message says which role lacks what (the 403's text).
//!
//! A role grants [`Action`]s on [`Resource`]s. A role of [`Scope::Team`] reaches leads, deals
//! and tasks only in the pipelines of its employee's team and of the teams the employee
//! manages; things outside pipelines (contacts, the journal, reports…) are not scoped.
//!
//! The default roles follow seed 000 (see [`Access::defaults`]); `[roles.NAME]` in the
//! configuration replaces a default role of that name or adds one (docs/CONFIG.md).

use crate::command::Command;
use crate::config::{Config, Employee, Team};
use crate::ids::{EmployeeId, EntityKind, PipelineId, TeamId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// What a request reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Leads.
    Lead,
    /// Deals.
    Deal,
    /// Contacts.
    Contact,
    /// Companies.
    Company,
    /// Tasks.
    Task,
    /// The event log (`leadflow events`, the API's event stream).
    Events,
    /// The incident and escalation journal.
    Journal,
    /// Employees' in-app notifications.
    Inbox,
    /// Pending timers (deadlines, delayed robots).
    Timers,
    /// Rule sets: check, simulate (read); activate, reload (admin).
    Rules,
    /// API tokens: list (read); create, revoke (admin).
    Tokens,
    /// Event subscriptions of outside receivers.
    Webhooks,
    /// Messages waiting to be delivered: list (read); retry, drop (admin).
    Outbox,
    /// The log's hash chain and projections check.
    Verify,
    /// Funnel, KPI and other reports.
    Reports,
    /// Web-form submissions (`POST /intake/{form}`).
    Intake,
}

impl Resource {
    /// Every resource, in a stable order.
    pub const ALL: [Resource; 16] = [
        Resource::Lead,
        Resource::Deal,
        Resource::Contact,
        Resource::Company,
        Resource::Task,
        Resource::Events,
        Resource::Journal,
        Resource::Inbox,
        Resource::Timers,
        Resource::Rules,
        Resource::Tokens,
        Resource::Webhooks,
        Resource::Outbox,
        Resource::Verify,
        Resource::Reports,
        Resource::Intake,
    ];

    /// The word the configuration uses: `lead`, `events`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Lead => "lead",
            Resource::Deal => "deal",
            Resource::Contact => "contact",
            Resource::Company => "company",
            Resource::Task => "task",
            Resource::Events => "events",
            Resource::Journal => "journal",
            Resource::Inbox => "inbox",
            Resource::Timers => "timers",
            Resource::Rules => "rules",
            Resource::Tokens => "tokens",
            Resource::Webhooks => "webhooks",
            Resource::Outbox => "outbox",
            Resource::Verify => "verify",
            Resource::Reports => "reports",
            Resource::Intake => "intake",
        }
    }

    /// How a message names it: `deals`, `the journal`, …
    fn noun(self) -> &'static str {
        match self {
            Resource::Lead => "leads",
            Resource::Deal => "deals",
            Resource::Contact => "contacts",
            Resource::Company => "companies",
            Resource::Task => "tasks",
            Resource::Events => "events",
            Resource::Journal => "the journal",
            Resource::Inbox => "the inbox",
            Resource::Timers => "timers",
            Resource::Rules => "rules",
            Resource::Tokens => "tokens",
            Resource::Webhooks => "webhooks",
            Resource::Outbox => "the outbox",
            Resource::Verify => "the log check (verify)",
            Resource::Reports => "reports",
            Resource::Intake => "intake forms",
        }
    }

    /// The actions that mean something on this resource.
    pub fn actions(self) -> &'static [Action] {
        use Action as A;
        match self {
            Resource::Lead | Resource::Deal => {
                &[A::Read, A::Create, A::Update, A::Move, A::Assign, A::Delete]
            }
            Resource::Contact | Resource::Company => &[A::Read, A::Create, A::Update, A::Delete],
            Resource::Task => &[A::Read, A::Create, A::Update, A::Complete, A::Delete],
            Resource::Events
            | Resource::Journal
            | Resource::Timers
            | Resource::Verify
            | Resource::Reports => &[A::Read],
            Resource::Inbox => &[A::Read, A::Update],
            Resource::Rules | Resource::Tokens | Resource::Webhooks | Resource::Outbox => {
                &[A::Read, A::Admin]
            }
            Resource::Intake => &[A::Create],
        }
    }

    /// The resource whose read right covers the events of a stream kind: an entity's own, the
    /// rule-set history's `rules`, the engine's stream (reports, cron firings) `reports`.
    pub fn of_stream(kind: EntityKind) -> Resource {
        match kind {
            EntityKind::Lead => Resource::Lead,
            EntityKind::Deal => Resource::Deal,
            EntityKind::Contact => Resource::Contact,
            EntityKind::Company => Resource::Company,
            EntityKind::Task => Resource::Task,
            EntityKind::Ruleset => Resource::Rules,
            EntityKind::System => Resource::Reports,
            EntityKind::Token => Resource::Tokens,
            EntityKind::Endpoint => Resource::Webhooks,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown resource '{s}'; resources are: {}",
                    Resource::ALL.map(Resource::as_str).join(", ")
                )
            })
    }
}

/// What a request does to a resource. `write` in the configuration stands for every one of
/// create, update, move, assign, complete and delete that the resource has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Get, list, follow.
    Read,
    /// Make a new one.
    Create,
    /// Change fields.
    Update,
    /// Move to another stage.
    Move,
    /// Give a responsible employee.
    Assign,
    /// Mark a task done.
    Complete,
    /// Delete.
    Delete,
    /// Change how the service works: activate rules, make and revoke tokens, manage webhooks,
    /// retry or drop outbox messages.
    Admin,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 8] = [
        Action::Read,
        Action::Create,
        Action::Update,
        Action::Move,
        Action::Assign,
        Action::Complete,
        Action::Delete,
        Action::Admin,
    ];

    /// The actions `write` stands for.
    pub const WRITE: [Action; 6] = [
        Action::Create,
        Action::Update,
        Action::Move,
        Action::Assign,
        Action::Complete,
        Action::Delete,
    ];

    /// The word the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Move => "move",
            Action::Assign => "assign",
            Action::Complete => "complete",
            Action::Delete => "delete",
            Action::Admin => "admin",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Admin => "administer",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a role reaches into pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Every pipeline.
    #[default]
    All,
    /// Only the pipelines of the employee's team and of the teams the employee manages; a
    /// request that acts for no employee reaches no pipeline.
    Team,
}

impl Scope {
    /// The word the configuration uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::Team => "team",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Scope::All),
            "team" => Ok(Scope::Team),
            other => Err(format!("unknown scope '{other}'; expected all or team")),
        }
    }
}

/// One role: what it may do, and how far into pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    /// What it says it is for.
    pub description: String,
    /// The actions granted on each resource.
    pub grants: BTreeMap<Resource, BTreeSet<Action>>,
    /// How far into pipelines.
    pub scope: Scope,
}

impl Role {
    /// A role with these grants and scope.
    pub fn new(description: &str, scope: Scope, grants: &[(Resource, &[Action])]) -> Role {
        let mut role = Role {
            description: description.to_owned(),
            grants: BTreeMap::new(),
            scope,
        };
        for (resource, actions) in grants {
            role.grant(*resource, actions);
        }
        role
    }

    /// Adds the actions (those the resource has) to what the role may do on `resource`.
    pub fn grant(&mut self, resource: Resource, actions: &[Action]) {
        let set = self.grants.entry(resource).or_default();
        set.extend(actions.iter().filter(|a| resource.actions().contains(a)));
    }

    /// Whether the role has `action` on `resource` (scope aside).
    pub fn allows(&self, resource: Resource, action: Action) -> bool {
        self.grants
            .get(&resource)
            .is_some_and(|set| set.contains(&action))
    }
}

/// What a request wants to do: an action on a resource and, for a lead, deal or task, the
/// pipeline it is in (a task: its lead's or deal's), which a [`Scope::Team`] role checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// What it reaches.
    pub resource: Resource,
    /// What it does.
    pub action: Action,
    /// The pipeline of the lead or deal reached, when there is one.
    pub pipeline: Option<PipelineId>,
}

impl Want {
    /// An action on a resource outside pipelines (or a list a handler filters itself with
    /// [`Access::pipelines`]).
    pub fn new(resource: Resource, action: Action) -> Want {
        Want {
            resource,
            action,
            pipeline: None,
        }
    }

    /// An action on something in `pipeline`.
    pub fn in_pipeline(
        resource: Resource,
        action: Action,
        pipeline: impl Into<PipelineId>,
    ) -> Want {
        Want {
            resource,
            action,
            pipeline: Some(pipeline.into()),
        }
    }
}

impl Want {
    /// What executing `command` wants. `pipeline` is the pipeline of the lead or deal it acts
    /// on (a task: its lead's or deal's), which only the caller's state knows; a create command
    /// names its own (a deal: its pipeline, else the configuration's first deal pipeline; a
    /// lead: the lead pipeline), so `pipeline` is ignored for those.
    pub fn of_command(command: &Command, config: &Config, pipeline: Option<&PipelineId>) -> Want {
        use Action as A;
        use Command as C;
        use Resource as R;
        let (resource, action) = match command {
            C::CreateLead(_) => (R::Lead, A::Create),
            C::UpdateLead { .. } => (R::Lead, A::Update),
            C::MoveLead { .. } => (R::Lead, A::Move),
            C::AssignLead { .. } => (R::Lead, A::Assign),
            C::CreateDeal(_) => (R::Deal, A::Create),
            C::UpdateDeal { .. } => (R::Deal, A::Update),
            C::MoveDeal { .. } => (R::Deal, A::Move),
            C::AssignDeal { .. } => (R::Deal, A::Assign),
            C::CreateContact(_) => (R::Contact, A::Create),
            C::UpdateContact { .. } => (R::Contact, A::Update),
            C::CreateCompany(_) => (R::Company, A::Create),
            C::UpdateCompany { .. } => (R::Company, A::Update),
            C::CreateTask(_) => (R::Task, A::Create),
            C::CompleteTask { .. } => (R::Task, A::Complete),
            C::CreateToken(_) | C::RevokeToken { .. } => (R::Tokens, A::Admin),
            C::DeleteLead { .. } => (R::Lead, A::Delete),
            C::DeleteDeal { .. } => (R::Deal, A::Delete),
            C::DeleteContact { .. } => (R::Contact, A::Delete),
            C::DeleteCompany { .. } => (R::Company, A::Delete),
            C::AddEndpoint(_) | C::RemoveEndpoint { .. } => (R::Webhooks, A::Admin),
            C::Comment { stream, .. } => (R::of_stream(stream.kind), A::Update),
        };
        let pipeline = match command {
            C::CreateLead(_) => Some(config.lead_pipeline().id.clone()),
            C::CreateDeal(d) => d
                .pipeline
                .clone()
                .or_else(|| config.default_deal_pipeline().map(|p| p.id.clone())),
            C::CreateContact(_) | C::CreateCompany(_) | C::CreateToken(_) => None,
            C::AddEndpoint(_) | C::RemoveEndpoint { .. } => None,
            C::UpdateContact { .. } | C::UpdateCompany { .. } | C::RevokeToken { .. } => None,
            _ => pipeline.cloned(),
        };
        Want {
            resource,
            action,
            pipeline,
        }
    }
}

/// Why a request was refused; its message is what the 403 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The role is not defined (a token made before the configuration dropped its role).
    #[error("unknown role '{role}'; the configuration defines: {known}")]
    UnknownRole {
        /// The role.
        role: String,
        /// The roles defined.
        known: String,
    },
    /// The role lacks the action.
    #[error("role {role} may not {} {}", action.verb(), resource.noun())]
    NotGranted {
        /// The role.
        role: String,
        /// What was wanted.
        resource: Resource,
        /// What was to be done.
        action: Action,
    },
    /// The role reaches only its team's pipelines, and this one is not among them.
    #[error(
        "role {role} may {} {} only in its team's pipelines, and pipeline '{pipeline}' is not one of {}'s ({})",
        action.verb(), resource.noun(), employee, if reach.is_empty() { "none".to_owned() } else { reach.join(", ") }
    )]
    OutOfScope {
        /// The role.
        role: String,
        /// What was wanted.
        resource: Resource,
        /// What was to be done.
        action: Action,
        /// The pipeline asked for.
        pipeline: PipelineId,
        /// The employee acted for.
        employee: EmployeeId,
        /// The pipelines the employee reaches.
        reach: Vec<String>,
    },
    /// The role reaches only its team's pipelines, and the request acts for no employee.
    #[error(
        "role {role} may {} {} only in its employee's team's pipelines, and this request acts for no employee (give the token an employee)",
        action.verb(), resource.noun()
    )]
    NoEmployee {
        /// The role.
        role: String,
        /// What was wanted.
        resource: Resource,
        /// What was to be done.
        action: Action,
    },
}

/// Which pipelines a role reaches for an employee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Every pipeline.
    All,
    /// Only these (perhaps none).
    Only(BTreeSet<PipelineId>),
}

impl Reach {
    /// Whether `pipeline` is reached.
    pub fn contains(&self, pipeline: &PipelineId) -> bool {
        match self {
            Reach::All => true,
            Reach::Only(set) => set.contains(pipeline),
        }
    }
}

/// The roles and, for team-scoped roles, the pipelines each employee reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    roles: BTreeMap<String, Role>,
    reach: BTreeMap<EmployeeId, BTreeSet<PipelineId>>,
}

impl Default for Access {
    /// The default roles, for a configuration without teams.
    fn default() -> Self {
        Access {
            roles: Access::defaults(),
            reach: BTreeMap::new(),
        }
    }
}

impl Access {
    /// The default roles, after seed 000:
    /// - `admin`: everything, rules and tokens included;
    /// - `designer`: reads everything but tokens and verify; checks, simulates and activates rules;
    /// - `first_line`: leads only (read and write), their tasks, their inbox, their events;
    /// - `sales`: deals of their team's pipelines, contacts and companies;
    /// - `head_of_sales`: reads everything of their teams, reports and the journal; moves and
    ///   assigns leads and deals;
    /// - `auditor`: reads everything, events, journal and verify included; changes nothing;
    /// - `intake`: creates leads (and posts web forms), nothing else.
    pub fn defaults() -> BTreeMap<String, Role> {
        use Action as A;
        use Resource as R;
        const RW: &[Action] = &[
            A::Read,
            A::Create,
            A::Update,
            A::Move,
            A::Assign,
            A::Complete,
            A::Delete,
        ];
        let every: Vec<(Resource, &[Action])> = R::ALL.iter().map(|r| (*r, r.actions())).collect();
        let read_all = |except: &[Resource]| -> Vec<(Resource, &'static [Action])> {
            R::ALL
                .iter()
                .filter(|r| !except.contains(r) && r.actions().contains(&A::Read))
                .map(|r| (*r, &[A::Read][..]))
                .collect()
        };
        let mut roles = BTreeMap::new();
        roles.insert(
            "admin".to_owned(),
            Role::new("everything, rules and tokens included", Scope::All, &every),
        );
        let mut designer = Role::new(
            "reads everything but tokens and verify; checks, simulates and activates rules",
            Scope::All,
            &read_all(&[R::Tokens, R::Verify]),
        );
        designer.grant(R::Rules, &[A::Admin]);
        roles.insert("designer".to_owned(), designer);
        roles.insert(
            "first_line".to_owned(),
            Role::new(
                "leads only: reads and works leads and their tasks in the team's pipelines",
                Scope::Team,
                &[
                    (R::Lead, RW),
                    (R::Task, RW),
                    (R::Inbox, &[A::Read, A::Update]),
                    (R::Events, &[A::Read]),
                ],
            ),
        );
        roles.insert(
            "sales".to_owned(),
            Role::new(
                "deals of the team's pipelines, contacts and companies",
                Scope::Team,
                &[
                    (R::Deal, RW),
                    (R::Task, RW),
                    (R::Contact, RW),
                    (R::Company, RW),
                    (R::Inbox, &[A::Read, A::Update]),
                    (R::Events, &[A::Read]),
                ],
            ),
        );
        let mut head = Role::new(
            "reads everything of the teams they are in or manage, reports and the journal; moves and assigns",
            Scope::Team,
            &[
                (R::Lead, &[A::Read, A::Move, A::Assign]),
                (R::Deal, &[A::Read, A::Move, A::Assign]),
                (R::Contact, &[A::Read]),
                (R::Company, &[A::Read]),
                (R::Task, &[A::Read]),
                (R::Events, &[A::Read]),
                (R::Journal, &[A::Read]),
                (R::Timers, &[A::Read]),
                (R::Reports, &[A::Read]),
            ],
        );
        head.grant(R::Inbox, &[A::Read, A::Update]);
        roles.insert("head_of_sales".to_owned(), head);
        roles.insert(
            "auditor".to_owned(),
            Role::new(
                "reads everything, events, journal and verify included; changes nothing",
                Scope::All,
                &read_all(&[]),
            ),
        );
        roles.insert(
            "intake".to_owned(),
            Role::new(
                "creates leads and posts web forms, nothing else",
                Scope::All,
                &[(R::Lead, &[A::Create]), (R::Intake, &[A::Create])],
            ),
        );
        roles
    }

    /// The default roles with `overrides` (a role of the same name replaced whole, others
    /// added), and what each employee reaches: the pipelines of their team and of the teams
    /// they manage.
    pub fn new(
        overrides: BTreeMap<String, Role>,
        employees: &BTreeMap<EmployeeId, Employee>,
        teams: &BTreeMap<TeamId, Team>,
    ) -> Access {
        let mut roles = Access::defaults();
        roles.extend(overrides);
        let reach = employees
            .values()
            .map(|e| {
                let pipelines = teams
                    .values()
                    .filter(|t| e.team.as_ref() == Some(&t.id) || t.manager.as_ref() == Some(&e.id))
                    .flat_map(|t| t.pipelines.iter().cloned())
                    .collect();
                (e.id.clone(), pipelines)
            })
            .collect();
        Access { roles, reach }
    }

    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every role, by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// The role names, comma-separated, for messages.
    pub fn role_names(&self) -> String {
        self.roles.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Which pipelines `role` reaches acting for `employee` (for filtering lists); `None` if
    /// the role is unknown.
    pub fn pipelines(&self, role: &str, employee: Option<&EmployeeId>) -> Option<Reach> {
        let role = self.roles.get(role)?;
        Some(match role.scope {
            Scope::All => Reach::All,
            Scope::Team => Reach::Only(
                employee
                    .and_then(|e| self.reach.get(e))
                    .cloned()
                    .unwrap_or_default(),
            ),
        })
    }

    /// Whether `role`, acting for `employee`, may do what `want` says.
    pub fn check(
        &self,
        role: &str,
        employee: Option<&EmployeeId>,
        want: &Want,
    ) -> Result<(), Denied> {
        let Some(r) = self.roles.get(role) else {
            return Err(Denied::UnknownRole {
                role: role.to_owned(),
                known: self.role_names(),
            });
        };
        let (resource, action) = (want.resource, want.action);
        if !r.allows(resource, action) {
            return Err(Denied::NotGranted {
                role: role.to_owned(),
                resource,
                action,
            });
        }
        match (r.scope, &want.pipeline) {
            (Scope::All, _) | (Scope::Team, None) => Ok(()),
            (Scope::Team, Some(pipeline)) => {
                let Some(employee) = employee else {
                    return Err(Denied::NoEmployee {
                        role: role.to_owned(),
                        resource,
                        action,
                    });
                };
                let reach = self.reach.get(employee);
                if reach.is_some_and(|set| set.contains(pipeline)) {
                    Ok(())
                } else {
                    Err(Denied::OutOfScope {
                        role: role.to_owned(),
                        resource,
                        action,
                        pipeline: pipeline.clone(),
                        employee: employee.clone(),
                        reach: reach
                            .map(|s| s.iter().map(|p| p.to_string()).collect())
                            .unwrap_or_default(),
                    })
                }
            }
        }
    }

    /// Whether `role`, acting for `employee`, may see an event of a stream of `kind` (of a lead
    /// or deal in `pipeline`): it may read what the stream is about. For event streams: a
    /// first-line token's stream carries no deal events.
    pub fn may_see(
        &self,
        role: &str,
        employee: Option<&EmployeeId>,
        kind: EntityKind,
        pipeline: Option<&PipelineId>,
    ) -> bool {
        let want = Want {
            resource: Resource::of_stream(kind),
            action: Action::Read,
            pipeline: pipeline.cloned(),
        };
        self.check(role, employee, &want).is_ok()
    }
}

/// SHA-256 of an API token's secret, lowercase hex: what `token.created` and the `tokens` table
/// keep instead of the secret. A request's secret is hashed and looked up by the hash
/// (`store::query::token_by_hash`), so no comparison runs over the secret itself.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::hex(&Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, DEFAULT_CONFIG};

    fn config() -> Config {
        Config::from_toml("leadflow.toml", DEFAULT_CONFIG).unwrap()
    }

    /// A role, the employee its checks act for, and its `resource: actions` lines.
    type Row = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
    );

    /// What each default role may do, as `resource: actions` lines; everything else is denied.
    /// Checked against every resource × action, in its own pipeline where it has one.
    const MATRIX: &[Row] = &[
        (
            "admin",
            "admin",
            &[
                ("lead", "read create update move assign delete"),
                ("deal", "read create update move assign delete"),
                ("contact", "read create update delete"),
                ("company", "read create update delete"),
                ("task", "read create update complete delete"),
                ("events", "read"),
                ("journal", "read"),
                ("inbox", "read update"),
                ("timers", "read"),
                ("rules", "read admin"),
                ("tokens", "read admin"),
                ("webhooks", "read admin"),
                ("outbox", "read admin"),
                ("verify", "read"),
                ("reports", "read"),
                ("intake", "create"),
            ],
        ),
        (
            "designer",
            "admin",
            &[
                ("lead", "read"),
                ("deal", "read"),
                ("contact", "read"),
                ("company", "read"),
                ("task", "read"),
                ("events", "read"),
                ("journal", "read"),
                ("inbox", "read"),
                ("timers", "read"),
                ("rules", "read admin"),
                ("webhooks", "read"),
                ("outbox", "read"),
                ("reports", "read"),
            ],
        ),
        (
            "first_line",
            "ivanov",
            &[
                ("lead", "read create update move assign delete"),
                ("task", "read create update complete delete"),
                ("events", "read"),
                ("inbox", "read update"),
            ],
        ),
        (
            "sales",
            "kuznetsov",
            &[
                ("deal", "read create update move assign delete"),
                ("contact", "read create update delete"),
                ("company", "read create update delete"),
                ("task", "read create update complete delete"),
                ("events", "read"),
                ("inbox", "read update"),
            ],
        ),
        (
            "head_of_sales",
            "smirnova",
            &[
                ("lead", "read move assign"),
                ("deal", "read move assign"),
                ("contact", "read"),
                ("company", "read"),
                ("task", "read"),
                ("events", "read"),
                ("journal", "read"),
                ("inbox", "read update"),
                ("timers", "read"),
                ("reports", "read"),
            ],
        ),
        (
            "auditor",
            "admin",
            &[
                ("lead", "read"),
                ("deal", "read"),
                ("contact", "read"),
                ("company", "read"),
                ("task", "read"),
                ("events", "read"),
                ("journal", "read"),
                ("inbox", "read"),
                ("timers", "read"),
                ("rules", "read"),
                ("tokens", "read"),
                ("webhooks", "read"),
                ("outbox", "read"),
                ("verify", "read"),
                ("reports", "read"),
            ],
        ),
        (
            "intake",
            "admin",
            &[("lead", "create"), ("intake", "create")],
        ),
    ];

    /// The pipeline a matrix check names for a resource in pipelines, as the employee's own.
    fn own_pipeline(role: &str, resource: Resource) -> Option<&'static str> {
        match (role, resource) {
            (_, Resource::Lead) => Some("lead"),
            ("sales", Resource::Deal | Resource::Task) => Some("goods"),
            ("head_of_sales", Resource::Deal) => Some("services"),
            (_, Resource::Deal) => Some("goods"),
            _ => None,
        }
    }

    #[test]
    fn every_default_role_may_do_exactly_what_the_matrix_says_on_every_resource() {
        let access = config().access;
        let mut in_matrix: Vec<&str> = MATRIX.iter().map(|(r, _, _)| *r).collect();
        in_matrix.sort_unstable();
        assert_eq!(
            access
                .roles()
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            in_matrix,
            "the matrix covers every default role"
        );
        let mut wrong = Vec::new();
        for (role, employee, granted) in MATRIX {
            for resource in Resource::ALL {
                let allowed: Vec<&str> = granted
                    .iter()
                    .find(|(r, _)| *r == resource.as_str())
                    .map(|(_, a)| a.split(' ').collect())
                    .unwrap_or_default();
                for action in Action::ALL {
                    let want = Want {
                        resource,
                        action,
                        pipeline: own_pipeline(role, resource).map(PipelineId::from),
                    };
                    let got = access.check(role, Some(&EmployeeId::from(*employee)), &want);
                    let expect = allowed.contains(&action.as_str());
                    if got.is_ok() != expect {
                        wrong.push(format!(
                            "{role} {action} {resource}: expected {}, got {got:?}",
                            if expect { "allowed" } else { "denied" }
                        ));
                    }
                    if !expect && got.is_err() && !matches!(got, Err(Denied::NotGranted { .. })) {
                        wrong.push(format!(
                            "{role} {action} {resource}: not a missing grant: {got:?}"
                        ));
                    }
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn a_refusal_says_which_role_lacks_what() {
        let access = config().access;
        let ivanov = EmployeeId::from("ivanov");
        let denied = |role: &str, want: Want| {
            access
                .check(role, Some(&ivanov), &want)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            denied(
                "first_line",
                Want::in_pipeline(Resource::Deal, Action::Read, "goods")
            ),
            "role first_line may not read deals"
        );
        assert_eq!(
            denied("auditor", Want::new(Resource::Lead, Action::Create)),
            "role auditor may not create leads"
        );
        assert_eq!(
            denied("designer", Want::new(Resource::Tokens, Action::Admin)),
            "role designer may not administer tokens"
        );
        assert_eq!(
            denied("intake", Want::new(Resource::Journal, Action::Read)),
            "role intake may not read the journal"
        );
        assert_eq!(
            denied("root", Want::new(Resource::Lead, Action::Read)),
            "unknown role 'root'; the configuration defines: admin, auditor, designer, first_line, head_of_sales, intake, sales"
        );
    }

    #[test]
    fn sales_reach_only_the_deals_of_their_teams_pipelines() {
        let access = config().access;
        let want = |p: &str| Want::in_pipeline(Resource::Deal, Action::Update, p);
        let kuznetsov = EmployeeId::from("kuznetsov");
        let morozova = EmployeeId::from("morozova");
        assert!(
            access
                .check("sales", Some(&kuznetsov), &want("goods"))
                .is_ok()
        );
        assert!(
            access
                .check("sales", Some(&morozova), &want("services"))
                .is_ok()
        );
        assert_eq!(
            access
                .check("sales", Some(&kuznetsov), &want("services"))
                .unwrap_err()
                .to_string(),
            "role sales may update deals only in its team's pipelines, and pipeline 'services' is not one of kuznetsov's (goods)"
        );
        assert_eq!(
            access.check("sales", None, &want("goods")).unwrap_err(),
            Denied::NoEmployee {
                role: "sales".into(),
                resource: Resource::Deal,
                action: Action::Update,
            }
        );
        assert_eq!(
            access.pipelines("sales", Some(&kuznetsov)),
            Some(Reach::Only(["goods".into()].into()))
        );
        assert_eq!(access.pipelines("auditor", None), Some(Reach::All));
        assert_eq!(access.pipelines("nobody", None), None);
    }

    #[test]
    fn a_head_of_sales_reaches_the_teams_they_manage() {
        let access = config().access;
        let smirnova = EmployeeId::from("smirnova");
        let volkov = EmployeeId::from("volkov");
        let moving = |p: &str| Want::in_pipeline(Resource::Deal, Action::Move, p);
        // smirnova manages the first line and services; volkov manages goods.
        assert!(
            access
                .check("head_of_sales", Some(&smirnova), &moving("services"))
                .is_ok()
        );
        assert!(
            access
                .check("head_of_sales", Some(&smirnova), &moving("goods"))
                .is_err()
        );
        assert!(
            access
                .check("head_of_sales", Some(&volkov), &moving("goods"))
                .is_ok()
        );
        let reading_leads = Want::in_pipeline(Resource::Lead, Action::Read, "lead");
        assert!(
            access
                .check("head_of_sales", Some(&smirnova), &reading_leads)
                .is_ok()
        );
        assert!(
            access
                .check("head_of_sales", Some(&volkov), &reading_leads)
                .is_err()
        );
        assert!(
            access
                .check(
                    "head_of_sales",
                    Some(&smirnova),
                    &Want::new(Resource::Deal, Action::Create)
                )
                .is_err()
        );
    }

    #[test]
    fn a_command_wants_its_resource_action_and_pipeline() {
        use crate::command::{NewDeal, NewLead};
        let config = config();
        let access = &config.access;
        let kuznetsov = EmployeeId::from("kuznetsov");
        let services = PipelineId::from("services");
        let deal_in = |p: Option<&str>| {
            Command::CreateDeal(NewDeal {
                title: "Countertop".into(),
                pipeline: p.map(PipelineId::from),
                ..Default::default()
            })
        };
        let want = Want::of_command(&deal_in(None), &config, Some(&services));
        assert_eq!(
            want,
            Want::in_pipeline(Resource::Deal, Action::Create, "goods")
        );
        assert!(access.check("sales", Some(&kuznetsov), &want).is_ok());
        let want = Want::of_command(&deal_in(Some("services")), &config, None);
        assert!(access.check("sales", Some(&kuznetsov), &want).is_err());
        let moving = Command::MoveDeal {
            id: 1,
            stage: "won".into(),
            reason: None,
        };
        assert_eq!(
            Want::of_command(&moving, &config, Some(&services)),
            Want::in_pipeline(Resource::Deal, Action::Move, "services")
        );
        let lead = Command::CreateLead(NewLead::default());
        let want = Want::of_command(&lead, &config, None);
        assert_eq!(
            want,
            Want::in_pipeline(Resource::Lead, Action::Create, "lead")
        );
        assert!(access.check("intake", None, &want).is_ok());
        let revoke = Command::RevokeToken { name: "x".into() };
        assert_eq!(
            access
                .check("auditor", None, &Want::of_command(&revoke, &config, None))
                .unwrap_err()
                .to_string(),
            "role auditor may not administer tokens"
        );
    }

    #[test]
    fn a_secret_is_kept_as_its_sha256_in_hex() {
        assert_eq!(
            secret_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_first_line_event_stream_carries_no_deal_events() {
        let access = config().access;
        let ivanov = EmployeeId::from("ivanov");
        let lead = PipelineId::from("lead");
        let goods = PipelineId::from("goods");
        assert!(access.may_see("first_line", Some(&ivanov), EntityKind::Lead, Some(&lead)));
        assert!(!access.may_see("first_line", Some(&ivanov), EntityKind::Deal, Some(&goods)));
        assert!(!access.may_see("first_line", Some(&ivanov), EntityKind::Contact, None));
        assert!(!access.may_see("first_line", Some(&ivanov), EntityKind::Token, None));
        let kuznetsov = EmployeeId::from("kuznetsov");
        assert!(access.may_see("sales", Some(&kuznetsov), EntityKind::Deal, Some(&goods)));
        assert!(!access.may_see(
            "sales",
            Some(&kuznetsov),
            EntityKind::Deal,
            Some(&PipelineId::from("services"))
        ));
        assert!(access.may_see("auditor", None, EntityKind::Token, None));
        assert!(!access.may_see("intake", None, EntityKind::Lead, Some(&lead)));
    }
}
