#!/usr/bin/env bash
# Build lwcfs and start it in local mode on a scratch mount with a small demo tree.
# Usage: sudo compat-tests/demo.sh [DIR]   (default DIR: /tmp/lwcfs-demo)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/lwcfs-demo}

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (FUSE mount with allow_other)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "demo.sh: cargo is missing (install Rust first)" >&2; exit 1; }
# Build dependencies: SQLite, librrd, libqb, and the Corosync client libraries lwcfs links.
need=(fuse3 libsqlite3-dev librrd-dev libqb-dev pkg-config libcpg-dev libcfg-dev libquorum-dev
    libcmap-dev libvotequorum-dev libcorosync-common-dev)
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || {
        apt-get update -qq && apt-get install -y -qq "${need[@]}"; break; }
done
getent group www-data >/dev/null || groupadd -g 33 www-data

cargo build --release -p lwcfs
bin=$PWD/target/release/lwcfs
mkdir -p "$dir/mnt" "$dir/run"
if [ -f "$dir/lwcfs.pid" ] && kill -0 "$(cat "$dir/lwcfs.pid")" 2>/dev/null; then
    echo "lwcfs already runs on $dir/mnt (pid $(cat "$dir/lwcfs.pid"))"; exit 0
fi
"$bin" -l --db "$dir/config.db" --mount "$dir/mnt" --pve-run-dir "$dir/run" --pid-file "$dir/lwcfs.pid"

node=$(hostname -s)
m=$dir/mnt
mkdir -p "$m/nodes/$node/qemu-server" "$m/nodes/$node/lxc" "$m/nodes/$node/priv" "$m/priv/lock"
[ -e "$m/nodes/$node/qemu-server/100.conf" ] || printf 'name: demo\nmemory: 2048\ncores: 2\nnet0: virtio,bridge=vmbr0\n' > "$m/nodes/$node/qemu-server/100.conf"
[ -e "$m/storage.cfg" ] || printf 'dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n' > "$m/storage.cfg"
[ -e "$m/datacenter.cfg" ] || printf 'keyboard: en-us\n' > "$m/datacenter.cfg"

echo "lwcfs is mounted at $m (database $dir/config.db); it serves the IPC service @pve2"
echo "  try: ls -l $m/ ; cat $m/.vmlist ; $bin stats --db $dir/config.db"
echo "  stop: kill \$(cat $dir/lwcfs.pid)"
