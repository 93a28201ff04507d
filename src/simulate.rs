//! Synthetic deployment flows with realistic payloads, for the integration tests and
//! the load driver: a GitHub push, Vercel `deployment.created`, then
//! `deployment.succeeded` or `deployment.error`, with what the row must end as; the
//! GitHub deployment statuses Vercel's GitHub app posts for the same deploy; and
//! promotions and rollbacks.

use serde_json::json;

use crate::webhooks::Provider;
use crate::webhooks::signature::{sign_github, sign_vercel};

/// An app the flows belong to.
#[derive(Debug, Clone)]
pub struct SimApp {
    pub name: String,
    pub github_repo: String,
    pub vercel_project_id: String,
}

impl SimApp {
    pub fn numbered(i: usize) -> Self {
        Self {
            name: format!("sim-app-{i:04}"),
            github_repo: format!("sim-org/app-{i:04}"),
            vercel_project_id: format!("prj_sim{i:020}"),
        }
    }

    /// The `POST /api/apps` body that registers it.
    pub fn registration(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "githubRepo": self.github_repo,
            "vercelProjectId": self.vercel_project_id,
        })
    }
}

/// One deployment from push to final status.
#[derive(Debug, Clone)]
pub struct Flow {
    pub app: usize,
    pub production: bool,
    pub fails: bool,
    pub sha: String,
    pub deployment_id: String,
    pub url: String,
    /// Milliseconds since the epoch of the push; later events follow it.
    pub started_ms: i64,
}

/// One request, ready to sign and send.
#[derive(Debug, Clone)]
pub struct SimDelivery {
    pub provider: Provider,
    pub delivery_id: String,
    /// `X-GitHub-Event` for GitHub; the envelope type for Vercel.
    pub event: &'static str,
    pub body: Vec<u8>,
}

impl SimDelivery {
    /// The signature header's name and value for this delivery.
    pub fn signature(&self, secret: &[u8]) -> (&'static str, String) {
        match self.provider {
            Provider::Github => ("x-hub-signature-256", sign_github(secret, &self.body)),
            Provider::Vercel => ("x-vercel-signature", sign_vercel(secret, &self.body)),
        }
    }

    pub fn path(&self) -> &'static str {
        match self.provider {
            Provider::Github => "/webhooks/github",
            Provider::Vercel => "/webhooks/vercel",
        }
    }
}

impl Flow {
    /// Flow `n` of `apps` apps: deterministic, every 20th one fails.
    pub fn numbered(n: usize, apps: usize, run: &str) -> Self {
        Self {
            app: n % apps,
            // Alternate environments per app as well as overall, whatever the app count.
            production: (n + n / apps) % 2 == 1,
            fails: n % 20 == 7,
            sha: format!("{:040x}", (n as u128 + 1) * 0x9e37_79b9_7f4a_7c15),
            deployment_id: format!("dpl_{run}{n:010}"),
            url: format!("sim-{run}-{n}.vercel.app"),
            started_ms: 1_795_000_000_000 + n as i64 * 1_000,
        }
    }

    pub fn expected_status(&self) -> &'static str {
        if self.fails { "failed" } else { "ready" }
    }

    pub fn environment(&self) -> &'static str {
        if self.production {
            "production"
        } else {
            "staging"
        }
    }

    fn branch(&self) -> &'static str {
        if self.production { "main" } else { "staging" }
    }

    /// The flow's three deliveries, in the order the providers send them.
    pub fn deliveries(&self, app: &SimApp) -> [SimDelivery; 3] {
        let (org, repo) = app.github_repo.split_once('/').unwrap_or(("", ""));
        let push = json!({
            "ref": format!("refs/heads/{}", self.branch()),
            "before": "0".repeat(40),
            "after": self.sha,
            "created": false,
            "deleted": false,
            "forced": false,
            "repository": {
                "full_name": app.github_repo,
                "name": repo,
                "pushed_at": self.started_ms / 1000,
                "owner": { "login": org },
            },
            "head_commit": {
                "id": self.sha,
                "message": "Deploy",
                "timestamp": "2026-11-25T00:00:00Z",
            },
            "pusher": { "name": "sim" },
        });
        let vercel = |kind: &'static str, offset_ms: i64| {
            let body = json!({
                "id": format!("evt_{}_{kind}", self.deployment_id),
                "type": kind,
                "createdAt": self.started_ms + offset_ms,
                "region": "iad1",
                "payload": {
                    "team": { "id": "team_sim" },
                    "user": { "id": "user_sim" },
                    "deployment": {
                        "id": self.deployment_id,
                        "url": self.url,
                        "name": app.name,
                        "meta": {
                            "githubCommitSha": self.sha,
                            "githubCommitRef": self.branch(),
                            "githubOrg": org,
                            "githubRepo": repo,
                        },
                    },
                    "links": { "deployment": "https://vercel.com/x", "project": "https://vercel.com/y" },
                    "target": self.environment(),
                    "project": { "id": app.vercel_project_id },
                    "plan": "pro",
                    "regions": ["iad1"],
                },
            });
            SimDelivery {
                provider: Provider::Vercel,
                delivery_id: format!("evt_{}_{kind}", self.deployment_id),
                event: kind,
                body: serde_json::to_vec(&body).expect("JSON serialises"),
            }
        };
        [
            SimDelivery {
                provider: Provider::Github,
                delivery_id: format!("gh-{}", self.deployment_id),
                event: "push",
                body: serde_json::to_vec(&push).expect("JSON serialises"),
            },
            vercel("deployment.created", 20_000),
            vercel(
                if self.fails {
                    "deployment.error"
                } else {
                    "deployment.succeeded"
                },
                90_000,
            ),
        ]
    }
}

impl Flow {
    /// The GitHub deployment id Vercel's GitHub app would give this flow.
    pub fn github_deployment_id(&self) -> i64 {
        6_900_000_000 + self.started_ms % 1_000_000_000
    }

    /// The `deployment_status` deliveries Vercel's GitHub app posts for this flow:
    /// `in_progress`, then `success` or `failure`, with its quirks (`Production – `
    /// + project name, `environment_url: ""` on production).
    pub fn github_statuses(&self, app: &SimApp) -> [SimDelivery; 2] {
        let environment = if self.production {
            format!("Production \u{2013} {}", app.name)
        } else {
            format!("Staging \u{2013} {}", app.name)
        };
        let status = |state: &'static str, offset_ms: i64| {
            let at = chrono::DateTime::from_timestamp_millis(self.started_ms + offset_ms)
                .expect("a valid time")
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let url = format!("https://{}", self.url);
            let body = json!({
                "action": "created",
                "deployment_status": {
                    "id": self.github_deployment_id() * 10 + offset_ms % 7,
                    "state": state,
                    "environment": environment,
                    "environment_url": if self.production { String::new() } else { url.clone() },
                    "target_url": url,
                    "log_url": format!("https://vercel.com/sim/{}", self.deployment_id),
                    "description": if state == "failure" { "Deployment has failed" } else { "" },
                    "creator": { "login": "vercel[bot]", "type": "Bot" },
                    "created_at": at,
                    "updated_at": at,
                },
                "deployment": {
                    "id": self.github_deployment_id(),
                    "sha": self.sha,
                    "ref": self.sha,
                    "task": "deploy",
                    "environment": environment,
                    "production_environment": false,
                    "transient_environment": false,
                    "creator": { "login": "vercel[bot]", "type": "Bot" },
                    "created_at": at,
                },
                "repository": { "full_name": app.github_repo },
                "sender": { "login": "vercel[bot]" },
            });
            SimDelivery {
                provider: Provider::Github,
                delivery_id: format!("ghs-{}-{state}", self.deployment_id),
                event: "deployment_status",
                body: serde_json::to_vec(&body).expect("JSON serialises"),
            }
        };
        [
            status("in_progress", 25_000),
            status(if self.fails { "failure" } else { "success" }, 95_000),
        ]
    }

    /// Vercel `deployment.rollback` (or, with `promoted`, `deployment.promoted`) of
    /// production back to this flow's deployment at `at_ms`.
    pub fn serve_again(&self, app: &SimApp, at_ms: i64, promoted: bool) -> SimDelivery {
        let kind = if promoted {
            "deployment.promoted"
        } else {
            "deployment.rollback"
        };
        let payload = if promoted {
            json!({
                "project": { "id": app.vercel_project_id },
                "deployment": { "id": self.deployment_id, "url": self.url, "meta": {} },
                "target": "production",
            })
        } else {
            json!({
                "project": { "id": app.vercel_project_id },
                "toDeploymentId": self.deployment_id,
            })
        };
        let id = format!("evt_{}_{kind}_{at_ms}", self.deployment_id);
        let body = json!({ "id": id, "type": kind, "createdAt": at_ms, "payload": payload });
        SimDelivery {
            provider: Provider::Vercel,
            delivery_id: id,
            event: kind,
            body: serde_json::to_vec(&body).expect("JSON serialises"),
        }
    }
}
