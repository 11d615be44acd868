#!/usr/bin/env bash
# bench-boards: the CPU per claim that the boards cost (issue 17's budget: at most ×2 of the
# all-time ranking alone). The release before the boards (BASE_REV, built from this
# repository's history) and this one run side by side as in bench-events.sh, events off on
# both, each with its own database and Redis server and its own load. This one keeps every
# board in Redis (a RANK_RETENTION reaching past the loads' 2025 service dates), so each
# claim moves all seven boards of its lines in Postgres and in Redis.
#
#   scripts/bench-boards.sh [claimd] [claimbench]     (make bench runs it after the suite)
#
# Settings: BASE_REV (9f6e156, the last commit before the boards), and bench-events.sh's.
set -euo pipefail
BASE_REV=${BASE_REV:-9f6e156}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/bench-boards.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
git -C "$HERE/.." archive "$BASE_REV" | tar -x -C "$WORK"
(cd "$WORK" && go build -o claimd-base ./cmd/claimd)
BASE_CLAIMD=$WORK/claimd-base EVENTS=off ENV_ON="RANK_RETENTION=day=1000,week=200,month=40,year=5" \
  LABEL_OFF="all-time only ($BASE_REV)" LABEL_ON="every board" \
  "$HERE/bench-events.sh" "${1:-bin/claimd}" "${2:-bin/claimbench}"
