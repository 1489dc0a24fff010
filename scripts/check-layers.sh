#!/usr/bin/env bash
# Checks the layer order of docs/ARCHITECTURE.md against the #include graph:
# every file under src/ and include/raffle/ may include headers of its own
# module and of modules on a strictly lower layer, nothing else.
#
# The layer table is read from docs/ARCHITECTURE.md (the rows between
# "<!-- layers:begin -->" and "<!-- layers:end -->": | layer | module |
# public headers |), so the page and the check cannot drift apart. A file's
# module is its directory under src/ (src/nn/model.c: nn); a public header's
# module is the row that lists it; "mod/x.h" includes (private headers) belong
# to mod. A public header or a source directory that no row names is an
# error too, so a new module has to be placed in the order before it builds
# into the library. System and third-party headers (<...>) are not checked.
#
# Usage: scripts/check-layers.sh [REPO_DIR]   (exit 0: clean, 1: violations)
set -u
cd "${1:-$(dirname "$0")/..}" || exit 2
doc=docs/ARCHITECTURE.md
[ -f "$doc" ] || { echo "check-layers: $doc missing" >&2; exit 2; }

declare -A rank hdr_mod
while IFS='|' read -r _ layer mod headers _; do
  layer=${layer// /}; mod=${mod// /}; mod=${mod//\`/}
  [[ $layer =~ ^[0-9]+$ ]] || continue
  rank[$mod]=$layer
  for h in ${headers//,/ }; do h=${h//\`/}; [ -n "$h" ] && hdr_mod[$h]=$mod; done
done < <(sed -n '/<!-- layers:begin -->/,/<!-- layers:end -->/p' "$doc")
[ ${#rank[@]} -gt 0 ] || { echo "check-layers: no layer table in $doc" >&2; exit 2; }

bad=0
err() { echo "check-layers: $*"; bad=1; }

for d in src/*/; do
  m=$(basename "$d")
  [ -n "${rank[$m]:-}" ] || err "src/$m/ is in no layer of $doc"
done
for h in include/raffle/*.h; do
  b=$(basename "$h")
  [ -n "${hdr_mod[$b]:-}" ] || err "include/raffle/$b belongs to no module in $doc"
done

edges=0
while IFS= read -r f; do
  case $f in
    src/*) fm=${f#src/}; fm=${fm%%/*} ;;
    include/raffle/*) fm=${hdr_mod[$(basename "$f")]:-} ;;
  esac
  [ -n "$fm" ] && [ -n "${rank[$fm]:-}" ] || continue
  while IFS=: read -r line inc; do
    case $inc in
      raffle/*) im=${hdr_mod[${inc#raffle/}]:-} ;;
      */*) im=${inc%%/*} ;;
      *) im=$fm ;;                      # same directory
    esac
    if [ -z "$im" ] || [ -z "${rank[$im]:-}" ]; then
      err "$f:$line includes \"$inc\", which belongs to no module"; continue
    fi
    edges=$((edges + 1))
    [ "$im" = "$fm" ] && continue
    if [ "${rank[$im]}" -ge "${rank[$fm]}" ]; then
      err "$f:$line: $fm (layer ${rank[$fm]}) includes \"$inc\" of $im (layer ${rank[$im]})"
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"' "$f" | sed -E 's/^([0-9]+):.*"([^"]+)".*/\1:\2/')
done < <(find src include/raffle -name '*.[ch]' | sort)

if [ $bad -ne 0 ]; then
  echo "check-layers: FAILED (layer table: $doc)"
  exit 1
fi
echo "check-layers: ${#rank[@]} modules, $edges includes, none reaches up a layer"
