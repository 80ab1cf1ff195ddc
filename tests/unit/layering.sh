#!/bin/sh
# layering: the folders of core/ form layers (see docs/ARCHITECTURE.md, "Layers").
#  1. No file under core/net/ includes a header of core/http/ or core/lua/: the connection
#     reaches its applications only through the seam of core/net/app.h.
#  2. No circle of folders: when a file in folder A includes "B/x.h", A sits above B, and
#     no chain of such includes leads from B back to A.
#
#   tests/unit/layering.sh [SOURCE_DIR]     (ctest runs it as unit/layering)
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -d "$top/core/net" ] || { echo "layering: no $top/core/net" >&2; exit 2; }
status=0

bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<](http|lua)/' "$top/core/net")
if [ -n "$bad" ]; then
    echo "layering: core/net/ must not include core/http/ or core/lua/ (use net/app.h):"
    echo "$bad"
    status=1
else
    echo "layering: core/net/ includes nothing of core/http/ or core/lua/"
fi

# "folder included-folder" pairs, one per line, for tsort (which reports any loop)
edges=$(cd "$top/core" && for dir in */; do
    dir=${dir%/}
    sed -nE 's@^[[:space:]]*#[[:space:]]*include[[:space:]]*"([a-z_]+)/[^"]+".*@\1@p' "$dir"/*.[ch] 2>/dev/null |
        sort -u | while read -r to; do
            [ "$to" != "$dir" ] && [ -d "$to" ] && echo "$dir $to"
        done
done)
if ! loop=$(printf '%s\n' "$edges" | tsort 2>&1 >/dev/null) || [ -n "$loop" ]; then
    echo "layering: the folders of core/ include each other in a circle:"
    echo "$loop"
    printf '%s\n' "$edges" | sed 's/^/  includes: /'
    status=1
else
    echo "layering: the folders of core/ form layers, from the top:" $(printf '%s\n' "$edges" | tsort)
fi
exit $status
