"""A real goq cluster on one machine: hosts are Linux network namespaces linked to a switch (a
bridge in the server's namespace) by veth pairs, with addresses from a private test range.

Nothing here touches the root namespace's interfaces or routes: every link is created inside a
namespace of ours (`ip -n NS link add ... peer ... netns OTHER`), names carry a tag unique to
the run, and `close()` deletes the links and namespaces (after stopping every process by PID).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import GOQ, Cluster, wait_for

SUBNET = "10.77.0"  # a /24 that only ever exists inside the namespaces made here
PREFIX_LEN = 24
SWITCH = "sw0"  # the bridge, in the server's namespace
HOST_DEV = "eth0"  # each worker host's end of its link
IP_TIMEOUT = 15  # seconds for any one `ip` command
_PROBE = """import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=1).close()
except ConnectionRefusedError:
    sys.exit(0)
except OSError:
    sys.exit(1)
"""  # exit 0 when the address answered a connect to port 9 (discard), refused or not


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `ip ARGS...`; raise RuntimeError with its stderr when `check` and it fails."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT, stdin=subprocess.DEVNULL
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here, or None when they can.

    Tries, in a throw-away namespace, everything the harness needs: `ip netns add`, a veth pair,
    a bridge, and `ip netns exec` (which needs to mount /sys).
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"goqprobe{os.getpid()}{secrets.token_hex(2)}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        ip("-n", probe, "link", "add", "name", "a", "type", "veth", "peer", "name", "b")
        ip("-n", probe, "link", "add", "name", "br", "type", "bridge")
        ip("netns", "exec", probe, "true")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"network namespaces are too limited here: {exc}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


def netns_names() -> set[str]:
    """The names of the named network namespaces that exist now."""
    return {line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()}


def global_ipv4(text: str) -> list[str]:
    """The IPv4 addresses in `ip -4 -o addr` output (without their prefix length)."""
    return re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", text)


@dataclass(slots=True)
class Host:
    role: str  # what the test calls it: "server", "hostA"...
    ns: str  # the namespace's name, unique to this run
    address: str  # its IPv4 address in SUBNET
    port: str = ""  # its link's end on the switch (worker hosts only)


class Network:
    """A server host owning a switch, and worker hosts each linked to it by one veth pair."""

    def __init__(self, workers: Sequence[str] = ("hostA", "hostB"), server: str = "server"):
        self.tag = f"{os.getpid()}{secrets.token_hex(2)}"
        roles = [server, *workers]
        self.hosts = {
            role: Host(role, f"goq{self.tag}-{role}", f"{SUBNET}.{i}")
            for i, role in enumerate(roles, 1)
        }
        self.server = self.hosts[server]
        self.workers = [self.hosts[w] for w in workers]
        self._created: list[str] = []  # namespaces made so far, for close()

    def create(self) -> Network:
        """Make the namespaces and links; on any failure, remove what was made, then raise."""
        try:
            for host in self.hosts.values():
                ip("netns", "add", host.ns)
                self._created.append(host.ns)
                ip("-n", host.ns, "link", "set", "lo", "up")
            srv = self.server.ns
            ip("-n", srv, "link", "add", "name", SWITCH, "type", "bridge")
            ip("-n", srv, "addr", "add", f"{self.server.address}/{PREFIX_LEN}", "dev", SWITCH)
            ip("-n", srv, "link", "set", SWITCH, "up")
            for host in self.workers:
                host.port = f"p-{host.role}"[:15]
                ip("-n", srv, "link", "add", "name", host.port, "type", "veth",
                   "peer", "name", HOST_DEV, "netns", host.ns)  # fmt: skip
                ip("-n", srv, "link", "set", host.port, "master", SWITCH)
                ip("-n", srv, "link", "set", host.port, "up")
                ip("-n", host.ns, "addr", "add", f"{host.address}/{PREFIX_LEN}", "dev", HOST_DEV)
                ip("-n", host.ns, "link", "set", HOST_DEV, "up")
            for host in self.workers:  # links up and the switch forwarding: each reaches the server
                wait_for(
                    lambda h=host: self.reachable(h.role, self.server.address),
                    10,
                    f"{host.role} up",
                )
        except BaseException:
            self.close()
            raise
        return self

    # ------------------------------------------------------------------------------ use

    def exec_prefix(self, role: str) -> list[str]:
        """argv prefix that runs a command in host `role`'s namespace. `ip netns exec` execs the
        command, so the process started is the command itself (same PID)."""
        return ["ip", "netns", "exec", self.hosts[role].ns]

    def run(self, role: str, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.exec_prefix(role), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def reachable(self, role: str, address: str) -> bool:
        """True when host `role` reaches `address`: a TCP connect to a closed port there is
        refused (the far end answered) rather than timing out or finding no route."""
        return self.run(role, sys.executable, "-c", _PROBE, address).returncode == 0

    def in_namespace(self, pid: int, role: str) -> bool:
        """True when process `pid` lives in host `role`'s network namespace."""
        try:
            mine = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            return False
        theirs = os.stat(f"/run/netns/{self.hosts[role].ns}")
        return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)

    def cut(self, role: str) -> None:
        """Pull host `role`'s cable at the switch: its link's switch end goes down."""
        ip("-n", self.server.ns, "link", "set", self.hosts[role].port, "down")

    def mend(self, role: str) -> None:
        """Plug host `role`'s cable back in."""
        ip("-n", self.server.ns, "link", "set", self.hosts[role].port, "up")

    def pids(self, role: str) -> list[int]:
        """PIDs of the processes in host `role`'s namespace."""
        done = ip("netns", "pids", self.hosts[role].ns, check=False)
        return [int(p) for p in done.stdout.split()]

    # ------------------------------------------------------------------------------ teardown

    def close(self) -> list[int]:
        """Delete every link and namespace made. Returns the PIDs of processes still found in
        them (which are then killed by PID): a test may assert there were none."""
        leftovers: list[int] = []
        for ns in self._created:
            role = next(h.role for h in self.hosts.values() if h.ns == ns)
            stray = self.pids(role)
            leftovers += stray
            for pid in stray:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        srv = self.server.ns
        if srv in self._created:
            for host in self.workers:
                if host.port:
                    ip("-n", srv, "link", "del", host.port, check=False)  # both ends go
            ip("-n", srv, "link", "del", SWITCH, check=False)
        for ns in reversed(self._created):
            ip("netns", "del", ns, check=False)
        self._created.clear()
        return leftovers


class NetnsCluster(Cluster):
    """A goq cluster whose server runs in the network's server host and whose workers run in
    its worker hosts. Clients (`goq sub`, `stat`...) run in the server host unless told."""

    def __init__(self, root: Path, network: Network, port: int = 1776, **kw) -> None:
        super().__init__(root, **kw)
        self.net = network
        self.port = port  # the namespace is ours alone: goq's default port is free there
        self.env.update(GOQ_JSERV_IP=network.server.address, GOQ_JSERV_PORT=str(port))
        self.workers: dict[str, subprocess.Popen] = {}
        self.leftover_pids: list[int] = []

    def argv(self, args: tuple[str, ...], host: str = "") -> list[str]:
        """`goq ARGS` run in namespace `host` (default: the server's)."""
        return [*self.net.exec_prefix(host or self.net.server.role), *GOQ, *args]

    def spawn(self, *args: str, log: str, env=None, host: str = "") -> subprocess.Popen:
        role = host or self.net.server.role
        proc = super().spawn(*args, log=log, env=env, host=role)
        # `ip netns exec` execs goq in place: the PID we hold is goq's own, in that namespace
        wait_for(lambda: self._is_goq(proc, role), 10, f"goq {args[0]} to start in {role}")
        return proc

    def _is_goq(self, proc: subprocess.Popen, role: str) -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{role}: exited with {proc.returncode}")
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            return False
        goq = [os.fsencode(a) for a in GOQ]
        return argv[: len(goq)] == goq and self.net.in_namespace(proc.pid, role)

    def start_worker(self, host: str = "", log: str = "", mode: str = "forever"):  # type: ignore[override]
        role = host or self.net.workers[0].role
        proc = self.spawn("work", mode, log=log or f"worker-{role}.log", host=role)
        self.workers[role] = proc
        return proc

    def close(self) -> None:
        try:
            super().close()
            deadline = time.monotonic() + 5  # let the worker's guardians and jobs end
            while time.monotonic() < deadline and any(
                self.net.pids(h.role) for h in self.net.hosts.values()
            ):
                time.sleep(0.05)
        finally:
            self.leftover_pids = self.net.close()
