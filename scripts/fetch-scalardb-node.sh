#!/usr/bin/env bash
# Build the ScalarDB-backed node (harness/scalardb_node) into .cache/scalardb-node, once; later
# runs need no network.
#
#   .cache/scalardb-node/lib/       its runtime class path (ScalarDB 3.16.1, scalar-admin 2.2.1,
#                                   gRPC, the JDBC drivers), resolved by Maven from pom.xml
#   .cache/scalardb-node/classes/   the node's own classes (javac --release 17)
#   .cache/scalardb-node/tools/     ScalarDB's schema loader 3.16.1 and the JDBC drivers, a class
#                                   path of their own (harness/scalardb_node/tools.pom.xml; the
#                                   tests' real ScalarDB tables: tests/support/scalardb_multi.py)
#
# Versions are pinned in the two poms; Maven's repository is .cache/m2. Each part is skipped
# when it is present for the current pom (lib, tools) or pom + sources (classes): a stamp file
# holds their sha256. Exit status 0 when all three are ready.
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

# resolve POM DIR: the pom's runtime dependencies copied into $CACHE/DIR, stamped with its sha256.
resolve() {
  local pom="$1" dir="$2" sha start
  sha="$(sha256sum "$pom" | cut -d' ' -f1)"
  if fresh "$CACHE/$dir" "$sha"; then
    echo "fetch-scalardb-node: $dir present ($(ls "$CACHE/$dir" | grep -c '\.jar$') jars)"
    return
  fi
  echo "fetch-scalardb-node: resolving ${pom#"$ROOT/"} into .cache/scalardb-node/$dir ..."
  start=$(date +%s)
  rm -rf "$CACHE/$dir.tmp"
  # Offline first: a repository that already holds everything needs no network.
  local mvn_args=(-q -B --no-transfer-progress -Dstyle.color=never -f "$pom" "-Dmaven.repo.local=$M2"
                  dependency:copy-dependencies "-DoutputDirectory=$CACHE/$dir.tmp" -DincludeScope=runtime)
  if ! mvn -o "${mvn_args[@]}" >/dev/null 2>&1; then
    rm -rf "$CACHE/$dir.tmp"
    mvn "${mvn_args[@]}" 2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2
  fi
  rm -rf "$CACHE/$dir"
  mv "$CACHE/$dir.tmp" "$CACHE/$dir"
  echo "$sha" >"$CACHE/$dir/.stamp"
  echo "fetch-scalardb-node: $dir ready in $(( $(date +%s) - start )) s ($(ls "$CACHE/$dir" | grep -c '\.jar$') jars)"
}

pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
resolve "$POM" lib
resolve "$PROJECT/tools.pom.xml" tools

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
