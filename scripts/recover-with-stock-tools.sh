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
# INDEX_PREFIX (environment) is where snapshot metadata lives; default index/.
# Every chunk is checked against its SHA-256 and every blob against its name. Decrypted data
# exists only in a private temp dir (mode 0700) that is removed on exit, and in OUTPUT.
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

# The snapshot: 'latest' is the metadata object with the newest time (the last 20 characters
# of an id are its sortable UTC time).
if [ "$SNAPSHOT" = latest ]; then
  case $STORE in
    s3://*) names=$(aws s3 ls "$STORE/$INDEX_PREFIX" | awk '{print $4}') ;;
    *) names=$(ls -1 -- "$STORE/$INDEX_PREFIX") ;;
  esac
  SNAPSHOT=$(printf '%s\n' "$names" | sed -n 's/\.db\.zst\.age$//p' |
    awk '{ print substr($0, length($0) - 19) " " $0 }' | sort | tail -n 1 | cut -d' ' -f2)
  [ -n "$SNAPSHOT" ] || die "no snapshot in $STORE/$INDEX_PREFIX"
fi
echo "recover: snapshot $SNAPSHOT" >&2

# 1. The metadata database: age, then zstd.
get "$INDEX_PREFIX$SNAPSHOT.db.zst.age" "$WORK/snap.db.zst.age"
age -d -i "$KEY" "$WORK/snap.db.zst.age" | zstd -d -q > "$WORK/snap.db"
rm -f "$WORK/snap.db.zst.age"
q() { sqlite3 -batch -noheader -separator ' ' "$WORK/snap.db" "$1"; }

# 2. The entry. Paths are stored as bytes without the leading '/'; compare them as hex.
REL=${WANT#/}
HEX=$(printf '%s' "$REL" | od -An -tx1 -v | tr -d ' \n')
read -r TYPE SIZE MODE MTIME GROUP <<< "$(q "SELECT type, size, mode, mtime_ns, COALESCE(link_group, '-') FROM entries WHERE path = x'$HEX'")"
[ -n "$TYPE" ] || die "$WANT is not in snapshot $SNAPSHOT"
[ "$TYPE" = file ] || die "$WANT is a $TYPE; this script recovers regular files"

# A hard link's content is listed under the first path of its group.
SOURCE=$HEX
if [ "$GROUP" != - ] && [ "$SIZE" != 0 ] && [ "$(q "SELECT COUNT(*) FROM file_chunks WHERE path = x'$HEX'")" = 0 ]; then
  SOURCE=$(q "SELECT lower(hex(MIN(path))) FROM entries WHERE link_group = $GROUP")
fi

# 3. Its chunks, in file order: blob, frame offset and length in the blob plaintext, chunk id.
q "SELECT f.seq, lower(hex(c.blob)), c.offset, c.length, lower(hex(c.id))
   FROM file_chunks f JOIN chunks c ON c.id = f.chunk WHERE f.path = x'$SOURCE' ORDER BY f.seq" > "$WORK/chunks"
mkdir "$WORK/frames"

# 4. Each blob once: check its name, decrypt it as a stream, and cut out the frames needed
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

# 5. Decompress each chunk, verify it, append it.
: > "$WORK/out"
while read -r _seq blob offset _length id; do
  zstd -d -q -c < "$WORK/frames/$blob-$offset" > "$WORK/chunk"
  [ "$(sha256sum "$WORK/chunk" | cut -d' ' -f1)" = "$id" ] || die "chunk $id failed verification"
  cat "$WORK/chunk" >> "$WORK/out"
done < "$WORK/chunks"
[ "$(wc -c < "$WORK/out")" -eq "$SIZE" ] || die "recovered $(wc -c < "$WORK/out") bytes, expected $SIZE"

# 6. Mode and mtime as recorded.
chmod "$(printf '%o' "$MODE")" "$WORK/out"
touch -d "@$((MTIME / 1000000000)).$(printf '%09d' $((MTIME % 1000000000)))" "$WORK/out"
mv -- "$WORK/out" "$OUTPUT"
echo "recover: wrote $OUTPUT ($SIZE bytes)" >&2
