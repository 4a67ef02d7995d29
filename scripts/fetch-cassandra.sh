#!/usr/bin/env bash
# Fetch Cassandra (the server's jars, pinned in harness/cassandra/pom.xml) into .cache/cassandra,
# once; later runs need no network.
#
#   .cache/cassandra/lib/     cassandra-all and its runtime class path (with the jamm agent)
#   .cache/cassandra/agent/   the node agent (harness/cassandra/NodeAgent.java), compiled: the
#                             resident JMX client the cassandra store drives each node with
#
# Maven's repository is .cache/m2. Each part is skipped when present for the current pom or
# source (a stamp file holds its sha256).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
POM="$ROOT/harness/cassandra/pom.xml"
AGENT_SRC="$ROOT/pausepoint/stores/cassandra/NodeAgent.java"
CACHE="$ROOT/.cache/cassandra"
M2="$ROOT/.cache/m2"
mkdir -p "$CACHE"

for tool in java javac mvn; do
  command -v "$tool" >/dev/null || { echo "fetch-cassandra: '$tool' not found (Java 17 and Maven are needed)" >&2; exit 2; }
done

fresh() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
if fresh "$CACHE/lib" "$pom_sha"; then
  echo "fetch-cassandra: lib present ($(ls "$CACHE/lib" | grep -c '\.jar$') jars)"
else
  echo "fetch-cassandra: resolving harness/cassandra/pom.xml into .cache/cassandra/lib ..."
  start=$(date +%s)
  rm -rf "$CACHE/lib.tmp"
  mvn -q -B --no-transfer-progress -Dstyle.color=never -f "$POM" "-Dmaven.repo.local=$M2" \
    dependency:copy-dependencies "-DoutputDirectory=$CACHE/lib.tmp" -DincludeScope=runtime \
    2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2
  ls "$CACHE/lib.tmp"/cassandra-all-*.jar >/dev/null
  rm -rf "$CACHE/lib"
  mv "$CACHE/lib.tmp" "$CACHE/lib"
  echo "$pom_sha" >"$CACHE/lib/.stamp"
  echo "fetch-cassandra: lib ready in $(( $(date +%s) - start )) s"
fi

agent_sha="$(sha256sum "$AGENT_SRC" | cut -d' ' -f1)"
if fresh "$CACHE/agent" "$agent_sha"; then
  echo "fetch-cassandra: agent present"
else
  rm -rf "$CACHE/agent.tmp" && mkdir -p "$CACHE/agent.tmp"
  # The agent uses the JDK's JMX client only: it runs beside any Cassandra version.
  javac --release 11 -Xlint:all -Werror -d "$CACHE/agent.tmp" "$AGENT_SRC"
  rm -rf "$CACHE/agent"
  mv "$CACHE/agent.tmp" "$CACHE/agent"
  echo "$agent_sha" >"$CACHE/agent/.stamp"
  echo "fetch-cassandra: agent compiled into .cache/cassandra/agent"
fi
