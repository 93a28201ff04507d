//! Two small charts drawn on the server as inline SVG: deployments per day and build
//! durations. No script, no library; every bar has a `<title>` for its figures.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use maud::{Markup, html};

use super::view;
use crate::store::deployments::{Point, Status};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// Room at the left for the axis label and at the bottom for the dates.
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// One day's counts, oldest day first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Day {
    pub ready: u32,
    pub failed: u32,
    pub other: u32,
}

impl Day {
    fn total(self) -> u32 {
        self.ready + self.failed + self.other
    }
}

/// Buckets points into the `days` UTC days ending with `now`'s.
pub fn per_day(points: &[Point], now: NaiveDateTime, days: usize) -> Vec<(NaiveDate, Day)> {
    let last = now.date();
    let first = last - TimeDelta::days(days as i64 - 1);
    let mut out: Vec<(NaiveDate, Day)> = (0..days)
        .map(|i| (first + TimeDelta::days(i as i64), Day::default()))
        .collect();
    for p in points {
        let date = p.created_at.date();
        if date < first || date > last {
            continue;
        }
        let day = &mut out[(date - first).num_days() as usize].1;
        match p.status {
            Status::Ready => day.ready += 1,
            Status::Failed => day.failed += 1,
            Status::Pending | Status::Building => day.other += 1,
        }
    }
    out
}

fn frame(label: &str, max: &str, body: Markup, first: &str, last: &str) -> Markup {
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img" aria-label=(label) xmlns="http://www.w3.org/2000/svg" {
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(HEIGHT - BOTTOM) {}
            line.axis x1=(LEFT) y1=(HEIGHT - BOTTOM) x2=(WIDTH) y2=(HEIGHT - BOTTOM) {}
            text.label x=(LEFT - 4.0) y=(TOP + 10.0) text-anchor="end" { (max) }
            text.label x=(LEFT - 4.0) y=(HEIGHT - BOTTOM) text-anchor="end" { "0" }
            text.label x=(LEFT) y=(HEIGHT - 4.0) { (first) }
            text.label x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (last) }
            (body)
        }
    }
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Ready => "bar-ready",
        Status::Failed => "bar-failed",
        Status::Pending | Status::Building => "bar-other",
    }
}

/// Stacked bars per day: ready, failed, still in progress.
pub fn deploys_per_day(days: &[(NaiveDate, Day)]) -> Markup {
    let max = days
        .iter()
        .map(|(_, d)| d.total())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - BOTTOM - TOP;
    let step = (WIDTH - LEFT) / days.len().max(1) as f64;
    let scale = |n: u32| f64::from(n) / f64::from(max) * plot;
    let first = days.first().map(|(d, _)| d.format("%b %-d").to_string());
    let last = days.last().map(|(d, _)| d.format("%b %-d").to_string());
    let body = html! {
        @for (i, (date, day)) in days.iter().enumerate() {
            g {
                title { (date) ": " (day.ready) " ready, " (day.failed) " failed, " (day.other) " in progress" }
                @for (class, y, h) in stack(*day, scale) {
                    rect class=(class) x=(fmt(LEFT + i as f64 * step + step * 0.15)) y=(fmt(y))
                        width=(fmt(step * 0.7)) height=(fmt(h)) {}
                }
            }
        }
    };
    frame(
        "Deployments per day",
        &max.to_string(),
        body,
        first.as_deref().unwrap_or(""),
        last.as_deref().unwrap_or(""),
    )
}

/// A day's segments bottom up: (class, top, height), empty ones left out.
fn stack(day: Day, scale: impl Fn(u32) -> f64) -> Vec<(&'static str, f64, f64)> {
    let mut y = HEIGHT - BOTTOM;
    [
        (day.ready, "bar-ready"),
        (day.failed, "bar-failed"),
        (day.other, "bar-other"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, class)| {
        let h = scale(n);
        y -= h;
        (class, y, h)
    })
    .collect()
}

/// One bar per finished build, oldest left, coloured by how it ended.
pub fn build_durations(points: &[Point], shown: usize) -> Markup {
    let mut builds: Vec<&Point> = points
        .iter()
        .filter(|p| p.build_duration_ms.is_some())
        .take(shown)
        .collect();
    builds.reverse();
    let max = builds
        .iter()
        .filter_map(|p| p.build_duration_ms)
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - BOTTOM - TOP;
    let step = (WIDTH - LEFT) / shown.max(1) as f64;
    let body = html! {
        @for (i, p) in builds.iter().enumerate() {
            @let ms = p.build_duration_ms.unwrap_or(0);
            @let h = (ms as f64 / max as f64 * plot).max(1.0);
            rect class=(status_class(p.status))
                x=(fmt(LEFT + i as f64 * step + step * 0.15)) y=(fmt(HEIGHT - BOTTOM - h))
                width=(fmt(step * 0.7)) height=(fmt(h)) {
                title { (p.created_at.format("%Y-%m-%d %H:%M")) ": " (view::duration_ms(ms)) " (" (p.status.as_str()) ")" }
            }
        }
        @if builds.is_empty() {
            text.label x=(WIDTH / 2.0) y=(HEIGHT / 2.0) text-anchor="middle" { "no build durations recorded yet" }
        }
    };
    let first = builds
        .first()
        .map(|p| p.created_at.format("%b %-d").to_string());
    let last = builds
        .last()
        .map(|p| p.created_at.format("%b %-d").to_string());
    frame(
        "Build durations of the latest builds",
        &view::duration_ms(max),
        body,
        first.as_deref().unwrap_or(""),
        last.as_deref().unwrap_or(""),
    )
}

/// Coordinates with one decimal: enough for a 600-unit canvas, and short markup.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn point(day: u32, hour: u32, status: Status, ms: Option<i64>) -> Point {
        Point {
            created_at: NaiveDate::from_ymd_opt(2026, 11, day)
                .unwrap()
                .and_hms_opt(hour, 0, 0)
                .unwrap(),
            status,
            build_duration_ms: ms,
        }
    }

    #[test]
    fn points_fall_into_their_utc_day_and_old_ones_drop_out() {
        let now = NaiveDate::from_ymd_opt(2026, 11, 30)
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap();
        let points = [
            point(30, 1, Status::Ready, None),
            point(30, 2, Status::Failed, None),
            point(29, 23, Status::Building, None),
            point(1, 0, Status::Ready, None),
        ];
        let days = per_day(&points, now, 3);
        assert_eq!(days.len(), 3);
        assert_eq!(days[0].1, Day::default());
        assert_eq!(
            days[1].1,
            Day {
                ready: 0,
                failed: 0,
                other: 1
            }
        );
        assert_eq!(
            days[2].1,
            Day {
                ready: 1,
                failed: 1,
                other: 0
            }
        );
        let svg = deploys_per_day(&days).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
    }

    #[test]
    fn only_builds_with_a_duration_are_drawn_newest_right() {
        let points = [
            point(30, 3, Status::Ready, Some(60_000)),
            point(30, 2, Status::Pending, None),
            point(30, 1, Status::Failed, Some(30_000)),
        ];
        let svg = build_durations(&points, 50).into_string();
        assert_eq!(svg.matches("<rect").count(), 2, "{svg}");
        let failed = svg.find("bar-failed").unwrap();
        let ready = svg.find("bar-ready").unwrap();
        assert!(failed < ready, "the older build comes first: {svg}");
    }
}
