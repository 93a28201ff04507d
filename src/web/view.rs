//! What every page shares: the layout, status and outcome badges, commits, times.

use chrono::NaiveDateTime;
use maud::{DOCTYPE, Markup, html};

use super::assets;
use crate::store::deployments::{self, FailureReason, Status};

/// The parts of the layout that depend on the request.
pub struct Chrome {
    /// Show the log-out button (a session exists only with `API_TOKEN`).
    pub logout: bool,
    /// The live mark the page was rendered at; the script polls for a newer one.
    pub live: Option<String>,
}

impl Chrome {
    /// No session controls and no live updates: the login form and error pages.
    pub fn plain() -> Self {
        Chrome {
            logout: false,
            live: None,
        }
    }
}

pub fn layout(title: &str, chrome: Chrome, main: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · deploy-tracker" }
                link rel="stylesheet" href=(assets::style_href());
                script src=(assets::script_href()) defer {}
            }
            body data-live=[chrome.live.as_deref()] {
                header.top {
                    a.brand href="/" { "deploy-tracker" }
                    @if chrome.live.is_some() {
                        span #live-state .live-state data-state="live" title="Updates appear without a reload" { "live" }
                    }
                    @if chrome.logout {
                        form.logout method="post" action="/logout" {
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #page { (main) }
            }
        }
    }
}

/// A status as a coloured badge that also reads without colour: a sign and the word.
pub fn status(status: Status, reason: Option<FailureReason>) -> Markup {
    let (class, sign) = match status {
        Status::Pending => ("pending", "…"),
        Status::Building => ("building", "◐"),
        Status::Ready => ("ready", "✓"),
        Status::Failed => ("failed", "✗"),
    };
    html! {
        span class={ "badge status-" (class) } data-status=(status.as_str()) {
            span.sign aria-hidden="true" { (sign) }
            " " (status.as_str())
            @if let Some(reason) = reason.filter(|r| *r != FailureReason::Error) {
                " (" (reason.as_str()) ")"
            }
        }
    }
}

/// A delivery outcome as a badge; the ones that need a person stand out.
pub fn outcome(outcome: &str) -> Markup {
    let (class, sign) = match outcome {
        "applied" => ("ok", "✓"),
        "unmatched" => ("warn", "⚠"),
        "malformed" => ("bad", "✗"),
        _ => ("quiet", "·"),
    };
    html! {
        span class={ "badge outcome-" (class) } data-outcome=(outcome) {
            span.sign aria-hidden="true" { (sign) }
            " " (outcome)
        }
    }
}

/// A commit as its first seven digits, the whole SHA on hover.
pub fn commit(sha: Option<&str>) -> Markup {
    match sha {
        Some(sha) => html! { code.sha title=(sha) { (sha.get(..7).unwrap_or(sha)) } },
        None => html! { span.muted { "no commit" } },
    }
}

/// A deployment's URL as a link, shortened to its host.
pub fn url(url: Option<&str>) -> Markup {
    match url.filter(|u| !u.is_empty()) {
        Some(u) => {
            let href = if u.starts_with("http://") || u.starts_with("https://") {
                u.to_owned()
            } else {
                format!("https://{u}")
            };
            let shown = href
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            html! { a.url href=(href) rel="noopener noreferrer" target="_blank" { (shown) " ↗" } }
        }
        None => html! { span.muted { "no URL" } },
    }
}

/// A time as "3 min ago", the exact UTC time on hover and in `datetime` (the script
/// keeps the relative text current).
pub fn time(at: NaiveDateTime, now: NaiveDateTime) -> Markup {
    let utc = at.and_utc();
    html! {
        time datetime=(utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            title=(utc.format("%Y-%m-%d %H:%M:%S UTC")) {
            (ago(at, now))
        }
    }
}

pub fn ago(at: NaiveDateTime, now: NaiveDateTime) -> String {
    let secs = (now - at).num_seconds();
    if secs < 0 {
        return "just now".into();
    }
    match secs {
        0..10 => "just now".into(),
        10..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

/// Milliseconds as "1 m 32 s", "850 ms", "2 h 5 m".
pub fn duration_ms(ms: i64) -> String {
    match ms {
        ..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} m {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// One deployment as the dashboard's cell and the history's rows show it.
pub fn deployment_summary(d: &deployments::Model, now: NaiveDateTime) -> Markup {
    html! {
        (status(d.status, d.failure_reason))
        " " (commit(d.github_commit_sha.as_deref()))
        " " (time(d.created_at, now))
        @if d.is_rollback { " " span.tag { "rollback" } }
        br;
        (url(d.deployment_url.as_deref()))
    }
}

/// A shell command shown so it can be copied.
pub fn command(text: &str) -> Markup {
    html! { code.command { (text) } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn at(secs: i64) -> NaiveDateTime {
        DateTime::from_timestamp(1_764_000_000 + secs, 0)
            .unwrap()
            .naive_utc()
    }

    #[test]
    fn ages_read_in_the_largest_whole_unit() {
        let now = at(200_000);
        assert_eq!(ago(at(200_000), now), "just now");
        assert_eq!(ago(at(200_005), now), "just now", "a clock a little ahead");
        assert_eq!(ago(at(200_000 - 42), now), "42 s ago");
        assert_eq!(ago(at(200_000 - 180), now), "3 min ago");
        assert_eq!(ago(at(200_000 - 7300), now), "2 h ago");
        assert_eq!(ago(at(0), now), "2 d ago");
    }

    #[test]
    fn durations_read_in_the_largest_useful_units() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(12_340), "12.3 s");
        assert_eq!(duration_ms(92_000), "1 m 32 s");
        assert_eq!(duration_ms(7_500_000), "2 h 5 m");
    }

    #[test]
    fn markup_in_values_is_escaped() {
        let html = commit(Some("<script>alert(1)</script>")).into_string();
        assert!(!html.contains("<script>"), "{html}");
        let html = url(Some("javascript:alert(1)")).into_string();
        assert!(
            html.contains("href=\"https://javascript:alert(1)\""),
            "{html}"
        );
    }
}
