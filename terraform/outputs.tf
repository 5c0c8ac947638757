# What the deploy, the CI jobs and a person need after an apply.

output "environment" {
  description = "Environment tag of the proxies: set ENVIRONMENT to this for the inventory."
  value       = var.environment
}

output "region" {
  description = "Region of the proxies: set EC2_INVENTORY_REGIONS to this for the inventory."
  value       = var.region
}

output "inventory_tag_filter" {
  description = "Tags that select the proxies (what inventories/aws.py filters on)."
  value = {
    Role        = "reverse-proxy"
    Environment = var.environment
  }
}

output "proxies" {
  description = "Each proxy by host name (its Name tag): instance ID, group, availability zone and addresses."
  value = {
    for name, instance in aws_instance.proxy : name => {
      instance_id       = instance.id
      group             = local.proxies[name].group
      availability_zone = instance.availability_zone
      private_ip        = instance.private_ip
      public_ip         = instance.public_ip
      ami_id            = instance.ami
    }
  }
}

output "proxy_names" {
  description = "Host names of the proxies in name order; the first is the default canary."
  value       = sort(keys(aws_instance.proxy))
}

output "lb_dns_name" {
  description = "DNS name of the load balancer (point the service's DNS record at it)."
  value       = aws_lb.proxies.dns_name
}

output "lb_zone_id" {
  description = "Hosted zone of the load balancer, for a Route 53 alias record."
  value       = aws_lb.proxies.zone_id
}

output "target_group_arns" {
  description = "Target group of each proxy group."
  value       = { for group, tg in aws_lb_target_group.proxy : group => tg.arn }
}

output "weighted_rule_arn" {
  description = "The weighted listener rule a traffic shift moves (python -m tools.shift --rule-arn, SHIFT_RULE_ARN)."
  value       = aws_lb_listener_rule.weighted.arn
}

output "traffic_weights" {
  description = "Share of the traffic each proxy group receives, in percent, when the weighted rule is created; afterwards the rule's weights are the shift's (python -m tools.shift reads them from the load balancer)."
  value = {
    for group, spec in var.proxy_groups :
    group => floor(100 * spec.weight / sum([for g in values(var.proxy_groups) : g.weight]))
  }
}

output "lb_subnet_cidrs" {
  description = "Networks the load balancer connects from. The deploy needs them: in allowed_http_cidrs (the hosts' firewall) and in trusted_proxy_cidrs (nginx takes the client address from X-Forwarded-For only from them)."
  value       = sort([for subnet in data.aws_subnet.lb : subnet.cidr_block])
}

output "proxy_security_group_id" {
  description = "Security group of the proxies."
  value       = aws_security_group.proxy.id
}

output "lb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.lb.id
}

output "access_logs_bucket" {
  description = "S3 bucket of the access logs: the load balancer's (under alb/) and the proxies' (the deploy's log_bucket setting)."
  value       = aws_s3_bucket.access_logs.id
}
