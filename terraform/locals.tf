# Values shared by several files, and the contract with the deploy (tests/test_terraform.py checks
# them against the inventory defaults and the rollout settings).

locals {
  name = "${var.name_prefix}-${var.environment}"

  # nginx answers plain HTTP on this port: the load balancer and the health checks use it.
  http_port = 80
  ssh_port  = 22

  # Answered by nginx itself (`location = /healthz { return 200; }`), never by the backend: a check
  # that reached the backend would take proxies out of service whenever the backend has a bad moment.
  health_check_path = "/healthz"

  # One entry per proxy, keyed by its Name tag (= the pyinfra host name): "<prefix>-<group>-<n>".
  # Instances of a group are spread over proxy_subnet_ids in order (one subnet per AZ => per-AZ spread).
  proxies = merge([
    for group, spec in var.proxy_groups : {
      for i in range(spec.instance_count) : "${var.name_prefix}-${group}-${i + 1}" => {
        group         = group
        ami_name      = coalesce(spec.ami_name, var.debian_ami_name)
        instance_type = coalesce(spec.instance_type, var.instance_type)
        subnet_id     = var.proxy_subnet_ids[i % length(var.proxy_subnet_ids)]
      }
    }
  ]...)

  ami_names = toset([for spec in values(var.proxy_groups) : coalesce(spec.ami_name, var.debian_ami_name)])
}
