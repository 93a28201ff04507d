//! How a push, a Vercel deployment event and a GitHub deployment status change the
//! snapshot: which row each names, and what it fills in or moves forward.

use chrono::NaiveDateTime;
use uuid::Uuid;

use super::{Effect, Outcome, Report, Snapshot, Source};
use crate::deployments::state::{Status, Transition, transition_of};
use crate::store::deployments::{self, Environment, FailureReason};
use crate::webhooks::{GithubDeployment, Push, VercelDeployment};

impl Snapshot {
    pub(super) fn apply_push(&mut self, push: &Push, at: NaiveDateTime) -> Effect {
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

    pub(super) fn apply_vercel(&mut self, event: &VercelDeployment, at: NaiveDateTime) -> Effect {
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

    pub(super) fn apply_github(&mut self, event: &GithubDeployment, at: NaiveDateTime) -> Effect {
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
}
