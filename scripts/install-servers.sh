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
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# program -> Debian package that provides it
declare -A wanted=(
  [pg_dump]=postgresql
  [pg_restore]=postgresql
  [mariadb-dump]=mariadb-client
  [mariadb]=mariadb-client
  [mariadbd]=mariadb-server
  [mariadb-install-db]=mariadb-server
  [chromium]=chromium
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [sshd]=openssh-server
)

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
if ! compgen -G "/usr/share/fonts/truetype/liberation/*.ttf" >/dev/null; then
  missing+=(fonts-liberation)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-servers: postgresql, mariadb, chromium, gcc, libxxhash-dev and openssh are already installed"
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
