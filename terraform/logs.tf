# S3 bucket for the logs: private, encrypted, versioned, expired by a lifecycle rule. Written by
# the Elastic Load Balancing log delivery (the load balancer's access logs, under alb/) and by the
# proxies' instance role, each proxy under its own instance id of proxy_log_prefix and
# proxy_audit_log_prefix only (iam.tf). Nothing else may write it.

data "aws_caller_identity" "current" {}

# The regional Elastic Load Balancing account that writes access logs in regions opened before
# December 2021. Newer regions have no such account (this lookup fails there: set
# lb_logs_regional_account = false) and use the log delivery service principal granted below.
data "aws_elb_service_account" "current" {
  count = var.lb_logs_regional_account ? 1 : 0
}

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the log bucket; logging its own accesses would need yet another log bucket.
  #checkov:skip=CKV_AWS_144:Access logs are operational data kept for var.access_log_retention_days; a replica in another region is not worth its cost.
  #checkov:skip=CKV_AWS_145:Load balancer access logs can only be delivered to a bucket encrypted with SSE-S3 (AES256), not SSE-KMS.
  #checkov:skip=CKV2_AWS_62:Nothing consumes events for new log objects; they are read on demand (Athena, downloads).
  bucket = "${local.name}-lb-logs-${data.aws_caller_identity.current.account_id}"
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.access_log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "LoadBalancerLogDelivery"
    effect    = "Allow"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/alb/AWSLogs/${data.aws_caller_identity.current.account_id}/*"]

    dynamic "principals" {
      for_each = data.aws_elb_service_account.current

      content {
        type        = "AWS"
        identifiers = [principals.value.arn]
      }
    }

    principals {
      type        = "Service"
      identifiers = ["logdelivery.elasticloadbalancing.amazonaws.com"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  # A bucket policy cannot be added while public access settings are still being applied.
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
