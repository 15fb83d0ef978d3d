//! Builds what the datastore manager needs from rows, provider answers and secrets.

use herd_core::faults::FaultCode;
use herd_datastores::{
    BackupConfig, Callback, ClusterSecrets, ClusterSpec, ClusterTls, HaTiming, NodeSpec, NodeTags, SshTarget,
    VolumeMount,
};
use herd_providers::{AttachmentKind, Provider, ServerInfo};
use herd_store::{Cluster, Node, Volume};
use herd_store::{ClusterPasswords, VersionSpec};
use secrecy::SecretString;

use crate::Ctx;
use crate::steps::StepError;

/// How an attachment is stored in `volumes.attachment`: `directory:/path` or `device:/dev/x`.
pub fn encode_attachment(kind: AttachmentKind, path: &str) -> String {
    match kind {
        AttachmentKind::Directory => format!("directory:{path}"),
        AttachmentKind::Device => format!("device:{path}"),
    }
}

fn decode_attachment(s: &str) -> Option<VolumeMount> {
    let (kind, path) = s.split_once(':')?;
    let kind = match kind {
        "directory" => AttachmentKind::Directory,
        "device" => AttachmentKind::Device,
        _ => return None,
    };
    Some(VolumeMount { kind, path: path.to_owned() })
}

pub fn ssh_target(server: &ServerInfo, key: &SecretString, host_key: Option<String>) -> Result<SshTarget, StepError> {
    let address =
        server.address.ok_or_else(|| StepError::Transient(format!("server {} has no address yet", server.id)))?;
    Ok(SshTarget {
        address,
        port: server.ssh_port,
        user: server.login_user.clone(),
        private_key: key.clone(),
        host_key,
    })
}

pub async fn node_spec(
    provider: &dyn Provider,
    n: &Node,
    vol: Option<&Volume>,
    key: &SecretString,
) -> Result<NodeSpec, StepError> {
    let server_ref = n
        .server_ref
        .as_deref()
        .ok_or_else(|| StepError::failed(FaultCode::InternalError, format!("node {} has no server", n.name)))?;
    let server = provider.get_server(server_ref).await?;
    node_spec_of(&server, n, vol, key)
}

/// The spec of a node whose server the caller has already looked up.
pub fn node_spec_of(
    server: &ServerInfo,
    n: &Node,
    vol: Option<&Volume>,
    key: &SecretString,
) -> Result<NodeSpec, StepError> {
    let ssh = ssh_target(server, key, n.host_key.clone())?;
    Ok(NodeSpec {
        node_id: n.id,
        name: n.name.clone(),
        address: ssh.address,
        ssh,
        root_prefix: server.root_prefix.clone(),
        service_user: server.service_user.clone(),
        volume: vol.and_then(|v| v.attachment.as_deref()).and_then(decode_attachment),
        tags: NodeTags { no_failover: n.no_failover, priority: n.priority.clamp(0, 100) as u8 },
        joins_existing: n.joins_existing,
    })
}

/// The spec the manager runs with; its TLS material (the cluster's CA, each member's
/// certificate for the current renewal window) is derived from the master key here.
pub fn cluster_spec(
    ctx: &Ctx,
    c: &Cluster,
    version: &VersionSpec,
    members: Vec<NodeSpec>,
    pw: ClusterPasswords,
    callback: Option<Callback>,
    backup: Option<BackupConfig>,
) -> Result<ClusterSpec, StepError> {
    let every = ctx.settings.cert_renew_every();
    let tls = ClusterTls::issue(ctx.store.key(), c.id, c.created_at, &members, chrono::Utc::now(), every)
        .map_err(|e| StepError::failed(FaultCode::InternalError, format!("issuing TLS certificates: {e}")))?;
    Ok(ClusterSpec {
        cluster_id: c.id,
        name: c.name.clone(),
        version: c.version.clone(),
        packages: version.packages.clone(),
        members,
        synchronous: c.synchronous,
        synchronous_strict: c.synchronous_strict,
        maximum_lag_on_failover: c.maximum_lag_on_failover.max(0) as u64,
        callback,
        backup,
        restore: None,
        newest_timeline: c.newest_timeline,
        parameters: c.parameters.as_object().cloned().unwrap_or_default(),
        secrets: ClusterSecrets {
            superuser: pw.superuser,
            replication: pw.replication,
            admin_user: c.admin_user.clone(),
            admin_password: pw.admin,
            patroni_api: ctx.store.key().derive_token(herd_datastores::PATRONI_API_PURPOSE, &c.id.to_string()),
        },
        tls,
        timing: HaTiming {
            ttl: c.ha_ttl.max(1) as u32,
            loop_wait: c.ha_loop_wait.max(1) as u32,
            retry_timeout: c.ha_retry_timeout.max(1) as u32,
        },
    })
}
