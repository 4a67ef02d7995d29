"""The ScalarDB node checker on hand-built copies: a consistent one passes, and each kind of
damage fails the rule that names it (the integration tests feed it real copies)."""

from __future__ import annotations

import copy

import pytest

from harness.scalardb_checker import RULES, chain_hash, check
from harness.scalardb_workload import Entry, stall


def _component(requests: list[tuple[str, str, str, str, int]]) -> dict:
    """A dump holding ``requests`` (rid, kind, src, dst, amount), applied in order."""
    accounts: dict[str, dict] = {}
    reqs: dict[str, dict] = {}
    for rid, kind, src, dst, amount in requests:
        result = {}
        moves = [(dst, amount)] if kind == "create" else [(src, -amount), (dst, amount)]
        for account, delta in moves:
            a = accounts.setdefault(account, {"namespace": account[:2], "chain": []})
            chain = a["chain"]
            prev = chain[-1]["hash"] if chain else ""
            age = len(chain)
            balance = (chain[-1]["balance"] if chain else 0) + delta
            h = chain_hash(prev, account, age, balance, delta, rid)
            chain.append(
                {
                    "age": age,
                    "balance": balance,
                    "delta": delta,
                    "rid": rid,
                    "prev_hash": prev,
                    "hash": h,
                }
            )
            a |= {"latest_age": age, "balance": balance, "hash": h}
            result[account] = h
        reqs[rid] = {"kind": kind, "src": src, "dst": dst, "amount": amount, "result": result}
    return {"accounts": accounts, "requests": reqs}


REQUESTS = [
    ("create-my-0", "create", "", "my-0", 1000),
    ("create-pg-0", "create", "", "pg-0", 1000),
    ("t1", "transfer", "my-0", "pg-0", 30),
    ("t2", "transfer", "pg-0", "my-0", 5),
]


def _site() -> dict:
    ledger = _component(REQUESTS)
    auditor = _component(REQUESTS)
    for rid, q in auditor["requests"].items():
        q["proof"] = ledger["requests"][rid]["result"]
    return {"ledger": ledger, "auditor": auditor}


def _log() -> list[Entry]:
    return [
        Entry(
            rid,
            kind,
            src,
            dst,
            amount,
            sent=100.0 + i,
            ledger_acked=100.5 + i,
            acked=101.0 + i,
            outcome="acked",
        )
        for i, (rid, kind, src, dst, amount) in enumerate(REQUESTS)
    ]


WINDOW = (200.0, 210.0)


def test_a_consistent_copy_passes_every_rule():
    verdict = check(_site(), _log(), WINDOW)
    assert verdict.ok, verdict.summary()
    assert set(verdict.rules) == set(RULES)


def _only_failed(dumps: dict, log: list[Entry] | None = None) -> set[str]:
    verdict = check(dumps, _log() if log is None else log, WINDOW)
    assert not verdict.ok
    assert verdict.reasons
    return set(verdict.failed())


def test_a_torn_transfer_breaks_the_balances():
    site = _site()
    # the MariaDB half of t2 is missing (copied before it), the PostgreSQL half is there
    acc = site["ledger"]["accounts"]["my-0"]
    acc["chain"].pop()
    last = acc["chain"][-1]
    acc |= {"latest_age": last["age"], "balance": last["balance"], "hash": last["hash"]}
    failed = _only_failed(site)
    assert {"total_balance", "balances_match_records"} <= failed
    assert "hash_chains" not in failed  # the shortened history is itself a valid chain


def test_a_rewritten_history_row_breaks_the_chain():
    site = _site()
    site["auditor"]["accounts"]["pg-0"]["chain"][1]["rid"] = "forged"
    assert "hash_chains" in _only_failed(site)


def test_a_request_acknowledged_before_the_window_missing_from_the_auditor():
    site = _site()
    auditor = _component(REQUESTS[:3])
    for rid, q in auditor["requests"].items():
        q["proof"] = site["ledger"]["requests"][rid]["result"]
    site["auditor"] = auditor
    assert _only_failed(site) == {"components_agree"}


def test_an_auditor_proof_that_is_not_the_ledgers_result():
    site = _site()
    site["auditor"]["requests"]["t1"]["proof"] = {"my-0": "0" * 64, "pg-0": "0" * 64}
    assert _only_failed(site) == {"components_agree"}


def test_a_request_sent_after_the_window_opened_must_not_be_in_the_copy():
    log = _log()
    log[-1].sent, log[-1].ledger_acked, log[-1].acked = 205.0, 206.0, 207.0
    assert _only_failed(_site(), log) == {"nothing_after_window"}


def test_the_window_must_not_end_before_it_starts():
    with pytest.raises(ValueError):
        check(_site(), _log(), (2.0, 1.0))


def test_stall_counts_requests_sent_in_the_window():
    entries = [
        Entry("a", "transfer", "my-0", "pg-0", 1, sent=10.0, acked=10.1, outcome="acked"),
        Entry("b", "transfer", "my-0", "pg-0", 1, sent=11.0, acked=13.0, outcome="acked"),
        Entry("c", "transfer", "my-0", "pg-0", 1, sent=12.0, acked=13.0, outcome="acked"),
        Entry("d", "transfer", "my-0", "pg-0", 1, sent=12.5),  # never acknowledged
    ]
    s = stall(copy.deepcopy(entries), 11.0, 12.9)
    assert s.requests == 2
    assert s.max_ms == pytest.approx(2000)
    assert s.p50_ms == pytest.approx(1500)
    assert stall(entries, 20.0, 30.0).requests == 0
