//! Who is admin: uid 0 always, the agent's own user where no policy file was written, and
//! otherwise the policy's admins (by user or group).

use crate::identity::Identity;
use gpubook_core::{Policy, Role};

/// How roles are given.
#[derive(Debug)]
pub(super) struct Roles {
    /// The policy.
    pub(super) policy: Policy,
    /// Whether an admin wrote a policy file; without one the agent's own user is admin.
    pub(super) from_file: bool,
    /// The agent's own uid.
    pub(super) own_uid: u32,
}

impl Roles {
    pub(super) fn role_of(&self, id: &Identity) -> Role {
        if id.uid == 0 || (!self.from_file && id.uid == self.own_uid) {
            return Role::Admin;
        }
        self.policy.role_of(&id.user, &id.groups)
    }
}
