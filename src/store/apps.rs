//! The app registry.

use sea_orm::ActiveValue::Set;
use sea_orm::QueryOrder;
use sea_orm::entity::prelude::*;
use serde::Serialize;
use utoipa::ToSchema;

/// A registered app: which repository and Vercel project its deployments come from.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, ToSchema)]
#[sea_orm(table_name = "apps")]
#[serde(rename_all = "camelCase")]
#[schema(as = App)]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    #[sea_orm(column_name = "githubRepo")]
    pub github_repo: String,
    #[sea_orm(column_name = "vercelProjectId", unique)]
    pub vercel_project_id: Option<String>,
    #[sea_orm(column_name = "stagingBranch")]
    pub staging_branch: String,
    #[sea_orm(column_name = "productionBranch")]
    pub production_branch: String,
    #[sea_orm(column_name = "createdAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub created_at: DateTime,
    #[sea_orm(column_name = "updatedAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub updated_at: DateTime,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::deployments::Entity")]
    Deployments,
}

impl Related<super::deployments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployments.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

/// A request to register an app, validated before it reaches the database.
#[derive(Debug, Clone, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    /// `owner/name`, matched case-insensitively.
    pub github_repo: String,
    #[serde(default)]
    pub vercel_project_id: Option<String>,
    /// Defaults to `staging`.
    #[serde(default)]
    pub staging_branch: Option<String>,
    /// Defaults to `main`.
    #[serde(default)]
    pub production_branch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateAppError {
    #[error("{0}")]
    Invalid(String),
    #[error("an app with that name or Vercel project id already exists")]
    Conflict,
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl NewApp {
    fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err("name must be 1 to 255 bytes without control characters".into());
        }
        let repo_ok = self
            .github_repo
            .split_once('/')
            .is_some_and(|(owner, repo)| {
                [owner, repo].iter().all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                })
            });
        if !repo_ok || self.github_repo.len() > 255 {
            return Err(format!(
                "githubRepo must be owner/name, got {:?}",
                self.github_repo
            ));
        }
        if let Some(project) = &self.vercel_project_id
            && (project.is_empty() || project.len() > 255 || project.chars().any(char::is_control))
        {
            return Err("vercelProjectId must be 1 to 255 bytes without control characters".into());
        }
        for (field, branch) in [
            ("stagingBranch", &self.staging_branch),
            ("productionBranch", &self.production_branch),
        ] {
            if let Some(branch) = branch
                && (branch.is_empty()
                    || branch.len() > 255
                    || branch.starts_with("refs/")
                    || branch.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(format!(
                    "{field} must be a branch name such as main, got {branch:?}"
                ));
            }
        }
        if self.staging_branch() == self.production_branch() {
            return Err("stagingBranch and productionBranch must differ".into());
        }
        Ok(())
    }

    fn staging_branch(&self) -> &str {
        self.staging_branch.as_deref().unwrap_or("staging")
    }

    fn production_branch(&self) -> &str {
        self.production_branch.as_deref().unwrap_or("main")
    }

    pub async fn create<C: ConnectionTrait>(self, db: &C) -> Result<Model, CreateAppError> {
        self.validate().map_err(CreateAppError::Invalid)?;
        let now = crate::webhooks::now();
        let app = ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(self.name.trim().to_owned()),
            github_repo: Set(self.github_repo.clone()),
            vercel_project_id: Set(self.vercel_project_id.clone()),
            staging_branch: Set(self.staging_branch().to_owned()),
            production_branch: Set(self.production_branch().to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        app.insert(db).await.map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => CreateAppError::Conflict,
            _ => CreateAppError::Db(e),
        })
    }
}

/// An app by its id or, failing that, by its name.
pub async fn find_by_id_or_name<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<Model>, DbErr> {
    if let Ok(id) = key.parse::<Uuid>()
        && let Some(app) = Entity::find_by_id(id).one(db).await?
    {
        return Ok(Some(app));
    }
    Entity::find().filter(Column::Name.eq(key)).one(db).await
}

/// Every app, newest first. The registry is small (one row per app), so it is not paged.
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .all(db)
        .await
}
