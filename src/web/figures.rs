//! An app's DORA figures as the page shows them, from [`crate::stats`].

use chrono::NaiveDateTime;
use maud::{Markup, html};
use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use super::view;
use crate::stats::{self, Stats, Window};

/// The figures of the app's last `days` days, both environments together.
pub async fn of_app<C: ConnectionTrait>(
    db: &C,
    app_id: Uuid,
    now: NaiveDateTime,
    days: i64,
) -> Result<Stats, DbErr> {
    let window = Window {
        app_id: Some(app_id),
        ..Window::last_days(days, now)
    };
    stats::compute(db, &window).await
}

fn ms(value: Option<i64>) -> Markup {
    match value {
        Some(ms) => html! { (view::duration_ms(ms)) },
        None => html! { span.muted { "no data" } },
    }
}

pub fn show(stats: &Stats) -> Markup {
    let rate = match stats.change_failure_rate {
        Some(rate) => html! { (format!("{:.1} %", rate * 100.0)) },
        None => html! { span.muted { "no data" } },
    };
    html! {
        dl.figures {
            div { dt { "Deployments" } dd data-figure="deployments" { (stats.deployments) } }
            div { dt { "Ready" } dd data-figure="ready" { (stats.ready) } }
            div {
                dt { "Failed" }
                dd data-figure="failed" {
                    (stats.failed)
                    @if stats.canceled + stats.timed_out > 0 {
                        " " span.muted { "(+" (stats.canceled) " canceled, " (stats.timed_out) " timed out)" }
                    }
                }
            }
            div { dt { "Deploys per day" } dd data-figure="deploymentsPerDay" { (format!("{:.2}", stats.deployments_per_day)) } }
            div { dt { "Change failure rate" } dd data-figure="changeFailureRate" { (rate) } }
            div { dt { "Build time p50 / p90" } dd data-figure="buildDuration" {
                @match (stats.build_duration_ms.p50, stats.build_duration_ms.p90) {
                    (None, None) => span.muted { "no data" },
                    (p50, p90) => { (ms(p50)) " / " (ms(p90)) },
                }
            } }
            div { dt { "Time to restore (mean)" } dd data-figure="meanTimeToRestore" { (ms(stats.mean_time_to_restore_ms)) } }
            div { dt { "Lead time p50" } dd data-figure="leadTime" { (ms(stats.lead_time_ms.p50)) } }
        }
    }
}
