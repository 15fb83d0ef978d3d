//! What PostgreSQL looks like from outside: its port, its URI, its parameter rules,
//! Patroni's role names.

use super::layout::PG_PORT;
use super::{NAME, PostgresManager, params};
use crate::{ParameterInfo, Profile};
use herd_core::status::NodeRole;

impl Profile for PostgresManager {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check_version(&self, version: &str) -> Result<(), String> {
        match version.parse::<u32>() {
            Ok(v) if (10..=99).contains(&v) => Ok(()),
            _ => Err("must be a PostgreSQL major version such as 15".into()),
        }
    }

    fn check_parameters(
        &self,
        version: &str,
        parameters: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<ParameterInfo>, Vec<(String, String)>> {
        params::check_parameters(version, parameters)
    }

    fn client_port(&self) -> u16 {
        PG_PORT
    }

    fn client_uri(&self, userinfo: &str, hosts: &[String]) -> String {
        // libpq tries the hosts in turn and keeps the one that accepts writes; every
        // server's certificate must verify against the cluster's CA, for its address.
        format!(
            "postgresql://{userinfo}@{}/postgres?target_session_attrs=read-write&sslmode=verify-full",
            hosts.join(",")
        )
    }

    fn callback_role(&self, reported: &str) -> NodeRole {
        // Patroni's role names across versions (3.x says primary, 2.x master).
        match reported {
            "master" | "primary" | "leader" | "standby_leader" => NodeRole::Primary,
            "replica" | "standby" | "sync_standby" => NodeRole::Replica,
            _ => NodeRole::Unknown,
        }
    }
}
