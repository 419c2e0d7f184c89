"""Separate hosts on one machine: Linux network namespaces joined by a bridge, made and removed by the test.

Each host is a namespace ``<prefix>-<name>`` with its own loopback and one ``eth0`` on a bridge that lives in
a namespace of its own (``<prefix>-net``), so the root namespace has no address on the test network and a
process on one host cannot reach another host's ``127.0.0.1``. Addresses come from 198.18.0.0/15, the range
set aside for network benchmarking (RFC 2544): they belong to these test hosts only. Everything is torn down
by :meth:`TestNet.close`, which deleting the namespaces does (their veth pairs go with them).

Needs root (``CAP_NET_ADMIN``) and ``ip`` from iproute2; :func:`available` says whether this machine can.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

SUBNET = "198.18.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def available() -> tuple[bool, str]:
    """Whether namespaces can be made here, and why not when they cannot."""
    if shutil.which("ip") is None:
        return False, "`ip` (iproute2) is not installed: apt-get install -y iproute2"
    if os.geteuid() != 0:
        return False, "network namespaces need root (CAP_NET_ADMIN)"
    probe = f"snprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return False, f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return True, ""


@dataclass
class TestNet:
    """Hosts on one bridged test network: ``address[name]`` is each host's IPv4 address."""

    __test__ = False  # not a pytest test class

    prefix: str
    names: list[str]
    address: dict[str, str] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def exec_prefix(self, name: str) -> list[str]:
        """Command prefix that runs a program on host ``name``."""
        return ["ip", "netns", "exec", self.ns(name)]

    def open(self) -> TestNet:
        self._add(f"{self.prefix}-net")
        net = f"{self.prefix}-net"
        _ip("-n", net, "link", "add", "br0", "type", "bridge")
        _ip("-n", net, "link", "set", "br0", "up")
        for i, name in enumerate(self.names, start=2):
            ns = self._add(self.ns(name))
            _ip("link", "add", "name", f"v{i}", "netns", net, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", net, "link", "set", f"v{i}", "master", "br0", "up")
            self.address[name] = f"{SUBNET}.{i}"
            _ip("-n", ns, "addr", "add", f"{self.address[name]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        return self

    def _add(self, ns: str) -> str:
        _ip("netns", "del", ns, check=False)  # a leftover of a killed run with the same prefix
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def cut(self, name: str) -> None:
        """Take host ``name`` off the network (its link goes down; its processes keep running)."""
        _ip("-n", self.ns(name), "link", "set", "eth0", "down")

    def run(self, name: str, cmd: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run ``cmd`` on host ``name`` and wait for it (bounded)."""
        return subprocess.run([*self.exec_prefix(name), *cmd], capture_output=True, text=True, timeout=timeout,
                              **kwargs)

    def close(self) -> None:
        for ns in reversed(self.made):
            _ip("netns", "del", ns, check=False)
        self.made.clear()

    def __enter__(self) -> TestNet:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
