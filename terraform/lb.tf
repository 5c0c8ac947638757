# The load balancer in front of the proxies: one target group per proxy group, health-checked on
# /healthz, and a weighted listener rule that splits traffic between the groups.

# The load balancer's subnets: it connects to the proxies from addresses in them.
data "aws_subnet" "lb" {
  for_each = toset(var.lb_subnet_ids)

  id = each.value
}

resource "aws_lb" "proxies" {
  #checkov:skip=CKV2_AWS_28:A WAF is optional here (var.waf_web_acl_arn, attached below); the web ACL itself is managed outside this configuration.
  #checkov:skip=CKV2_AWS_76:The web ACL (and its managed rule groups, Log4j included) is managed outside this configuration; only its ARN comes in.
  name                       = local.name
  load_balancer_type         = "application"
  internal                   = var.lb_internal
  security_groups            = [aws_security_group.lb.id]
  subnets                    = var.lb_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.lb_deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }

  # The load balancer tests that it may write to the bucket when access logs are turned on.
  depends_on = [aws_s3_bucket_policy.access_logs]
}

resource "aws_wafv2_web_acl_association" "lb" {
  count = var.waf_web_acl_arn == null ? 0 : 1

  resource_arn = aws_lb.proxies.arn
  web_acl_arn  = var.waf_web_acl_arn
}

resource "aws_lb_target_group" "proxy" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the proxies speak plain HTTP inside the VPC, reachable only from the load balancer's security group and allowed_http_cidrs.
  for_each = var.proxy_groups

  name                 = "${local.name}-${each.key}"
  port                 = local.http_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay

  # /healthz is answered by nginx itself, so a flaky backend does not make proxies flap in and out.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = "traffic-port"
    path                = local.health_check_path
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = var.health_check_timeout
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }

  tags = {
    ProxyGroup = each.key
  }
}

resource "aws_lb_target_group_attachment" "proxy" {
  for_each = local.proxies

  target_group_arn = aws_lb_target_group.proxy[each.value.group].arn
  target_id        = aws_instance.proxy[each.key].id
  port             = local.http_port
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.proxies.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  # The weighted rule below matches every path: this is reached only while that rule is being
  # replaced (a group added or removed, see its lifecycle). It forwards by the groups' weights in
  # var.proxy_groups, so no request meets an error in the meantime.
  default_action {
    type = "forward"

    forward {
      dynamic "target_group" {
        for_each = aws_lb_target_group.proxy

        content {
          arn    = target_group.value.arn
          weight = var.proxy_groups[target_group.key].weight
        }
      }
    }
  }
}

# The groups the weighted rule forwards to, by target group ARN: when this changes (a group added
# or removed, a target group replaced), the rule is replaced with var.proxy_groups' weights.
resource "terraform_data" "weighted_rule_groups" {
  input = { for group, tg in aws_lb_target_group.proxy : group => tg.arn }
}

# Splits traffic between the proxy groups by their weights. var.proxy_groups' weights are the
# rule's weights when it is created; after that the weights belong to the traffic shift
# (tools/shift/, docs/shift.md), which moves them step by step through the ELBv2 API and rolls
# back by itself: an apply must not undo a shift, hence ignore_changes below. To try a new group,
# add it with weight 0, apply, deploy and verify it, then run `make shift TO=<group>`.
resource "aws_lb_listener_rule" "weighted" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 100

  action {
    type = "forward"

    forward {
      dynamic "target_group" {
        for_each = aws_lb_target_group.proxy

        content {
          arn    = target_group.value.arn
          weight = var.proxy_groups[target_group.key].weight
        }
      }

      # Off: a client's requests follow the weights instead of sticking to the group it met first.
      stickiness {
        enabled  = false
        duration = 1
      }
    }
  }

  condition {
    path_pattern {
      values = ["/*"]
    }
  }

  lifecycle {
    # The weights are the shift's (see above). `action` holds nothing else that Terraform sets
    # after creation: the groups it forwards to come back through replace_triggered_by.
    ignore_changes = [action]
    # A group added or removed (or its target group replaced) replaces the rule, with the weights
    # of var.proxy_groups: the listener's default action carries the traffic meanwhile. The manual
    # fallback for the weights is the same replacement, asked for by hand (docs/shift.md):
    # tools/terraform.sh plan -replace=aws_lb_listener_rule.weighted
    replace_triggered_by = [terraform_data.weighted_rule_groups]
  }
}
