#!/usr/bin/env bash
# Restore benchmark (not a test): throughput and peak RSS of `vaultik restore` of a ≥ 1 GiB tree
# from the local store, the bytes a single-file `fetch` downloads, and — when restic is installed —
# restic's restore of the same tree for comparison. Runs a compiled copy of the sources (below).
#
#   bench/restore.sh [WORKDIR]        (default /tmp/vaultik-bench-restore; ~3.5 GB of disk)
#
# Dataset: a copy of /usr/share (many small and mid-size files, mtimes kept), 256 MiB of random
# bytes, and 192 MiB of a tar of /usr/lib (compressible). Default chunk_size and blob_size_limit.
#
# The sources are compiled to node_modules/.cache/vaultik-bench-dist (not dist/, which other
# tools build): running them through a module loader instead would add its thread and module
# copies to the peak RSS measured.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${1:-/tmp/vaultik-bench-restore}
OUTDIR=$REPO/node_modules/.cache/vaultik-bench-dist
npx tsc -p tsconfig.build.json --outDir "$OUTDIR" > /dev/null || echo "tsc reported type errors (JavaScript emitted anyway)" >&2
VAULTIK=(node "$OUTDIR/cli/bin.js")
mkdir -p "$WORK"
DATA=$WORK/data
STORE=$WORK/store

if [ ! -d "$DATA" ]; then
  echo "building the dataset in $DATA" >&2
  mkdir -p "$DATA"
  cp -a /usr/share "$DATA/share"
  head -c $((256 * 1024 * 1024)) /dev/urandom > "$DATA/random.bin"
  (tar cf - /usr/lib 2>/dev/null || true) | head -c $((192 * 1024 * 1024)) > "$DATA/lib.tar"
fi
BYTES=$(du -sb "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)
echo "dataset: $FILES files, $((BYTES / 1000000)) MB" >&2

KEY=$WORK/key.txt
[ -f "$KEY" ] || "${VAULTIK[@]}" keygen -o "$KEY" 2> /dev/null
RECIPIENT=$("${VAULTIK[@]}" keygen -y "$KEY")
cat > "$WORK/vaultik.yaml" << EOF
source_dirs: [$DATA]
age_recipient: $RECIPIENT
local: {path: $STORE}
index_path: $WORK/state/index.sqlite
hostname: bench
EOF

# timed LABEL CMD...: prints "LABEL wall_s peak_rss_MB" on stderr, the command's stdout on stdout.
timed() {
  local label=$1
  shift
  /usr/bin/time -f "$label %e s, peak RSS %M KB" "$@"
}

if [ ! -d "$STORE/index" ]; then
  rm -rf "$WORK/state"
  timed "vaultik backup:" "${VAULTIK[@]}" backup "$WORK/vaultik.yaml" --json > /dev/null
fi

# Old targets go first, then a pause: ext4's inode allocator checks each candidate inode for a
# recent deletion, and a restore started right after deleting the previous target's 48,000
# inodes spent 15% of its samples there (perf: ext4_new_inode -> find_inode_bit ->
# recently_deleted), all of it as sys time of the tool being measured.
if [ -e "$WORK/target" ] || [ -e "$WORK/restic-target" ]; then
  rm -rf "$WORK/target" "$WORK/restic-target"
  sync
  sleep 40
fi
sync
echo 3 > /proc/sys/vm/drop_caches 2> /dev/null || true
OUT=$(timed "vaultik restore:" env VAULTIK_PRIVATE_KEY="$KEY" "${VAULTIK[@]}" restore "file://$STORE" '' latest "$WORK/target" --json 2> "$WORK/restore.err") || {
  cat "$WORK/restore.err" >&2
  exit 1
}
cat "$WORK/restore.err" >&2
echo "$OUT" | node -e '
  const s = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse).find((l) => l.type === "summary");
  console.error(`  ${s.files} files, ${(s.bytes / 1e6).toFixed(0)} MB in ${s.seconds.toFixed(1)} s = ${(s.bytes / 1e6 / s.seconds).toFixed(0)} MB/s; downloaded ${(s.downloaded / 1e6).toFixed(0)} MB in ${s.requests} requests; failed ${s.failed}`);'
if diff -r --no-dereference "$DATA" "$WORK/target$DATA" > /dev/null; then echo "  verified: identical contents (diff -r)" >&2; else echo "  DIFFERENCES (diff -r)" >&2; fi

# Single-file fetch: a small file, and bytes downloaded vs the blob sizes.
SMALL=$(find "$DATA/share" -type f -size -8k | sort | sed -n '1000p')
rm -f "$WORK/fetched"
FOUT=$(env VAULTIK_PRIVATE_KEY="$KEY" "${VAULTIK[@]}" fetch "file://$STORE" '' latest "$SMALL" "$WORK/fetched" --json 2> /dev/null)
BLOBS=$(du -sb "$STORE/blobs" | cut -f1)
echo "$FOUT" | node -e '
  const s = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse).find((l) => l.type === "summary");
  console.error(`fetch of one ${process.argv[2]}-byte file: downloaded ${s.downloaded} bytes of blob data in ${s.requests} requests (the store holds ${(process.argv[1] / 1e6).toFixed(0)} MB of blobs)`);' "$BLOBS" "$(stat -c %s "$SMALL")"
cmp "$SMALL" "$WORK/fetched" && echo "  verified: identical" >&2
META=$(find "$STORE/index" -name '*.db.zst.age' -printf '%s\n' | tail -1)
echo "  (plus the snapshot metadata object, $META bytes)" >&2

if command -v restic > /dev/null; then
  export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$WORK/restic
  if [ ! -d "$RESTIC_REPOSITORY" ]; then
    restic init -q
    timed "restic backup:" restic backup -q "$DATA" > /dev/null
  fi
  sync
  echo 3 > /proc/sys/vm/drop_caches 2> /dev/null || true
  timed "restic restore:" restic restore -q latest --target "$WORK/restic-target" > /dev/null
fi
