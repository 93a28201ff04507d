//! `/apps/{appId}`: one app's latest deployments, its DORA figures with two charts,
//! and its history with filters and keyset pages (newer and older links).

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::{NaiveDateTime, TimeDelta};
use maud::{Markup, html};
use serde::Deserialize;

use super::view::{self, Chrome};
use super::{PageError, PageResult, auth, charts, figures, live};
use crate::http::AppState;
use crate::store::apps;
use crate::store::deployments::{self, Environment, Filter, Status};
use crate::store::page::{Cursor, Limit};

/// The window of the figures and the per-day chart.
const WINDOW_DAYS: i64 = crate::stats::DEFAULT_DAYS;
/// At most this many rows feed the per-day chart (a few hundred a day is plenty).
const CHART_ROWS: u64 = 10_000;
const BUILDS_SHOWN: usize = 50;
const DEFAULT_PAGE: u64 = 25;

/// The query of the history; empty values count as absent, as in the API.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    environment: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    /// Older rows: the last row of the page being left.
    cursor: Option<String>,
    /// Newer rows: the first row of the page being left.
    before: Option<String>,
}

fn parse<T>(value: &Option<String>) -> Result<Option<T>, PageError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e: T::Err| PageError::BadRequest(e.to_string())),
    }
}

pub async fn show(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<HistoryQuery>,
    headers: HeaderMap,
) -> PageResult {
    let db = state.ingest.db();
    let mark = live::mark(db).await?;
    let filter = Filter {
        app_id: None,
        environment: parse::<Environment>(&query.environment)?,
        status: parse::<Status>(&query.status)?,
    };
    let limit = parse::<Limit>(&query.limit)?
        .unwrap_or_else(|| Limit::try_from(DEFAULT_PAGE).expect("within bounds"));
    let cursor = parse::<Cursor>(&query.cursor)?;
    let before = parse::<Cursor>(&query.before)?;
    let app = apps::find_by_id_or_name(db, &key)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no app has the id or name {key:?}")))?;
    let filter = Filter {
        app_id: Some(app.id),
        ..filter
    };
    let now = crate::webhooks::now();
    let since = now - TimeDelta::days(WINDOW_DAYS);

    // A page and which neighbours it has: going back (`before`) always leaves an
    // older page behind it; going forward always leaves a newer one.
    let page = async {
        Ok::<_, sea_orm::DbErr>(match (before, cursor) {
            (Some(before), _) => {
                let (rows, newer) = deployments::history_before(db, filter, before, limit).await?;
                if newer {
                    (rows, true, true)
                } else {
                    // Back at the start: the first page, full.
                    let page = deployments::history(db, filter, None, limit).await?;
                    (page.items, false, page.next_cursor.is_some())
                }
            }
            (None, cursor) => {
                let page = deployments::history(db, filter, cursor, limit).await?;
                (page.items, cursor.is_some(), page.next_cursor.is_some())
            }
        })
    };
    let ((rows, has_newer, has_older), latest, points, stats) = tokio::try_join!(
        page,
        deployments::latest_everywhere(db, Some(app.id)),
        deployments::points(db, app.id, since, CHART_ROWS),
        figures::of_app(db, app.id, now, WINDOW_DAYS),
    )?;
    let latest_in = |env| latest.iter().find(|d| d.environment == env);
    let key_of = |d: &deployments::Model| {
        Cursor {
            at: d.created_at,
            id: d.id,
        }
        .to_string()
    };
    let link = |param: &str, cursor: String| {
        let mut pairs = vec![(param, cursor)];
        if let Some(e) = filter.environment {
            pairs.push(("environment", e.as_str().to_owned()));
        }
        if let Some(s) = filter.status {
            pairs.push(("status", s.as_str().to_owned()));
        }
        if query.limit.is_some() {
            pairs.push(("limit", limit.get().to_string()));
        }
        format!(
            "/apps/{}?{}",
            app.id,
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let newer = has_newer
        .then(|| rows.first().map(|d| link("before", key_of(d))))
        .flatten();
    let older = has_older
        .then(|| rows.last().map(|d| link("cursor", key_of(d))))
        .flatten();

    let body = html! {
        section.panel #app {
            h1 { (app.name) }
            p.muted {
                code { (app.github_repo) }
                @if let Some(project) = &app.vercel_project_id { " · Vercel " code { (project) } }
                " · staging from " code { (app.staging_branch) } ", production from " code { (app.production_branch) }
            }
            div.latest {
                @for env in [Environment::Staging, Environment::Production] {
                    div.latest-env data-env=(env.as_str()) {
                        h2 { (env.as_str()) }
                        @match latest_in(env) {
                            Some(d) => (view::deployment_summary(d, now)),
                            None => span.muted { "never deployed" },
                        }
                    }
                }
            }
        }
        section.panel #figures {
            h2 { "Last " (WINDOW_DAYS) " days" }
            (figures::show(&stats))
            div.charts {
                figure {
                    figcaption { "Deployments per day" }
                    (charts::deploys_per_day(&charts::per_day(&points, now, WINDOW_DAYS as usize)))
                }
                figure {
                    figcaption { "Build duration, latest " (BUILDS_SHOWN) " builds" }
                    (charts::build_durations(&points, BUILDS_SHOWN))
                }
            }
            p.legend {
                span.swatch.bar-ready {} " ready " span.swatch.bar-failed {} " failed " span.swatch.bar-other {} " in progress"
            }
        }
        section.panel #history {
            h2 { "History" }
            (filters(&app, filter, query.limit.is_some().then_some(limit)))
            @if rows.is_empty() {
                p.muted { "No deployment matches." }
            } @else {
                (history_table(&rows, now))
            }
            nav.pager aria-label="History pages" {
                @if let Some(href) = &newer { a #newer rel="prev" href=(href) { "← Newer" } }
                @if let Some(href) = &older { a #older rel="next" href=(href) { "Older →" } }
            }
        }
    };
    let chrome = Chrome {
        logout: auth::has_session(&state, &headers),
        live: Some(mark),
    };
    Ok(view::layout(&app.name, chrome, body).into_response())
}

fn filters(app: &apps::Model, filter: Filter, limit: Option<Limit>) -> Markup {
    html! {
        form.filters method="get" action={ "/apps/" (app.id) } {
            label { "Environment "
                select name="environment" {
                    option value="" { "any" }
                    @for env in [Environment::Staging, Environment::Production] {
                        option value=(env.as_str()) selected[filter.environment == Some(env)] { (env.as_str()) }
                    }
                }
            }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status.as_str()) selected[filter.status == Some(status)] { (status.as_str()) }
                    }
                }
            }
            @if let Some(limit) = limit { input type="hidden" name="limit" value=(limit.get()); }
            button type="submit" { "Filter" }
        }
    }
}

fn history_table(rows: &[deployments::Model], now: NaiveDateTime) -> Markup {
    html! {
        table.list.history {
            thead { tr {
                th { "Created" } th { "Env" } th { "Status" } th { "Commit" } th { "URL" }
                th { "Build" } th { "By" } th { "Detail" }
            } }
            tbody {
                @for d in rows {
                    tr data-deployment=(d.id) {
                        td data-label="Created" { (view::time(d.created_at, now)) }
                        td data-label="Env" { (d.environment.as_str()) }
                        td data-label="Status" {
                            (view::status(d.status, d.failure_reason))
                            @if d.is_rollback { " " span.tag { "rollback" } }
                        }
                        td data-label="Commit" { (view::commit(d.github_commit_sha.as_deref())) }
                        td data-label="URL" { (view::url(d.deployment_url.as_deref())) }
                        td data-label="Build" {
                            @match d.build_duration_ms { Some(ms) => (view::duration_ms(ms)), None => span.muted { "–" } }
                        }
                        td data-label="By" { @match &d.triggered_by { Some(who) => (who), None => span.muted { "–" } } }
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
