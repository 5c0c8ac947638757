"""Benchmarks on the lab (`make bench`): each prints its table and writes bench/results/NAME.json.

Run each from the repository's root as a module, e.g. `.venv/bin/python -m bench.reliability`:
- `reliability`: success and attempts per request against backend failure rate p and tries k;
- `overhead`: what the proxy's hop costs (wrk direct vs through proxy-1, and its access log);
- `deploy_cost`: first converge and no-op re-run for 1, 10, 50 fresh proxies;
- `inventory_build`: the EC2 inventory of 1,000 instances, as a fresh process, against a fake EC2;
- `chart`: the README's success-over-time chart (drawn by `python -m report`).
Helpers: `common` (the table and the JSON results file every bench writes), `static_backend`
(the overhead bench's nginx backend), `recorded_ec2` (a fake EC2 answering recorded pages).
"""
