//! `/`: every app's latest staging and production deployment, what is failing and
//! building across apps, and the delivery log with what could not be matched.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::NaiveDateTime;
use maud::{Markup, html};
use uuid::Uuid;

use super::view::{self, Chrome};
use super::{PageResult, auth, live};
use crate::deployments::ingest::Outcome;
use crate::http::AppState;
use crate::store::apps;
use crate::store::deliveries::{self, Summary};
use crate::store::deployments::{self, Environment, Filter, Status};
use crate::store::page::Limit;

const FAILED_SHOWN: u64 = 10;
const IN_PROGRESS_SHOWN: u64 = 10;
const ATTENTION_SHOWN: u64 = 5;
const DELIVERIES_SHOWN: u64 = 25;

fn limit(n: u64) -> Limit {
    Limit::try_from(n).expect("a page size within the bounds")
}

pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    let db = state.ingest.db();
    // The mark first: whatever commits while the rest is read changes it.
    let mark = live::mark(db).await?;
    let statuses = |status| Filter {
        status: Some(status),
        ..Filter::default()
    };
    let outcomes = |outcome| deliveries::Filter {
        outcome: Some(outcome),
        ..deliveries::Filter::default()
    };
    let (apps, latest, failed, building, pending, unmatched, malformed, recent) = tokio::try_join!(
        apps::all(db),
        deployments::latest_everywhere(db, None),
        deployments::history(db, statuses(Status::Failed), None, limit(FAILED_SHOWN)),
        deployments::history(
            db,
            statuses(Status::Building),
            None,
            limit(IN_PROGRESS_SHOWN)
        ),
        deployments::history(
            db,
            statuses(Status::Pending),
            None,
            limit(IN_PROGRESS_SHOWN)
        ),
        deliveries::list(
            db,
            outcomes(Outcome::Unmatched),
            None,
            limit(ATTENTION_SHOWN)
        ),
        deliveries::list(
            db,
            outcomes(Outcome::Malformed),
            None,
            limit(ATTENTION_SHOWN)
        ),
        deliveries::list(
            db,
            deliveries::Filter::default(),
            None,
            limit(DELIVERIES_SHOWN)
        ),
    )?;
    let now = crate::webhooks::now();
    let mut apps = apps;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    let names: HashMap<Uuid, &str> = apps.iter().map(|a| (a.id, a.name.as_str())).collect();
    let latest: HashMap<(Uuid, Environment), &deployments::Model> = latest
        .iter()
        .map(|d| ((d.app_id, d.environment), d))
        .collect();
    let mut in_progress: Vec<_> = building.items.into_iter().chain(pending.items).collect();
    in_progress.sort_by_key(|d| std::cmp::Reverse((d.created_at, d.id)));
    in_progress.truncate(IN_PROGRESS_SHOWN as usize);
    let mut attention: Vec<_> = unmatched.items.into_iter().chain(malformed.items).collect();
    attention.sort_by_key(|d| std::cmp::Reverse((d.received_at, d.id)));

    let body = html! {
        section.panel #apps {
            h1 { "Apps" }
            @if apps.is_empty() {
                p { "No app is registered yet. Register one so its deliveries are matched:" }
                (register_hint(None, None))
            } @else {
                table.apps {
                    thead { tr { th { "App" } th { "Staging" } th { "Production" } } }
                    tbody {
                        @for app in &apps {
                            tr data-app=(app.name) {
                                th scope="row" data-label="App" {
                                    a href={ "/apps/" (app.id) } { (app.name) }
                                    br; span.muted { (app.github_repo) }
                                }
                                @for env in [Environment::Staging, Environment::Production] {
                                    td data-env=(env.as_str()) data-label=(env.as_str()) {
                                        @match latest.get(&(app.id, env)) {
                                            Some(d) => (view::deployment_summary(d, now)),
                                            None => span.muted { "never deployed" },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !in_progress.is_empty() {
            section.panel #in-progress {
                h2 { "In progress" }
                (deployment_list(&in_progress, &names, now))
            }
        }
        section.panel #failed {
            h2 { "Failed deployments" }
            @if failed.items.is_empty() {
                p.muted { "None recorded." }
            } @else {
                (deployment_list(&failed.items, &names, now))
            }
        }
        @if !attention.is_empty() {
            section.panel.attention #attention {
                h2 { "Deliveries that need a look" }
                p { "Unmatched deliveries are about a repository or Vercel project no app is registered for; malformed ones were signed but not understood. Both are kept and can be reprocessed (" (view::command("deploy-tracker reprocess")) ") once fixed." }
                (delivery_list(&attention, now, true))
            }
        }
        section.panel #deliveries {
            h2 { "Recent deliveries" }
            @if recent.items.is_empty() {
                p.muted { "No delivery received yet." }
            } @else {
                (delivery_list(&recent.items, now, false))
            }
        }
    };
    let chrome = Chrome {
        logout: auth::has_session(&state, &headers),
        live: Some(mark),
    };
    Ok(view::layout("Dashboard", chrome, body).into_response())
}

fn deployment_list(
    rows: &[deployments::Model],
    names: &HashMap<Uuid, &str>,
    now: NaiveDateTime,
) -> Markup {
    html! {
        table.list {
            thead { tr { th { "App" } th { "Env" } th { "Status" } th { "Commit" } th { "Created" } th { "Detail" } } }
            tbody {
                @for d in rows {
                    tr data-deployment=(d.id) {
                        td data-label="App" {
                            a href={ "/apps/" (d.app_id) } { (names.get(&d.app_id).copied().unwrap_or("?")) }
                        }
                        td data-label="Env" { (d.environment.as_str()) }
                        td data-label="Status" { (view::status(d.status, d.failure_reason)) }
                        td data-label="Commit" { (view::commit(d.github_commit_sha.as_deref())) }
                        td data-label="Created" { (view::time(d.created_at, now)) }
                        td data-label="Detail" {
                            @if let Some(message) = &d.error_message { span.error-message { (message) } " " }
                            @if let Some(logs) = &d.build_logs {
                                a href=(logs) rel="noopener noreferrer" target="_blank" { "logs ↗" }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn delivery_list(rows: &[Summary], now: NaiveDateTime, hints: bool) -> Markup {
    html! {
        table.list.deliveries {
            thead { tr { th { "Received" } th { "Provider" } th { "Event" } th { "Outcome" } th { "Reason" } } }
            tbody {
                @for d in rows {
                    tr data-delivery=(d.id) data-outcome=(d.outcome) class={ "outcome-row-" (d.outcome) } {
                        td data-label="Received" {
                            a href={ "/deliveries/" (d.id) } { (view::time(d.received_at, now)) }
                            @if d.attempts > 1 { " " span.tag title="copies received" { "×" (d.attempts) } }
                        }
                        td data-label="Provider" { (d.provider) }
                        td data-label="Event" { code { (d.event_type) } }
                        td data-label="Outcome" { (view::outcome(&d.outcome)) }
                        td data-label="Reason" {
                            (d.reason)
                            @if hints && d.outcome == Outcome::Unmatched.as_str() {
                                (register_hint(named_after(&d.reason, "repository "), named_after(&d.reason, "Vercel project ")))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The word after `prefix` in an unmatched delivery's reason ("no app is registered
/// for repository acme/web"), for the registration hint.
fn named_after<'a>(reason: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &reason[reason.find(prefix)? + prefix.len()..];
    let word = rest.split_whitespace().next()?;
    (word != "(none)").then_some(word)
}

/// How to register the app a delivery was about, filled in as far as it is known.
fn register_hint(repo: Option<&str>, project: Option<&str>) -> Markup {
    let repo = repo.unwrap_or("OWNER/REPO");
    let name = repo.rsplit('/').next().unwrap_or("NAME");
    let mut cli = format!("deploy-tracker apps add --name {name} --github-repo {repo}");
    let mut api = format!(r#"{{"name":"{name}","githubRepo":"{repo}""#);
    if let Some(project) = project {
        cli.push_str(&format!(" --vercel-project-id {project}"));
        api.push_str(&format!(r#","vercelProjectId":"{project}""#));
    }
    api.push('}');
    html! {
        div.hint {
            "Register it: " (view::command(&cli))
            " or " code { "POST /api/apps" } " with " (view::command(&api))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_names_what_the_reason_names() {
        let reason = "no app is registered for Vercel project prj_1 or repository acme/web";
        assert_eq!(named_after(reason, "repository "), Some("acme/web"));
        assert_eq!(named_after(reason, "Vercel project "), Some("prj_1"));
        assert_eq!(
            named_after(
                "no app is registered for Vercel project (none)",
                "Vercel project "
            ),
            None
        );
        let hint = register_hint(Some("acme/web"), Some("prj_1")).into_string();
        assert!(
            hint.contains("deploy-tracker apps add --name web --github-repo acme/web --vercel-project-id prj_1"),
            "{hint}"
        );
    }
}
