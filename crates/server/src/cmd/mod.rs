//! The commands of the `tollgate` binary beyond `serve` and `check` (which are `crate::prepare`
//! and `crate::serve`): `explain` and `diff` (dry runs of the one decision path), and `list`
//! (the block, gray and allow lists).

pub mod explain;
pub mod list;
