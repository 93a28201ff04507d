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
            let oldest_read =
                (chain.len() >= HEAD_WINDOW).then(|| (chain[window].created_at, chain[window].id));
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
    let row = deployments::Model::new(app_id, Environment::Staging, Status::Ready, at(5), at(5));
    let i = s.create(row);
    assert_eq!(s.link_previous(), [(app_id, Environment::Staging, at(5))]);
    assert_eq!(s.rows[i].previous_deployment_id, None);
    s.add_heads([(app_id, Environment::Staging)]);
    assert_eq!(s.link_previous(), []);
}
