"""Where nginx comes from: the distribution (default) or nginx.org's stable repository.

Declares the packages `nginx`, `curl` (curl runs the post-reload health check) and `logrotate`
(the nginx package's daily rotation needs it; minimal images lack it): tasks/packages.py installs
them with the others, in one transaction. Owns, for
`nginx_source = "nginx.org"` also `gnupg` and the files
/usr/share/keyrings/nginx-archive-keyring.asc,
/etc/apt/sources.list.d/nginx-org.list and /etc/apt/preferences.d/90-nginx-org.
Reads: nginx_source.
Leaves alone: the nginx configuration (tasks/nginx_proxy.py) and the service state.
"""

from __future__ import annotations

from shlex import quote

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server
from pyinfra.operations.util import any_changed

from tasks.activation import TEMPLATES
from tasks.apt_packages import ensure_installed
from tasks.facts import fact
from tasks.settings import for_host

PACKAGES = ("nginx", "curl", "logrotate")

# nginx.org package repository (nginx_source = "nginx.org"). The key file at NGINX_ORG_KEY_URL
# holds three signing keys; refuse a key file whose fingerprints are not exactly these.
# Source: nginx.org's linux_packages page documents 573BFD6B... ("the output can contain other
# keys used to sign the packages"); the other two (added 2024-05-29 for future releases) are the
# rest of that file as published in the nginx/nginx.org repository (text/keys/nginx_signing.key),
# listed with `gpg --dry-run --quiet --no-keyring --import --import-options import-show`.
NGINX_ORG_KEY_URL = "https://nginx.org/keys/nginx_signing.key"
NGINX_ORG_KEY_FINGERPRINTS = frozenset(
    {
        "573BFD6B3D8FBC641079A6ABABF5BD827BD9BF62",  # rsa2048, 2011-08-19, expires 2027-05-24
        "8540A6F18833A80E9C1653A42FD21310B49F6B46",  # rsa4096, 2024-05-29
        "9E9BE90EACBCDE69FE9B204CBCDCD8A38D88A2B3",  # rsa4096, 2024-05-29
    }
)
# apt (2.4+) reads an ASCII-armoured key from a `.asc` signed-by file: no gpg --dearmor on the host.
# The directory is the one nginx.org's instructions use.
NGINX_ORG_KEYRING = "/usr/share/keyrings/nginx-archive-keyring.asc"


@deploy("nginx's package source")
def package_source() -> None:
    """Nothing to do for the distribution's nginx; nginx.org's repository otherwise."""
    if for_host(host).nginx_source == "nginx.org":
        nginx_org_repository()


@deploy("Add the nginx.org stable repository")
def nginx_org_repository() -> None:
    """nginx.org's signed repository, pinned above the distribution's nginx (newer features:
    `resolve` on upstream servers needs 1.27.3+). The signing keys are downloaded once and
    installed only if their fingerprints are exactly the ones nginx.org documents; until they
    are, apt refuses the repository (signed-by), so nothing unverified is ever installed."""
    distro = fact(LinuxDistribution)
    meta = distro["release_meta"]
    ensure_installed(
        ["gnupg", "ca-certificates", "curl"],
        "Install gnupg (to check nginx.org's key) and ca-certificates",
    )
    source = files.template(
        name="Install /etc/apt/sources.list.d/nginx-org.list",
        src=f"{TEMPLATES}/nginx/nginx-org.list.j2",
        dest="/etc/apt/sources.list.d/nginx-org.list",
        vendor=(distro.get("name") or "debian").split()[0].lower(),
        codename=meta.get("VERSION_CODENAME") or meta.get("CODENAME"),
        keyring=NGINX_ORG_KEYRING,
    )
    files.template(
        name="Pin nginx to nginx.org in /etc/apt/preferences.d/90-nginx-org",
        src=f"{TEMPLATES}/nginx/nginx-org.pref.j2",
        dest="/etc/apt/preferences.d/90-nginx-org",
    )
    key = None
    if not fact(File, path=NGINX_ORG_KEYRING):
        key = server.shell(
            name=f"Install nginx.org's signing keys at {NGINX_ORG_KEYRING} (fingerprints checked)",
            commands=[fetch_checked_key_command()],
        )
    apt.update(
        name="Refresh package lists (nginx.org repository added)",
        _if=any_changed(*(op for op in (key, source) if op is not None)),
    )


def fetch_checked_key_command() -> str:
    """Shell: download nginx.org's key file, list its primary key fingerprints with gpg, and
    install it only when they are exactly NGINX_ORG_KEY_FINGERPRINTS."""
    expected = " ".join(sorted(NGINX_ORG_KEY_FINGERPRINTS))
    primaries = (
        'gpg --show-keys --with-colons "$tmp"'
        " | awk -F: '/^pub/{p=1;next} p&&/^fpr/{print $10;p=0}'"
        " | sort | tr '\\n' ' ' | sed 's/ $//'"
    )
    # Every failure exits non-zero (a `; rm` at the end used to turn a failed download into
    # success). Bounded: where nginx.org is unreachable (dropped, not refused) the run fails in
    # seconds, not after two minutes of TCP retries.
    return (
        'tmp=$(mktemp); fail() { echo "$1" >&2; rm -f "$tmp"; exit 1; }; '
        f"curl -fsSL --connect-timeout 15 --max-time 60 {quote(NGINX_ORG_KEY_URL)}"
        ' -o "$tmp" || fail "could not download nginx.org\'s signing keys"; '
        f"found=$({primaries}); "
        f'[ "$found" = {quote(expected)} ] || fail "nginx.org key fingerprints $found are not'
        f' the expected {expected}"; '
        f'install -m 644 "$tmp" {NGINX_ORG_KEYRING} && rm -f "$tmp"'
    )
