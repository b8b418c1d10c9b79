#!/bin/sh
# Prints ci-runner's Redis ACL file (Redis 7) for the passwords in <credentials-dir>/redis-<role>: used by
# scripts/services.sh (CI_RUNNER_SECURE=1) and by docker-compose.yml's Redis (its Docker secrets). POSIX sh: it also
# runs in the redis image. Usage: redis-users.sh <credentials-dir> > users.acl
#   default  off: a client without a user gets nothing but AUTH
#   admin    everything (operators, health checks)
#   bridge, worker  the runner's keys only (BullMQ's bull:* and ci-runner:*), no dangerous or admin command
#   board, cli      the same keys, read commands only. Redis checks every command a Lua script runs against its
#                   caller's rules, so BullMQ's reading scripts work and one that writes (a worker's moveToActive,
#                   a retry) is refused with NOPERM. (%R~ key selectors cannot express this: EVAL needs write
#                   access to every key it declares.) What no ACL can take away from a role allowed EVAL: a
#                   script that loops holds Redis until busy-reply-threshold (5 s) and an admin's SCRIPT KILL.
set -eu
dir="$1"
hash() { printf '%s' "$(cat "$dir/redis-$1")" | sha256sum | cut -d' ' -f1; }
keys='~bull:* ~ci-runner:*'
basics='+@connection +info +client|setname +client|getname +client|id'
scripts='+eval +evalsha +eval_ro +evalsha_ro +script|load +script|exists'
# Server-wide commands no role needs, beyond the dangerous and admin categories.
server='-function -script|flush -script|kill -randomkey'
echo "user default off resetkeys resetchannels -@all"
echo "user admin on #$(hash admin) ~* &* +@all"
for role in bridge worker; do
  echo "user $role on #$(hash "$role") resetchannels $keys +@all -@dangerous -@admin $server $basics"
done
for role in board cli; do
  echo "user $role on #$(hash "$role") resetchannels $keys -@all +@read -@dangerous -scan -dbsize $server $scripts $basics"
done
