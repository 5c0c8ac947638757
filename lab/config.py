"""Names, addresses and paths of the lab: the one place they are decided (see docs/CONTRACTS.md)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

SUBNET = ipaddress.ip_network("10.77.0.0/24")
VPC_CIDR = "10.77.0.0/16"
BRIDGE = "plab0"
BRIDGE_ADDRESS = "10.77.0.1"  # the machine itself: the admin address pyinfra connects from
NFT_TABLE = "proxy_lab"  # the machine's own table for the lab's apt traffic (inet family)
NS_PREFIX = "plab-"
LINK_PREFIX = "plv-"

BACKEND_PORT = 8080
BACKEND_CONTROL_PORT = 9000  # on the backend namespace's loopback only: counters and fail rate
BACKEND_IDLE_TIMEOUT = 30  # seconds a keepalive connection may idle on the backend
APT_CACHE_PORT = 3142  # apt-cacher-ng on the bridge address (lab/aptcache.py)
AWS_PORT = int(os.environ.get("LAB_AWS_PORT", "5077"))
AWS_REGION = "eu-west-1"
AWS_ZONE = "eu-west-1a"
ENVIRONMENT = "lab"
LOG_BUCKET = "proxy-logs-lab"  # the lab's stand-in for terraform's access-log bucket
# The lab's load balancer (lab/lb.py) in its own namespace, driven by the fake ELBv2's weighted
# rule. Its name is terraform's local.name for the lab ("<name_prefix>-<environment>"); proxy
# group "a" is every proxy but the last, "b" (the new group a shift moves traffic to) the last.
LB_NAME = "proxy-lab"
LB_ADDRESS = "10.77.0.40"
LB_PORT = 80

STATE_DIR = Path(os.environ.get("LAB_STATE_DIR", "/var/lib/proxy-lab"))
CACHE_DIR = Path(os.environ.get("LAB_CACHE_DIR", "/var/cache/proxy-lab"))
MIRROR = "http://deb.debian.org/debian"
MIRROR_HOST = "deb.debian.org"
DEFAULT_SUITES = {1: "trixie", 2: "trixie", 3: "bookworm"}


@dataclass(frozen=True)
class Node:
    """One lab member: a booted container (`container`) or a bare network namespace."""

    name: str
    address: str
    role: str  # reverse-proxy | app | loadgen | outsider
    container: bool
    suite: str | None = None

    @property
    def netns(self) -> str:
        return NS_PREFIX + self.name

    @property
    def link(self) -> str:
        """Host side of the veth pair (15 characters at most)."""
        return (LINK_PREFIX + self.name)[:15]


def proxy_suite(index: int, suites: dict[int, str] | None = None) -> str:
    """Debian suite of proxy-INDEX: trixie unless told otherwise (proxy-3: bookworm)."""
    return (suites or DEFAULT_SUITES).get(index, "trixie")


def nodes(proxies: int, suites: dict[int, str] | None = None) -> list[Node]:
    """Every lab member for a lab of PROXIES proxies."""
    members = [
        Node("app-1", "10.77.0.10", "app", container=False),
        Node("loadgen", "10.77.0.20", "loadgen", container=False),
        Node("outsider", "10.77.0.30", "outsider", container=False),
        Node("lb", LB_ADDRESS, "load-balancer", container=False),
    ]
    members += [
        Node(f"proxy-{i}", f"10.77.0.{100 + i}", "reverse-proxy", True, proxy_suite(i, suites))
        for i in range(1, proxies + 1)
    ]
    return members


def proxy_group(index: int, proxies: int) -> str:
    """The lab's proxy group of proxy-INDEX: "b" for the last of several proxies, else "a"."""
    return "b" if proxies > 1 and index == proxies else "a"


def ssh_key_path() -> Path:
    return STATE_DIR / "ssh" / "id_ed25519"


def known_hosts_path() -> Path:
    return STATE_DIR / "ssh" / "known_hosts"


def state_file() -> Path:
    return STATE_DIR / "state.json"
