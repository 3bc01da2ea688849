//! What one `serve` process does. A deployment with several processes on one database (and one
//! bucket or shared data directory) gives each node the roles it needs, e.g. two ingest nodes,
//! one decode and evaluate node and two web nodes; everything that must happen once is decided
//! through the database (see `base::lease`), so any role may run on any number of nodes.

use std::fmt;
use std::str::FromStr;

/// One part of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The QUIC listener: stations' bundles received, made durable and acknowledged.
    Ingest,
    /// The decode worker: spooled bundles decoded into the datasets (and compaction).
    Decode,
    /// The pipelines, housekeeping (communication alerts, retention, audit anchors) and
    /// notifications.
    Evaluate,
    /// The HTTPS interface: the officers' UI, the research and management APIs.
    Web,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Ingest, Self::Decode, Self::Evaluate, Self::Web];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Decode => "decode",
            Self::Evaluate => "evaluate",
            Self::Web => "web",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role (roles: ingest, decode, evaluate, web)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// The roles one process runs; all of them unless told otherwise.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub const ALL: Roles = Roles(0b1111);

    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.has(*r))
    }
}

impl Default for Roles {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromIterator<Role> for Roles {
    fn from_iter<I: IntoIterator<Item = Role>>(roles: I) -> Self {
        Roles(roles.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Roles({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_in_a_fixed_order() {
        let roles: Roles = ["web", "ingest"]
            .into_iter()
            .map(|s| s.parse::<Role>().unwrap())
            .collect();
        assert_eq!(roles.to_string(), "ingest,web");
        assert!(roles.has(Role::Ingest) && roles.has(Role::Web));
        assert!(!roles.has(Role::Decode) && !roles.has(Role::Evaluate));
        assert_eq!(Roles::default().to_string(), "ingest,decode,evaluate,web");
        assert_eq!(
            "decoder".parse::<Role>(),
            Err(UnknownRole("decoder".into()))
        );
    }
}
