# The proxy instances: official Debian image, IMDSv2 only, encrypted root volume, no public IP by
# default, tagged the way inventories/aws.py selects them.

data "aws_ami" "debian" {
  for_each = local.ami_names

  owners      = [var.debian_ami_owner]
  most_recent = true

  filter {
    name   = "name"
    values = [each.value]
  }

  filter {
    name   = "architecture"
    values = [var.ami_architecture]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }

  filter {
    name   = "root-device-type"
    values = ["ebs"]
  }
}

resource "aws_instance" "proxy" {
  for_each = local.proxies

  ami                         = data.aws_ami.debian[each.value.ami_name].id
  instance_type               = each.value.instance_type
  subnet_id                   = each.value.subnet_id
  vpc_security_group_ids      = [aws_security_group.proxy.id]
  associate_public_ip_address = var.associate_public_ip
  key_name                    = var.ssh_key_name
  iam_instance_profile        = aws_iam_instance_profile.proxy.name
  monitoring                  = true
  ebs_optimized               = true

  # IMDSv2 only, one hop: nothing in a container on the host can reach the metadata service.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    delete_on_termination = true
  }

  # inventories/aws.py selects proxies by Role and Environment and names hosts by Name.
  tags = {
    Name        = each.key
    Role        = "reverse-proxy"
    Environment = var.environment
    ProxyGroup  = each.value.group
  }

  lifecycle {
    # A newer Debian image must not replace running proxies on the next apply: roll it out as a new
    # proxy group (its own ami_name) and shift the listener weights instead.
    ignore_changes = [ami]
  }
}
