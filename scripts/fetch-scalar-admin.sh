#!/usr/bin/env bash
# Fetch scalar-admin 2.2.1 (its AdminCommand CLI and server stubs) into .cache/scalar-admin, once;
# later runs need no network.
#
#   .cache/scalar-admin/lib/       the class path resolved from harness/admin_cli/pom.xml
#   .cache/scalar-admin/classes/   harness/admin_cli/src compiled against it (EchoAdminServer)
#
# Each part is skipped when present for the current pom / sources (its .stamp holds their
# sha256). Maven's repository is .cache/m2. Exit status non-zero when either part is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="$ROOT/harness/admin_cli"
POM="$HARNESS/pom.xml"
CACHE="$ROOT/.cache/scalar-admin"
M2="$ROOT/.cache/m2"
mkdir -p "$CACHE"

for tool in java javac mvn; do
  command -v "$tool" >/dev/null || { echo "fetch-scalar-admin: '$tool' not found (Java 17 and Maven are needed)" >&2; exit 2; }
done

fresh() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
if fresh "$CACHE/lib" "$pom_sha"; then
  echo "fetch-scalar-admin: lib present ($(ls "$CACHE/lib" | grep -c '\.jar$') jars)"
else
  echo "fetch-scalar-admin: resolving harness/admin_cli/pom.xml into .cache/scalar-admin/lib ..."
  rm -rf "$CACHE/lib.tmp"
  mvn -q -B --no-transfer-progress -Dstyle.color=never -f "$POM" "-Dmaven.repo.local=$M2" \
    dependency:copy-dependencies "-DoutputDirectory=$CACHE/lib.tmp" -DincludeScope=runtime \
    2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2
  # The pin is what makes PAUSE work at all: refuse a class path without it.
  if ! ls "$CACHE"/lib.tmp/protobuf-java-3.25.*.jar >/dev/null 2>&1; then
    echo "fetch-scalar-admin: protobuf-java 3.25.x is not on the resolved class path; keep the pin in harness/admin_cli/pom.xml" >&2
    exit 1
  fi
  if ls "$CACHE"/lib.tmp/googleapis-common-protos-*.jar >/dev/null 2>&1; then
    echo "fetch-scalar-admin: the old googleapis-common-protos is on the class path; keep its exclusion in harness/admin_cli/pom.xml" >&2
    exit 1
  fi
  rm -rf "$CACHE/lib"
  mv "$CACHE/lib.tmp" "$CACHE/lib"
  echo "$pom_sha" >"$CACHE/lib/.stamp"
fi

src_sha="$( (cd "$HARNESS" && find src -name '*.java' -print0 | sort -z | xargs -0 sha256sum; echo "$pom_sha") | sha256sum | cut -d' ' -f1)"
if fresh "$CACHE/classes" "$src_sha"; then
  echo "fetch-scalar-admin: classes present"
else
  rm -rf "$CACHE/classes.tmp" && mkdir -p "$CACHE/classes.tmp"
  javac --release 17 -Xlint:all -Werror -cp "$CACHE/lib/*" -d "$CACHE/classes.tmp" \
    $(find "$HARNESS/src" -name '*.java')
  rm -rf "$CACHE/classes"
  mv "$CACHE/classes.tmp" "$CACHE/classes"
  echo "$src_sha" >"$CACHE/classes/.stamp"
  echo "fetch-scalar-admin: compiled harness/admin_cli/src into .cache/scalar-admin/classes"
fi
