//! `deploy-tracker stats`: the figures of `GET /api/stats`, as a table or its JSON.

use anyhow::{Context, Result, anyhow};
use sea_orm::DatabaseConnection;

use crate::config::StatsArgs;
use crate::stats::{self, Stats, Window};
use crate::store::apps;

pub async fn run(db: &DatabaseConnection, args: StatsArgs) -> Result<()> {
    let app = match &args.app {
        Some(key) => Some(
            apps::find_by_id_or_name(db, key)
                .await
                .context("cannot look up the app")?
                .ok_or_else(|| anyhow!("no app is named {key:?} or has that id"))?,
        ),
        None => None,
    };
    let window = Window {
        app_id: app.as_ref().map(|a| a.id),
        environment: args.environment,
        ..Window::between(args.since, args.until, crate::webhooks::now()).map_err(|e| anyhow!(e))?
    };
    let figures = stats::compute(db, &window)
        .await
        .context("cannot compute the figures")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        let scope = format!(
            "{}, {}",
            app.as_ref().map_or("all apps", |a| a.name.as_str()),
            args.environment.map_or("both environments", |e| e.as_str())
        );
        print!("{}", table(&scope, &window, &figures));
    }
    Ok(())
}

/// The figures as aligned lines, with durations made readable.
pub fn table(scope: &str, window: &Window, s: &Stats) -> String {
    let time = |t: chrono::NaiveDateTime| {
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let rows: [(&str, String); 10] = [
        ("deployments", s.deployments.to_string()),
        ("ready / failed", format!("{} / {}", s.ready, s.failed)),
        (
            "canceled / timed out",
            format!("{} / {}", s.canceled, s.timed_out),
        ),
        ("deploys per day", format!("{:.2}", s.deployments_per_day)),
        (
            "change failure rate",
            s.change_failure_rate
                .map_or("-".into(), |r| format!("{:.1}%", r * 100.0)),
        ),
        ("build time p50", duration(s.build_duration_ms.p50)),
        ("build time p90", duration(s.build_duration_ms.p90)),
        (
            "time to restore (mean)",
            duration(s.mean_time_to_restore_ms),
        ),
        ("lead time p50", duration(s.lead_time_ms.p50)),
        ("window (days)", format!("{:.2}", window.days())),
    ];
    let mut out = format!(
        "{scope}: created from {} to {}\n",
        time(window.since),
        time(window.until)
    );
    for (name, value) in rows {
        out += &format!("  {name:<24}{value}\n");
    }
    out
}

/// `1h 05m`, `3m 20s`, `4.2s`, `850ms`; `-` when unknown.
fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (s, m, h) = (ms / 1000, ms / 60_000, ms / 3_600_000);
    let text = if h > 0 {
        format!("{h}h {:02}m", m % 60)
    } else if m > 0 {
        format!("{m}m {:02}s", s % 60)
    } else if s >= 10 {
        format!("{s}s")
    } else if s > 0 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    };
    format!("{sign}{text}")
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(850)), "850ms");
        assert_eq!(duration(Some(4_200)), "4.2s");
        assert_eq!(duration(Some(200_000)), "3m 20s");
        assert_eq!(duration(Some(3_900_000)), "1h 05m");
        assert_eq!(duration(Some(-60_000)), "-1m 00s");
    }
}
