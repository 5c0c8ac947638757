# Copy to environments/<ENVIRONMENT>.tfvars (e.g. production.tfvars): tools/terraform.sh passes
# that file to `terraform plan`. Nothing here is secret; credentials never go in a tfvars file.
# admin_cidrs and allowed_http_cidrs are not set here: tools/terraform.sh reads them from
# group_data/env_<ENVIRONMENT>.py, where the hosts' firewall takes them from.

region = "eu-west-1"

vpc_id           = "vpc-0123456789abcdef0"
proxy_subnet_ids = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3"]
lb_subnet_ids    = ["subnet-0bbbbbbbbbbbbbbb1", "subnet-0bbbbbbbbbbbbbbb2", "subnet-0bbbbbbbbbbbbbbb3"]
certificate_arn  = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
backend_cidrs    = ["10.20.0.0/16"]
ssh_key_name     = "proxies-deploy"

# The GitLab project whose CI assumes the CI roles (iam_ci.tf; applied once by an administrator).
gitlab_project_path = "mygroup/nginx-proxies"

# Two groups: "a" takes 90% of the traffic, the new group "b" (a newer Debian image) 10%.
proxy_groups = {
  a = { instance_count = 3, weight = 90 }
  b = { instance_count = 1, weight = 10, ami_name = "debian-13-amd64-20260101-*" }
}
