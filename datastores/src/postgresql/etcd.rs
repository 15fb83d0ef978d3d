//! etcd membership and keys through etcd's v3 JSON gateway (`/v3/...`, enabled in
//! etcd.yml): list, add and remove members, delete a key. uint64 ids travel as JSON
//! strings and keys as base64, as grpc-gateway encodes them.

use super::layout::{ETCD_CLIENT_PORT, ETCD_PEER_PORT};
use super::patroni::Http;
use crate::{ClusterSpec, ManagerError, NodeSpec};
use herd_core::faults::FaultCode;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// uint64, as a string.
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Empty until an added member has started.
    #[serde(default)]
    pub name: String,
    #[serde(rename = "peerURLs", default)]
    pub peer_urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MemberList {
    #[serde(default)]
    members: Vec<Member>,
}

/// A member's peer URL (what etcd's membership records), HTTPS like every etcd URL.
pub fn peer_url(addr: IpAddr) -> String {
    format!("https://{}", SocketAddr::new(addr, ETCD_PEER_PORT))
}

/// `path` on a member's client port (`""` for the URL etcd advertises).
pub fn client_url(addr: IpAddr, path: &str) -> String {
    format!("https://{}{path}", SocketAddr::new(addr, ETCD_CLIENT_PORT))
}

/// Standard base64 with padding (etcd's gateway wants `bytes` fields so).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One etcd gateway call on the first member (other than `except`) that answers.
async fn call(
    http: &Http,
    cluster: &ClusterSpec,
    except: Option<&NodeSpec>,
    path: &str,
    body: serde_json::Value,
) -> Result<(IpAddr, u16, String), ManagerError> {
    let mut errors = Vec::new();
    for m in cluster.members.iter().filter(|m| except.is_none_or(|e| e.name != m.name)) {
        match http.send_json(reqwest::Method::POST, &client_url(m.address, path), &body, None, None).await {
            Ok((status, text)) => return Ok((m.address, status, text)),
            Err(e) => errors.push(e),
        }
    }
    Err(ManagerError::Transient(format!(
        "no etcd member of cluster {} answered {path}: {}",
        cluster.name,
        if errors.is_empty() { "no other member".to_owned() } else { errors.join("; ") }
    )))
}

fn gateway_error(path: &str, status: u16, text: &str) -> ManagerError {
    // Quorum loss, leader elections, too many learners: all pass with time.
    ManagerError::Transient(format!("etcd {path}: HTTP {status}: {}", text.chars().take(300).collect::<String>()))
}

pub async fn list(http: &Http, cluster: &ClusterSpec, except: Option<&NodeSpec>) -> Result<Vec<Member>, ManagerError> {
    let path = "/v3/cluster/member/list";
    let (_, status, text) = call(http, cluster, except, path, serde_json::json!({})).await?;
    if status != 200 {
        return Err(gateway_error(path, status, &text));
    }
    let list: MemberList = serde_json::from_str(&text)
        .map_err(|e| ManagerError::Transient(format!("etcd {path}: unreadable answer: {e}")))?;
    Ok(list.members)
}

/// Registers `node`'s peer URL with the running cluster (asking the other members);
/// already registered is success. A member with the node's name but another peer
/// URL is a conflict only an operator can resolve.
pub async fn add(http: &Http, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
    let url = peer_url(node.address);
    let members = list(http, cluster, Some(node)).await?;
    if members.iter().any(|m| m.peer_urls.contains(&url)) {
        return Ok(());
    }
    if let Some(m) = members.iter().find(|m| m.name == node.name) {
        return Err(ManagerError::permanent(
            FaultCode::MemberConflict,
            format!("etcd already has a member named {} with peer URLs {:?}, not {url}", node.name, m.peer_urls),
        ));
    }
    let path = "/v3/cluster/member/add";
    let (_, status, text) = call(http, cluster, Some(node), path, serde_json::json!({ "peerURLs": [url] })).await?;
    if status == 200 {
        tracing::info!(cluster = %cluster.name, node = %node.name, "etcd member added");
        return Ok(());
    }
    // Raced with another add of the same URL.
    if text.contains("already exists") {
        return Ok(());
    }
    Err(gateway_error(path, status, &text))
}

/// Removes `node`'s member (by name or peer URL) through the remaining members;
/// not a member (any more) is success.
pub async fn remove(http: &Http, cluster: &ClusterSpec, node: &NodeSpec) -> Result<(), ManagerError> {
    let url = peer_url(node.address);
    let members = list(http, cluster, Some(node)).await?;
    let Some(m) = members.iter().find(|m| m.name == node.name || m.peer_urls.contains(&url)) else {
        return Ok(());
    };
    let path = "/v3/cluster/member/remove";
    let (_, status, text) = call(http, cluster, Some(node), path, serde_json::json!({ "ID": m.id })).await?;
    if status == 200 || text.contains("member not found") {
        tracing::info!(cluster = %cluster.name, node = %node.name, "etcd member removed");
        return Ok(());
    }
    Err(gateway_error(path, status, &text))
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    header: StatusHeader,
    /// The leader's member id (uint64 as a string).
    #[serde(default)]
    leader: String,
}

#[derive(Debug, Deserialize, Default)]
struct StatusHeader {
    #[serde(default)]
    member_id: String,
}

/// Moves etcd's leadership away from the member named `avoid` (the database
/// primary's node), to another member that answers. Returns the new leader's name, or
/// None when `avoid` did not lead. Why: when the primary's node dies and it also led
/// etcd, the new etcd leader renews every lease, the primary's leader key included,
/// and the failover waits about one more ttl.
pub async fn move_leader_off(http: &Http, cluster: &ClusterSpec, avoid: &str) -> Result<Option<String>, ManagerError> {
    let path = "/v3/maintenance/status";
    let mut answering = Vec::new();
    let mut leader_id = None;
    for m in &cluster.members {
        if let Ok((200, text)) = http
            .send_json(reqwest::Method::POST, &client_url(m.address, path), &serde_json::json!({}), None, None)
            .await
            && let Ok(s) = serde_json::from_str::<Status>(&text)
        {
            if !s.leader.is_empty() && s.leader != "0" {
                leader_id.get_or_insert(s.leader.clone());
            }
            answering.push((m, s.header.member_id));
        }
    }
    let Some(leader_id) = leader_id else { return Ok(None) };
    let Some((leader, _)) = answering.iter().find(|(_, id)| *id == leader_id) else { return Ok(None) };
    if leader.name != avoid {
        return Ok(None);
    }
    let Some((target, target_id)) = answering.iter().find(|(m, id)| m.name != avoid && !id.is_empty()) else {
        return Ok(None);
    };
    // MoveLeader must be asked of the current leader.
    let path = "/v3/maintenance/transfer-leadership";
    let (status, text) = http
        .send_json(
            reqwest::Method::POST,
            &client_url(leader.address, path),
            &serde_json::json!({ "targetID": target_id }),
            None,
            None,
        )
        .await
        .map_err(ManagerError::Transient)?;
    if status != 200 {
        return Err(gateway_error(path, status, &text));
    }
    tracing::info!(cluster = %cluster.name, from = %avoid, to = %target.name, "etcd leadership moved off the primary");
    Ok(Some(target.name.clone()))
}

/// Deletes one key (absent is success).
pub async fn delete_key(
    http: &Http,
    cluster: &ClusterSpec,
    except: Option<&NodeSpec>,
    key: &str,
) -> Result<(), ManagerError> {
    let path = "/v3/kv/deleterange";
    let (_, status, text) =
        call(http, cluster, except, path, serde_json::json!({ "key": base64(key.as_bytes()) })).await?;
    if status != 200 {
        return Err(gateway_error(path, status, &text));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"/herd/orders-1/members/orders-3"), "L2hlcmQvb3JkZXJzLTEvbWVtYmVycy9vcmRlcnMtMw==");
    }

    #[test]
    fn member_list_parses() {
        let text = r#"{"header":{"cluster_id":"1","member_id":"2","raft_term":"3"},"members":[
            {"ID":"11","name":"a-0","peerURLs":["http://127.78.10.2:2380"],"clientURLs":["http://127.78.10.2:2379"]},
            {"ID":"12","peerURLs":["http://127.78.10.5:2380"]}]}"#;
        let l: MemberList = serde_json::from_str(text).unwrap();
        assert_eq!(l.members.len(), 2);
        assert_eq!(l.members[1].name, "");
        assert_eq!(l.members[1].id, "12");
    }
}
