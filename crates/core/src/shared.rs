//! `SharedStr`: the text a decision carries, shared with the rules it came from.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string whose clone never allocates: a reference count on text built once (a
/// rule's name, queue, skills, the rule set's version, parsed with the rules), or a pointer to
/// a `'static` string. The router's decisions are made of these, so routing a call copies no
/// text. Compares, hashes and orders as the `str` it holds.
#[derive(Clone)]
pub struct SharedStr(Repr);

/// A target's skills: one list built with the rules, shared by every decision it is in.
pub type Skills = Arc<[SharedStr]>;

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl SharedStr {
    /// A `'static` string: no allocation, no reference count.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Static(s))
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        Self::from_static("")
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

macro_rules! eq_str {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for SharedStr {
            fn eq(&self, other: &$t) -> bool {
                self.as_str() == &other[..]
            }
        }
        impl PartialEq<SharedStr> for $t {
            fn eq(&self, other: &SharedStr) -> bool {
                &self[..] == other.as_str()
            }
        }
    )*};
}
eq_str!(str, &str, String);

impl From<&str> for SharedStr {
    fn from(s: &str) -> Self {
        Self(Repr::Shared(Arc::from(s)))
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        Self(Repr::Shared(Arc::from(s)))
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(s: Arc<str>) -> Self {
        Self(Repr::Shared(s))
    }
}

impl From<std::borrow::Cow<'_, str>> for SharedStr {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        Self::from(&*s)
    }
}

impl From<SharedStr> for String {
    fn from(s: SharedStr) -> Self {
        s.as_str().to_owned()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for SharedStr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for SharedStr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_as_its_text_whatever_holds_it() {
        let shared = SharedStr::from("support/vip");
        let fixed = SharedStr::from_static("support/vip");
        assert_eq!(shared, fixed);
        assert_eq!(shared, "support/vip");
        assert_eq!("support/vip", fixed);
        assert_eq!(shared, "support/vip".to_owned());
        assert_eq!(format!("{shared} {fixed:?}"), "support/vip \"support/vip\"");
        assert_eq!(SharedStr::default(), "");
        let set: std::collections::BTreeSet<SharedStr> = ["b".into(), "a".into()].into();
        assert!(set.contains("a"));
        assert_eq!(set.iter().next().map(SharedStr::as_str), Some("a"));
        assert_eq!(["x".into(), SharedStr::from_static("y")].join(","), "x,y");
    }
}
