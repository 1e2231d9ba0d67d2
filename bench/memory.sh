#!/usr/bin/env bash
# Peak RSS of vaultik at 1× and 2× the compare dataset (not a test). See bench/README.md.
#
#   bench/memory.sh            needs the dataset of bench/compare.sh (run that once first)
#
# Runs, for each size: initial backup, no-change backup, full restore (verified with diff), and
# prints wall time and peak RSS (/usr/bin/time) side by side. The 2× tree is the dataset plus a
# second copy of it whose large files get new bytes (another AES-CTR keystream), so the second
# copy adds as many files to walk, record and restore and as many large-file bytes to chunk and
# pack; its small files are the same bytes as the first copy's and deduplicate.
#
# Environment: BENCH_DIR (default /tmp/vaultik-compare; the dataset is $BENCH_DIR/data),
# MEM_DIR (work directory, default /tmp/vaultik-memory; needs about 3× the dataset's size).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DATA=${BENCH_DIR:-/tmp/vaultik-compare}/data
WORK=${MEM_DIR:-/tmp/vaultik-memory}
[ -d "$DATA" ] || { echo "no dataset in $DATA: run bench/compare.sh first" >&2; exit 2; }
command -v /usr/bin/time > /dev/null || apt-get install -y -qq time > /dev/null
npm run -s build > /dev/null
VAULTIK=(node "$REPO/dist/cli/bin.js")
mkdir -p "$WORK"
keystream() { { openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -in /dev/zero 2> /dev/null || true; } | head -c "$2"; }

COPY=$WORK/copy
if [ ! -f "$WORK/copy.complete" ]; then
  echo "making the second copy in $COPY (once)" >&2
  rm -rf "$COPY"
  cp -a "$DATA" "$COPY"
  for f in random.bin random-inserted.bin; do
    size=$(stat -c %s "$COPY/$f")
    keystream "memory-$f" "$size" > "$COPY/$f.new" && touch -r "$COPY/$f" "$COPY/$f.new" && mv "$COPY/$f.new" "$COPY/$f"
  done
  touch "$WORK/copy.complete"
fi

KEY=$WORK/key.txt
[ -f "$KEY" ] || "${VAULTIK[@]}" keygen -o "$KEY" 2> /dev/null
RECIPIENT=$("${VAULTIK[@]}" keygen -y "$KEY")
: > "$WORK/rows.txt"

run() { # LABEL CMD...
  local label=$1
  shift
  /usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; exit 1; }
  read -r wall rss < "$WORK/time.txt"
  printf '%-28s %7.2f s %6d MiB\n' "$label" "$wall" $((rss / 1024)) | tee -a "$WORK/rows.txt" >&2
}

for size in 1 2; do
  srcs=("$DATA")
  [ "$size" = 2 ] && srcs+=("$COPY")
  store=$WORK/store-$size
  rm -rf "$store" "$WORK/state-$size" "$WORK/target"
  cat > "$WORK/vaultik-$size.yaml" << EOF
source_dirs: [$(IFS=,; echo "${srcs[*]}")]
age_recipient: $RECIPIENT
local: {path: $store}
index_path: $WORK/state-$size/index.sqlite
hostname: bench
EOF
  files=$(find "${srcs[@]}" -type f | wc -l)
  echo "${size}× data: $files files, $(du -sb --apparent-size "${srcs[@]}" | awk '{s += $1} END {printf "%d", s / 1e6}') MB" | tee -a "$WORK/rows.txt" >&2
  run "${size}× initial backup" "${VAULTIK[@]}" backup "$WORK/vaultik-$size.yaml" --cron
  run "${size}× no-change backup" "${VAULTIK[@]}" backup "$WORK/vaultik-$size.yaml" --cron
  run "${size}× full restore" env VAULTIK_PRIVATE_KEY="$KEY" "${VAULTIK[@]}" restore "file://$store" '' latest "$WORK/target"
  diff -r --no-dereference "$DATA" "$WORK/target$DATA" > /dev/null || { echo "RESTORE DIFFERS" >&2; exit 1; }
  if [ "$size" = 2 ]; then diff -r --no-dereference "$COPY" "$WORK/target$COPY" > /dev/null || { echo "RESTORE DIFFERS" >&2; exit 1; }; fi
  rm -rf "$WORK/target" "$store" "$WORK/state-$size"
done
echo "vaultik $(git -C "$REPO" rev-parse --short HEAD), $(date -u +%Y-%m-%d), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$WORK/rows.txt"
