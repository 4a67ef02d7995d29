#!/usr/bin/env bash
# Build the ScalarDB-backed node (harness/scalardb_node) into .cache/scalardb-node, once; later
# runs need no network.
#
#   .cache/scalardb-node/lib/       its runtime class path (ScalarDB 3.16.1, scalar-admin 2.2.1,
#                                   gRPC, the JDBC drivers), resolved by Maven from the pom
#   .cache/scalardb-node/classes/   the node's own classes (javac --release 17)
#
# Versions are pinned in harness/scalardb_node/pom.xml; Maven's repository is .cache/m2. Each
# part is skipped when it is present for the current pom (lib) or pom + sources (classes): a
# stamp file holds their sha256. Exit status 0 when both are ready.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROJECT="$ROOT/harness/scalardb_node"
POM="$PROJECT/pom.xml"
CACHE="$ROOT/.cache/scalardb-node"
M2="$ROOT/.cache/m2"
mkdir -p "$CACHE"

for tool in java javac mvn; do
  command -v "$tool" >/dev/null || { echo "fetch-scalardb-node: '$tool' not found (Java 17 and Maven are needed)" >&2; exit 2; }
done

fresh() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
if fresh "$CACHE/lib" "$pom_sha"; then
  echo "fetch-scalardb-node: lib present ($(ls "$CACHE/lib" | grep -c '\.jar$') jars)"
else
  echo "fetch-scalardb-node: resolving harness/scalardb_node/pom.xml into .cache/scalardb-node/lib ..."
  start=$(date +%s)
  rm -rf "$CACHE/lib.tmp"
  # Offline first: a repository that already holds everything needs no network.
  mvn_args=(-q -B --no-transfer-progress -Dstyle.color=never -f "$POM" "-Dmaven.repo.local=$M2"
            dependency:copy-dependencies "-DoutputDirectory=$CACHE/lib.tmp" -DincludeScope=runtime)
  if ! mvn -o "${mvn_args[@]}" >/dev/null 2>&1; then
    rm -rf "$CACHE/lib.tmp"
    mvn "${mvn_args[@]}" 2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2
  fi
  rm -rf "$CACHE/lib"
  mv "$CACHE/lib.tmp" "$CACHE/lib"
  echo "$pom_sha" >"$CACHE/lib/.stamp"
  echo "fetch-scalardb-node: lib ready in $(( $(date +%s) - start )) s ($(ls "$CACHE/lib" | grep -c '\.jar$') jars)"
fi

src_sha="$( (cd "$PROJECT" && { echo "$pom_sha"; find src -name '*.java' -print0 | sort -z | xargs -0 sha256sum; }) | sha256sum | cut -d' ' -f1)"
if fresh "$CACHE/classes" "$src_sha"; then
  echo "fetch-scalardb-node: classes present"
else
  tmp="$CACHE/classes.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  javac --release 17 -Xlint:all,-path,-processing,-serial -nowarn -encoding UTF-8 \
    -cp "$CACHE/lib/*" -d "$tmp" $(find "$PROJECT/src/main/java" -name '*.java')
  rm -rf "$CACHE/classes"
  mv "$tmp" "$CACHE/classes"
  echo "$src_sha" >"$CACHE/classes/.stamp"
  echo "fetch-scalardb-node: compiled $(find "$CACHE/classes" -name '*.class' | wc -l) classes into .cache/scalardb-node/classes"
fi
