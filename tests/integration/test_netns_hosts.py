"""The many-machines harness itself (harness/netns.py): hosts as network namespaces on
loopback-range addresses, reaching the test's servers only through the network's relays."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import netns

pytestmark = pytest.mark.integration

FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())\n"
    "except Exception as e:\n"
    "    print('ERR', type(e).__name__); sys.exit(3)\n"
)


@pytest.fixture
def network() -> Iterator[netns.Network]:
    why = netns.available()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"network namespaces unavailable in CI: {why}")
        pytest.skip(why)
    with netns.Network.free() as net:
        yield net


@pytest.fixture
def web() -> Iterator[int]:
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"hello from {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch(host: netns.Host, url: str) -> subprocess.CompletedProcess:
    return host.run([sys.executable, "-c", FETCH, url])


def test_hosts_reach_forwarded_servers_and_each_other_but_not_the_test_loopback(network, web):
    a, b = network.host("a"), network.host("b")
    assert a.address != b.address and a.address.startswith("127.100.")
    addr, port = network.forward(web)
    got = fetch(a, f"http://{addr}:{port}/")
    assert got.returncode == 0 and got.stdout.startswith("hello from 127.0.0.1"), got
    # The test's own 127.0.0.1 is another machine's loopback: not reachable from a host.
    assert fetch(a, f"http://127.0.0.1:{web}/").returncode == 3
    # Host to host, over the bridge.
    srv = b.popen([sys.executable, "-m", "http.server", "18080", "--bind", b.address])
    try:
        for _ in range(50):
            got = fetch(a, f"http://{b.address}:18080/")
            if got.returncode == 0:
                break
            subprocess.run(["sleep", "0.1"])
        assert got.returncode == 0, got
    finally:
        srv.kill()
        srv.wait()


def test_a_cut_route_fails_at_once_and_mends(network, web):
    a = network.host("a")
    addr, port = network.forward(web)
    a.cut(addr)
    got = fetch(a, f"http://{addr}:{port}/")
    assert got.returncode == 3 and "ERR" in got.stdout
    a.mend(addr)
    assert fetch(a, f"http://{addr}:{port}/").returncode == 0


def test_kill_all_ends_every_process_of_the_host_and_down_removes_it(network):
    a = network.host("a")
    procs = [a.popen(["sleep", "300"]) for _ in range(2)]
    grandchild = a.popen(["sh", "-c", "sleep 300 & wait"])
    for _ in range(100):  # the shell forks its sleep a moment later
        if len(a.pids()) >= 4:
            break
        subprocess.run(["sleep", "0.05"])
    assert len(a.pids()) >= 4
    killed = a.kill_all()
    assert {p.pid for p in procs} <= set(killed)
    assert all(p.poll() is not None for p in [*procs, grandchild])
    assert a.pids() == []
    name = a.netns
    network.down()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert name not in listed
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert network.bridge not in links
