//! What clusters are made of: datastores and their versions, providers and flavors.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatastoreDto {
    pub name: String,
    /// The manager that operates it (`postgresql`).
    pub manager: String,
    pub versions: Vec<VersionDto>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionDto {
    pub version: String,
    /// Only active versions can be used for new clusters.
    pub active: bool,
    /// Debian packages installed on every node.
    pub packages: Vec<String>,
    /// Image id per provider name.
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatastore {
    pub name: String,
    pub manager: String,
    #[serde(default)]
    pub versions: Vec<CreateVersion>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    pub version: String,
    /// Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    pub packages: Vec<String>,
    #[serde(default)]
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchVersion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlavorDto {
    pub id: String,
    pub provider: String,
    pub vcpus: u32,
    pub ram_mb: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CapabilitiesDto {
    pub volumes: bool,
    pub snapshots: bool,
    pub power_control: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderDto {
    pub name: String,
    /// `local` or `ec2`.
    pub kind: String,
    pub capabilities: CapabilitiesDto,
    /// Effective configuration (admins only; never contains secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::HashMap<String, serde_json::Value>>)]
    pub config: Option<serde_json::Value>,
}
