# Inputs. Every variable has a type, a description and, where one is safe, a default.
# Values per environment go in a *.tfvars file or TF_VAR_* variables (see docs/provisioning.md).

# --- Where -------------------------------------------------------------------------------------

variable "region" {
  description = "AWS region of the proxies. The inventory must query the same one (EC2_INVENTORY_REGIONS)."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Value of the Environment tag; the inventory selects hosts by it (ENVIRONMENT). Also names resources."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,11}$", var.environment))
    error_message = "environment must be 1-12 characters: lower-case letters, digits and '-', starting with a letter (it goes into load balancer names, max 32 characters)."
  }
}

variable "name_prefix" {
  description = "Prefix of resource names and of the proxies' Name tags (<name_prefix>-<group>-<n>), which become pyinfra host names."
  type        = string
  default     = "proxy"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,9}$", var.name_prefix))
    error_message = "name_prefix must be 1-10 characters: lower-case letters, digits and '-', starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC that holds the proxies, the load balancer and the backends."
  type        = string
}

variable "proxy_subnet_ids" {
  description = "Private subnets for the proxies, ideally one per availability zone. Instances are spread over them in order."
  type        = list(string)

  validation {
    condition     = length(var.proxy_subnet_ids) >= 1
    error_message = "proxy_subnet_ids needs at least one subnet."
  }
}

variable "lb_subnet_ids" {
  description = "Subnets of the load balancer (public ones unless lb_internal), in at least two availability zones."
  type        = list(string)

  validation {
    condition     = length(var.lb_subnet_ids) >= 2
    error_message = "An application load balancer needs subnets in at least two availability zones."
  }
}

# --- Proxies -----------------------------------------------------------------------------------

variable "proxy_groups" {
  description = <<-EOT
    Groups of proxies, each with its own target group. The listener rule sends each group
    `weight` / (sum of weights) of the traffic, so a new group (new AMI, new instance type)
    can take a small share first. Keys are short names (1-6 characters: a-z, 0-9) used in
    the instances' Name tags. `ami_name` and `instance_type` override the defaults per group.
  EOT
  type = map(object({
    instance_count = number
    weight         = number
    ami_name       = optional(string)
    instance_type  = optional(string)
  }))
  default = {
    a = { instance_count = 2, weight = 100 }
  }

  validation {
    condition     = length(var.proxy_groups) >= 1 && length(var.proxy_groups) <= 5
    error_message = "proxy_groups needs 1 to 5 groups (a forward action takes at most 5 target groups)."
  }

  validation {
    condition     = alltrue([for k in keys(var.proxy_groups) : can(regex("^[a-z0-9]{1,6}$", k))])
    error_message = "proxy_groups keys must be 1-6 characters: a-z and 0-9."
  }

  validation {
    condition     = alltrue([for g in values(var.proxy_groups) : g.weight >= 0 && g.weight <= 999 && g.instance_count >= 0])
    error_message = "Each group needs 0 <= weight <= 999 and instance_count >= 0."
  }

  validation {
    condition     = anytrue([for g in values(var.proxy_groups) : g.weight > 0 && g.instance_count > 0])
    error_message = "At least one group with instances must have a weight above 0, or no traffic reaches any proxy."
  }
}

variable "debian_ami_owner" {
  description = "AWS account that publishes the official Debian images."
  type        = string
  default     = "136693071363"
}

variable "debian_ami_name" {
  description = "Name pattern of the official Debian 13 (trixie) image; the most recent match is used. Must match ami_architecture."
  type        = string
  default     = "debian-13-amd64-*"
}

variable "ami_architecture" {
  description = "Architecture of the image (x86_64 or arm64); must suit instance_type."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.ami_architecture)
    error_message = "ami_architecture must be x86_64 or arm64."
  }
}

variable "instance_type" {
  description = "Default instance type of the proxies."
  type        = string
  default     = "t3.small"
}

variable "associate_public_ip" {
  description = "Give the proxies public IPs. Off: they sit in private subnets behind the load balancer, and the deploy reaches them over the VPC."
  type        = bool
  default     = false
}

variable "ssh_key_name" {
  description = "EC2 key pair installed for the login user `admin` (the public half of the CI's DEPLOY_SSH_KEY). null: none."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Size of the encrypted root volume in GiB."
  type        = number
  default     = 16
}

variable "root_volume_kms_key_id" {
  description = "KMS key for the root volumes. null: the account's default EBS key."
  type        = string
  default     = null
}

# --- Who may talk to what ----------------------------------------------------------------------
# admin_cidrs and allowed_http_cidrs are the lists the hosts' own nftables firewall uses
# (group_data/env_<ENVIRONMENT>.py): tools/terraform.sh reads them from there and passes them in.
# Every CIDR list takes IPv4 and IPv6 networks, as the hosts' firewall does: a network with a ":"
# becomes a rule's cidr_ipv6, any other its cidr_ipv4 (security_groups.tf). So 0.0.0.0/0 means
# every IPv4 address and no IPv6 one in both layers, and ::/0 every IPv6 address.

variable "admin_cidrs" {
  description = "Networks allowed to reach the proxies on SSH (port 22): the deploy runners and the admins."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "admin_cidrs needs at least one valid CIDR (IPv4 or IPv6), and never 0.0.0.0/0 or ::/0."
  }
}

variable "allowed_http_cidrs" {
  description = "Networks allowed to reach the proxies on HTTP (port 80) directly, e.g. the deploy runners for the health gate. The load balancer is always allowed, through its security group."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.allowed_http_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "allowed_http_cidrs must be valid CIDRs (IPv4 or IPv6), and never 0.0.0.0/0 or ::/0: clients come through the load balancer."
  }
}

variable "lb_ingress_cidrs" {
  description = "Clients allowed to reach the load balancer on HTTPS (port 443)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "backend_cidrs" {
  description = "Networks of the backends the proxies forward to."
  type        = list(string)
}

variable "backend_port" {
  description = "Port of the backends."
  type        = number
  default     = 8080
}

variable "package_mirror_cidrs" {
  description = "Where the proxies may open HTTP/HTTPS connections for packages (apt). Narrow it to a proxy or mirror if you have one."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

# --- Load balancer -----------------------------------------------------------------------------

variable "lb_internal" {
  description = "Make the load balancer internal (no public address)."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener."
  type        = string
}

variable "ssl_policy" {
  description = "TLS policy of the HTTPS listener (TLS 1.2 and 1.3 only)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "lb_deletion_protection" {
  description = "Refuse to delete the load balancer until this is turned off."
  type        = bool
  default     = true
}

variable "waf_web_acl_arn" {
  description = "WAFv2 web ACL to attach to the load balancer. null: none (see the checkov skip in lb.tf)."
  type        = string
  default     = null
}

variable "health_check_interval" {
  description = "Seconds between the load balancer's health checks of each proxy."
  type        = number
  default     = 10
}

variable "health_check_timeout" {
  description = "Seconds before a health check counts as failed. Must be below the interval."
  type        = number
  default     = 5
}

variable "healthy_threshold" {
  description = "Consecutive passing checks before a proxy receives traffic."
  type        = number
  default     = 2
}

variable "unhealthy_threshold" {
  description = "Consecutive failing checks before a proxy stops receiving traffic."
  type        = number
  default     = 2
}

variable "deregistration_delay" {
  description = "Seconds a deregistered proxy keeps serving its open requests."
  type        = number
  default     = 30
}

# --- Logs and tags -----------------------------------------------------------------------------

variable "lb_logs_regional_account" {
  description = "Let the region's Elastic Load Balancing account write the access logs (regions opened before December 2021). false in newer regions, which only know the log delivery service principal."
  type        = bool
  default     = true
}

variable "access_log_retention_days" {
  description = "Days the load balancer's access logs are kept in S3."
  type        = number
  default     = 90
}

variable "extra_tags" {
  description = "Tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}

variable "proxy_log_prefix" {
  description = "Key prefix of the proxies' shipped access logs in the access-log bucket (the deploy's log_prefix setting). Each proxy may PutObject only under PREFIX/ITS-INSTANCE-ID/ (iam.tf: one statement per proxy, at most 22 proxies, checked at plan)."
  type        = string
  default     = "proxy-access-logs"
}

variable "proxy_audit_log_prefix" {
  description = "Key prefix of the proxies' shipped audit logs in the access-log bucket (the deploy's audit_log_prefix setting)."
  type        = string
  default     = "proxy-audit-logs"

  validation {
    condition     = var.proxy_audit_log_prefix != var.proxy_log_prefix
    error_message = "proxy_audit_log_prefix must differ from proxy_log_prefix: everything under the access-log prefix is read as JSON access logs."
  }
}
