"""Is a copy of the ScalarDB-backed site consistent? The checker of the restore tests and the demo.

Input: the ``check`` output of both components (harness.scalardb_node.check: everything read
through ScalarDB, so prepared records were resolved by lazy recovery), the workload's log
(harness.scalardb_workload.Entry, account creations included when they should be counted) and
the pause window ``(start, end)`` in Unix seconds. Rules, each reported by name:

- ``total_balance``: per component, the balances add up to what the accounts were created with
  (the creations the copy holds, and the acknowledged creations of the log when it has them);
- ``balances_match_records``: per account, the balance is what the request records imply, and
  the account's history rows and the request records name the same requests with the same
  amounts (a request whose other half is missing is a torn transfer);
- ``hash_chains``: every history is a valid hash chain (ages 0..n, each row's prev_hash is the
  hash of the row before, each hash recomputed from the row, balances a running sum) that ends
  where the account's metadata says;
- ``components_agree``: every request acknowledged before the window is in both components with
  the same content and the auditor's proof equal to the ledger's result; nothing is in the
  auditor that the ledger does not have the same way;
- ``nothing_after_window``: no request sent after the window opened is in either component (it
  waited at a closed gate, so a copy taken in the window cannot hold it).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.scalardb_workload import Entry

RULES = (
    "total_balance",
    "balances_match_records",
    "hash_chains",
    "components_agree",
    "nothing_after_window",
)
MAX_REASONS_PER_RULE = 5  # the rest are counted, not listed


def chain_hash(prev_hash: str, account: str, age: int, balance: int, delta: int, rid: str) -> str:
    """The node's hash of one history row (pausepoint.node.Bank.hash)."""
    content = f"{prev_hash}|{account}|{age}|{balance}|{delta}|{rid}"
    return hashlib.sha256(content.encode()).hexdigest()


@dataclass
class Verdict:
    """The checker's answer: ``ok`` when every rule passed; ``reasons`` name each violation."""

    ok: bool
    rules: dict[str, bool]
    reasons: list[str]
    stats: dict[str, Any] = field(default_factory=dict)

    def failed(self) -> list[str]:
        return [r for r, passed in self.rules.items() if not passed]

    def summary(self) -> str:
        lines = [f"verdict: {'CONSISTENT' if self.ok else 'NOT CONSISTENT'}"]
        lines += [f"  {'ok  ' if self.rules[r] else 'FAIL'} {r}" for r in RULES]
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.stats:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        return "\n".join(lines)


class _Findings:
    def __init__(self) -> None:
        self.by_rule: dict[str, list[str]] = {r: [] for r in RULES}

    def add(self, rule: str, reason: str) -> None:
        self.by_rule[rule].append(reason)

    def verdict(self, stats: dict[str, Any]) -> Verdict:
        reasons: list[str] = []
        for rule in RULES:
            found = self.by_rule[rule]
            reasons += [f"{rule}: {r}" for r in found[:MAX_REASONS_PER_RULE]]
            if len(found) > MAX_REASONS_PER_RULE:
                reasons.append(f"{rule}: ... and {len(found) - MAX_REASONS_PER_RULE} more")
        rules = {r: not self.by_rule[r] for r in RULES}
        return Verdict(all(rules.values()), rules, reasons, stats)


def _implied(requests: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """account -> {rid: delta} as the request records say."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for rid, q in requests.items():
        amount = int(q["amount"])
        if q["kind"] == "create":
            out[q["dst"]][rid] = amount
        else:
            out[q["src"]][rid] = -amount
            out[q["dst"]][rid] = amount
    return out


def _check_component(comp: str, dump: Mapping[str, Any], f: _Findings, expected_total: int | None):
    accounts: Mapping[str, Any] = dump.get("accounts", {})
    requests: Mapping[str, Any] = dump.get("requests", {})
    # total_balance
    total = sum(int(a.get("balance", 0)) for a in accounts.values())
    created = sum(int(q["amount"]) for q in requests.values() if q["kind"] == "create")
    if total != created:
        f.add("total_balance", f"{comp}: balances add up to {total}, creations to {created}")
    if expected_total is not None and created != expected_total:
        f.add(
            "total_balance",
            f"{comp}: holds creations worth {created}, the log acknowledged {expected_total}",
        )
    implied = _implied(requests)
    for account in sorted(set(accounts) | set(implied)):
        a = accounts.get(account)
        wants = implied.get(account, {})
        if a is None:
            f.add("balances_match_records", f"{comp}: {account} is named by requests, not there")
            continue
        chain = a.get("chain", [])
        # balances_match_records
        if "balance" not in a:
            f.add("balances_match_records", f"{comp}: {account} has history but no metadata")
        elif int(a["balance"]) != sum(wants.values()):
            f.add(
                "balances_match_records",
                f"{comp}: {account} balance {a['balance']}, its request records imply "
                f"{sum(wants.values())}",
            )
        has = {row["rid"]: int(row["delta"]) for row in chain}
        for rid in sorted(set(wants) - set(has)):
            f.add("balances_match_records", f"{comp}: request {rid} is missing from {account}")
        for rid in sorted(set(has) - set(wants)):
            f.add("balances_match_records", f"{comp}: {account} holds {rid}, no request record")
        for rid in sorted(set(has) & set(wants)):
            if has[rid] != wants[rid]:
                f.add(
                    "balances_match_records",
                    f"{comp}: {account} applied {rid} as {has[rid]}, the record says {wants[rid]}",
                )
        # hash_chains
        prev_hash, balance = "", 0
        for i, row in enumerate(chain):
            where = f"{comp}: {account} age {row['age']}"
            if int(row["age"]) != i:
                f.add("hash_chains", f"{comp}: {account} has age {row['age']} at position {i}")
                break
            if row["prev_hash"] != prev_hash:
                f.add("hash_chains", f"{where}: prev_hash does not match the row before")
            balance += int(row["delta"])
            if int(row["balance"]) != balance:
                f.add("hash_chains", f"{where}: balance {row['balance']}, the deltas sum {balance}")
            want = chain_hash(
                row["prev_hash"], account, i, int(row["balance"]), int(row["delta"]), row["rid"]
            )
            if row["hash"] != want:
                f.add("hash_chains", f"{where}: hash does not match the row's content")
            prev_hash = row["hash"]
        if not chain:
            f.add("hash_chains", f"{comp}: {account} has no history")
        elif "balance" in a and (
            a.get("latest_age") != len(chain) - 1
            or a.get("hash") != chain[-1]["hash"]
            or int(a["balance"]) != int(chain[-1]["balance"])
        ):
            f.add(
                "hash_chains",
                f"{comp}: {account} metadata (age {a.get('latest_age')}) is not the end of its "
                f"history (age {len(chain) - 1})",
            )


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def check(
    dumps: Mapping[str, Mapping[str, Any]],
    log: Iterable[Entry],
    window: tuple[float, float],
) -> Verdict:
    """Check a copy (``dumps``: {"ledger": ..., "auditor": ...}) against the workload log and the
    pause window (Unix seconds, start <= end). See the module docstring for the rules."""
    start, end = window
    if end < start:
        raise ValueError(f"window ends ({end}) before it starts ({start})")
    entries = list(log)
    f = _Findings()
    creations = [e for e in entries if e.kind == "create" and e.outcome == "acked"]
    expected_total = sum(e.amount for e in creations) if creations else None
    for comp, dump in dumps.items():
        _check_component(comp, dump, f, expected_total)

    ledger = dumps.get("ledger", {}).get("requests", {})
    auditor = dumps.get("auditor", {}).get("requests", {})
    same = ("kind", "src", "dst", "amount")
    before = [
        e for e in entries if e.outcome == "acked" and e.acked is not None and e.acked < start
    ]
    for e in before:
        for comp, reqs in (("ledger", ledger), ("auditor", auditor)):
            if comp in dumps and e.rid not in reqs:
                f.add(
                    "components_agree",
                    f"request {e.rid} acknowledged at {_iso(e.acked)} (before the window) is "
                    f"missing from {comp}",
                )
    if "ledger" in dumps and "auditor" in dumps:
        for rid, q in auditor.items():
            lq = ledger.get(rid)
            if lq is None:
                f.add("components_agree", f"auditor holds request {rid}, the ledger does not")
            elif any(lq[k] != q[k] for k in same):
                f.add("components_agree", f"request {rid} differs between ledger and auditor")
            elif q.get("proof") != lq.get("result"):
                f.add("components_agree", f"request {rid}: auditor's proof is not ledger's result")

    after = [e for e in entries if e.sent >= start]
    for e in after:
        for comp, dump in dumps.items():
            if e.rid in dump.get("requests", {}):
                f.add(
                    "nothing_after_window",
                    f"request {e.rid} sent at {_iso(e.sent)}, after the window opened at "
                    f"{_iso(start)}, is in {comp}",
                )

    stats = {
        "requests ledger": len(ledger),
        "requests auditor": len(auditor),
        "acked before window": len(before),
        "sent after window opened": len(after),
    }
    return f.verdict(stats)
