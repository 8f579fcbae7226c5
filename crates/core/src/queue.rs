//! Queue names: the one rule every part of the engine checks them by.

use std::fmt;

use crate::SharedStr;

/// A queue on the ACD. It becomes the user part of the 302's Contact (`sip:QUEUE@host`), so it is
/// a SIP user token (RFC 3261 §25.1 `user`, without escapes or the characters a Contact's user
/// may carry only escaped): 1-64 of letters, digits and `-_.!~*'+`. The rules, the main config's
/// routing table and the risk policy's verification queues all go through [`QueueName::new`].
///
/// Its text is a [`SharedStr`]: a decision that routes to it ([`QueueName::shared`]) copies none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueName(SharedStr);

/// Why a string is no queue name; its `Display` says what one is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("queue {0:?} must be {rule}", rule = QueueName::RULE)]
pub struct InvalidQueueName(pub String);

impl QueueName {
    /// The longest name.
    pub const MAX_LEN: usize = 64;
    /// What a name is, for error messages.
    pub const RULE: &'static str =
        "1-64 characters of letters, digits and -_.!~*'+ (a SIP user token)";

    pub fn new(name: impl Into<String>) -> Result<Self, InvalidQueueName> {
        let name = name.into();
        if Self::is_valid(&name) {
            Ok(Self(name.into()))
        } else {
            Err(InvalidQueueName(name))
        }
    }

    /// Whether `name` is a queue name.
    pub fn is_valid(name: &str) -> bool {
        (1..=Self::MAX_LEN).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'+".contains(&b))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0.into()
    }

    /// The name as a decision's target carries it, shared.
    pub fn shared(&self) -> &SharedStr {
        &self.0
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for QueueName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for QueueName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for QueueName {
    type Error = InvalidQueueName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for QueueName {
    type Error = InvalidQueueName;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_every_queue_name() {
        for ok in ["general", "a!b", "vip.de", "x~'*+_-", &"q".repeat(64)] {
            assert_eq!(QueueName::new(ok).map(|q| q.to_string()), Ok(ok.to_owned()));
        }
        for bad in [
            "",
            "a b",
            "a@b",
            "a;b",
            "a%20b",
            "ü",
            "a\r\nb",
            &"q".repeat(65),
        ] {
            let err = QueueName::new(bad).unwrap_err();
            assert_eq!(err.0, bad);
            assert!(err.to_string().contains("1-64 characters"), "{err}");
        }
    }
}
