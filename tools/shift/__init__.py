"""Progressive traffic shift to a new proxy group, with automatic rollback (docs/shift.md).

    python -m tools.shift --to GROUP [--load-balancer NAME | --rule-arn ARN]
                          [--steps 5,25,50,100] [--interval 120] [--settle 10]
                          [--min-requests 200] [--max-wait 360] [--report shift-report]
    python -m tools.shift --to GROUP --rollback      new group to 0 now, nothing else

The load balancer's weighted listener rule (terraform/lb.tf, `aws_lb_listener_rule.weighted`)
forwards to one target group per proxy group. The shift moves the new group's share of the
traffic through the steps by ModifyRule. At each step it waits `--settle` seconds for the load
balancer to apply the weights, then `--interval` seconds, and compares the two groups over that
same window, from the proxies' own JSON access logs (read over SSH from the offset each log had
when the window opened: only the window's lines cross the network). The figures, for each group:

- client success: the share of served requests whose final status is a success (report/analyze:
  below 500 and not 499; blocked scanner paths are left out);
- first-attempt failure: the share of requests that reached a backend whose first attempt failed
  (what clients would see without the retries);
- p99 latency: the 99th percentile of nginx's request_time;
- answered without a backend: the share nginx answered itself (429 of a rate limit keyed on the
  load balancer, 405...), a success for the report but not what the old group does with the
  same traffic.

A step passes when the new group is not worse than the old one by more than a margin, on each
figure. Rates are compared with a noise allowance: a rate fails when it is worse by more than
`margin + Z x standard error of the difference` (Z = 3; the pooled standard error of a
two-proportion z-test), so a few hundred requests do not roll a healthy group back by chance, and
a broken one (80% success against 99.9%) still fails at once.
p99 fails when above `old p99 x ratio + slack`. A group with fewer than `--min-requests` in the
window is not judged: the window grows until `--max-wait`, then the shift rolls back (no
verdict without traffic). At 100% the old groups receive nothing: the baseline is then the old
groups' figures from the last step that had them.

A failed step, an error reading the logs, or an error of the load balancer's API after the first
change: the new group's weight goes back to 0 (the old groups get its share back), a report is
written, exit 1 (3 for an error). The weights are always read from the load balancer, never
assumed: a rerun after a kill resumes from the share it finds (that share is checked again over a
fresh window, then the next steps follow); `--rollback` puts the new group to 0 at once.
SIGINT/SIGTERM stop the shift where it is (weights left as they are) with the report written.

Exit codes: 0 the new group takes 100% (or already did; or --rollback done), 1 rolled back by a
failed step, 2 bad settings (nothing touched), 3 an error (rolled back when something had moved),
130 interrupted (weights left as they are: run again to resume, or --rollback).

Owns: the weights of the weighted rule during a shift. Leaves alone: which groups the rule
forwards to (Terraform), the proxies (deploy.py), what a log line means (report/).

The modules, one concern each:
- `errors`: what can stop a shift, and the exit codes;
- `settings`: the options, checked before the load balancer is asked anything;
- `elb`: the weighted rule on the load balancer (ELBv2 calls) and the weights for a share;
- `logs`: the proxies' access logs over SSH, read by window, as samples;
- `judge`: a window's figures per group and the verdict of a step;
- `steps`: the step loop: plan (resume from the share found), set, measure, roll back;
- `report`: the report of a shift, as text for a person and JSON;
- `cli`: the command line (`__main__` runs it).
"""
