"""Test-only DNS server on 127.0.0.1 (UDP) that answers SRV questions from a table.

Names are absolute, lower case, with the final dot ("_admin._tcp.ledger.test.").
  srv:     name -> ["priority weight port target.", ...]  (NOERROR with those records)
  empty:   names that exist but have no SRV records       (NOERROR, empty answer)
  silent:  names never answered                           (the client times out)
  servfail: names answered with SERVFAIL
Anything else is NXDOMAIN.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Mapping

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype


class TinyDnsServer:
    def __init__(
        self,
        srv: Mapping[str, Iterable[str]] | None = None,
        *,
        empty: Iterable[str] = (),
        silent: Iterable[str] = (),
        servfail: Iterable[str] = (),
    ) -> None:
        self.srv = {k.lower(): list(v) for k, v in (srv or {}).items()}
        self.empty = {n.lower() for n in empty}
        self.silent = {n.lower() for n in silent}
        self.servfail = {n.lower() for n in servfail}
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tiny-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()
        return f"{host}:{port}"

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text().lower()
        self.queries.append(name)
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.srv and question.rdtype == dns.rdatatype.SRV:
            rrset = response.find_rrset(
                response.answer, question.name, dns.rdataclass.IN, dns.rdatatype.SRV, create=True
            )
            for text in self.srv[name]:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.SRV, text), ttl=30)
        elif name in self.srv or name in self.empty:
            pass  # the name exists, but not with this type: NOERROR and no answer
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                response = self._answer(dns.message.from_wire(data))
            except Exception:  # a malformed query: ignore it, as a real server would
                continue
            if response is not None:
                self._sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    def __enter__(self) -> TinyDnsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
