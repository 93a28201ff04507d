//! The pure half of ingest: what a run of events does to the deployment rows they can
//! touch, worked out in memory.
//!
//! Ingest reads a [`Snapshot`] (the apps the events name and every deployment row they
//! could look up), applies the events to it one after another exactly as if each had
//! its own transaction, then writes back the rows that changed. A batch of deliveries
//! thus costs a handful of statements instead of a handful per delivery, and this
//! module, the part with the rules in it, needs no database to test.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use uuid::Uuid;

use super::state::{Status, Transition, transition_of};
use crate::store::deployments::{Environment, FailureReason};
use crate::store::{apps, deployments};
use crate::webhooks::{Event, GithubDeployment, Push, Rollback, Target, VercelDeployment};

/// What a delivery did, as the ledger's `outcome` column records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A deployment row was created or changed.
    Applied,
    /// The delivery id was seen before, or the event changed nothing.
    Duplicate,
    /// Understood, but not about a tracked deployment (ping, tag, preview, other types).
    Ignored,
    /// About a repository or project no app is registered for (yet).
    Unmatched,
    /// Older than what the row records, or contradicting a final status.
    Stale,
    /// Signed but not understood; kept raw for re-processing.
    Malformed,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Applied,
        Outcome::Duplicate,
        Outcome::Ignored,
        Outcome::Unmatched,
        Outcome::Stale,
        Outcome::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Ignored => "ignored",
            Outcome::Unmatched => "unmatched",
            Outcome::Stale => "stale",
            Outcome::Malformed => "malformed",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown outcome {s:?}: expected applied, duplicate, ignored, unmatched, stale or malformed"
                )
            })
    }
}

/// The effect of one event on the deployments table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub outcome: Outcome,
    pub reason: String,
    pub app_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
}

impl Effect {
    fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            app_id: None,
            deployment_id: None,
        }
    }

    fn on(mut self, app_id: Uuid, deployment_id: Uuid) -> Self {
        self.app_id = Some(app_id);
        self.deployment_id = Some(deployment_id);
        self
    }
}

/// The apps a run of events names: what ingest locks before reading anything else.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AppKeys {
    /// Repositories, lowercased (apps match them case-insensitively).
    pub repositories: BTreeSet<String>,
    pub projects: BTreeSet<String>,
}

impl AppKeys {
    pub fn of<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut keys = Self::default();
        for event in events {
            match event {
                Event::Push(push) => {
                    keys.repositories.insert(push.repository.to_lowercase());
                }
                Event::Vercel(vercel) => {
                    keys.projects.extend(vercel.project_id.clone());
                    keys.repositories
                        .extend(vercel.repository.as_deref().map(str::to_lowercase));
                }
                Event::GithubDeployment(github) => {
                    keys.repositories.insert(github.repository.to_lowercase());
                }
                Event::Rollback(rollback) => {
                    keys.projects.insert(rollback.project_id.clone());
                }
                Event::Ignored(_) | Event::Malformed(_) => {}
            }
        }
        keys
    }

    pub fn is_empty(&self) -> bool {
        self.repositories.is_empty() && self.projects.is_empty()
    }
}

/// The deployment rows a run of events could look up: by Vercel deployment id (and
/// the rollback rows that went back to one), by GitHub deployment id, by (app,
/// environment, commit), and the production row serving an app before a promotion.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RowKeys {
    pub vercel_ids: BTreeSet<String>,
    pub github_ids: BTreeSet<i64>,
    pub commits: Vec<(Uuid, Environment, String)>,
    /// (app, time): the newest ready production row created before that time.
    pub serving: Vec<(Uuid, NaiveDateTime)>,
    /// (app, environment): its newest ready rows, up to [`HEAD_WINDOW`] of them, among
    /// which a row made ready finds its place (see [`Snapshot::link_previous`]); only
    /// for events that report a deployment ready or promote one, as no other can add
    /// a row to a pair's chain (a pair changed otherwise is linked by the database).
    pub heads: BTreeSet<(Uuid, Environment)>,
}

impl RowKeys {
    pub fn is_empty(&self) -> bool {
        self.vercel_ids.is_empty()
            && self.github_ids.is_empty()
            && self.commits.is_empty()
            && self.serving.is_empty()
            && self.heads.is_empty()
    }

    fn commit(&mut self, app_id: Uuid, environment: Environment, sha: &str) {
        if !self
            .commits
            .iter()
            .any(|(a, e, s)| *a == app_id && *e == environment && s == sha)
        {
            self.commits.push((app_id, environment, sha.to_owned()));
        }
    }
}

/// The apps and deployment rows a run of events can read and write, as of the start
/// of its transaction, plus what the run has done to them so far.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// In id order: the order apps are locked in and pushes are applied in.
    apps: Vec<apps::Model>,
    /// Parallel to `apps`: each one's repository, lowercased.
    repositories: Vec<String>,
    rows: Vec<deployments::Model>,
    /// Parallel to `rows`: created or changed by this run, so to be written.
    touched: Vec<bool>,
    /// Parallel to `rows`: where the row stood in its chain of ready rows when read
    /// (app, environment, "createdAt"); `None` for a row that was not ready, or not
    /// there.
    was_ready: Vec<Option<(Uuid, Environment, NaiveDateTime)>>,
    /// The pairs whose newest ready rows were read ([`RowKeys::heads`]).
    heads: BTreeSet<(Uuid, Environment)>,
}

impl Snapshot {
    pub fn new(mut apps: Vec<apps::Model>) -> Self {
        apps.sort_by_key(|app| app.id);
        apps.dedup_by_key(|app| app.id);
        let repositories = apps
            .iter()
            .map(|app| app.github_repo.to_lowercase())
            .collect();
        Self {
            apps,
            repositories,
            ..Self::default()
        }
    }

    /// The rows `events` could look up, given the apps: what to read next.
    pub fn row_keys<'a>(&self, events: impl IntoIterator<Item = &'a Event>) -> RowKeys {
        let mut keys = RowKeys::default();
        for event in events {
            match event {
                Event::Push(push) => {
                    if let Ok(targets) = self.push_targets(push) {
                        for (app, environment) in targets {
                            keys.commit(app.id, environment, &push.commit_sha);
                        }
                    }
                }
                Event::Vercel(vercel) => {
                    keys.vercel_ids.insert(vercel.deployment_id.clone());
                    if let Ok((app, environment)) = self.vercel_target(vercel) {
                        if vercel.status == Status::Ready {
                            keys.heads.insert((app.id, environment));
                        }
                        if let Some(sha) = &vercel.commit_sha {
                            keys.commit(app.id, environment, sha);
                        }
                    }
                }
                Event::GithubDeployment(github) => {
                    keys.github_ids.insert(github.deployment_id);
                    if let Ok((app, environment)) = self.github_target(github) {
                        if github.status == Status::Ready {
                            keys.heads.insert((app.id, environment));
                        }
                        keys.commit(app.id, environment, &github.commit_sha);
                    }
                }
                Event::Rollback(rollback) => {
                    keys.vercel_ids.insert(rollback.to.clone());
                    if let Some(app) = self.apps.iter().find(|app| {
                        app.vercel_project_id.as_deref() == Some(rollback.project_id.as_str())
                    }) {
                        keys.heads.insert((app.id, Environment::Production));
                        if rollback.promoted {
                            keys.serving.push((app.id, rollback.occurred_at));
                        }
                    }
                }
                Event::Ignored(_) | Event::Malformed(_) => {}
            }
        }
        keys
    }

    /// Adds rows read for [`Snapshot::row_keys`]; a row already held is kept as is.
    pub fn add_rows(&mut self, rows: impl IntoIterator<Item = deployments::Model>) {
        for row in rows {
            if !self.rows.iter().any(|held| held.id == row.id) {
                self.was_ready
                    .push((row.status == Status::Ready).then_some((
                        row.app_id,
                        row.environment,
                        row.created_at,
                    )));
                self.rows.push(row);
                self.touched.push(false);
            }
        }
    }

    /// Notes that the newest ready rows of each of these pairs, up to [`HEAD_WINDOW`],
    /// were read along with the rest (fewer when the pair has fewer).
    pub fn add_heads(&mut self, heads: impl IntoIterator<Item = (Uuid, Environment)>) {
        self.heads.extend(heads);
    }

    /// Vercel ids of held rows whose rollback rows were not looked up: a GitHub
    /// status can change a row its Vercel events name, and rollback rows copy it.
    pub fn unread_rollback_targets(&self, keys: &RowKeys) -> BTreeSet<String> {
        self.rows
            .iter()
            .filter_map(|row| row.vercel_deployment_id.clone())
            .filter(|id| !keys.vercel_ids.contains(id))
            .collect()
    }

    /// The rows created or changed so far, in their final state.
    pub fn touched(&self) -> impl Iterator<Item = &deployments::Model> {
        self.rows
            .iter()
            .zip(&self.touched)
            .filter_map(|(row, touched)| touched.then_some(row))
    }

    /// Every row held, touched or not (ingest notes which were final before a batch,
    /// to count the rows the batch finishes).
    pub fn rows(&self) -> impl Iterator<Item = &deployments::Model> {
        self.rows.iter()
    }

    /// Applies one event, as its own transaction would have; `at` is the time
    /// written to `updatedAt`.
    pub fn apply(&mut self, event: &Event, at: NaiveDateTime) -> Effect {
        match event {
            Event::Ignored(reason) => Effect::new(Outcome::Ignored, reason.clone()),
            Event::Malformed(m) => Effect::new(Outcome::Malformed, m.reason.clone()),
            Event::Push(push) => self.apply_push(push, at),
            Event::Vercel(vercel) => self.apply_vercel(vercel, at),
            Event::GithubDeployment(github) => self.apply_github(github, at),
            Event::Rollback(rollback) => self.apply_rollback(rollback, at),
        }
    }

    /// Apps registered for a repository, compared case-insensitively, in id order.
    fn apps_for_repository<'s>(
        &'s self,
        repository: &str,
    ) -> impl Iterator<Item = &'s apps::Model> + use<'s> {
        let repository = repository.to_lowercase();
        self.apps
            .iter()
            .zip(&self.repositories)
            .filter(move |(_, lowercased)| **lowercased == repository)
            .map(|(app, _)| app)
    }

    /// The (app, environment) pairs a push deploys to, or why it deploys nowhere.
    fn push_targets(&self, push: &Push) -> Result<Vec<(&apps::Model, Environment)>, Effect> {
        let apps: Vec<_> = self.apps_for_repository(&push.repository).collect();
        if apps.is_empty() {
            return Err(Effect::new(
                Outcome::Unmatched,
                format!("no app is registered for repository {}", push.repository),
            ));
        }
        let targets: Vec<_> = apps
            .into_iter()
            .filter_map(|app| Some((app, environment_for_branch(app, &push.branch)?)))
            .collect();
        if targets.is_empty() {
            return Err(Effect::new(
                Outcome::Ignored,
                format!(
                    "branch {} is neither a staging nor a production branch",
                    push.branch
                ),
            ));
        }
        Ok(targets)
    }

    /// The app and environment a Vercel event is about: the app by project id, else
    /// by repository when exactly one app has it; or why it is about none.
    fn vercel_target(
        &self,
        event: &VercelDeployment,
    ) -> Result<(&apps::Model, Environment), Effect> {
        let project = event.project_id.as_deref().unwrap_or("(none)");
        let by_project = event.project_id.as_deref().and_then(|project_id| {
            self.apps
                .iter()
                .find(|app| app.vercel_project_id.as_deref() == Some(project_id))
        });
        let app = match (by_project, &event.repository) {
            (Some(app), _) => app,
            (None, None) => {
                return Err(Effect::new(
                    Outcome::Unmatched,
                    format!("no app is registered for Vercel project {project}"),
                ));
            }
            (None, Some(repository)) => {
                let apps: Vec<_> = self.apps_for_repository(repository).collect();
                match apps[..] {
                    [app] => app,
                    [] => {
                        return Err(Effect::new(
                            Outcome::Unmatched,
                            format!(
                                "no app is registered for Vercel project {project} or repository {repository}"
                            ),
                        ));
                    }
                    _ => {
                        return Err(Effect::new(
                            Outcome::Unmatched,
                            format!(
                                "{} apps share repository {repository} and none has Vercel project {project}",
                                apps.len()
                            ),
                        ));
                    }
                }
            }
        };
        let environment = match event.target {
            Target::Production => Environment::Production,
            Target::Staging => Environment::Staging,
            Target::ByBranch => event
                .commit_ref
                .as_deref()
                .and_then(|branch| environment_for_branch(app, branch))
                .ok_or_else(|| {
                    Effect::new(
                        Outcome::Ignored,
                        format!(
                            "a preview of branch {}",
                            event.commit_ref.as_deref().unwrap_or("(unknown)")
                        ),
                    )
                })?,
        };
        Ok((app, environment))
    }

    /// The app and environment a GitHub deployment is about: the app by repository,
    /// and among several apps of one repository (a monorepo) the one the environment
    /// name's suffix names (`Production – web`).
    fn github_target(
        &self,
        event: &GithubDeployment,
    ) -> Result<(&apps::Model, Environment), Effect> {
        let apps: Vec<_> = self.apps_for_repository(&event.repository).collect();
        let app = match apps[..] {
            [] => {
                return Err(Effect::new(
                    Outcome::Unmatched,
                    format!("no app is registered for repository {}", event.repository),
                ));
            }
            [app] => app,
            _ => {
                let named: Vec<_> = apps
                    .iter()
                    .filter(|app| {
                        event
                            .environment_suffix
                            .as_deref()
                            .is_some_and(|suffix| app.name.eq_ignore_ascii_case(suffix))
                    })
                    .collect();
                match named[..] {
                    [app] => app,
                    _ => {
                        return Err(Effect::new(
                            Outcome::Unmatched,
                            format!(
                                "{} apps share repository {} and the environment names none of them",
                                apps.len(),
                                event.repository
                            ),
                        ));
                    }
                }
            }
        };
        Ok((app, event.environment))
    }

    /// The earliest deployment row of a commit in an app's environment, linked or not
    /// (rollback rows repeat a commit; they are not its deployment).
    fn commit_row(&self, app_id: Uuid, environment: Environment, sha: &str) -> Option<usize> {
        self.position_min(|row| {
            row.app_id == app_id
                && row.environment == environment
                && !row.is_rollback
                && row.github_commit_sha.as_deref() == Some(sha)
        })
    }

    /// The first row matching `keep` in ("createdAt", id) order.
    fn position_min(&self, keep: impl Fn(&deployments::Model) -> bool) -> Option<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, row)| keep(row))
            .min_by_key(|(_, row)| (row.created_at, row.id))
            .map(|(i, _)| i)
    }

    fn create(&mut self, row: deployments::Model) -> usize {
        self.rows.push(row);
        self.touched.push(true);
        self.was_ready.push(None);
        self.rows.len() - 1
    }

    fn apply_push(&mut self, push: &Push, at: NaiveDateTime) -> Effect {
        let targets: Vec<(Uuid, Environment)> = match self.push_targets(push) {
            Ok(targets) => targets
                .into_iter()
                .map(|(app, environment)| (app.id, environment))
                .collect(),
            Err(effect) => return effect,
        };
        let mut first = None;
        let mut created = 0;
        let mut changed = 0;
        for (app_id, environment) in targets {
            let i = match self.commit_row(app_id, environment, &push.commit_sha) {
                Some(i) => i,
                None => {
                    created += 1;
                    self.create(deployments::Model {
                        github_commit_sha: Some(push.commit_sha.clone()),
                        ..deployments::Model::new(
                            app_id,
                            environment,
                            Status::Pending,
                            push.pushed_at,
                            at,
                        )
                    })
                }
            };
            let row = &mut self.rows[i];
            let before = row.clone();
            row.created_at = row.created_at.min(push.pushed_at);
            // Who pushed wins over what the providers say (see Source).
            if push.pushed_by.is_some() {
                row.triggered_by = push.pushed_by.clone();
            }
            row.committed_at = Some(
                row.committed_at
                    .map_or(push.committed_at, |t| t.min(push.committed_at)),
            );
            if *row != before {
                row.updated_at = at;
                self.touched[i] = true;
                changed += 1;
            }
            first.get_or_insert((app_id, self.rows[i].id));
        }
        let (app_id, id) = first.expect("push_targets returns at least one target");
        let effect = match (created, changed) {
            (0, 0) => Effect::new(Outcome::Duplicate, "deployment already recorded"),
            (0, _) => Effect::new(Outcome::Applied, "deployment updated"),
            (1, _) => Effect::new(Outcome::Applied, "pending deployment created"),
            (n, _) => Effect::new(Outcome::Applied, format!("{n} pending deployments created")),
        };
        effect.on(app_id, id)
    }

    fn apply_vercel(&mut self, event: &VercelDeployment, at: NaiveDateTime) -> Effect {
        let (app_id, environment) = match self.vercel_target(event) {
            Ok((app, environment)) => (app.id, environment),
            Err(effect) => return effect,
        };
        // The row with this Vercel id, else the earliest row of the commit not yet
        // linked to a Vercel deployment.
        let found = self
            .position_min(|row| row.vercel_deployment_id.as_deref() == Some(&event.deployment_id))
            .or_else(|| {
                let sha = event.commit_sha.as_deref()?;
                self.position_min(|row| {
                    row.app_id == app_id
                        && row.environment == environment
                        && !row.is_rollback
                        && row.github_commit_sha.as_deref() == Some(sha)
                        && row.vercel_deployment_id.is_none()
                })
            });
        let report = Report {
            source: Source::Vercel,
            status: event.status,
            failure: event.failure,
            message: event.error_message.clone(),
            url: event.url.clone(),
            logs_url: event.logs_url.clone(),
            triggered_by: event.triggered_by.clone(),
            commit_sha: event.commit_sha.clone(),
            occurred_at: event.occurred_at,
        };
        let named = format!("Vercel deployment {}", event.deployment_id);
        self.report_on(found, (app_id, environment), &report, &named, at, |row| {
            let link = row.vercel_deployment_id.is_none();
            if link {
                row.vercel_deployment_id = Some(event.deployment_id.clone());
            }
            link
        })
    }

    fn apply_github(&mut self, event: &GithubDeployment, at: NaiveDateTime) -> Effect {
        let (app_id, environment) = match self.github_target(event) {
            Ok((app, environment)) => (app.id, environment),
            Err(effect) => return effect,
        };
        // The row of this GitHub deployment, else the earliest row of the commit not
        // yet linked to one (a push's, or its Vercel twin's).
        let found = self
            .position_min(|row| row.github_deployment_id == Some(event.deployment_id))
            .or_else(|| {
                self.position_min(|row| {
                    row.app_id == app_id
                        && row.environment == environment
                        && !row.is_rollback
                        && row.github_commit_sha.as_deref() == Some(event.commit_sha.as_str())
                        && row.github_deployment_id.is_none()
                })
            });
        let report = Report {
            source: Source::Github,
            status: event.status,
            failure: event.failure,
            message: event.description.clone(),
            url: event.url.clone(),
            logs_url: event.logs_url.clone(),
            triggered_by: event.triggered_by.clone(),
            commit_sha: Some(event.commit_sha.clone()),
            occurred_at: event.occurred_at,
        };
        let named = format!("GitHub deployment {}", event.deployment_id);
        self.report_on(found, (app_id, environment), &report, &named, at, |row| {
            let link = row.github_deployment_id.is_none();
            if link {
                row.github_deployment_id = Some(event.deployment_id);
            }
            link
        })
    }

    /// A provider's report on the row it `found`, or on a new row: `link` records the
    /// provider's own id on it and says whether it had to.
    fn report_on(
        &mut self,
        found: Option<usize>,
        (app_id, environment): (Uuid, Environment),
        report: &Report,
        named: &str,
        at: NaiveDateTime,
        link: impl FnOnce(&mut deployments::Model) -> bool,
    ) -> Effect {
        let i = match found {
            Some(i) if self.rows[i].app_id != app_id => {
                return Effect::new(
                    Outcome::Unmatched,
                    format!("{named} is recorded for another app"),
                );
            }
            Some(i) => i,
            None => self.create(deployments::Model::new(
                app_id,
                environment,
                Status::Pending,
                report.occurred_at,
                at,
            )),
        };
        let changed = link(&mut self.rows[i]);
        self.absorb(i, report, found.is_none(), changed, at)
            .on(app_id, self.rows[i].id)
    }

    /// What a provider's report of a deployment's state does to its row `i`. Every
    /// rule keeps the result independent of arrival order: status only moves forward
    /// (a timeout excepted), times take the earliest report, and where both providers
    /// say the same thing Vercel's word wins over GitHub's (see [`Source`]).
    fn absorb(
        &mut self,
        i: usize,
        report: &Report,
        created: bool,
        mut changed: bool,
        at: NaiveDateTime,
    ) -> Effect {
        let row = &mut self.rows[i];
        let before = row.clone();
        let current = row.status;
        let timed_out = row.failure_reason == Some(FailureReason::Timeout);
        let step = transition_of(current, timed_out, report.status);
        if let Transition::Advance(next) = step {
            row.status = next;
            if timed_out {
                row.failure_reason = None;
                row.error_message = None;
                row.finished_at = None;
            }
        }
        // Why it failed, as each provider reporting the failure says it.
        if report.status == Status::Failed
            && row.status == Status::Failed
            && step != Transition::Stale
        {
            let reason = report.failure.unwrap_or(FailureReason::Error);
            let message = report.message.as_deref().unwrap_or(reason.as_str());
            match report.source {
                Source::Vercel => row.failure_reason = Some(reason),
                Source::Github => {
                    row.failure_reason.get_or_insert(reason);
                }
            }
            report.source.write(&mut row.error_message, message);
        }
        // The earliest report of the build starting, and of the status it ends in.
        if report.status == Status::Building {
            row.started_at = Some(
                row.started_at
                    .map_or(report.occurred_at, |t| t.min(report.occurred_at)),
            );
        }
        if report.status.is_final() && row.status == report.status {
            row.finished_at = Some(
                row.finished_at
                    .map_or(report.occurred_at, |t| t.min(report.occurred_at)),
            );
        }
        row.build_duration_ms = match (row.status.is_final(), row.started_at, row.finished_at) {
            (true, Some(started), Some(finished)) if finished >= started => {
                Some((finished - started).num_milliseconds())
            }
            _ => None,
        };
        if row.github_commit_sha.is_none() && report.commit_sha.is_some() {
            row.github_commit_sha = report.commit_sha.clone();
        }
        if report.status == Status::Ready
            && step != Transition::Stale
            && let Some(url) = &report.url
        {
            report.source.write(&mut row.deployment_url, url);
        }
        if let Some(logs) = &report.logs_url {
            report.source.write(&mut row.build_logs, logs);
        }
        // A push says who pushed: it wins over both providers.
        if row.committed_at.is_none()
            && let Some(by) = &report.triggered_by
        {
            report.source.write(&mut row.triggered_by, by);
        }
        row.created_at = row.created_at.min(report.occurred_at);
        changed |= *row != before;
        if changed || created {
            row.updated_at = at;
            self.touched[i] = true;
        }
        let row = &self.rows[i];
        let effect = if created {
            Effect::new(
                Outcome::Applied,
                format!("deployment created as {}", row.status),
            )
        } else {
            match step {
                Transition::Stale => Effect::new(
                    Outcome::Stale,
                    format!(
                        "deployment is already {current}; {} is stale",
                        report.status
                    ),
                ),
                Transition::Advance(next) if timed_out => Effect::new(
                    Outcome::Applied,
                    format!("timed out -> {next}: a real event replaces the timeout"),
                ),
                Transition::Advance(next) => {
                    Effect::new(Outcome::Applied, format!("{current} -> {next}"))
                }
                Transition::Unchanged if changed => {
                    Effect::new(Outcome::Applied, format!("still {current}; fields filled"))
                }
                Transition::Unchanged => Effect::new(
                    Outcome::Duplicate,
                    format!("deployment is already {current}"),
                ),
            }
        };
        self.fill_rollbacks(i, at);
        effect
    }

    /// Rollback rows that went back to row `i`'s Vercel deployment show its commit and
    /// URL, whenever they arrive.
    fn fill_rollbacks(&mut self, i: usize, at: NaiveDateTime) {
        let Some(target) = self.rows[i].vercel_deployment_id.clone() else {
            return;
        };
        let (sha, url) = (
            self.rows[i].github_commit_sha.clone(),
            self.rows[i].deployment_url.clone(),
        );
        for (row, touched) in self.rows.iter_mut().zip(self.touched.iter_mut()) {
            if row.rollback_to.as_deref() == Some(&target)
                && (row.github_commit_sha != sha || row.deployment_url != url)
            {
                row.github_commit_sha.clone_from(&sha);
                row.deployment_url.clone_from(&url);
                row.updated_at = at;
                *touched = true;
            }
        }
    }

    /// A rollback or promotion: production serves the deployment `to` from
    /// `occurred_at` on, recorded as a row of its own ("isRollback"), so that the
    /// latest production row is what serves.
    fn apply_rollback(&mut self, event: &Rollback, at: NaiveDateTime) -> Effect {
        let Some(app_id) = self
            .apps
            .iter()
            .find(|app| app.vercel_project_id.as_deref() == Some(event.project_id.as_str()))
            .map(|app| app.id)
        else {
            return Effect::new(
                Outcome::Unmatched,
                format!(
                    "no app is registered for Vercel project {}",
                    event.project_id
                ),
            );
        };
        let target =
            self.position_min(|row| row.vercel_deployment_id.as_deref() == Some(&event.to));
        if let Some(t) = target
            && self.rows[t].app_id != app_id
        {
            return Effect::new(
                Outcome::Unmatched,
                format!("Vercel deployment {} is recorded for another app", event.to),
            );
        }
        if event.promoted {
            let Some(t) = target else {
                return Effect::new(
                    Outcome::Unmatched,
                    format!(
                        "promoted Vercel deployment {} has not arrived yet; kept for re-processing",
                        event.to
                    ),
                );
            };
            if self.rows[t].status != Status::Ready {
                return Effect::new(
                    Outcome::Ignored,
                    format!(
                        "Vercel deployment {} is not ready; once ready it is the newest",
                        event.to
                    ),
                )
                .on(app_id, self.rows[t].id);
            }
            if self.rows[t].environment != Environment::Production {
                return Effect::new(
                    Outcome::Ignored,
                    format!(
                        "Vercel deployment {} is a staging deployment; its production deployment reports itself",
                        event.to
                    ),
                )
                .on(app_id, self.rows[t].id);
            }
            let serving = self.serving_before(app_id, event.occurred_at);
            let already = serving
                .is_none_or(|s| s == t || self.rows[s].rollback_to.as_deref() == Some(&event.to));
            if already {
                return Effect::new(
                    Outcome::Ignored,
                    format!("Vercel deployment {} already serves production", event.to),
                )
                .on(app_id, self.rows[t].id);
            }
        }
        if let Some(r) = self.position_min(|row| {
            row.app_id == app_id
                && row.rollback_to.as_deref() == Some(&event.to)
                && row.created_at == event.occurred_at
        }) {
            return Effect::new(Outcome::Duplicate, "rollback already recorded")
                .on(app_id, self.rows[r].id);
        }
        let r = self.create(deployments::Model {
            is_rollback: true,
            rollback_to: Some(event.to.clone()),
            finished_at: Some(event.occurred_at),
            ..deployments::Model::new(
                app_id,
                Environment::Production,
                Status::Ready,
                event.occurred_at,
                at,
            )
        });
        let id = self.rows[r].id;
        match target {
            Some(t) => {
                self.fill_rollbacks(t, at);
                Effect::new(
                    Outcome::Applied,
                    format!("production rolled back to Vercel deployment {}", event.to),
                )
                .on(app_id, id)
            }
            None => Effect::new(
                Outcome::Unmatched,
                format!(
                    "production rolled back to Vercel deployment {}, not seen yet: its commit and URL fill in when it arrives",
                    event.to
                ),
            )
            .on(app_id, id),
        }
    }

    /// The ready production row of an app serving just before `at`: the newest by
    /// "createdAt" (rollback rows included).
    fn serving_before(&self, app_id: Uuid, at: NaiveDateTime) -> Option<usize> {
        self.rows
            .iter()
            .enumerate()
            .filter(|(_, row)| {
                row.app_id == app_id
                    && row.environment == Environment::Production
                    && row.status == Status::Ready
                    && row.created_at < at
            })
            .max_by_key(|(_, row)| (row.created_at, row.id))
            .map(|(i, _)| i)
    }

    /// Sets "previousDeploymentId" where this run changed a chain of ready rows, wherever
    /// that needs nothing more from the database: each ready row points at the ready
    /// row of its app and environment just before it in ("createdAt", id) order.
    ///
    /// In a pair whose newest ready rows were read ([`RowKeys::heads`], up to
    /// [`HEAD_WINDOW`] of them), rows made ready after the oldest of those are put in
    /// their place in memory, and the links of the rows after them follow. The usual
    /// case: a deployment finishes after the ones before it, or shortly before one
    /// that started earlier.
    ///
    /// Returns the pairs whose chain changed otherwise (a row made ready before that
    /// window, a ready row whose "createdAt" moved, a pair whose newest rows were not
    /// read), each with the earliest "createdAt" changed: from there on the database
    /// works the links out again (ingest's `link_previous`). Either way the links are
    /// what the table's ready rows imply, whatever order they arrived in.
    pub fn link_previous(&mut self) -> Vec<(Uuid, Environment, NaiveDateTime)> {
        #[derive(Default)]
        struct Pair {
            joined: Vec<usize>,
            relink_since: Option<NaiveDateTime>,
        }
        let mut pairs: BTreeMap<(Uuid, Environment), Pair> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            if !self.touched[i] {
                continue;
            }
            let now_ready = (row.status == Status::Ready).then_some((
                row.app_id,
                row.environment,
                row.created_at,
            ));
            match (self.was_ready[i], now_ready) {
                (before, now) if before == now => {}
                (None, Some((app, env, _))) => pairs.entry((app, env)).or_default().joined.push(i),
                (before, now) => {
                    for (app, env, at) in before.into_iter().chain(now) {
                        let since = &mut pairs.entry((app, env)).or_default().relink_since;
                        *since = Some(since.map_or(at, |since| since.min(at)));
                    }
                }
            }
        }
        let mut relinks = Vec::new();
        for (
            pair,
            Pair {
                joined,
                relink_since,
            },
        ) in pairs
        {
            let key = |i: usize| (self.rows[i].created_at, self.rows[i].id);
            let earliest = joined.iter().map(|&i| self.rows[i].created_at).min();
            // The pair's ready rows as read, newest first: the window the heads
            // lookup read, and any older ones other lookups did.
            let mut held: Vec<usize> = (0..self.rows.len())
                .filter(|&i| matches!(self.was_ready[i], Some((app, env, _)) if (app, env) == pair))
                .collect();
            held.sort_by_key(|&i| std::cmp::Reverse(key(i)));
            held.truncate(HEAD_WINDOW);
            // Every ready row of the pair, when fewer than a window's worth were read.
            let whole = held.len() < HEAD_WINDOW;
            let oldest = held.last().copied().filter(|_| !whole);
            let fits = joined
                .iter()
                .all(|&i| oldest.is_none_or(|o| key(o) < key(i)));
            if relink_since.is_some() || !self.heads.contains(&pair) || !fits {
                let since = relink_since.into_iter().chain(earliest).min();
                relinks.extend(since.map(|since| (pair.0, pair.1, since)));
                continue;
            }
            let mut chain: Vec<usize> = held.into_iter().chain(joined).collect();
            chain.sort_by_key(|&i| key(i));
            // The oldest of a window keeps its link: nothing joined before it.
            let mut previous = if whole {
                None
            } else {
                chain.first().map(|&i| self.rows[i].id)
            };
            for &i in chain.iter().skip(usize::from(!whole)) {
                if self.rows[i].previous_deployment_id != previous {
                    self.rows[i].previous_deployment_id = previous;
                    self.touched[i] = true;
                }
                previous = Some(self.rows[i].id);
            }
        }
        relinks
    }
}

/// How many of a pair's newest ready rows ingest reads with a batch (see
/// [`Snapshot::link_previous`]).
pub const HEAD_WINDOW: usize = 4;

/// Which provider reported a fact. Where both report one (a URL, the logs, who
/// triggered it), Vercel's word replaces GitHub's and GitHub's only fills a gap, so
/// that the row is the same whichever came first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Vercel,
    Github,
}

impl Source {
    fn write(self, field: &mut Option<String>, value: &str) {
        match self {
            Source::Vercel => *field = Some(value.to_owned()),
            Source::Github => {
                field.get_or_insert_with(|| value.to_owned());
            }
        }
    }
}

/// A provider's report of one deployment's state, whichever provider sent it.
struct Report {
    source: Source,
    status: Status,
    failure: Option<FailureReason>,
    message: Option<String>,
    url: Option<String>,
    logs_url: Option<String>,
    triggered_by: Option<String>,
    commit_sha: Option<String>,
    occurred_at: NaiveDateTime,
}

fn environment_for_branch(app: &apps::Model, branch: &str) -> Option<Environment> {
    if branch == app.production_branch {
        Some(Environment::Production)
    } else if branch == app.staging_branch {
        Some(Environment::Staging)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{DateTime, NaiveDateTime};

    use super::*;
    use crate::webhooks::Malformed;

    const SHA: &str = "95fba5a7c5c2b1e0f4d4a0a1b2c3d4e5f6a7b8c9";

    fn at(seconds: i64) -> NaiveDateTime {
        DateTime::from_timestamp(1_790_000_000 + seconds, 0)
            .unwrap()
            .naive_utc()
    }

    fn app(n: u128, repo: &str, project: Option<&str>) -> apps::Model {
        apps::Model {
            id: Uuid::from_u128(n),
            name: format!("app-{n}"),
            github_repo: repo.to_owned(),
            vercel_project_id: project.map(str::to_owned),
            staging_branch: "staging".to_owned(),
            production_branch: "main".to_owned(),
            created_at: at(0),
            updated_at: at(0),
        }
    }

    fn push(repo: &str, branch: &str, t: i64) -> Event {
        Event::Push(Push {
            repository: repo.to_owned(),
            branch: branch.to_owned(),
            commit_sha: SHA.to_owned(),
            pushed_at: at(t),
            pushed_by: Some("dana".to_owned()),
            committed_at: at(t - 30),
        })
    }

    fn vercel(status: Status, deployment: &str, t: i64) -> VercelDeployment {
        VercelDeployment {
            status,
            failure: (status == Status::Failed).then_some(FailureReason::Error),
            error_message: None,
            triggered_by: Some("dana-author".to_owned()),
            logs_url: Some(format!("https://vercel.com/acme/shop/{deployment}")),
            deployment_id: deployment.to_owned(),
            url: Some(format!("https://{deployment}.vercel.app")),
            project_id: Some("prj_a".to_owned()),
            repository: Some("acme/shop".to_owned()),
            target: Target::Production,
            commit_sha: Some(SHA.to_owned()),
            commit_ref: Some("main".to_owned()),
            occurred_at: at(t),
        }
    }

    /// A snapshot of one app, acme/shop with project prj_a.
    fn shop() -> Snapshot {
        Snapshot::new(vec![app(1, "acme/shop", Some("prj_a"))])
    }

    fn outcome_and_reason(effect: &Effect) -> (Outcome, &str) {
        (effect.outcome, effect.reason.as_str())
    }

    fn rows(snapshot: &Snapshot) -> Vec<&deployments::Model> {
        let mut rows: Vec<_> = snapshot.rows.iter().collect();
        rows.sort_by_key(|row| (row.created_at, row.id));
        rows
    }

    #[test]
    fn a_push_creates_one_pending_row_and_a_copy_changes_nothing() {
        let mut s = shop();
        let first = s.apply(&push("Acme/Shop", "main", 10), at(100));
        assert_eq!(
            outcome_and_reason(&first),
            (Outcome::Applied, "pending deployment created")
        );
        assert_eq!(first.app_id, Some(Uuid::from_u128(1)));
        let again = s.apply(&push("acme/shop", "main", 10), at(101));
        assert_eq!(
            outcome_and_reason(&again),
            (Outcome::Duplicate, "deployment already recorded")
        );
        assert_eq!(again.deployment_id, first.deployment_id);
        let row = rows(&s)[0];
        assert_eq!(
            (row.status, row.environment, row.created_at, row.updated_at),
            (Status::Pending, Environment::Production, at(10), at(100))
        );
        assert_eq!(s.touched().count(), 1);
    }

    #[test]
    fn an_earlier_copy_of_a_push_moves_created_at_back() {
        let mut s = shop();
        s.apply(&push("acme/shop", "main", 10), at(100));
        let effect = s.apply(&push("acme/shop", "main", 5), at(101));
        assert_eq!(
            outcome_and_reason(&effect),
            (Outcome::Applied, "deployment updated")
        );
        assert_eq!(
            (rows(&s)[0].created_at, rows(&s)[0].updated_at),
            (at(5), at(101))
        );
    }

    #[test]
    fn pushes_nobody_tracks_are_unmatched_or_ignored() {
        let mut s = shop();
        let unmatched = s.apply(&push("acme/other", "main", 1), at(2));
        assert_eq!(
            outcome_and_reason(&unmatched),
            (
                Outcome::Unmatched,
                "no app is registered for repository acme/other"
            )
        );
        let ignored = s.apply(&push("acme/shop", "feature", 1), at(2));
        assert_eq!(
            outcome_and_reason(&ignored),
            (
                Outcome::Ignored,
                "branch feature is neither a staging nor a production branch"
            )
        );
        assert!(s.rows.is_empty());
    }

    #[test]
    fn a_monorepo_push_creates_a_row_per_app_and_answers_for_the_first() {
        let mut s = Snapshot::new(vec![
            app(2, "acme/mono", Some("prj_b")),
            app(1, "acme/mono", Some("prj_a")),
        ]);
        let effect = s.apply(&push("acme/mono", "main", 1), at(2));
        assert_eq!(
            outcome_and_reason(&effect),
            (Outcome::Applied, "2 pending deployments created")
        );
        assert_eq!(effect.app_id, Some(Uuid::from_u128(1)));
        assert_eq!(s.touched().count(), 2);
    }

    #[test]
    fn vercel_events_link_to_the_push_row_and_move_it_forward() {
        let mut s = shop();
        let pushed = s.apply(&push("acme/shop", "main", 10), at(100));
        let created = s.apply(
            &Event::Vercel(vercel(Status::Building, "dpl_1", 12)),
            at(101),
        );
        assert_eq!(
            outcome_and_reason(&created),
            (Outcome::Applied, "pending -> building")
        );
        assert_eq!(created.deployment_id, pushed.deployment_id);
        let ready = s.apply(&Event::Vercel(vercel(Status::Ready, "dpl_1", 20)), at(102));
        assert_eq!(
            outcome_and_reason(&ready),
            (Outcome::Applied, "building -> ready")
        );
        let late = s.apply(&Event::Vercel(vercel(Status::Failed, "dpl_1", 21)), at(103));
        assert_eq!(
            outcome_and_reason(&late),
            (
                Outcome::Stale,
                "deployment is already ready; failed is stale"
            )
        );
        let row = rows(&s)[0];
        assert_eq!(row.status, Status::Ready);
        assert_eq!(row.vercel_deployment_id.as_deref(), Some("dpl_1"));
        assert_eq!(
            row.deployment_url.as_deref(),
            Some("https://dpl_1.vercel.app")
        );
        assert_eq!((row.created_at, row.updated_at), (at(10), at(102)));
        assert_eq!(row.error_message, None);
        assert_eq!(s.rows.len(), 1);
    }

    #[test]
    fn any_order_of_a_flow_leaves_the_same_row() {
        let events = [
            push("acme/shop", "main", 10),
            Event::Vercel(vercel(Status::Building, "dpl_1", 12)),
            Event::Vercel(vercel(Status::Failed, "dpl_1", 20)),
        ];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        let finals: Vec<_> = orders
            .iter()
            .map(|order| {
                let mut s = shop();
                for &i in order {
                    s.apply(&events[i], at(100));
                }
                assert_eq!(s.rows.len(), 1, "order {order:?}");
                let row = s.rows[0].clone();
                (
                    row.status,
                    row.environment,
                    row.github_commit_sha,
                    row.vercel_deployment_id,
                    row.deployment_url,
                    row.error_message,
                    row.created_at,
                )
            })
            .collect();
        assert!(finals.iter().all(|f| *f == finals[0]), "{finals:#?}");
        assert_eq!(finals[0].0, Status::Failed);
        assert_eq!(finals[0].5.as_deref(), Some("error"));
        assert_eq!(finals[0].6, at(10));
    }

    #[test]
    fn vercel_events_about_nobody_are_unmatched_or_ignored() {
        let mut s = Snapshot::new(vec![
            app(1, "acme/mono", Some("prj_a")),
            app(2, "acme/mono", None),
        ]);
        let mut unknown = vercel(Status::Building, "dpl_1", 1);
        unknown.project_id = Some("prj_zzz".to_owned());
        unknown.repository = Some("acme/else".to_owned());
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(unknown.clone()), at(2))),
            (
                Outcome::Unmatched,
                "no app is registered for Vercel project prj_zzz or repository acme/else"
            )
        );
        unknown.repository = Some("acme/mono".to_owned());
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(unknown.clone()), at(2))),
            (
                Outcome::Unmatched,
                "2 apps share repository acme/mono and none has Vercel project prj_zzz"
            )
        );
        unknown.repository = None;
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(unknown), at(2))),
            (
                Outcome::Unmatched,
                "no app is registered for Vercel project prj_zzz"
            )
        );
        let mut preview = vercel(Status::Building, "dpl_2", 1);
        preview.target = Target::ByBranch;
        preview.commit_ref = Some("feature".to_owned());
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(preview), at(2))),
            (Outcome::Ignored, "a preview of branch feature")
        );
        assert!(s.rows.is_empty());
    }

    #[test]
    fn a_vercel_id_recorded_for_another_app_is_unmatched() {
        let mut s = Snapshot::new(vec![
            app(1, "acme/shop", Some("prj_a")),
            app(2, "acme/blog", Some("prj_b")),
        ]);
        s.apply(&Event::Vercel(vercel(Status::Building, "dpl_1", 1)), at(2));
        let mut other = vercel(Status::Ready, "dpl_1", 3);
        other.project_id = Some("prj_b".to_owned());
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(other), at(4))),
            (
                Outcome::Unmatched,
                "Vercel deployment dpl_1 is recorded for another app"
            )
        );
        assert_eq!(s.rows[0].status, Status::Building);
    }

    #[test]
    fn target_null_follows_the_branch_and_fills_missing_fields() {
        let mut s = shop();
        let mut first = vercel(Status::Building, "dpl_1", 5);
        first.target = Target::ByBranch;
        first.commit_ref = Some("staging".to_owned());
        first.commit_sha = None;
        let created = s.apply(&Event::Vercel(first), at(6));
        assert_eq!(
            outcome_and_reason(&created),
            (Outcome::Applied, "deployment created as building")
        );
        assert_eq!(s.rows[0].environment, Environment::Staging);
        let mut again = vercel(Status::Building, "dpl_1", 4);
        again.target = Target::Staging;
        let filled = s.apply(&Event::Vercel(again), at(7));
        assert_eq!(
            outcome_and_reason(&filled),
            (Outcome::Applied, "still building; fields filled")
        );
        assert_eq!(s.rows[0].github_commit_sha.as_deref(), Some(SHA));
        assert_eq!(s.rows[0].created_at, at(4));
        let mut same = vercel(Status::Building, "dpl_1", 9);
        same.target = Target::Staging;
        assert_eq!(
            outcome_and_reason(&s.apply(&Event::Vercel(same), at(8))),
            (Outcome::Duplicate, "deployment is already building")
        );
    }

    #[test]
    fn ignored_and_malformed_events_touch_nothing() {
        let mut s = shop();
        let ignored = s.apply(&Event::Ignored("ping".to_owned()), at(1));
        assert_eq!(outcome_and_reason(&ignored), (Outcome::Ignored, "ping"));
        let malformed = s.apply(
            &Event::Malformed(Malformed {
                reason: "not JSON".to_owned(),
                unsupported_media_type: false,
            }),
            at(1),
        );
        assert_eq!(
            outcome_and_reason(&malformed),
            (Outcome::Malformed, "not JSON")
        );
        assert_eq!(s.touched().count(), 0);
    }

    #[test]
    fn keys_name_every_app_and_row_the_events_could_read() {
        let mut unlinked = vercel(Status::Ready, "dpl_9", 1);
        unlinked.project_id = None;
        unlinked.repository = Some("ACME/Shop".to_owned());
        let events = [
            push("acme/shop", "main", 1),
            push("acme/shop", "staging", 1),
            push("acme/shop", "main", 2),
            Event::Vercel(vercel(Status::Building, "dpl_1", 1)),
            Event::Vercel(unlinked),
            Event::Ignored("ping".to_owned()),
        ];
        let apps = AppKeys::of(&events);
        assert_eq!(apps.repositories.iter().collect::<Vec<_>>(), ["acme/shop"]);
        assert_eq!(apps.projects.iter().collect::<Vec<_>>(), ["prj_a"]);
        let rows = shop().row_keys(&events);
        let id = Uuid::from_u128(1);
        assert_eq!(
            rows.vercel_ids.iter().collect::<Vec<_>>(),
            ["dpl_1", "dpl_9"]
        );
        assert_eq!(
            rows.commits,
            [
                (id, Environment::Production, SHA.to_owned()),
                (id, Environment::Staging, SHA.to_owned()),
            ]
        );
        assert_eq!(rows.heads, [(id, Environment::Production)].into());
        // Only an event that can make a row ready needs the pair's newest ready rows.
        let building = shop().row_keys(&[Event::Vercel(vercel(Status::Building, "dpl_1", 1))]);
        assert!(building.heads.is_empty());
        assert!(AppKeys::of(&[Event::Ignored("ping".to_owned())]).is_empty());
    }

    #[test]
    fn rows_read_twice_are_held_once_and_untouched_until_changed() {
        let mut s = shop();
        let row = deployments::Model {
            id: Uuid::from_u128(7),
            github_commit_sha: Some(SHA.to_owned()),
            ..deployments::Model::new(
                Uuid::from_u128(1),
                Environment::Production,
                Status::Pending,
                at(3),
                at(3),
            )
        };
        s.add_rows([row.clone(), row.clone()]);
        assert_eq!((s.rows.len(), s.touched().count()), (1, 0));
        let effect = s.apply(&Event::Vercel(vercel(Status::Building, "dpl_1", 4)), at(5));
        assert_eq!(effect.deployment_id, Some(row.id));
        assert_eq!(s.touched().map(|r| r.id).collect::<Vec<_>>(), [row.id]);
    }

    /// Every small chain: `existing` ready rows (the newest [`HEAD_WINDOW`] of them
    /// read, as ingest reads them) and rows made ready at every place in it, ties of
    /// "createdAt" included. Wherever the links are set in memory they must be the
    /// whole chain's links, and no row left unread may need another; elsewhere the
    /// database is asked to relink from the earliest change.
    #[test]
    fn links_made_in_memory_are_the_whole_chains_links() {
        let app_id = Uuid::from_u128(1);
        let env = Environment::Production;
        let ready_row = |id: u128, slot: i64| deployments::Model {
            id: Uuid::from_u128(id),
            ..deployments::Model::new(app_id, env, Status::Ready, at(10 * slot), at(0))
        };
        let mut in_memory = 0;
        for existing in 0..=6_i64 {
            let mut chain: Vec<deployments::Model> = (0..existing)
                .map(|k| ready_row(100 + k as u128, 2 * k))
                .collect();
            for k in 1..chain.len() {
                chain[k].previous_deployment_id = Some(chain[k - 1].id);
            }
            let slots = 0..=2 * existing;
            let mut joins: Vec<Vec<(u128, i64)>> = Vec::new();
            for a in slots.clone() {
                joins.push(vec![(50, a)]);
                joins.push(vec![(200, a)]);
                for b in slots.clone() {
                    joins.push(vec![(50, a), (201, b)]);
                }
            }
            for joined in joins {
                let mut s = Snapshot::new(vec![app(1, "acme/shop", None)]);
                let window = chain.len().saturating_sub(HEAD_WINDOW);
                s.add_rows(chain[window..].iter().cloned());
                s.add_heads([(app_id, env)]);
                for &(id, slot) in &joined {
                    let mut row = ready_row(id, slot);
                    row.status = Status::Building;
                    s.add_rows([row]);
                    let i = s.rows.len() - 1;
                    s.rows[i].status = Status::Ready;
                    s.touched[i] = true;
                }
                let relinks = s.link_previous();
                let mut expected: Vec<deployments::Model> = chain.clone();
                expected.extend(joined.iter().map(|&(id, slot)| ready_row(id, slot)));
                expected.sort_by_key(|row| (row.created_at, row.id));
                let previous: HashMap<Uuid, Option<Uuid>> = expected
                    .iter()
                    .enumerate()
                    .map(|(k, row)| (row.id, k.checked_sub(1).map(|p| expected[p].id)))
                    .collect();
                // A full window's oldest row may have more before it: rows made ready
                // must come after it.
                let oldest_read = (chain.len() >= HEAD_WINDOW)
                    .then(|| (chain[window].created_at, chain[window].id));
                let fits = joined
                    .iter()
                    .all(|&(id, slot)| oldest_read < Some((at(10 * slot), Uuid::from_u128(id))));
                let case = format!("{existing} ready, joined {joined:?}");
                if fits {
                    assert!(relinks.is_empty(), "{case}: set in memory");
                    in_memory += 1;
                    for row in &s.rows {
                        assert_eq!(
                            row.previous_deployment_id, previous[&row.id],
                            "{case}: {}",
                            row.id
                        );
                    }
                    for row in &chain[..window] {
                        assert_eq!(
                            row.previous_deployment_id, previous[&row.id],
                            "{case}: unread {}",
                            row.id
                        );
                    }
                } else {
                    let earliest = joined.iter().map(|&(_, slot)| at(10 * slot)).min().unwrap();
                    assert_eq!(relinks, [(app_id, env, earliest)], "{case}");
                }
            }
        }
        assert!(in_memory > 100, "{in_memory} cases set in memory");
    }

    #[test]
    fn a_pair_whose_newest_rows_were_not_read_is_relinked_by_the_database() {
        let mut s = shop();
        let app_id = s.apps[0].id;
        let row =
            deployments::Model::new(app_id, Environment::Staging, Status::Ready, at(5), at(5));
        let i = s.create(row);
        assert_eq!(s.link_previous(), [(app_id, Environment::Staging, at(5))]);
        assert_eq!(s.rows[i].previous_deployment_id, None);
        s.add_heads([(app_id, Environment::Staging)]);
        assert_eq!(s.link_previous(), []);
    }
}
