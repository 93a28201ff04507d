//! The pure half of ingest: what a run of events does to the deployment rows they can
//! touch, worked out in memory.
//!
//! Ingest reads a [`Snapshot`] (the apps the events name and every deployment row they
//! could look up), applies the events to it one after another exactly as if each had
//! its own transaction, then writes back the rows that changed. A batch of deliveries
//! thus costs a handful of statements instead of a handful per delivery, and this
//! module, the part with the rules in it, needs no database to test.
//!
//! This file holds the snapshot and how an event finds its rows; what each kind of
//! event does to them is in `plan/events.rs` (pushes, Vercel and GitHub deployments)
//! and `plan/rollback.rs` (rollbacks and promotions), and the links between ready
//! rows in `plan/chains.rs`.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use uuid::Uuid;

use super::state::Status;
use crate::store::deployments::{Environment, FailureReason};
use crate::store::{apps, deployments};
use crate::webhooks::{Event, GithubDeployment, Push, Target, VercelDeployment};

mod chains;
mod events;
mod rollback;

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
mod tests;
