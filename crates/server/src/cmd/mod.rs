//! The commands of the `tollgate` binary beyond `serve` and `check` (which are `crate::prepare`
//! and `crate::serve`): `explain` and `diff` (dry runs of the one decision path), and `list`
//! (the block, gray and allow lists); `replay` (`diff --decisions` and `diff --pcap`: real
//! traffic replayed) with `capture` (the INVITEs of a pcap or pcapng file); `rules` (promote,
//! rollback, history and the shadow of a running node, through its admin API).

pub mod capture;
pub mod explain;
pub mod list;
pub mod replay;
pub mod rules;
