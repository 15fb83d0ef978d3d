//! What a task is asked to do, typed. The API builds a [`TaskInput`], the store keeps it
//! in `tasks.payload` next to the worker's checkpoints ([`Payload`]), and the worker
//! matches on it, so a misspelt field is a compile error rather than a runtime
//! `invalid_task_input`.
//!
//! Stored form: `payload = {"done": {scope: [step, …]}, "input": <variant body>}`, with
//! the variant named by the row's `kind` column. Rows written before this type existed
//! have exactly that shape (or no `input` at all), so they decode unchanged.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

use crate::status::{ActionKind, PowerState, TaskKind};

/// One variant per [`TaskKind`]; serde-tagged by the kind's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "input", rename_all = "snake_case")]
pub enum TaskInput {
    CreateCluster(CreateInput),
    DeleteCluster {},
    ClusterAction(ActionInput),
    PowerNode(PowerInput),
    AddNodes { node_ids: Vec<Uuid> },
    RemoveNode { node_id: Uuid },
    UpdateCluster {},
    ReplaceNode { node_id: Uuid },
    Backup { backup_id: Uuid },
    ExpireBackup { backup_id: Uuid },
    Snapshot { snapshot_id: Uuid },
    DeleteSnapshot { snapshot_id: Uuid },
    SyncAccess {},
}

impl TaskInput {
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskInput::CreateCluster(_) => TaskKind::CreateCluster,
            TaskInput::DeleteCluster {} => TaskKind::DeleteCluster,
            TaskInput::ClusterAction(_) => TaskKind::ClusterAction,
            TaskInput::PowerNode(_) => TaskKind::PowerNode,
            TaskInput::AddNodes { .. } => TaskKind::AddNodes,
            TaskInput::RemoveNode { .. } => TaskKind::RemoveNode,
            TaskInput::UpdateCluster {} => TaskKind::UpdateCluster,
            TaskInput::ReplaceNode { .. } => TaskKind::ReplaceNode,
            TaskInput::Backup { .. } => TaskKind::Backup,
            TaskInput::ExpireBackup { .. } => TaskKind::ExpireBackup,
            TaskInput::Snapshot { .. } => TaskKind::Snapshot,
            TaskInput::DeleteSnapshot { .. } => TaskKind::DeleteSnapshot,
            TaskInput::SyncAccess {} => TaskKind::SyncAccess,
        }
    }

    /// The variant's body, as stored under `payload.input`.
    fn body(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut m)) => m.remove("input").unwrap_or_else(|| serde_json::json!({})),
            // An adjacently tagged enum always serialises to an object.
            _ => serde_json::json!({}),
        }
    }

    /// Reads a stored body back as the variant `kind` names. A missing body is an empty
    /// one (tasks with no input were stored as `{}`).
    fn from_body(kind: TaskKind, body: Option<&serde_json::Value>) -> Result<Self, serde_json::Error> {
        let body = match body {
            None | Some(serde_json::Value::Null) => serde_json::json!({}),
            Some(b) => b.clone(),
        };
        serde_json::from_value(serde_json::json!({ "kind": kind.as_str(), "input": body }))
    }
}

/// A new cluster's build: what it restores from, if anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateInput {
    // Boxed: it is large and most builds have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Box<RestoreInput>>,
}

/// Everything a restore needs, resolved and validated by the API when the cluster was
/// requested, so the build does not depend on the source rows still existing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RestoreWire", into = "RestoreWire")]
pub struct RestoreInput {
    /// The backup repository (a name from the settings) and stanza holding the source.
    pub repo: String,
    pub stanza: String,
    /// A pgBackRest backup set to restore (the newest when `None`).
    pub set: Option<String>,
    /// Point-in-time target; recovery stops at the last commit before it.
    pub target_time: Option<DateTime<Utc>>,
    pub source_cluster_id: Option<Uuid>,
    /// Set when the first node's volume is made from a provider snapshot.
    pub snapshot: Option<SnapshotRestore>,
}

/// A volume snapshot taken inside an online backup, and the labels that make the copy
/// consistent.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRestore {
    pub snapshot_id: Uuid,
    pub provider_ref: String,
    pub source_name: String,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub backup_label: String,
    pub tablespace_map: String,
}

/// The stored shape: flat, as written since restores from snapshots were added.
#[derive(Serialize, Deserialize)]
struct RestoreWire {
    repo: Option<String>,
    stanza: Option<String>,
    #[serde(default)]
    set: Option<String>,
    #[serde(default)]
    target_time: Option<DateTime<Utc>>,
    #[serde(default)]
    source_cluster_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tablespace_map: Option<String>,
}

impl TryFrom<RestoreWire> for RestoreInput {
    type Error = String;

    fn try_from(w: RestoreWire) -> Result<Self, String> {
        let snapshot = match w.snapshot_id {
            None => None,
            Some(snapshot_id) => Some(SnapshotRestore {
                snapshot_id,
                provider_ref: w.provider_ref.ok_or("the snapshot has no provider reference")?,
                source_name: w.source_name.unwrap_or_default(),
                start_lsn: w.start_lsn.unwrap_or_default(),
                stop_lsn: w.stop_lsn.unwrap_or_default(),
                backup_label: w.backup_label.unwrap_or_default(),
                tablespace_map: w.tablespace_map.unwrap_or_default(),
            }),
        };
        Ok(RestoreInput {
            repo: w.repo.ok_or("the restore names no backup repository")?,
            stanza: w.stanza.ok_or("the restore names no stanza")?,
            set: w.set,
            target_time: w.target_time,
            source_cluster_id: w.source_cluster_id,
            snapshot,
        })
    }
}

impl From<RestoreInput> for RestoreWire {
    fn from(r: RestoreInput) -> Self {
        let s = r.snapshot;
        RestoreWire {
            repo: Some(r.repo),
            stanza: Some(r.stanza),
            set: r.set,
            target_time: r.target_time,
            source_cluster_id: r.source_cluster_id,
            snapshot_id: s.as_ref().map(|s| s.snapshot_id),
            provider_ref: s.as_ref().map(|s| s.provider_ref.clone()),
            source_name: s.as_ref().map(|s| s.source_name.clone()),
            start_lsn: s.as_ref().map(|s| s.start_lsn.clone()),
            stop_lsn: s.as_ref().map(|s| s.stop_lsn.clone()),
            backup_label: s.as_ref().map(|s| s.backup_label.clone()),
            tablespace_map: s.map(|s| s.tablespace_map),
        }
    }
}

/// `POST /v1/clusters/{id}/actions`, checked by the API (and the poller's automatic
/// failover).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionInput {
    pub action: ActionKind,
    #[serde(default)]
    pub node_id: Option<Uuid>,
    #[serde(default)]
    pub candidate_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerInput {
    pub node_id: Uuid,
    pub state: PowerState,
    #[serde(default)]
    pub force: bool,
}

/// A task's stored payload: its input and the steps done so far, per scope (a node id
/// or `cluster`).
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub input: TaskInput,
    pub done: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
struct PayloadWire {
    #[serde(default)]
    done: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

impl Payload {
    pub fn new(input: TaskInput) -> Self {
        Self { input, done: BTreeMap::new() }
    }

    /// Reads `tasks.payload` for a row of `kind`. Fails when it cannot be read or does
    /// not fit the kind: resuming from a guess could redo or skip work.
    pub fn decode(kind: TaskKind, stored: &serde_json::Value) -> Result<Self, String> {
        let wire: PayloadWire = match stored {
            serde_json::Value::Null => PayloadWire { done: BTreeMap::new(), input: None },
            v => serde_json::from_value(v.clone()).map_err(|e| format!("checkpoints: {e}"))?,
        };
        let input = TaskInput::from_body(kind, wire.input.as_ref()).map_err(|e| format!("{kind} input: {e}"))?;
        Ok(Self { input, done: wire.done })
    }

    pub fn encode(&self) -> serde_json::Value {
        serde_json::json!({ "done": self.done, "input": self.input.body() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(input: TaskInput) {
        let mut p = Payload::new(input.clone());
        p.done.entry("cluster".into()).or_default().insert("observe".into());
        let back = Payload::decode(input.kind(), &p.encode()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn every_variant_roundtrips_under_its_kind() {
        let id = Uuid::from_u128(7);
        let restore = RestoreInput {
            repo: "local".into(),
            stanza: "c-1".into(),
            set: Some("20261204-010101F".into()),
            target_time: Some("2026-12-04T01:02:03Z".parse().unwrap()),
            source_cluster_id: Some(id),
            snapshot: Some(SnapshotRestore {
                snapshot_id: id,
                provider_ref: "snap-1".into(),
                source_name: "n0".into(),
                start_lsn: "0/2000028".into(),
                stop_lsn: "0/2000100".into(),
                backup_label: "START WAL LOCATION".into(),
                tablespace_map: String::new(),
            }),
        };
        let all = [
            TaskInput::CreateCluster(CreateInput::default()),
            TaskInput::CreateCluster(CreateInput { restore: Some(Box::new(restore)) }),
            TaskInput::DeleteCluster {},
            TaskInput::ClusterAction(ActionInput {
                action: ActionKind::Switchover,
                node_id: None,
                candidate_id: Some(id),
            }),
            TaskInput::PowerNode(PowerInput { node_id: id, state: PowerState::Off, force: true }),
            TaskInput::AddNodes { node_ids: vec![id, Uuid::from_u128(8)] },
            TaskInput::RemoveNode { node_id: id },
            TaskInput::UpdateCluster {},
            TaskInput::ReplaceNode { node_id: id },
            TaskInput::Backup { backup_id: id },
            TaskInput::ExpireBackup { backup_id: id },
            TaskInput::Snapshot { snapshot_id: id },
            TaskInput::DeleteSnapshot { snapshot_id: id },
            TaskInput::SyncAccess {},
        ];
        let kinds: BTreeSet<&str> = all.iter().map(|i| i.kind().as_str()).collect();
        assert_eq!(kinds.len(), TaskKind::ALL.len(), "one variant per kind");
        for i in all {
            roundtrip(i);
        }
    }

    /// Payloads exactly as the store wrote them before the typed input existed.
    #[test]
    fn rows_written_before_typed_inputs_still_load() {
        let id = "00000000-0000-0000-0000-000000000007";
        let load = |kind, v: serde_json::Value| Payload::decode(kind, &v).unwrap();

        let p = load(TaskKind::DeleteCluster, json!({}));
        assert_eq!(p.input, TaskInput::DeleteCluster {});
        let p = load(TaskKind::UpdateCluster, json!({"input": {}, "done": {"cluster": ["configure"]}}));
        assert_eq!(p.input, TaskInput::UpdateCluster {});
        assert!(p.done["cluster"].contains("configure"));
        let p = load(TaskKind::CreateCluster, json!({"done": {}}));
        assert_eq!(p.input, TaskInput::CreateCluster(CreateInput { restore: None }));
        let p = load(
            TaskKind::ClusterAction,
            json!({"input": {"action": "failover", "node_id": null, "candidate_id": null}}),
        );
        assert_eq!(
            p.input,
            TaskInput::ClusterAction(ActionInput { action: ActionKind::Failover, node_id: None, candidate_id: None })
        );
        let p = load(TaskKind::PowerNode, json!({"input": {"node_id": id, "state": "on", "force": false}}));
        assert!(matches!(p.input, TaskInput::PowerNode(PowerInput { state: PowerState::On, force: false, .. })));
        let p = load(TaskKind::AddNodes, json!({"input": {"node_ids": [id]}}));
        assert!(matches!(p.input, TaskInput::AddNodes { ref node_ids } if node_ids.len() == 1));
        let p = load(TaskKind::Backup, json!({"input": {"backup_id": id}}));
        assert!(matches!(p.input, TaskInput::Backup { .. }));
        let p = load(
            TaskKind::CreateCluster,
            json!({"input": {"restore": {
                "repo": "local", "stanza": "s", "set": null, "target_time": "2026-12-04T01:02:03Z",
                "source_cluster_id": id
            }}}),
        );
        let TaskInput::CreateCluster(CreateInput { restore: Some(r) }) = p.input else { panic!("{p:?}") };
        assert!(r.snapshot.is_none() && r.target_time.is_some());
        let p = load(
            TaskKind::CreateCluster,
            json!({"input": {"restore": {
                "snapshot_id": id, "provider_ref": "snap-9", "repo": "local", "stanza": "s",
                "source_cluster_id": id, "source_name": "n0", "start_lsn": "0/1", "stop_lsn": "0/2",
                "backup_label": "L", "tablespace_map": null
            }}}),
        );
        let TaskInput::CreateCluster(CreateInput { restore: Some(r) }) = p.input else { panic!("{p:?}") };
        let s = r.snapshot.unwrap();
        assert_eq!((s.provider_ref.as_str(), s.tablespace_map.as_str()), ("snap-9", ""));
    }

    #[test]
    fn a_payload_that_does_not_fit_its_kind_is_refused() {
        let e = Payload::decode(TaskKind::Backup, &json!({"input": {"snapshot_id": Uuid::nil()}})).unwrap_err();
        assert!(e.contains("backup_id"), "{e}");
        let e = Payload::decode(TaskKind::PowerNode, &json!({"input": {"node_id": Uuid::nil(), "state": "dim"}}))
            .unwrap_err();
        assert!(e.contains("power_node"), "{e}");
        let snap_without_ref = json!({"input": {"restore": {"snapshot_id": Uuid::nil(), "repo": "r", "stanza": "s"}}});
        let e = Payload::decode(TaskKind::CreateCluster, &snap_without_ref).unwrap_err();
        assert!(e.contains("provider reference"), "{e}");
        assert!(Payload::decode(TaskKind::Snapshot, &json!({"done": "yes"})).is_err());
    }
}
