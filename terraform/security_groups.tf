# Security groups. The proxies accept HTTP only from the load balancer and allowed_http_cidrs, and
# SSH only from admin_cidrs: the same lists the hosts' nftables firewall is given. Rules are separate
# resources (one per CIDR) so that adding a network never rewrites the others. A rule takes an IPv4
# network as cidr_ipv4 and an IPv6 one as cidr_ipv6 (exactly one of the two): the lists may hold
# both families, like the hosts' firewall.

resource "aws_security_group" "proxy" {
  name        = "${local.name}-proxies"
  description = "nginx reverse proxies: HTTP from the load balancer and allowed networks, SSH from admins"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-proxies"
  }
}

resource "aws_vpc_security_group_ingress_rule" "proxy_http_from_lb" {
  #checkov:skip=CKV_AWS_260:False positive: the source is the load balancer's security group (referenced_security_group_id), which this check does not read for aws_vpc_security_group_ingress_rule.
  security_group_id            = aws_security_group.proxy.id
  description                  = "HTTP from the load balancer"
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.lb.id
}

resource "aws_vpc_security_group_ingress_rule" "proxy_http_allowed" {
  for_each = toset(var.allowed_http_cidrs)

  security_group_id = aws_security_group.proxy.id
  description       = "HTTP from an allowed network"
  ip_protocol       = "tcp"
  from_port         = local.http_port
  to_port           = local.http_port
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}

resource "aws_vpc_security_group_ingress_rule" "proxy_ssh_admin" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.proxy.id
  description       = "SSH from an admin network"
  ip_protocol       = "tcp"
  from_port         = local.ssh_port
  to_port           = local.ssh_port
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}

resource "aws_vpc_security_group_egress_rule" "proxy_to_backends" {
  for_each = toset(var.backend_cidrs)

  security_group_id = aws_security_group.proxy.id
  description       = "Proxied requests to the backends"
  ip_protocol       = "tcp"
  from_port         = var.backend_port
  to_port           = var.backend_port
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}

resource "aws_vpc_security_group_egress_rule" "proxy_packages" {
  for_each = {
    for pair in setproduct(var.package_mirror_cidrs, [80, 443]) : "${pair[0]}:${pair[1]}" => {
      cidr = pair[0]
      port = pair[1]
    }
  }

  security_group_id = aws_security_group.proxy.id
  description       = "Package downloads (apt) over HTTP/HTTPS"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = strcontains(each.value.cidr, ":") ? null : each.value.cidr
  cidr_ipv6         = strcontains(each.value.cidr, ":") ? each.value.cidr : null
}

resource "aws_security_group" "lb" {
  name        = "${local.name}-lb"
  description = "Load balancer of the nginx proxies: HTTPS from clients, HTTP to the proxies"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${local.name}-lb"
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_https" {
  for_each = toset(var.lb_ingress_cidrs)

  security_group_id = aws_security_group.lb.id
  description       = "HTTPS from clients"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null
}

resource "aws_vpc_security_group_egress_rule" "lb_to_proxies" {
  security_group_id            = aws_security_group.lb.id
  description                  = "HTTP (traffic and health checks) to the proxies"
  ip_protocol                  = "tcp"
  from_port                    = local.http_port
  to_port                      = local.http_port
  referenced_security_group_id = aws_security_group.proxy.id
}
