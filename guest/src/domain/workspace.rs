use super::{Id, Timestamp};

/// The one workspace a user owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The workspace's own id.
    pub workspace_id: Id,
    /// The owner; one workspace per user.
    pub user_id: Id,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The bytes a workspace stores and the most it may store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceUsage {
    /// The workspace this usage is of.
    pub workspace_id: Id,
    /// Every byte in the workspace's chat directories.
    pub used_bytes: u64,
    /// The quota.
    pub quota_bytes: u64,
}

impl WorkspaceUsage {
    /// Whether replacing `old_bytes` by `new_bytes` keeps the workspace within
    /// its quota. Shrinking (or same-size) writes always fit, even when the
    /// workspace is already over quota (a sandbox may have put it there).
    pub fn fits(&self, old_bytes: u64, new_bytes: u64) -> bool {
        new_bytes <= old_bytes
            || self
                .used_bytes
                .saturating_sub(old_bytes)
                .saturating_add(new_bytes)
                <= self.quota_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64, quota: u64) -> WorkspaceUsage {
        WorkspaceUsage {
            workspace_id: Id::from_bytes([0; 16]),
            used_bytes: used,
            quota_bytes: quota,
        }
    }

    #[test]
    fn a_write_that_lands_exactly_on_the_quota_fits() {
        assert!(usage(90, 100).fits(0, 10));
        assert!(!usage(90, 100).fits(0, 11));
    }

    #[test]
    fn a_replacement_counts_net_of_the_replaced_bytes() {
        assert!(usage(100, 100).fits(40, 40));
        assert!(usage(100, 120).fits(40, 60));
        assert!(!usage(100, 120).fits(40, 61));
    }

    #[test]
    fn shrinking_writes_fit_even_over_quota() {
        assert!(usage(500, 100).fits(50, 10));
        assert!(!usage(500, 100).fits(10, 11));
    }
}
