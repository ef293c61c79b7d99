use super::{Storage, StorageResult};
use crate::domain::{Id, Workspace, WorkspaceUsage};

impl Storage<'_> {
    /// The user's workspace, created on the first call.
    pub fn ensure_workspace(&self, user_id: &str) -> StorageResult<Workspace> {
        let user_id = Id::parse(user_id)?;
        if let Some(workspace) = self.ports.workspaces.get_by_user_id(&user_id)? {
            return Ok(workspace);
        }
        let workspace = Workspace {
            workspace_id: self.ports.ids.new_id()?,
            user_id,
            created_at: self.ports.clock.now(),
        };
        self.ports.workspaces.save(&workspace)?;
        Ok(workspace)
    }

    /// The user's workspace.
    pub fn get_workspace(&self, user_id: &str) -> StorageResult<Workspace> {
        self.workspace_of(&Id::parse(user_id)?)
    }

    /// The bytes the user's workspace stores, and its quota.
    pub fn get_usage(&self, user_id: &str) -> StorageResult<WorkspaceUsage> {
        let workspace = self.workspace_of(&Id::parse(user_id)?)?;
        Ok(self.ports.usage.get_workspace_usage(&workspace)?)
    }
}
