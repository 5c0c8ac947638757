"""The lab network: a bridge on the machine, one network namespace and veth pair per member,
and a narrow path to the Debian mirror (forwarding + masquerade to the mirror's addresses, port 80,
for the lab subnet only). Nothing else leaves the lab."""

from __future__ import annotations

import socket
from pathlib import Path

from lab import config
from lab.config import Node
from lab.sh import LabError, ok, run

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


def mirror_addresses() -> list[str]:
    """The IPv4 addresses of the Debian mirror, as this machine resolves them."""
    try:
        infos = socket.getaddrinfo(config.MIRROR_HOST, 80, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise LabError(f"cannot resolve {config.MIRROR_HOST} for the hosts' apt: {exc}") from exc
    return sorted({info[4][0] for info in infos})


def ensure_bridge() -> None:
    if not ok(["ip", "link", "show", config.BRIDGE]):
        run(["ip", "link", "add", config.BRIDGE, "type", "bridge"])
        run(
            [
                "ip",
                "addr",
                "add",
                f"{config.BRIDGE_ADDRESS}/{config.SUBNET.prefixlen}",
                "dev",
                config.BRIDGE,
            ]
        )
    run(["ip", "link", "set", config.BRIDGE, "up"])


def ensure_member(node: Node) -> None:
    """A namespace for NODE with its address on the bridge; a default route through the machine."""
    if not Path(f"/run/netns/{node.netns}").exists():
        run(["ip", "netns", "add", node.netns])
    if not ok(["ip", "link", "show", node.link]):
        run(
            [
                "ip",
                "link",
                "add",
                node.link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.netns,
            ]
        )
        run(["ip", "link", "set", node.link, "master", config.BRIDGE, "up"])
        cidr = f"{node.address}/{config.SUBNET.prefixlen}"
        run(["ip", "-n", node.netns, "addr", "add", cidr, "dev", "eth0"])
        run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
        run(["ip", "-n", node.netns, "route", "add", "default", "via", config.BRIDGE_ADDRESS])


def ensure_mirror_path(state: dict) -> None:
    """Let the lab subnet reach the mirror's port 80, and nothing else outside the lab."""
    if "ip_forward_before" not in state:
        state["ip_forward_before"] = IP_FORWARD.read_text().strip()
    mirrors = ", ".join(mirror_addresses())
    subnet = str(config.SUBNET)
    ruleset = f"""
table inet {config.NFT_TABLE}
delete table inet {config.NFT_TABLE}
table inet {config.NFT_TABLE} {{
    set mirror {{ type ipv4_addr; elements = {{ {mirrors} }} }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{config.BRIDGE}" oifname "{config.BRIDGE}" accept
        iifname "{config.BRIDGE}" ip saddr {subnet} ip daddr @mirror tcp dport 80 accept
        iifname "{config.BRIDGE}" drop
        oifname "{config.BRIDGE}" ct state established,related accept
        oifname "{config.BRIDGE}" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} ip daddr @mirror masquerade
    }}
}}
"""
    run(["nft", "-f", "-"], input=ruleset)
    IP_FORWARD.write_text("1\n")


def remove_all(state: dict, members: list[Node]) -> None:
    """Remove every namespace, link, table and the bridge the lab makes; safe to repeat."""
    for node in members:
        if ok(["ip", "link", "show", node.link]):
            run(["ip", "link", "del", node.link], check=False)
        if Path(f"/run/netns/{node.netns}").exists():
            run(["ip", "netns", "del", node.netns], check=False)
    if ok(["ip", "link", "show", config.BRIDGE]):
        run(["ip", "link", "del", config.BRIDGE], check=False)
    if ok(["nft", "list", "table", "inet", config.NFT_TABLE]):
        run(["nft", "delete", "table", "inet", config.NFT_TABLE], check=False)
    before = state.pop("ip_forward_before", None)
    if before is not None:
        IP_FORWARD.write_text(f"{before}\n")


def lab_namespaces() -> list[str]:
    """Namespaces with the lab's prefix that exist now (for `down` and its test)."""
    netns_dir = Path("/run/netns")
    if not netns_dir.exists():
        return []
    return sorted(p.name for p in netns_dir.iterdir() if p.name.startswith(config.NS_PREFIX))


def lab_links() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False)
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    return [n for n in names if n.startswith(config.LINK_PREFIX) or n == config.BRIDGE]
