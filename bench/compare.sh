#!/usr/bin/env bash
# vaultik vs restic on the same data, side by side (not a test). See bench/README.md.
#
#   bench/compare.sh                  ~2.1 GB dataset, ~10 min on 2 cores, ~10 GB of disk
#   SMALL=1 bench/compare.sh          ~250 MB dataset, about a minute
#
# Environment: BENCH_DIR (default /var/tmp/vaultik-compare[-small], not /tmp: both tools record the
# data's ancestors with their mtimes, and /tmp changes all the time; the dataset is built there once
# and reused), RUNS (runs per step and tool, default 2), BIG (size of each large file in MiB),
# SETTLE (seconds of rest before each timed restore, default 30).
#
# Every step runs both tools, alternating (vaultik first in odd runs, restic first in even
# runs), so slow phases of a shared machine hit both. The table gives wall time, CPU time
# (user+sys, all threads), peak RSS from /usr/bin/time, and the vaultik/restic ratios of the
# summed wall and CPU times of each step. The page cache is left warm: both tools read the same files.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SMALL=${SMALL:-0}
RUNS=${RUNS:-2}
if [ "$SMALL" = 1 ]; then
  WORK=${BENCH_DIR:-/var/tmp/vaultik-compare-small}
  BIG=${BIG:-32}
else
  WORK=${BENCH_DIR:-/var/tmp/vaultik-compare}
  BIG=${BIG:-256}
fi
DATA=$WORK/data

need() { command -v "$1" > /dev/null || [ -x "$2" ] || { echo "installing $1" >&2; apt-get install -y -qq "$1" > /dev/null; }; }
need restic /usr/bin/restic
need time /usr/bin/time

npm run -s build > /dev/null
VAULTIK=(node "$REPO/dist/cli/bin.js")
mkdir -p "$WORK"

# ---------------------------------------------------------------- dataset
# keystream PASS BYTES: deterministic incompressible bytes (AES-CTR of zeros). openssl dies of
# SIGPIPE when head has enough, which pipefail would otherwise report.
keystream() { { openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -in /dev/zero 2> /dev/null || true; } | head -c "$2"; }
if [ ! -f "$WORK/data.complete" ]; then
  echo "building the dataset in $DATA (once)" >&2
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if [ "$SMALL" = 1 ]; then
    cp -a /usr/share/doc "$DATA/doc"
    cp -a /usr/lib/python3 "$DATA/python3"
  else
    # Real small and mid-size files with their mtimes: text, docs, icons, shared libraries.
    cp -a /usr/share "$DATA/share"
    cp -a /usr/lib/x86_64-linux-gnu "$DATA/lib"
  fi
  # Large files: incompressible (deterministic AES-CTR keystream), compressible (a tar of system
  # files), and the random one with 1 MiB inserted in the middle (dedups all but a chunk or two).
  M=$((1024 * 1024))
  keystream vaultik $((BIG * M)) > "$DATA/random.bin"
  (tar cf - -C /usr/lib llvm-14 gcc jvm 2> /dev/null || true) | head -c $((BIG * M)) > "$DATA/system.tar"
  { head -c $((BIG / 2 * M)) "$DATA/random.bin"
    keystream inserted $M
    tail -c +$((BIG / 2 * M + 1)) "$DATA/random.bin"; } > "$DATA/random-inserted.bin"
  touch "$WORK/data.complete"
fi
# The change set picks its files from this list, fixed when the dataset was built.
[ -f "$WORK/files.txt" ] || find "$DATA" -type f -size -64k ! -path "$DATA/new-*" | LC_ALL=C sort > "$WORK/files.txt"
BYTES=$(du -sb --apparent-size "$DATA" | cut -f1)
FILES=$(find "$DATA" -type f | wc -l)

# Deterministic small change set number $1: ~0.2% of the small files get a line appended, 0.05%
# are deleted, 50 new files appear, and 1 MiB in the middle of a large file is overwritten.
change_set() {
  local r=$1
  awk -v r="$((r % 500))" 'NR % 500 == r' "$WORK/files.txt" | while IFS= read -r f; do
    [ -f "$f" ] && echo "vaultik compare change $r" >> "$f"
  done
  awk -v r="$((r % 1000))" 'NR % 2000 == 250 + r' "$WORK/files.txt" | while IFS= read -r f; do rm -f "$f"; done
  mkdir -p "$DATA/new-$r"
  for i in $(seq 1 50); do seq "$i" $((i * 100)) > "$DATA/new-$r/file-$i.txt"; done
  keystream "change-$r" $((1024 * 1024)) |
    dd of="$DATA/random.bin" bs=1M seek=$((BIG / 4 + r % (BIG / 2))) conv=notrunc status=none
}

# ---------------------------------------------------------------- tools
KEY=$WORK/key.txt
[ -f "$KEY" ] || "${VAULTIK[@]}" keygen -o "$KEY" 2> /dev/null
RECIPIENT=$("${VAULTIK[@]}" keygen -y "$KEY")
VSTORE=$WORK/vaultik-store
cat > "$WORK/vaultik.yaml" << EOF
source_dirs: [$DATA]
age_recipient: $RECIPIENT
local: {path: $VSTORE}
index_path: $WORK/vaultik-state/index.sqlite
hostname: bench
EOF
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY=$WORK/restic-repo RESTIC_CACHE_DIR=$WORK/restic-cache
# One file both tools restore on their own: a small one from the middle of the list.
ONE=$(awk 'NR == 1000' "$WORK/files.txt")
[ -f "$ONE" ] || ONE=$(sed -n '1001p' "$WORK/files.txt")

RESULTS=$WORK/results.tsv
: > "$RESULTS"
LOG=$WORK/log.txt
: > "$LOG"

# timed TOOL STEP RUN CMD...: runs CMD under /usr/bin/time, appends a row to $RESULTS.
timed() {
  local tool=$1 step=$2 run=$3
  shift 3
  if ! /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" "$@" > /dev/null 2>> "$LOG"; then
    echo "FAILED: $tool $step (run $run): $*" >&2
    tail -20 "$LOG" >&2
    exit 1
  fi
  read -r wall user sys rss < "$WORK/time.txt"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$step" "$tool" "$run" "$wall" "$(echo "$user + $sys" | bc)" "$rss" >> "$RESULTS"
  printf '  %-8s %-14s run %s: %6.2f s wall, %6.2f s cpu, %4d MiB\n' "$tool" "$step" "$run" "$wall" "$(echo "$user + $sys" | bc)" $((rss / 1024)) >&2
}

v_initial() { rm -rf "$VSTORE" "$WORK/vaultik-state"; timed vaultik initial "$1" "${VAULTIK[@]}" backup "$WORK/vaultik.yaml" --cron; }
r_initial() { rm -rf "$RESTIC_REPOSITORY" "$RESTIC_CACHE_DIR"; restic init -q > /dev/null; timed restic initial "$1" restic backup -q "$DATA"; }
v_backup() { timed vaultik "$2" "$1" "${VAULTIK[@]}" backup "$WORK/vaultik.yaml" --cron; }
r_backup() { timed restic "$2" "$1" restic backup -q "$DATA"; }
verify_tree() {
  diff -r --no-dereference "$DATA" "$1$DATA" > "$WORK/diff.txt" 2>&1 || { echo "RESTORE DIFFERS ($2): $(head -5 "$WORK/diff.txt")" >&2; exit 1; }
}
# Right after a 48,000-file tree is deleted, ext4 spends a while on its freed inodes at every
# file creation (3-4x the sys time of the same restore run later, for both tools): delete, sync,
# then let it settle before timing the next restore.
settle() { rm -rf "$WORK/target"; sync; sleep "${SETTLE:-30}"; }
v_restore() {
  settle
  timed vaultik restore "$1" env VAULTIK_PRIVATE_KEY="$KEY" "${VAULTIK[@]}" restore "file://$VSTORE" '' latest "$WORK/target"
  verify_tree "$WORK/target" vaultik
}
r_restore() {
  settle
  timed restic restore "$1" restic restore -q latest --target "$WORK/target"
  verify_tree "$WORK/target" restic
}
v_one() {
  rm -rf "$WORK/one" && mkdir -p "$WORK/one"
  timed vaultik one-file "$1" env VAULTIK_PRIVATE_KEY="$KEY" "${VAULTIK[@]}" fetch "file://$VSTORE" '' latest "$ONE" "$WORK/one/"
  cmp "$ONE" "$WORK/one/$(basename "$ONE")"
}
r_one() {
  rm -rf "$WORK/one"
  timed restic one-file "$1" restic restore -q latest --target "$WORK/one" --include "$ONE"
  cmp "$ONE" "$WORK/one$ONE"
}

# both STEP RUN [ARGS]: vaultik then restic in odd runs, the reverse in even runs.
both() {
  local step=$1 run=$2
  shift 2
  if [ $((run % 2)) = 1 ]; then "v_$step" "$run" "$@"; "r_$step" "$run" "$@"; else "r_$step" "$run" "$@"; "v_$step" "$run" "$@"; fi
}

echo "dataset: $FILES files, $((BYTES / 1000000)) MB in $DATA" >&2
echo "raw limits (one thread, same run):" >&2
node "$REPO/bench/limits.mjs" "$DATA" $([ "$SMALL" = 1 ] && echo 64 || echo 256) > "$WORK/limits.txt"
sed 's/^/  /' "$WORK/limits.txt" >&2

for run in $(seq 1 "$RUNS"); do both initial "$run"; done
VSIZE=$(du -sb "$VSTORE" | cut -f1)
RSIZE=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
for run in $(seq 1 "$RUNS"); do both backup "$run" no-change; done
# Change sets are numbered across invocations (the dataset is reused), so each one changes files.
CHANGES=$(cat "$WORK/changes.count" 2> /dev/null || echo 0)
for run in $(seq 1 "$RUNS"); do
  CHANGES=$((CHANGES + 1))
  echo "$CHANGES" > "$WORK/changes.count"
  change_set "$CHANGES"
  both backup "$run" incremental
done
for run in $(seq 1 "$RUNS"); do both restore "$run"; done
for run in $(seq 1 "$RUNS"); do both one "$run"; done
rm -rf "$WORK/target" "$WORK/one"

# ---------------------------------------------------------------- report
{
  echo
  echo "vaultik $(node -p "require('$REPO/package.json').version") ($(git -C "$REPO" rev-parse --short HEAD)) vs $(restic version | cut -d' ' -f1-2), $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "dataset: $FILES files, $((BYTES / 1000000)) MB; each step $RUNS× per tool, alternating"
  echo
  awk -F'\t' -v bytes="$BYTES" '
    { key = $1 SUBSEP $2; wall[key] = (n[key] ? wall[key] " / " : "") sprintf("%.2f", $4)
      w[key] += $4; c[key] += $5; if ($6 > m[key]) m[key] = $6; n[key]++
      if (!($1 in seen)) { seen[$1] = 1; order[++steps] = $1 } }
    END {
      printf "| step | vaultik wall s | restic wall s | wall ratio | vaultik cpu s | restic cpu s | cpu ratio | vaultik RSS MiB | restic RSS MiB |\n"
      printf "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
      for (i = 1; i <= steps; i++) {
        s = order[i]; v = s SUBSEP "vaultik"; r = s SUBSEP "restic"
        printf "| %s | %s | %s | **%.2f** | %.1f | %.1f | %.2f | %d | %d |\n", s, wall[v], wall[r], w[v] / w[r], c[v] / n[v], c[r] / n[r], c[v] / c[r], m[v] / 1024, m[r] / 1024
      }
    }' "$RESULTS"
  echo
  echo "store size after the initial backup: vaultik $((VSIZE / 1000000)) MB, restic $((RSIZE / 1000000)) MB (ratio $(echo "scale=3; $VSIZE / $RSIZE" | bc))"
  awk -v bytes="$BYTES" -F'\t' '$1 == "initial" && $2 == "vaultik" { if (best == "" || $4 < best) best = $4 }
    $1 == "restore" && $2 == "vaultik" { if (rb == "" || $4 < rb) rb = $4 }
    END { printf "%.0f %.0f\n", bytes / 1e6 / best, bytes / 1e6 / rb }' "$RESULTS" > "$WORK/rates.txt"
  read -r BRATE RRATE < "$WORK/rates.txt"
  awk -v b="$BRATE" -v r="$RRATE" '
    { lim[$1] = $2 }
    END {
      printf "raw limits, one thread: read %s MB/s, SHA-256 %s MB/s, zstd-3 %s MB/s, ChaCha20-Poly1305 %s MB/s\n", lim["read"], lim["sha256"], lim["zstd3"], lim["chacha20poly1305"]
      printf "vaultik initial backup %s MB/s = %.0f%% of read, %.0f%% of one-thread zstd-3; restore %s MB/s = %.0f%% of read\n", b, 100 * b / lim["read"], 100 * b / lim["zstd3"], r, 100 * r / lim["read"]
    }' "$WORK/limits.txt"
} | tee "$WORK/report.md"
