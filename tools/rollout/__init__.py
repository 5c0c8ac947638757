"""Roll the deploy out to the proxies, check their health, detect and repair drift.

Used by the GitLab CI jobs (through the Makefile) and by people, with the same commands:

    python -m tools.rollout [deploy] [--canary HOST] [--batches LIST] [--max-fail-percent P] [--dry]
    python -m tools.rollout canary [--canary HOST]   one host (default: the first proxy), gated
    python -m tools.rollout fleet [--canary HOST]    the other proxies, in batches, after a canary
    python -m tools.rollout verify                   every proxy's health; deploys nothing
    python -m tools.rollout drift [--report FILE]    dry run: which host would change, and how
    python -m tools.rollout repair [--report FILE]   re-deploy the drifted proxies, check again
    python -m tools.rollout join-drift [--report FILE]   the shards' drift reports as one (below)

fleet, verify, drift and repair also take --shard I/N (below).

deploy = canary + fleet. Hosts come from `python -m inventories.aws --json` (docs/CONTRACTS.md: a
JSON list of {"name", "ssh_hostname", "groups", "data"} in host-name order), filtered to the
`proxies` group. Each batch is deployed with
`pyinfra -y --json INVENTORY deploy.py --limit HOST...`; then every host of the batch must pass
the health gate: GET http://<ssh_hostname>:80/healthz and /readyz answer 200 (nginx itself, then
a request through to the backend).

Batches (--batches, like Ansible's `serial`): a comma-separated list whose items are counts (1 or
more) or percentages (1% to 100%) of the hosts of the rollout, canary included, rounded down and
at least 1. The last item repeats until every host is in a batch; the canary is always the first
host of the first batch. `1,25%,100%` on 8 hosts: the canary, then 2 hosts, then the other 5.
`--batch-size N` is the same as `--batches 1,N`; giving both is an error. `fleet` runs the same
plan without the canary (the `canary` job deployed it), `repair` over the drifted hosts only.

Failure tolerance (--max-fail-percent, like Ansible's `max_fail_percentage`): the rollout stops
when the hosts of one batch that failed their deploy or their gate are more than that percentage
of the batch; hosts of later batches are left untouched. The default, 0, stops at the first
failed host. Below the limit the failures are logged and the rollout goes on; it still exits 1.

Shards (--shard I/N, else GitLab's CI_NODE_INDEX/CI_NODE_TOTAL, which `parallel: N` sets): a
fleet too large for one job is split into N jobs, each taking the proxies of its shard. A host's
shard is sha256(key) mod N, plus 1 (not Python's hash(), which changes with every process), where
the key is its EC2 instance id (`ec2_instance_id` in the inventory's data); a host the inventory
gives no instance id is placed by its name, and the run lists it. A host's shard depends on its
own key and N only: it stays in its shard when other hosts come and go (changing N reshuffles).
1/1 is the whole fleet. fleet, verify, drift and repair take a shard; deploy and canary refuse one,
because the canary is deployed once, by the `canary` run before the shards. In a shard, `fleet`
picks the canary from the whole inventory (every shard agrees on it) and checks it first, as
without shards, then deploys the shard's own hosts in the shard's own batches (percentages of the
shard's hosts, the canary first and then left out when it is in the shard, else the shard's first
host); --max-fail-percent counts per batch of the shard, and a failure stops that shard only. A
shard with no host succeeds and says "shard I/N: no hosts"; an inventory with no proxy at all is
still an error. --report FILE becomes FILE-shard-I-of-N (drift-report-shard-2-of-3.txt and .json),
so the shards' files never collide; `join-drift --report drift-report.txt` reads every
drift-report-shard-*-of-*.json beside it and writes drift-report.txt and .json for the whole fleet
(exit 4 when a shard's report is missing, or the reports come from different shard counts).

Every decision comes from machine-readable output, never from pyinfra's log (a reworded message
must not turn a failure into a pass):

- Deploy: the JSON results of `pyinfra -y --json` on stdout. A host is deployed only if the
  results mention it, it is not in "failed_hosts" (unreachable hosts are there) and no operation
  lists it under "error". No results at all (pyinfra stops before printing them when every host
  failed, "No hosts remaining!"): every host of the batch failed. pyinfra's log goes on to our
  stderr as it comes; its last lines are repeated for the human on a failure, never read.
- Drift: `pyinfra --dry --json` (WITHOUT -y, which skips change detection), plus the lines the
  deploy itself writes to the file named by PROXY_DEPLOY_DRIFT_FILE (tasks/drift.py; one JSON
  object per line: "checked" for each host it planned, then "file" (a unified diff), "state"
  (one line: what runs and what should) and "invalid" (the repair would fail nginx -t / sshd -t /
  nft -c) records). A host drifted when it has a record or an operation of the plan lists it in
  "hosts_with_change". "hosts_with_conditional_change" is ignored: operations gated with `_if=`
  (e.g. "reload nginx if the config changed") are listed there on every run. A host without its
  "checked" line was not reached: it is reported as not checked.

The load balancer's view (--load-balancer or --target-group-arn): the probe above goes from
the runner to each proxy's private address, but the load balancer connects from its own subnets,
so a firewall that admits the runner and not the load balancer passes the probe while the load
balancer sees the proxy unhealthy. With target groups, every proxy the run gates must be
registered (by its EC2 instance id) in one of them (checked before any host is touched, exit 2
otherwise), and after its probe the gate waits, with the same attempts and interval, until ELBv2
DescribeTargetHealth says `healthy` in each group it is in; otherwise it fails with AWS's State,
Reason and Description. An AWS error (no credentials, unknown ARN) is exit 4 with AWS's message.
--load-balancer NAME (CI's default: proxy-$ENVIRONMENT) stands for every target group of that
load balancer, looked up once (DescribeLoadBalancers, DescribeTargetGroups) before any host is
touched; a name that is not found is exit 4, naming the region.

This package owns the order of hosts, the health gate and the reports. It leaves alone what is
deployed (deploy.py, tasks/) and which hosts exist (inventories/). Its modules, one job each:
settings.py (the validated settings), hosts.py (inventory, canary, shards, batches), gate.py (the
health gate), results.py (what a deploy did), drift.py (dry run, reports, join), pyinfra_cmd.py
(running pyinfra), lb_health.py (the load balancer's view), run.py (batches and the failure
tolerance), commands.py (the modes), cli.py
(the command line); errors.py holds the exit codes.

Settings (command-line option > environment variable > default):

    --inventory         PROXY_INVENTORY           inventories/aws.py
    --canary            CANARY_HOST               the first proxy of the inventory
    --batches           ROLLOUT_BATCHES           1,1    batch sizes, e.g. 1,25%,100% (above)
    --batch-size        ROLLOUT_BATCH_SIZE        1      N = --batches 1,N
    --max-fail-percent  ROLLOUT_MAX_FAIL_PERCENT  0      0-100: failed hosts a batch tolerates
    --health-port       HEALTH_PORT               80
    --health-check      HEALTH_CHECKS             /healthz=200,/readyz=200   PATH=STATUS, all pass
    --health-timeout    HEALTH_TIMEOUT            5      seconds per request
    --health-attempts   HEALTH_ATTEMPTS           6      tries before a host counts as unhealthy
    --health-interval   HEALTH_INTERVAL           5      seconds between tries
    --health-host       HEALTH_HOST               (the address)  Host header of the checks; set it
                                                  to a served name when nginx's `server_names` is
                                                  set (its catch-all server answers /healthz only)
    --target-group-arn  ROLLOUT_TARGET_GROUP_ARNS (none)  the load balancer's target groups
                                                  (repeatable; the variable: comma-separated, or
                                                  `terraform output -json target_group_arns`):
                                                  the gate also waits for the load balancer's
                                                  view (below)
    --load-balancer     ROLLOUT_LOAD_BALANCER     (none)  or the load balancer by name: each of
                                                  its target groups (not with the above at the
                                                  same level: refused)
    --shard             CI_NODE_INDEX and         (every proxy)  I/N: shard I of N (above); an
                        CI_NODE_TOTAL             empty CI_NODE_INDEX is no shard (GitLab sets
                                                  CI_NODE_TOTAL=1 on every job without parallel)

A command-line batch option beats both environment variables; --batches and --batch-size
together (or ROLLOUT_BATCHES and ROLLOUT_BATCH_SIZE together) are refused.

Exit codes:
    0  done: every host deployed and healthy / all healthy / no drift
    1  a host failed its deploy or its health gate / a host is unhealthy
    2  bad usage or setting (the message names it), e.g. a canary that is not a proxy
    3  drift: a host would be changed by the deploy (after `repair`: still would)
    4  could not work: inventory unreadable or empty, pyinfra output unreadable, a host not checked
"""

from tools.rollout.cli import build_parser, main
from tools.rollout.commands import Actions, Output
from tools.rollout.drift import DryRun, format_drift_report, parse_dry_run
from tools.rollout.errors import (
    EXIT_DRIFT,
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    RolloutError,
)
from tools.rollout.gate import HealthResult, health_gate
from tools.rollout.hosts import Host, parse_inventory_json, plan_batches
from tools.rollout.results import DeployRun, parse_deploy_results
from tools.rollout.run import RolloutResult, roll_out
from tools.rollout.settings import (
    DEFAULT_CHECKS,
    HEALTH_PATH,
    HEALTH_PORT,
    BatchItem,
    Check,
    Settings,
    Shard,
)

# The names other parts of the repository imported from the single-file tools/rollout.py,
# kept here so their imports still work; inside the package, import from the module itself.
__all__ = [
    "DEFAULT_CHECKS",
    "EXIT_DRIFT",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "HEALTH_PATH",
    "HEALTH_PORT",
    "Actions",
    "BatchItem",
    "Check",
    "DeployRun",
    "DryRun",
    "HealthResult",
    "Host",
    "Output",
    "RolloutError",
    "RolloutResult",
    "Settings",
    "Shard",
    "build_parser",
    "format_drift_report",
    "health_gate",
    "main",
    "parse_deploy_results",
    "parse_dry_run",
    "parse_inventory_json",
    "plan_batches",
    "roll_out",
]
