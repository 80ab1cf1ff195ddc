#!/bin/sh
# layering: fails when a file under core/net/ includes a header of core/http/ or
# core/lua/. The connection reaches its applications only through the seam of
# core/net/app.h (see docs/ARCHITECTURE.md); a lower folder never includes a higher one.
#
#   tests/unit/layering.sh [SOURCE_DIR]     (ctest runs it as unit/layering)
top=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -d "$top/core/net" ] || { echo "layering: no $top/core/net" >&2; exit 2; }
bad=$(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*["<](http|lua)/' "$top/core/net")
if [ -n "$bad" ]; then
    echo "layering: core/net/ must not include core/http/ or core/lua/ (use net/app.h):"
    echo "$bad"
    exit 1
fi
echo "layering: core/net/ includes nothing of core/http/ or core/lua/"
