# Shared helpers for the project's shell scripts (sourced, not run).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '[%s] %s\n' "${SAY_PREFIX:-ci-runner}" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "need $* but apt-get is not available; install it by hand"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Installs packages whose Debian scripts would start a system service: nothing is started (policy-rc.d says no).
apt_install_no_start() {
  local policy=/usr/sbin/policy-rc.d restore=""
  if [ -e "$policy" ]; then restore="$(mktemp)"; cp -p "$policy" "$restore"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  apt_install "$@"
  if [ -n "$restore" ]; then mv "$restore" "$policy"; else rm -f "$policy"; fi
}

# Installs what running ci-runner needs on a fresh machine: npm packages, git, Python with venv, and the build
# sandbox (bubblewrap; mkfs.ext4 for each build's own filesystem; slirp4netns for BUILD_EGRESS=internet; prlimit
# and setpriv come with util-linux).
ensure_deps() {
  command -v git >/dev/null || apt_install git
  command -v bwrap >/dev/null || apt_install bubblewrap
  command -v mkfs.ext4 >/dev/null || PATH="$PATH:/sbin:/usr/sbin" command -v mkfs.ext4 >/dev/null || apt_install e2fsprogs
  command -v slirp4netns >/dev/null || apt_install slirp4netns
  { command -v prlimit >/dev/null && command -v setpriv >/dev/null; } || apt_install util-linux
  if ! command -v python3 >/dev/null; then apt_install python3 python3-venv; fi
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
  if [ ! -f "$ROOT/node_modules/.package-lock.json" ] || [ "$ROOT/package-lock.json" -nt "$ROOT/node_modules/.package-lock.json" ]; then
    say "installing npm packages (npm ci)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

# Compiles dist/ when it is missing or older than any source it is built from (a fresh clone, a pull, an edit).
ensure_built() {
  local stamp="$ROOT/dist/.built"
  if [ ! -f "$stamp" ] || [ -n "$(find "$ROOT/src" "$ROOT/proto" "$ROOT/python" "$ROOT/package-lock.json" \
    "$ROOT/tsconfig.json" "$ROOT/tsconfig.build.json" -newer "$stamp" -print -quit)" ]; then
    say "compiling src/ to dist/ (the sources changed since the last build)"
    bash "$ROOT/scripts/build.sh" >&2
  fi
}

# Resolves the runtime jars a pom in services/ names from Maven Central into a directory, once per pom change, on the
# machine's Java. Usage: maven_jars <services/…/pom.xml> <dir> <what, for messages>
maven_jars() {
  local pom="$1" dir="$2" what="$3"
  if [ -f "$dir/.complete" ] && [ "$dir/.complete" -nt "$pom" ]; then return; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  say "resolving $what jars from Maven Central (${pom#"$ROOT"/})"
  rm -rf "$dir"
  mkdir -p "$dir"
  mvn -B -q -f "$pom" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir" >&2 || die "Maven could not resolve the $what jars"
  touch "$dir/.complete"
}

# Kills (-9) the process of each pid file given that is alive, and removes the files.
kill_pidfiles() {
  local pidfile
  for pidfile in "$@"; do
    [ -f "$pidfile" ] || continue
    kill -0 "$(cat "$pidfile")" 2>/dev/null && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}
