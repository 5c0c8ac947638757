# The proxies' instance role: each instance may only add objects under its own log prefixes of the
# access-log bucket (tasks/log_shipping.py uploads the rotated nginx JSON logs and audit logs
# hourly, each under its own prefix). No other AWS API.

locals {
  # One statement per proxy in the log-shipping policy, about 460 characters each (two prefixes, a 63-character
  # bucket name; tests/test_terraform.py measures it) against IAM's 10,240 per role.
  max_proxies_per_log_policy = 22
}

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
  name                 = "${local.name}-proxy"
  assume_role_policy   = data.aws_iam_policy_document.proxy_assume.json
  permissions_boundary = aws_iam_policy.proxy_boundary.arn
}

# The most the proxies' role can ever grant, whatever its own policy says: objects under the log
# prefix of the access-log bucket. CI's deploy role (iam_ci.tf) may change the role's policy only
# with this boundary in place, and may not change the boundary: a policy it writes cannot give an
# instance, and so itself, more.
data "aws_iam_policy_document" "proxy_boundary" {
  statement {
    sid     = "AtMostShippingLogs"
    effect  = "Allow"
    actions = ["s3:PutObject"]
    resources = [
      "${aws_s3_bucket.access_logs.arn}/${var.proxy_log_prefix}/*",
      "${aws_s3_bucket.access_logs.arn}/${var.proxy_audit_log_prefix}/*",
    ]
  }
}

resource "aws_iam_policy" "proxy_boundary" {
  name        = "${local.name}-proxy-boundary"
  description = "Permissions boundary of the proxies' instance role: PutObject under the log prefix, nothing more."
  policy      = data.aws_iam_policy_document.proxy_boundary.json
}

# Each proxy may write under its own instance id only: PREFIX/INSTANCE_ID/YYYY/MM/DD/... (the key
# programs/ship-logs.py builds), so a compromised proxy cannot overwrite or forge the logs of
# the others. All proxies share the role, so the statement that lets an instance write a prefix must
# know which instance is asking: the request context key ec2:SourceInstanceARN, "the ARN of the EC2
# instance from which the request is made ... present only when the request comes from an EC2
# instance using an IAM role associated with an EC2 instance profile" (IAM User Guide, "IAM policy
# elements: Variables and tags", https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html).
# No policy variable yields the bare instance id (${aws:userid} is ROLE_ID:INSTANCE_ID,
# ${ec2:SourceInstanceARN} the whole ARN), so there is one statement per instance: its prefix,
# allowed only when the request comes from that instance. A statement is about 300 characters and
# a role's inline policies may hold 10,240 (whitespace not counted): hence the precondition below.
data "aws_iam_policy_document" "proxy_log_shipping" {
  dynamic "statement" {
    for_each = aws_instance.proxy

    content {
      sid     = "ShipOwnAccessLogs${replace(statement.key, "/[^A-Za-z0-9]/", "")}"
      effect  = "Allow"
      actions = ["s3:PutObject"]
      resources = [
        "${aws_s3_bucket.access_logs.arn}/${var.proxy_log_prefix}/${statement.value.id}/*",
        "${aws_s3_bucket.access_logs.arn}/${var.proxy_audit_log_prefix}/${statement.value.id}/*",
      ]

      condition {
        test     = "ArnEquals"
        variable = "ec2:SourceInstanceARN"
        values   = [statement.value.arn]
      }
    }
  }
}

resource "aws_iam_role_policy" "proxy_log_shipping" {
  name   = "ship-access-logs"
  role   = aws_iam_role.proxy.id
  policy = data.aws_iam_policy_document.proxy_log_shipping.json

  lifecycle {
    precondition {
      condition     = length(local.proxies) <= local.max_proxies_per_log_policy
      error_message = "The log-shipping policy holds one statement per proxy and fits ${local.max_proxies_per_log_policy} (IAM's 10,240 characters of inline policy per role): split it into managed policies before growing the fleet further."
    }
  }
}

resource "aws_iam_instance_profile" "proxy" {
  name = "${local.name}-proxy"
  role = aws_iam_role.proxy.name
}
