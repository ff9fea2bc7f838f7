#!/usr/bin/env bash
# The test command of lwcfs: every tier, in order, failing on the first tier that fails.
#
#   sudo compat-tests/run-all.sh
#
#   1. cargo fmt --check            formatting
#   2. cargo clippy -D warnings     lints, all targets, with and without the fuse tier
#   3. cargo test --workspace       the hermetic tier (no root, FUSE or network)
#   4. cargo build -p lwcfs         the daemon binary
#   5. the FUSE tier                real mounts of that binary, each daemon in its own mount,
#                                   network and UTS namespaces (compat-tests --features fuse),
#                                   and its IPC service `pve2` through Debian's libqb client
#   6. the cluster tier             real Corosync clusters of lwcfs nodes, one network namespace
#                                   per node (compat-tests --features cluster)
#   7. the RRD tier                 RRD files through a private rrdcached and with librrd
#                                   directly, checked with rrdtool (compat-tests --features rrd)
#
# Needs root, /dev/fuse, util-linux (unshare, nsenter, setpriv), rrdcached and rrdtool; without
# them it stops with a message before running anything: no tier is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "run-all.sh: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] ||
    die "must run as root (the FUSE tier mounts filesystems in new namespaces): sudo $0"
[ -c /dev/fuse ] || die "/dev/fuse is missing: install fuse3 and load the module (modprobe fuse)"
for tool in cargo unshare nsenter setpriv mount hostname dd date ip corosync corosync-quorumtool \
    rrdcached rrdtool; do
    command -v "$tool" >/dev/null ||
        die "'$tool' not found in PATH${SUDO_USER:+ (sudo resets PATH: try sudo env PATH=\"\$PATH\" $0)}"
done
getent group www-data >/dev/null || die "group www-data is missing (the daemon needs it): groupadd -g 33 www-data"
getent passwd nobody >/dev/null || die "user nobody is missing"

target_dir=${CARGO_TARGET_DIR:-$PWD/target}
start=$SECONDS
tier() {
    echo
    echo "==> [$((SECONDS - start))s] $*"
}

tier "1/7 formatting: cargo fmt --all -- --check"
cargo fmt --all -- --check

tier "2/7 lints: cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p lwcfs-compat-tests --all-targets --features fuse,cluster,rrd -- -D warnings

tier "3/7 hermetic tests: cargo test --workspace"
cargo test --workspace --no-fail-fast

tier "4/7 daemon: cargo build -p lwcfs"
cargo build -p lwcfs
export LWCFS_BIN="$target_dir/debug/lwcfs"
[ -x "$LWCFS_BIN" ] || die "the daemon binary is not at $LWCFS_BIN"

tier "5/7 FUSE tier: LWCFS_BIN=$LWCFS_BIN cargo test -p lwcfs-compat-tests --features fuse"
cargo test -p lwcfs-compat-tests --features fuse --no-fail-fast

tier "6/7 cluster tier: cargo test -p lwcfs-compat-tests --features cluster --test cluster_corosync"
cargo test -p lwcfs-compat-tests --features cluster --test cluster_corosync --no-fail-fast

tier "7/7 RRD tier: cargo test -p lwcfs-compat-tests --features rrd --test rrd_files"
cargo test -p lwcfs-compat-tests --features rrd --test rrd_files --no-fail-fast

echo
echo "==> all tiers passed in $((SECONDS - start))s"
