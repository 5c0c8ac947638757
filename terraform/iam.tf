# The proxies' instance role: it may only add objects under its own log prefix of the access-log
# bucket (tasks/log_shipping.py uploads the rotated nginx JSON logs hourly). No other AWS API.

data "aws_iam_policy_document" "proxy_assume" {
  statement {
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "proxy" {
  name               = "${local.name}-proxy"
  assume_role_policy = data.aws_iam_policy_document.proxy_assume.json
}

data "aws_iam_policy_document" "proxy_log_shipping" {
  statement {
    sid       = "ShipProxyAccessLogs"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/${var.proxy_log_prefix}/*"]
  }
}

resource "aws_iam_role_policy" "proxy_log_shipping" {
  name   = "ship-access-logs"
  role   = aws_iam_role.proxy.id
  policy = data.aws_iam_policy_document.proxy_log_shipping.json
}

resource "aws_iam_instance_profile" "proxy" {
  name = "${local.name}-proxy"
  role = aws_iam_role.proxy.name
}
