#!/usr/bin/env bash
# The layering ARCHITECTURE.md states, checked from the dependency graph (run by .ci/run):
# - tollgate-core and tollgate-router build without tokio, mio or any async runtime or socket
#   crate (their clocks and file access are banned by crates/{core,router}/clippy.toml);
# - core depends on no other tollgate crate, router only on core;
# - the adapters (sip, stir, crm, risk, api) depend on core only, never on each other;
# - only tollgate-server depends on the adapters (and the benches, which are no product);
# - one rust-version, the workspace's;
# - no file cites DESIGN.md or STANDARDS.md, which are not in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
tree() { # cargo tree, stopping the script if cargo cannot answer (a stale lock file, say)
    local out
    if ! out=$(cargo tree --prefix none --locked --offline "$@"); then
        echo "architecture: cargo tree $* failed" >&2
        exit 1
    fi
    echo "$out"
}
deps() { # the crates $1 builds with (normal and build dependencies, transitively)
    tree -p "$1" -e normal,build | awk '{print $1}' | sort -u
}
direct() { # the tollgate crates $1 names in [dependencies]
    tree -p "$1" -e normal --depth 1 | awk 'NR > 1 {print $1}' | { grep '^tollgate-' || true; } | sort -u
}
expect_direct() {
    local got
    got=$(direct "$1" | tr '\n' ' ')
    if [ "$got" != "$2" ]; then
        echo "architecture: $1 depends on [${got% }], allowed [${2% }]" >&2
        fail=1
    fi
}
for pure in tollgate-core tollgate-router; do
    all=$(deps "$pure")
    bad=$(echo "$all" | { grep -E '^(tokio|mio|async-std|smol|futures|hyper|reqwest|redis|socket2)(-|$)' || true; })
    if [ -n "$bad" ]; then
        echo "architecture: $pure pulls in $(echo $bad | tr '\n' ' ')(no async, no I/O)" >&2
        fail=1
    fi
done
expect_direct tollgate-core ""
expect_direct tollgate-router "tollgate-core "
for adapter in sip stir crm risk api; do
    expect_direct "tollgate-$adapter" "tollgate-core "
done
# Who may depend on an adapter: the server (and the benches).
users=$(cargo metadata --format-version 1 --locked --offline --no-deps \
    | python3 -c '
import json, sys
m = json.load(sys.stdin)
adapters = {"tollgate-sip", "tollgate-stir", "tollgate-crm", "tollgate-risk", "tollgate-api"}
for p in m["packages"]:
    for d in p["dependencies"]:
        if d["name"] in adapters and d["kind"] is None and p["name"] not in ("tollgate-server", "tollgate-bench"):
            print(p["name"], "->", d["name"])
')
if [ -n "$users" ]; then
    echo "architecture: only tollgate-server wires the adapters: $users" >&2
    fail=1
fi
own=$(grep -H '^rust-version *= *"' crates/*/Cargo.toml benches/Cargo.toml || true)
if [ -n "$own" ]; then
    echo "architecture: one rust-version, the workspace's (write rust-version.workspace = true):" >&2
    echo "$own" >&2
    fail=1
fi
# The repository stands alone: nothing cites a design or standards document that is not in it
# (cite the RFC, or bring the text in).
cites=$(git grep -nwE 'DESIGN|STANDARDS' -- . ':!tools/architecture.sh' || true)
if [ -n "$cites" ]; then
    echo "architecture: cites a document the repository does not hold:" >&2
    echo "$cites" >&2
    fail=1
fi
[ "$fail" -eq 0 ] && echo "architecture: layering holds"
exit "$fail"
