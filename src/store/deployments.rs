//! The seed's `deployments` table.

use sea_orm::entity::prelude::*;
use serde::Serialize;

pub use crate::deployments::state::Status;

/// The seed stores environments as these lowercase strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(20))")]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[sea_orm(string_value = "staging")]
    Staging,
    #[sea_orm(string_value = "production")]
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

impl std::str::FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            other => Err(format!(
                "unknown environment {other:?}: expected staging or production"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "deployments")]
#[serde(rename_all = "camelCase")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(column_name = "appId")]
    pub app_id: Uuid,
    pub environment: Environment,
    pub status: Status,
    #[sea_orm(column_name = "deploymentUrl")]
    pub deployment_url: Option<String>,
    #[sea_orm(column_name = "githubCommitSha")]
    pub github_commit_sha: Option<String>,
    #[sea_orm(column_name = "vercelDeploymentId")]
    pub vercel_deployment_id: Option<String>,
    #[sea_orm(column_name = "createdAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub created_at: DateTime,
    #[sea_orm(column_name = "updatedAt")]
    #[serde(serialize_with = "crate::store::utc")]
    pub updated_at: DateTime,
    #[sea_orm(column_name = "errorMessage")]
    pub error_message: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::apps::Entity",
        from = "Column::AppId",
        to = "super::apps::Column::Id",
        on_delete = "Cascade"
    )]
    App,
}

impl Related<super::apps::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::App.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
