#!/usr/bin/env bash
# Fetch the Java side of the Ledger harness into .cache/scalardl, once; later runs need no network.
#
#   .cache/scalardl/lib/          ScalarDB schema loader + core, JDBC drivers, ScalarDL client SDK
#   .cache/scalardl/ledger-lib/   the ScalarDL Ledger server's class path (profile `ledger`), or
#   .cache/scalardl/ledger-unavailable.txt   why it could not be resolved
#   .cache/scalardl/contracts/    the SmallBank contracts (harness/ledger/contracts), compiled
#
# Versions are pinned in harness/ledger/pom.xml; Maven's repository is .cache/m2. Each part is
# skipped when it is present for the current pom/sources (a stamp file holds their sha256).
# A Ledger that the registry does not serve is recorded, not retried, until the pom changes or
# FETCH_SCALARDL_RETRY=1 is set. Exit status: 0 when lib/ and contracts/ are ready (the Ledger
# may still be unavailable: harness.ledger says so), non-zero otherwise.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="$ROOT/harness/ledger"
POM="$HARNESS/pom.xml"
CACHE="$ROOT/.cache/scalardl"
M2="$ROOT/.cache/m2"
mkdir -p "$CACHE"

for tool in java javac mvn; do
  command -v "$tool" >/dev/null || { echo "fetch-scalardl: '$tool' not found (Java 17 and Maven are needed)" >&2; exit 2; }
done

pom_sha="$(sha256sum "$POM" | cut -d' ' -f1)"
MVN=(mvn -q -B --no-transfer-progress -Dstyle.color=never -f "$POM" "-Dmaven.repo.local=$M2")

# copy_deps DEST [maven args...]: resolve into DEST.tmp, then move into place with a stamp.
copy_deps() {
  local dest="$1"; shift
  rm -rf "$dest.tmp"
  "${MVN[@]}" "$@" dependency:copy-dependencies "-DoutputDirectory=$dest.tmp" -DincludeScope=runtime \
    2>&1 | sed -e $'s/\x1b\\[[0-9;]*m//g' >&2
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  echo "$pom_sha" >"$dest/.stamp"
}

fresh() { [[ -f "$1/.stamp" && "$(cat "$1/.stamp")" == "$2" ]]; }

# 1. Schema loader, ScalarDB, drivers, client SDK.
if fresh "$CACHE/lib" "$pom_sha"; then
  echo "fetch-scalardl: lib present ($(ls "$CACHE/lib" | grep -c '\.jar$') jars)"
else
  echo "fetch-scalardl: resolving harness/ledger/pom.xml into .cache/scalardl/lib ..."
  start=$(date +%s)
  copy_deps "$CACHE/lib"
  echo "fetch-scalardl: lib ready in $(( $(date +%s) - start )) s"
fi

# 2. The Ledger server (optional: recorded when the registry does not serve it).
unavailable="$CACHE/ledger-unavailable.txt"
if fresh "$CACHE/ledger-lib" "$pom_sha"; then
  echo "fetch-scalardl: ledger-lib present"
elif [[ -f "$unavailable" && "$(head -n1 "$unavailable")" == "pom $pom_sha" && "${FETCH_SCALARDL_RETRY:-0}" != 1 ]]; then
  echo "fetch-scalardl: ScalarDL Ledger unavailable (recorded in .cache/scalardl/ledger-unavailable.txt;" \
    "FETCH_SCALARDL_RETRY=1 tries again)"
else
  echo "fetch-scalardl: resolving the ScalarDL Ledger (profile ledger) ..."
  retry=()
  [[ "${FETCH_SCALARDL_RETRY:-0}" == 1 ]] && retry=(-U)  # ask again despite a cached "not found"
  if out="$(copy_deps "$CACHE/ledger-lib" -P ledger "${retry[@]}" 2>&1)"; then
    rm -f "$unavailable"
    echo "fetch-scalardl: ledger-lib ready"
  else
    rm -rf "$CACHE/ledger-lib.tmp"
    {
      echo "pom $pom_sha"
      echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
      missing="$(grep -oE '[a-z.-]+:[a-z-]+:jar:[0-9][0-9A-Za-z.-]*' <<<"$out" | sort -u | paste -sd' ' || true)"
      echo "the package registry does not serve: ${missing:-see the Maven errors below}"
      [[ -n "$missing" ]] || grep -E 'ERROR' <<<"$out" | head -n 3 | sed -E 's#[a-z]+://[^ )]*#the registry#g' || true
    } >"$unavailable"
    echo "fetch-scalardl: ScalarDL Ledger NOT available; see .cache/scalardl/ledger-unavailable.txt" >&2
  fi
fi

# 3. The SmallBank contracts, compiled against the client SDK's contract API (Java 8 byte code:
#    ScalarDL 3.12 runs on Java 8 and later). Each contract must be ONE class file.
src_sha="$( (cd "$HARNESS" && find contracts compile-stubs -name '*.java' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)"
if fresh "$CACHE/contracts" "$src_sha"; then
  echo "fetch-scalardl: contracts present"
else
  tmp="$CACHE/contracts.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp/classes" "$tmp/stubs"
  cp_compile="$CACHE/lib/*"
  [[ -d "$CACHE/ledger-lib" ]] && cp_compile="$CACHE/ledger-lib/*:$cp_compile"
  if ! ls "$CACHE"/lib/scalardl-common-*.jar "$CACHE"/ledger-lib/scalardl-common-*.jar >/dev/null 2>&1; then
    # The contract API's exception superclass lives in scalardl-common; compile against a stub.
    javac --release 8 -nowarn -d "$tmp/stubs" $(find "$HARNESS/compile-stubs" -name '*.java')
    cp_compile="$cp_compile:$tmp/stubs"
  fi
  javac --release 8 -Xlint:all,-path,-options -Werror -cp "$cp_compile" -d "$tmp/classes" \
    $(find "$HARNESS/contracts" -name '*.java')
  n_src=$(find "$HARNESS/contracts" -name '*.java' | wc -l)
  n_cls=$(find "$tmp/classes" -name '*.class' | wc -l)
  if [[ "$n_src" != "$n_cls" ]]; then
    echo "fetch-scalardl: $n_src contract sources gave $n_cls class files; a contract must be one class (no inner or helper classes)" >&2
    exit 1
  fi
  rm -rf "$CACHE/contracts"
  mv "$tmp/classes" "$CACHE/contracts"
  rm -rf "$tmp"
  echo "$src_sha" >"$CACHE/contracts/.stamp"
  echo "fetch-scalardl: compiled $n_cls contracts into .cache/scalardl/contracts"
fi
