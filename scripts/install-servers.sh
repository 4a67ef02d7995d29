#!/usr/bin/env bash
# Installs the database servers and client tools the integration tests and the demo run against:
# PostgreSQL (server + pg_dump/pg_restore) and MariaDB (server + mariadb-dump/mariadb); and
# Chromium (with a text font), which the end-to-end tests run headless against the Prefect UI;
# gcc and libxxhash-dev, which build the MySQL fingerprint's C row sums (make native);
# openssh-server (sshd, ssh-keygen), which the tests start privately on loopback for the
# cassandra store's ssh node executor (never as a system service).
# Idempotent: installs only what is missing, runs `apt-get update` at most once, never prompts.
# The test fixtures start their own private instances; this script never starts or configures
# a system service.
#
#   --demo   only what `make demo` uses: no Chromium (nor its font), which only the e2e tests need
#   --print  print the Debian packages this would make sure of, one a line, and exit
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

demo=0
print=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo=1 ;;
    --print) print=1 ;;
    *) echo "install-servers: unknown option $arg (use --demo, --print)" >&2; exit 2 ;;
  esac
done

# program -> Debian package that provides it
declare -A wanted=(
  [pg_dump]=postgresql
  [pg_restore]=postgresql
  [mariadb-dump]=mariadb-client
  [mariadb]=mariadb-client
  [mariadbd]=mariadb-server
  [mariadb-install-db]=mariadb-server
)
# The e2e tests drive the Prefect UI in headless Chromium and the Cassandra tests reach a node
# over ssh; the demo does neither.
if [ "$demo" -eq 0 ]; then
  wanted[chromium]=chromium
  wanted[ssh]=openssh-client
  wanted[ssh-keygen]=openssh-client
  wanted[sshd]=openssh-server
fi

have() {
  # initdb/postgres live outside PATH on Debian (/usr/lib/postgresql/<major>/bin).
  case "$1" in
    mariadbd) command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] ;;
    sshd) command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
for prog in "${!wanted[@]}"; do
  have "$prog" || missing+=("${wanted[$prog]}")
done
# The server binaries of PostgreSQL are not on PATH: look for initdb in the versioned folders.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  missing+=(postgresql)
fi

# The MySQL fingerprint's row sums in C (make native): a compiler and xxHash's header.
have cc || missing+=(gcc)
[ -e /usr/include/xxhash.h ] || missing+=(libxxhash-dev)

# Headless Chromium renders the UI's text with the system's fonts; the package does not pull one
# in without its recommends.
if [ "$demo" -eq 0 ] && ! compgen -G "/usr/share/fonts/truetype/liberation/*.ttf" >/dev/null; then
  missing+=(fonts-liberation)
fi

if [ "$print" -eq 1 ]; then
  all=("${wanted[@]}" postgresql gcc libxxhash-dev)
  [ "$demo" -eq 0 ] && all+=(fonts-liberation)
  printf '%s\n' "${all[@]}" | sort -u
  exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  what="postgresql, mariadb, gcc and libxxhash-dev"
  [ "$demo" -eq 0 ] && what="postgresql, mariadb, chromium, openssh, gcc and libxxhash-dev"
  echo "install-servers: $what are already installed"
  exit 0
fi

# de-duplicate package names
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-servers: missing packages (${packages[*]}); run this script as root" >&2
  exit 1
fi

# Debian's postinst would start system instances; the tests never use them, and a policy-rc.d
# that says "no" (101) keeps them from starting while the packages install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-servers: installing ${packages[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null
echo "install-servers: done"
