#!/usr/bin/env bash
# Recover one file from a vaultik store without vaultik: only age, zstd, sqlite3 and GNU
# coreutils (plus the aws CLI for an s3:// store). Follows docs/FORMAT.md;
# docs/RECOVERY.md explains every step.
#
#   recover-with-stock-tools.sh STORE SNAPSHOT KEYFILE PATH OUTPUT
#
#   STORE     the store with its prefix: a directory (/mnt/usb/vaultik/host1) or s3://bucket/prefix
#             (then `aws s3 cp` downloads the objects needed; set AWS_ENDPOINT_URL for non-AWS S3)
#   SNAPSHOT  a snapshot id (host-YYYYMMDDTHHMMSS.mmmZ) or 'latest'
#   KEYFILE   an age identity file (AGE-SECRET-KEY-1...)
#   PATH      the file as it was on the source machine: /home/u/data/a.txt
#   OUTPUT    where to write it (must not exist)
#
# INDEX_PREFIX (environment) is where snapshot roots live; default index/. Reads metadata format
# version 2: the snapshot's root, the one shard that holds PATH, then the data blobs it needs.
# Every chunk is checked against its SHA-256 and every blob (a shard too) against its name.
# Decrypted data exists only in a private temp dir (mode 0700) that is removed on exit, and in
# OUTPUT.
set -euo pipefail
umask 077

if [ $# -ne 5 ]; then
  sed -n '4,14p' "$0" >&2
  exit 2
fi
STORE=${1%/}
SNAPSHOT=$2
KEY=$3
WANT=$4
OUTPUT=$5
INDEX_PREFIX=${INDEX_PREFIX:-index/}

for tool in age zstd sqlite3 sha256sum od head; do
  command -v "$tool" >/dev/null || { echo "recover: '$tool' is needed" >&2; exit 2; }
done
[ -e "$OUTPUT" ] && { echo "recover: $OUTPUT exists" >&2; exit 2; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
die() { echo "recover: $*" >&2; exit 1; }

# get KEY DEST: copies one object of the store to DEST.
get() {
  case $STORE in
    s3://*) aws s3 cp --only-show-errors "$STORE/$1" "$2" ;;
    *) cp -- "$STORE/$1" "$2" ;;
  esac
}

# The index: every snapshot's root is <id>.<sha256 of its bytes>.db.zst.age.
case $STORE in
  s3://*) names=$(aws s3 ls "$STORE/$INDEX_PREFIX" | awk '{print $4}') ;;
  *) names=$(ls -1 -- "$STORE/$INDEX_PREFIX") ;;
esac
roots=$(printf '%s\n' "$names" | grep -E '\.[0-9a-f]{64}\.db\.zst\.age$' || true)
# 'latest' is the root with the newest id time (the 20 characters before the hash). It does not
# skip suspect snapshots as vaultik does: name the snapshot after an incident.
if [ "$SNAPSHOT" = latest ]; then
  SNAPSHOT=$(printf '%s\n' "$roots" | sed -n 's/\.[0-9a-f]\{64\}\.db\.zst\.age$//p' |
    awk '{ print substr($0, length($0) - 19) " " $0 }' | sort | tail -n 1 | cut -d' ' -f2)
  [ -n "$SNAPSHOT" ] || die "no snapshot in $STORE/$INDEX_PREFIX"
fi
echo "recover: snapshot $SNAPSHOT" >&2
ROOT=$(printf '%s\n' "$roots" | awk -v p="$SNAPSHOT." 'index($0, p) == 1 && length($0) == length(p) + 64 + 11')
[ -n "$ROOT" ] || die "no root of snapshot $SNAPSHOT in $STORE/$INDEX_PREFIX"
[ "$(printf '%s\n' "$ROOT" | wc -l)" = 1 ] || die "snapshot $SNAPSHOT has several roots (someone else wrote all but one): $(echo $ROOT)"

# 1. The root: check it against its name, then age, then zstd. It holds the snapshot row and
#    the list of its shards.
get "$INDEX_PREFIX$ROOT" "$WORK/root.db.zst.age"
ROOT_HASH=${ROOT%.db.zst.age}
ROOT_HASH=${ROOT_HASH##*.}
[ "$(sha256sum < "$WORK/root.db.zst.age" | cut -d' ' -f1)" = "$ROOT_HASH" ] || die "$ROOT does not hash to its name (replaced or damaged)"
age -d -i "$KEY" "$WORK/root.db.zst.age" | zstd -d -q > "$WORK/root.db"
rm -f "$WORK/root.db.zst.age"
# sql DB QUERY: one query on a decrypted DB; q QUERY: on the shard.
sql() { sqlite3 -batch -noheader -separator ' ' "$WORK/$1" "$2"; }
q() { sql shard.db "$1"; }
[ "$(sql root.db 'PRAGMA application_id')" = 1447777102 ] || die "$ROOT is not a vaultik snapshot root"
VERSION=$(sql root.db 'PRAGMA user_version')
[ "$VERSION" = 2 ] || die "snapshot $SNAPSHOT has metadata format version $VERSION; this script reads version 2 (docs/FORMAT.md)"

# 2. The shard that holds the path: the one with the greatest first_path <= the path. Paths are
#    stored as bytes without the leading '/'; compare them as hex.
REL=${WANT#/}
HEX=$(printf '%s' "$REL" | od -An -tx1 -v | tr -d ' \n')
SHARD=$(sql root.db "SELECT lower(hex(blob)) FROM shards WHERE first_path <= x'$HEX' ORDER BY first_path DESC LIMIT 1")
[ -n "$SHARD" ] || die "$WANT is not in snapshot $SNAPSHOT"

# 3. The shard is a blob: check it against its name, then age, then zstd.
get "blobs/${SHARD:0:2}/${SHARD:2:2}/$SHARD" "$WORK/shard.zst.age"
[ "$(sha256sum "$WORK/shard.zst.age" | cut -d' ' -f1)" = "$SHARD" ] || die "shard $SHARD is corrupt (its SHA-256 differs from its name)"
age -d -i "$KEY" "$WORK/shard.zst.age" | zstd -d -q > "$WORK/shard.db"
rm -f "$WORK/shard.zst.age"
[ "$(q 'PRAGMA application_id')" = 1447777096 ] || die "blob $SHARD is not a vaultik snapshot shard"
VERSION=$(q 'PRAGMA user_version')
[ "$VERSION" = 2 ] || die "shard $SHARD has metadata format version $VERSION; this script reads version 2"

# 4. The entry.
read -r TYPE SIZE MODE MTIME GROUP <<< "$(q "SELECT type, size, mode, mtime_ns, COALESCE(link_group, '-') FROM entries WHERE path = x'$HEX'")"
[ -n "$TYPE" ] || die "$WANT is not in snapshot $SNAPSHOT"
[ "$TYPE" = file ] || die "$WANT is a $TYPE; this script recovers regular files"

# A hard link's content is listed under the first path of its group within this shard.
SOURCE=$HEX
if [ "$GROUP" != - ] && [ "$SIZE" != 0 ] && [ "$(q "SELECT COUNT(*) FROM file_chunks WHERE path = x'$HEX'")" = 0 ]; then
  SOURCE=$(q "SELECT lower(hex(MIN(path))) FROM entries WHERE link_group = $GROUP")
fi

# 5. Its chunks, in file order: blob, frame offset and length in the blob plaintext, chunk id.
q "SELECT f.seq, lower(hex(c.blob)), c.offset, c.length, lower(hex(c.id))
   FROM file_chunks f JOIN chunks c ON c.id = f.chunk WHERE f.path = x'$SOURCE' ORDER BY f.seq" > "$WORK/chunks"
mkdir "$WORK/frames"

# 6. Each blob once: check its name, decrypt it as a stream, and cut out the frames needed
#    (in offset order; GNU head -c reads exactly the bytes it prints from a pipe).
for blob in $(cut -d' ' -f2 "$WORK/chunks" | sort -u); do
  get "blobs/${blob:0:2}/${blob:2:2}/$blob" "$WORK/blob"
  [ "$(sha256sum "$WORK/blob" | cut -d' ' -f1)" = "$blob" ] || die "blob $blob is corrupt (its SHA-256 differs from its name)"
  awk -v b="$blob" '$2 == b { print $3, $4 }' "$WORK/chunks" | sort -n -u > "$WORK/offsets"
  age -d -i "$KEY" "$WORK/blob" | {
    pos=0
    while read -r offset length <&3; do
      [ "$offset" -ge "$pos" ] || continue # a frame listed twice
      head -c $((offset - pos)) > /dev/null
      head -c "$length" > "$WORK/frames/$blob-$offset"
      pos=$((offset + length))
    done 3< "$WORK/offsets"
    cat > /dev/null
  }
  rm -f "$WORK/blob"
done

# 7. Decompress each chunk, verify it, append it.
: > "$WORK/out"
while read -r _seq blob offset _length id; do
  zstd -d -q -c < "$WORK/frames/$blob-$offset" > "$WORK/chunk"
  [ "$(sha256sum "$WORK/chunk" | cut -d' ' -f1)" = "$id" ] || die "chunk $id failed verification"
  cat "$WORK/chunk" >> "$WORK/out"
done < "$WORK/chunks"
[ "$(wc -c < "$WORK/out")" -eq "$SIZE" ] || die "recovered $(wc -c < "$WORK/out") bytes, expected $SIZE"

# 8. Mode and mtime as recorded.
chmod "$(printf '%o' "$MODE")" "$WORK/out"
touch -d "@$((MTIME / 1000000000)).$(printf '%09d' $((MTIME % 1000000000)))" "$WORK/out"
mv -- "$WORK/out" "$OUTPUT"
echo "recover: wrote $OUTPUT ($SIZE bytes)" >&2
