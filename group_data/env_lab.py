"""Settings for the lab (instances tagged Environment=lab): its allowlists and load shape."""

# The machine running pyinfra (the lab bridge). The deploy refuses to run if its own address
# would be shut out by the new SSH rule.
admin_cidrs = ["10.77.0.1/32"]

# The legitimate traffic source (loadgen), the admin machine for health checks, and the lab's
# load balancer (lab/lb.py; on AWS: the load balancer's subnets, terraform's lb_subnet_cidrs).
# The outsider (10.77.0.30) is deliberately not here.
allowed_http_cidrs = ["10.77.0.20/32", "10.77.0.1/32", "10.77.0.40/32"]

# loadgen plays the load balancer too (terraform's output lb_subnet_cidrs in production): nginx
# takes the client address from its X-Forwarded-For, so per-client limits see the clients behind
# it (tests/test_trust_lab.py). Its own requests carry no such header and count as its own.
lb_subnet_cidrs = ["10.77.0.20/32"]

# In the lab one address (loadgen) stands for every client, and the load tests send a few
# hundred requests a second from it: the per-client limits are raised so they measure the
# retries, not the rate limiter. In production the limits apply per real client address.
rate_limit_rps = 5000
rate_limit_burst = 5000
conn_limit_per_client = 1000

# Logs go to the fake AWS's S3 (moto on the lab bridge), with its test credentials: on EC2 the
# instance role is used and log_shipping_env stays empty.
log_bucket = "proxy-logs-lab"
log_shipping_env = {
    "AWS_ENDPOINT_URL": "http://10.77.0.1:5077",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
