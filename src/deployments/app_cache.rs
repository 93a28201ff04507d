//! The apps a Postgres writer has read, kept between its batches, so that a batch
//! whose every app key was seen before goes without reading the apps: one round
//! trip fewer of the three an unlocked batch makes (see `ingest::attempt_unlocked`).
//!
//! Nothing here is trusted: the write that commits an unlocked batch finds the apps
//! its keys name again, locks them, and writes only if they are the very apps, at
//! the very versions, the batch was planned with (`ingest::WRITE_UNLOCKED`). An app
//! registered since (by this process or another replica), gone, or raised by
//! another writer makes that write come back empty; the batch is then done under
//! locks, and the cache is emptied, to be filled again from the next reads.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::plan::AppKeys;
use crate::store::apps;

/// Past this many keys the cache starts again empty: keys no app has are kept too
/// (so that their batches need not read), and senders may name any number of them.
const MAX_KEYS: usize = 10_000;

/// A key events name apps by, as [`AppKeys`] holds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A repository, lowercased.
    Repository(String),
    Project(String),
}

fn keys_of(keys: &AppKeys) -> impl Iterator<Item = Key> + '_ {
    let repositories = keys.repositories.iter().cloned().map(Key::Repository);
    repositories.chain(keys.projects.iter().cloned().map(Key::Project))
}

/// Apps by the keys that name them, each with the version it was read or last
/// written at.
#[derive(Debug, Default)]
pub struct AppCache {
    /// Each key seen: the ids of the apps it names (none, for a key no app has).
    named: HashMap<Key, Vec<Uuid>>,
    apps: HashMap<Uuid, (apps::Model, i64)>,
}

impl AppCache {
    /// The apps `keys` name, with their versions, as [`AppCache::fill`] or
    /// [`AppCache::raise`] left them; `None` unless every key was seen.
    pub fn get(&self, keys: &AppKeys) -> Option<Vec<(apps::Model, i64)>> {
        let mut ids = HashSet::new();
        for key in keys_of(keys) {
            ids.extend(self.named.get(&key)?);
        }
        ids.into_iter()
            .map(|id| self.apps.get(id).cloned())
            .collect()
    }

    /// Keeps what reading the apps `keys` name gave: `apps`, all of them and only
    /// them (as ingest's `read_apps` returns them).
    pub fn fill(&mut self, keys: &AppKeys, apps: &[(apps::Model, i64)]) {
        if self.named.len() >= MAX_KEYS {
            self.clear();
        }
        for key in keys_of(keys) {
            let ids = apps
                .iter()
                .filter(|(app, _)| match &key {
                    Key::Repository(repository) => app.github_repo.to_lowercase() == *repository,
                    Key::Project(project) => app.vercel_project_id.as_ref() == Some(project),
                })
                .map(|(app, _)| app.id)
                .collect();
            self.named.insert(key, ids);
        }
        for (app, version) in apps {
            self.apps.insert(app.id, (app.clone(), *version));
        }
    }

    /// Notes that a write raised these apps' versions by one.
    pub fn raise(&mut self, ids: &[Uuid]) {
        for id in ids {
            if let Some((_, version)) = self.apps.get_mut(id) {
                *version += 1;
            }
        }
    }

    /// Forgets everything: some app changed in a way only reading it again tells.
    pub fn clear(&mut self) {
        self.named.clear();
        self.apps.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::now;

    fn app(repo: &str, project: Option<&str>) -> apps::Model {
        apps::Model {
            id: Uuid::now_v7(),
            name: format!("{repo}-{project:?}"),
            github_repo: repo.to_owned(),
            vercel_project_id: project.map(str::to_owned),
            staging_branch: "develop".into(),
            production_branch: "main".into(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn keys(repositories: &[&str], projects: &[&str]) -> AppKeys {
        AppKeys {
            repositories: repositories.iter().map(|r| r.to_string()).collect(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn ids(apps: Option<Vec<(apps::Model, i64)>>) -> Option<Vec<(Uuid, i64)>> {
        apps.map(|apps| {
            let mut ids: Vec<_> = apps.into_iter().map(|(app, v)| (app.id, v)).collect();
            ids.sort();
            ids
        })
    }

    #[test]
    fn a_batch_is_answered_only_when_every_key_was_read() {
        let web = app("Acme/Web", Some("prj_web"));
        let docs = app("acme/web", Some("prj_docs"));
        let mut cache = AppCache::default();
        assert_eq!(ids(cache.get(&keys(&[], &[]))), Some(vec![]));
        assert_eq!(cache.get(&keys(&["acme/web"], &[])), None);

        // One repository, two apps (a monorepo); the Vercel key read with it.
        let read = [(web.clone(), 3), (docs.clone(), 7)];
        cache.fill(&keys(&["acme/web"], &["prj_web"]), &read);
        let mut both = vec![(web.id, 3), (docs.id, 7)];
        both.sort();
        assert_eq!(
            ids(cache.get(&keys(&["acme/web"], &[]))),
            Some(both.clone())
        );
        assert_eq!(
            ids(cache.get(&keys(&[], &["prj_web"]))),
            Some(vec![(web.id, 3)])
        );
        // Not read under this key, though its app is held.
        assert_eq!(cache.get(&keys(&[], &["prj_docs"])), None);
        assert_eq!(cache.get(&keys(&["acme/web"], &["prj_docs"])), None);

        // A key no app has is kept, as naming none.
        cache.fill(&keys(&["someone/else"], &[]), &[]);
        assert_eq!(ids(cache.get(&keys(&["someone/else"], &[]))), Some(vec![]));
        assert_eq!(
            ids(cache.get(&keys(&["someone/else", "acme/web"], &[]))),
            Some(both)
        );

        cache.raise(&[web.id]);
        assert_eq!(
            ids(cache.get(&keys(&[], &["prj_web"]))),
            Some(vec![(web.id, 4)])
        );

        cache.clear();
        assert_eq!(cache.get(&keys(&[], &["prj_web"])), None);
        assert_eq!(cache.get(&keys(&["someone/else"], &[])), None);
    }

    #[test]
    fn too_many_keys_start_it_again() {
        let mut cache = AppCache::default();
        for n in 0..MAX_KEYS {
            cache.fill(&keys(&[&format!("org/repo-{n}")], &[]), &[]);
        }
        assert!(cache.get(&keys(&["org/repo-0"], &[])).is_some());
        cache.fill(&keys(&["org/one-more"], &[]), &[]);
        assert!(cache.get(&keys(&["org/repo-0"], &[])).is_none());
        assert!(cache.get(&keys(&["org/one-more"], &[])).is_some());
    }
}
