//! Per-project quotas: what a project may hold at once. Defaults come from settings
//! (`[quotas]`); an operator may override any of them for one project. The store
//! checks them in the transaction that adds the resource, with the project's row
//! locked, so concurrent requests cannot overshoot a limit together.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The upper bound of any one limit (and of an override): far above any real
/// project, low enough that sums of them never overflow.
pub const MAX_LIMIT: u64 = 1_000_000;

/// One kind of limited resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// Clusters in the project, whatever their state (a deleting one still holds servers).
    Clusters,
    /// Nodes (servers) over all its clusters.
    Nodes,
    /// Volume gigabytes over all its nodes.
    VolumeGb,
    /// Volume snapshots kept (any state but gone).
    Snapshots,
    /// Backups kept: requested, running or completed (not failed or expired).
    Backups,
    /// SSH keys the project added (keys Herd generated for a cluster do not count).
    Keys,
}

impl Quota {
    pub const ALL: [Quota; 6] =
        [Quota::Clusters, Quota::Nodes, Quota::VolumeGb, Quota::Snapshots, Quota::Backups, Quota::Keys];

    pub fn as_str(self) -> &'static str {
        match self {
            Quota::Clusters => "clusters",
            Quota::Nodes => "nodes",
            Quota::VolumeGb => "volume_gb",
            Quota::Snapshots => "snapshots",
            Quota::Backups => "backups",
            Quota::Keys => "keys",
        }
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value per quota. `QuotaSet<u64>` is a set of limits (the `[quotas]` settings) or
/// of usage; `QuotaSet<Option<u64>>` a project's overrides (`None`: the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSet<T> {
    pub clusters: T,
    pub nodes: T,
    pub volume_gb: T,
    pub snapshots: T,
    pub backups: T,
    pub keys: T,
}

impl<T: Copy> QuotaSet<T> {
    pub fn get(&self, q: Quota) -> T {
        match q {
            Quota::Clusters => self.clusters,
            Quota::Nodes => self.nodes,
            Quota::VolumeGb => self.volume_gb,
            Quota::Snapshots => self.snapshots,
            Quota::Backups => self.backups,
            Quota::Keys => self.keys,
        }
    }

    pub fn set(&mut self, q: Quota, v: T) {
        match q {
            Quota::Clusters => self.clusters = v,
            Quota::Nodes => self.nodes = v,
            Quota::VolumeGb => self.volume_gb = v,
            Quota::Snapshots => self.snapshots = v,
            Quota::Backups => self.backups = v,
            Quota::Keys => self.keys = v,
        }
    }
}

/// The settings' defaults: generous for one team, small enough that a runaway script
/// stops long before it exhausts a provider account.
pub type Limits = QuotaSet<u64>;

impl Default for QuotaSet<u64> {
    fn default() -> Self {
        Self { clusters: 20, nodes: 60, volume_gb: 2_000, snapshots: 100, backups: 500, keys: 50 }
    }
}

/// No overrides.
impl Default for QuotaSet<Option<u64>> {
    fn default() -> Self {
        Self { clusters: None, nodes: None, volume_gb: None, snapshots: None, backups: None, keys: None }
    }
}

impl Limits {
    pub fn defaults() -> Self {
        Self::default()
    }

    /// Nothing used: the start of a usage count.
    pub fn zero() -> Self {
        Self { clusters: 0, nodes: 0, volume_gb: 0, snapshots: 0, backups: 0, keys: 0 }
    }

    /// A project's effective limits: its overrides over these defaults.
    pub fn with_overrides(&self, o: &QuotaSet<Option<u64>>) -> Limits {
        let mut l = *self;
        for q in Quota::ALL {
            if let Some(v) = o.get(q) {
                l.set(q, v);
            }
        }
        l
    }

    /// The first limit above [`MAX_LIMIT`], for settings validation.
    pub fn out_of_range(&self) -> Option<(Quota, u64)> {
        Quota::ALL.into_iter().map(|q| (q, self.get(q))).find(|(_, v)| *v > MAX_LIMIT)
    }
}

/// A request that would take a project past one of its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Exceeded {
    pub quota: Quota,
    pub limit: u64,
    /// What the project holds now.
    pub used: u64,
    /// What the request would add.
    pub requested: u64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the project's {} quota is {}: {} in use, this request needs {} more; ask an operator to raise it",
            self.quota, self.limit, self.used, self.requested
        )
    }
}

/// Checks each `(quota, requested)` against `used` and `limits`; the first that does
/// not fit is the error.
pub fn check(limits: &Limits, used: &QuotaSet<u64>, wants: &[(Quota, u64)]) -> Result<(), Exceeded> {
    for &(quota, requested) in wants {
        let (limit, used) = (limits.get(quota), used.get(quota));
        if requested > 0 && used.saturating_add(requested) > limit {
            return Err(Exceeded { quota, limit, used, requested });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fits_up_to_the_limit_and_not_past_it() {
        let limits = Limits { clusters: 2, ..Limits::defaults() };
        let used = QuotaSet { clusters: 1, ..Limits::zero() };
        assert!(check(&limits, &used, &[(Quota::Clusters, 1)]).is_ok());
        let e = check(&limits, &used, &[(Quota::Clusters, 2)]).unwrap_err();
        assert_eq!(e, Exceeded { quota: Quota::Clusters, limit: 2, used: 1, requested: 2 });
        assert!(e.to_string().contains("clusters quota is 2: 1 in use"), "{e}");
        // Nothing requested never fails, even over a lowered limit.
        let over = QuotaSet { clusters: 5, ..Limits::zero() };
        assert!(check(&limits, &over, &[(Quota::Clusters, 0)]).is_ok());
    }

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = QuotaSet { nodes: Some(3), keys: Some(0), ..Default::default() };
        let l = Limits::defaults().with_overrides(&o);
        assert_eq!((l.nodes, l.keys, l.clusters), (3, 0, Limits::defaults().clusters));
        assert_eq!(Limits { volume_gb: MAX_LIMIT + 1, ..l }.out_of_range(), Some((Quota::VolumeGb, MAX_LIMIT + 1)));
        assert_eq!(l.out_of_range(), None);
    }
}
