# The identities GitLab CI uses in AWS (.gitlab-ci.yml, docs/gitlab-ci.md): GitLab's OIDC provider
# and two roles, both assumed with the job's ID token (AssumeRoleWithWebIdentity), no access key.
#
# - ci-readonly (AWS_READONLY_ROLE_ARN): terraform:plan, verify, drift:detect, merge requests. Any
#   branch of this project only (`sub` = project_path:GROUP/PROJECT:ref_type:branch:ref:*; no tag,
#   no other project). It reads what the inventory, the health gate and `terraform plan` read: EC2 and
#   ELB describes in this region, this configuration's own IAM entities and the log bucket's
#   settings. No S3 object, nothing else in the account. Terraform's state is not in AWS: it is
#   GitLab-managed (versions.tf), reached with the job's CI_JOB_TOKEN, so there is no state bucket.
# - ci-deploy (AWS_DEPLOY_ROLE_ARN): terraform:apply, the deploys, drift:repair, shift. The read-only
#   permissions plus what apply changes (this environment's instances, security groups, load
#   balancer, proxy role, log bucket settings) and the weighted rule `shift` moves. Only the
#   protected default branch (`sub` = ...:ref_type:branch:ref:DEFAULT_BRANCH, exact).
#
# The deployment environment. AWS checks only the `aud` and `sub` claims of a GitLab token (IAM
# User Guide, "Available keys for AWS web identity federation":
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_iam-condition-keys.html#condition-keys-wif),
# and GitLab's `sub` can hold project_path, ref_type and ref only (ci_id_token_sub_claim_components),
# not the `environment` / `environment_protected` claims. So the environment binding is GitLab's:
# protect the environment (deployers, approvals) and make AWS_DEPLOY_ROLE_ARN a protected variable
# scoped to it (docs/gitlab-ci.md). AWS holds the branch binding.
#
# Neither role may change IAM beyond the proxies' own role: CI cannot widen its own permissions.
# Changes to this file are applied by an administrator (tools/terraform.sh apply with admin
# credentials); CI's apply fails on them, by design.

variable "gitlab_url" {
  description = "URL of the GitLab instance whose CI jobs assume the roles (the `iss` of its ID tokens), without a trailing slash."
  type        = string
  default     = "https://gitlab.com"

  validation {
    condition     = can(regex("^https://[a-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*$", var.gitlab_url))
    error_message = "gitlab_url must be an https URL without a trailing slash, e.g. https://gitlab.com or https://gitlab.example.com."
  }
}

variable "gitlab_project_path" {
  description = "GitLab project (GROUP/PROJECT, subgroups allowed) whose CI jobs may assume the CI roles: CI_PROJECT_PATH. Empty: no CI identities are created."
  type        = string
  default     = ""

  validation {
    condition     = var.gitlab_project_path == "" || can(regex("^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", var.gitlab_project_path))
    error_message = "gitlab_project_path must be GROUP/PROJECT (letters, digits, '_', '.', '-'; subgroups allowed), with no wildcard, or empty."
  }
}

variable "gitlab_default_branch" {
  description = "The project's protected default branch: the only ref whose jobs may assume the deploy role."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.gitlab_default_branch)) && !strcontains(var.gitlab_default_branch, "*")
    error_message = "gitlab_default_branch must be one branch name (letters, digits, '.', '_', '/', '-'), no wildcard."
  }
}

variable "gitlab_oidc_provider_arn" {
  description = "ARN of an existing IAM OIDC provider for gitlab_url. IAM allows one per URL and account: set it when another environment's configuration already created it. Empty: created here."
  type        = string
  default     = ""

  validation {
    condition     = var.gitlab_oidc_provider_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.gitlab_oidc_provider_arn))
    error_message = "gitlab_oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::ACCOUNT:oidc-provider/HOST) or empty."
  }
}

locals {
  ci_enabled = var.gitlab_project_path != ""

  # The claim keys IAM offers for this provider: "<host>:aud", "<host>:sub".
  gitlab_host       = trimprefix(var.gitlab_url, "https://")
  gitlab_audience   = "sts.amazonaws.com" # the `aud` of .gitlab-ci.yml's id_tokens
  ci_sub_any_branch = "project_path:${var.gitlab_project_path}:ref_type:branch:ref:*"
  ci_sub_default    = "project_path:${var.gitlab_project_path}:ref_type:branch:ref:${var.gitlab_default_branch}"
  gitlab_oidc_arn   = var.gitlab_oidc_provider_arn != "" ? var.gitlab_oidc_provider_arn : one(aws_iam_openid_connect_provider.gitlab[*].arn)

  account   = data.aws_caller_identity.current.account_id
  ec2_arn   = "arn:${data.aws_partition.current.partition}:ec2:${var.region}:${local.account}"
  elb_arn   = "arn:${data.aws_partition.current.partition}:elasticloadbalancing:${var.region}:${local.account}"
  iam_arn   = "arn:${data.aws_partition.current.partition}:iam::${local.account}"
  owned_tag = "nginx-retry-proxies" # default_tags' Project (versions.tf): on everything this creates
}

data "aws_partition" "current" {}

resource "aws_iam_openid_connect_provider" "gitlab" {
  count = local.ci_enabled && var.gitlab_oidc_provider_arn == "" ? 1 : 0

  url            = var.gitlab_url
  client_id_list = [local.gitlab_audience]
  # No thumbprint: AWS checks gitlab.com's (and any publicly signed) certificate against its own
  # trusted CAs; IAM takes the thumbprint itself for others (provider 5.81+, versions.tf).
}

# --- Trust: who may assume each role ----------------------------------------------------------

data "aws_iam_policy_document" "ci_readonly_trust" {
  count = local.ci_enabled ? 1 : 0

  statement {
    sid     = "GitLabCIAnyBranchOfThisProject"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.gitlab_oidc_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.gitlab_host}:aud"
      values   = [local.gitlab_audience]
    }

    condition {
      test     = "StringLike"
      variable = "${local.gitlab_host}:sub"
      values   = [local.ci_sub_any_branch]
    }
  }
}

data "aws_iam_policy_document" "ci_deploy_trust" {
  count = local.ci_enabled ? 1 : 0

  statement {
    sid     = "GitLabCIProtectedDefaultBranchOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [local.gitlab_oidc_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.gitlab_host}:aud"
      values   = [local.gitlab_audience]
    }

    # StringEquals, not StringLike: no wildcard can widen it to other refs.
    condition {
      test     = "StringEquals"
      variable = "${local.gitlab_host}:sub"
      values   = [local.ci_sub_default]
    }
  }
}

# --- Permissions ------------------------------------------------------------------------------

data "aws_iam_policy_document" "ci_read" {
  # Describe calls take no resource ARNs ("*" is the only resource they accept); limited to the
  # proxies' region.
  statement {
    sid    = "DescribeForInventoryGateAndPlan"
    effect = "Allow"
    actions = [
      "ec2:DescribeImages",
      "ec2:DescribeInstanceAttribute",
      "ec2:DescribeInstanceCreditSpecifications",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstances",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeSecurityGroupRules",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeSubnets",
      "ec2:DescribeTags",
      "ec2:DescribeVolumes",
      "ec2:DescribeVpcs",
      "elasticloadbalancing:DescribeListenerAttributes",
      "elasticloadbalancing:DescribeListenerCertificates",
      "elasticloadbalancing:DescribeListeners",
      "elasticloadbalancing:DescribeLoadBalancerAttributes",
      "elasticloadbalancing:DescribeLoadBalancers",
      "elasticloadbalancing:DescribeRules",
      "elasticloadbalancing:DescribeTags",
      "elasticloadbalancing:DescribeTargetGroupAttributes",
      "elasticloadbalancing:DescribeTargetGroups",
      "elasticloadbalancing:DescribeTargetHealth",
    ]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }

  statement {
    sid    = "ReadThisConfigurationsIam"
    effect = "Allow"
    actions = [
      "iam:GetInstanceProfile",
      "iam:GetOpenIDConnectProvider",
      "iam:GetPolicy",
      "iam:GetPolicyVersion",
      "iam:GetRole",
      "iam:GetRolePolicy",
      "iam:ListAttachedRolePolicies",
      "iam:ListInstanceProfilesForRole",
      "iam:ListRolePolicies",
    ]
    resources = [
      "${local.iam_arn}:role/${local.name}-*",
      "${local.iam_arn}:instance-profile/${local.name}-*",
      "${local.iam_arn}:oidc-provider/${local.gitlab_host}",
      "${local.iam_arn}:policy/${local.name}-*",
    ]
  }

  # The bucket's settings only (what `terraform plan` refreshes): no object is readable.
  # s3:ListBucket is HeadBucket's permission (Terraform's existence check); it lists key names.
  statement {
    sid    = "ReadLogBucketSettings"
    effect = "Allow"
    actions = [
      "s3:GetAccelerateConfiguration",
      "s3:GetBucketAcl",
      "s3:GetBucketCORS",
      "s3:GetBucketLogging",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketOwnershipControls",
      "s3:GetBucketPolicy",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetBucketRequestPayment",
      "s3:GetBucketTagging",
      "s3:GetBucketVersioning",
      "s3:GetBucketWebsite",
      "s3:GetEncryptionConfiguration",
      "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration",
      "s3:ListBucket",
    ]
    resources = [aws_s3_bucket.access_logs.arn]
  }

  statement {
    sid       = "ReadTheLoadBalancersWebAcl"
    effect    = "Allow"
    actions   = ["wafv2:GetWebACLForResource"]
    resources = concat(["${local.elb_arn}:loadbalancer/app/${local.name}/*"], var.waf_web_acl_arn == null ? [] : [var.waf_web_acl_arn])
  }
}

data "aws_iam_policy_document" "ci_apply" {
  # Creating instances and security groups touches images, subnets, key pairs and volumes that
  # carry no tag of ours: limited to the region, and every new resource must carry our tag.
  statement {
    sid       = "CreateInstancesAndSecurityGroupsTagged"
    effect    = "Allow"
    actions   = ["ec2:RunInstances", "ec2:CreateSecurityGroup"]
    resources = ["*"]

    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }

  statement {
    sid       = "TagOnlyWhileCreating"
    effect    = "Allow"
    actions   = ["ec2:CreateTags"]
    resources = ["${local.ec2_arn}:*/*"]

    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances", "CreateSecurityGroup"]
    }
  }

  # Existing instances and security groups: only ours (default_tags' Project on each).
  statement {
    sid    = "ChangeOwnInstancesAndSecurityGroups"
    effect = "Allow"
    actions = [
      "ec2:AssociateIamInstanceProfile",
      "ec2:AuthorizeSecurityGroupEgress",
      "ec2:AuthorizeSecurityGroupIngress",
      "ec2:CreateTags",
      "ec2:DeleteSecurityGroup",
      "ec2:DeleteTags",
      "ec2:DisassociateIamInstanceProfile",
      "ec2:ModifyInstanceAttribute",
      "ec2:ModifyInstanceMetadataOptions",
      "ec2:ModifySecurityGroupRules",
      "ec2:ReplaceIamInstanceProfileAssociation",
      "ec2:RevokeSecurityGroupEgress",
      "ec2:RevokeSecurityGroupIngress",
      "ec2:StartInstances",
      "ec2:StopInstances",
      "ec2:TerminateInstances",
      "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
      "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
    ]
    resources = [
      "${local.ec2_arn}:instance/*",
      "${local.ec2_arn}:security-group/*",
      "${local.ec2_arn}:security-group-rule/*",
    ]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Project"
      values   = [local.owned_tag]
    }
  }

  # This environment's load balancer, target groups, listeners and rules, by name; `shift` moves
  # the weighted rule (ModifyRule).
  statement {
    sid    = "ManageOwnLoadBalancer"
    effect = "Allow"
    actions = [
      "elasticloadbalancing:AddTags",
      "elasticloadbalancing:CreateListener",
      "elasticloadbalancing:CreateLoadBalancer",
      "elasticloadbalancing:CreateRule",
      "elasticloadbalancing:CreateTargetGroup",
      "elasticloadbalancing:DeleteListener",
      "elasticloadbalancing:DeleteLoadBalancer",
      "elasticloadbalancing:DeleteRule",
      "elasticloadbalancing:DeleteTargetGroup",
      "elasticloadbalancing:DeregisterTargets",
      "elasticloadbalancing:ModifyListener",
      "elasticloadbalancing:ModifyListenerAttributes",
      "elasticloadbalancing:ModifyLoadBalancerAttributes",
      "elasticloadbalancing:ModifyRule",
      "elasticloadbalancing:ModifyTargetGroup",
      "elasticloadbalancing:ModifyTargetGroupAttributes",
      "elasticloadbalancing:RegisterTargets",
      "elasticloadbalancing:RemoveTags",
      "elasticloadbalancing:SetSecurityGroups",
      "elasticloadbalancing:SetSubnets",
      "elasticloadbalancing:SetWebAcl",
    ]
    resources = [
      "${local.elb_arn}:loadbalancer/app/${local.name}/*",
      "${local.elb_arn}:listener/app/${local.name}/*",
      "${local.elb_arn}:listener-rule/app/${local.name}/*",
      "${local.elb_arn}:targetgroup/${local.name}-*/*",
    ]
  }

  statement {
    sid       = "AttachTheWebAclToOwnLoadBalancer"
    effect    = "Allow"
    actions   = ["wafv2:AssociateWebACL", "wafv2:DisassociateWebACL"]
    resources = concat(["${local.elb_arn}:loadbalancer/app/${local.name}/*"], var.waf_web_acl_arn == null ? [] : [var.waf_web_acl_arn])
  }

  # The proxies' role and instance profile (iam.tf), and nothing else in IAM. Whatever policy CI
  # writes into that role stays inside its permissions boundary (iam.tf: PutObject to the log
  # bucket), which CI can neither change nor remove: CI cannot pass itself more through an instance.
  statement {
    sid    = "ManageTheProxiesRoleWithinItsBoundary"
    effect = "Allow"
    actions = [
      "iam:CreateRole",
      "iam:DeleteRolePolicy",
      "iam:PutRolePolicy",
    ]
    resources = ["${local.iam_arn}:role/${local.name}-proxy"]

    condition {
      test     = "StringEquals"
      variable = "iam:PermissionsBoundary"
      values   = [aws_iam_policy.proxy_boundary.arn]
    }
  }

  statement {
    sid    = "ManageTheProxiesRoleAndProfile"
    effect = "Allow"
    actions = [
      "iam:AddRoleToInstanceProfile",
      "iam:CreateInstanceProfile",
      "iam:DeleteInstanceProfile",
      "iam:DeleteRole",
      "iam:RemoveRoleFromInstanceProfile",
      "iam:TagInstanceProfile",
      "iam:TagRole",
      "iam:UntagInstanceProfile",
      "iam:UntagRole",
    ]
    resources = [
      "${local.iam_arn}:role/${local.name}-proxy",
      "${local.iam_arn}:instance-profile/${local.name}-proxy",
    ]
  }

  statement {
    sid       = "PassTheProxiesRoleToEc2Only"
    effect    = "Allow"
    actions   = ["iam:PassRole"]
    resources = ["${local.iam_arn}:role/${local.name}-proxy"]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  # The log bucket's settings (logs.tf). Not its creation or deletion, not its bucket policy (which
  # could grant CI the objects), and no object access: the logs are evidence, and the proxies write
  # them with their own role. The bucket comes with the administrator's first apply.
  statement {
    sid    = "ManageLogBucketSettings"
    effect = "Allow"
    actions = [
      "s3:PutBucketOwnershipControls",
      "s3:PutBucketPublicAccessBlock",
      "s3:PutBucketTagging",
      "s3:PutBucketVersioning",
      "s3:PutEncryptionConfiguration",
      "s3:PutLifecycleConfiguration",
    ]
    resources = [aws_s3_bucket.access_logs.arn]
  }
}

# --- The roles --------------------------------------------------------------------------------

resource "aws_iam_role" "ci_readonly" {
  count = local.ci_enabled ? 1 : 0

  name                 = "${local.name}-ci-readonly"
  description          = "GitLab CI of ${var.gitlab_project_path}, any branch: plan, verify, drift detection (read-only)."
  assume_role_policy   = data.aws_iam_policy_document.ci_readonly_trust[0].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "ci_readonly" {
  count = local.ci_enabled ? 1 : 0

  name   = "read-inventory-gate-plan"
  role   = aws_iam_role.ci_readonly[0].id
  policy = data.aws_iam_policy_document.ci_read.json
}

resource "aws_iam_role" "ci_deploy" {
  count = local.ci_enabled ? 1 : 0

  name                 = "${local.name}-ci-deploy"
  description          = "GitLab CI of ${var.gitlab_project_path}, protected ${var.gitlab_default_branch} only: apply, deploy, drift repair, shift."
  assume_role_policy   = data.aws_iam_policy_document.ci_deploy_trust[0].json
  max_session_duration = 3600
}

resource "aws_iam_role_policy" "ci_deploy_read" {
  count = local.ci_enabled ? 1 : 0

  name   = "read-inventory-gate-plan"
  role   = aws_iam_role.ci_deploy[0].id
  policy = data.aws_iam_policy_document.ci_read.json
}

resource "aws_iam_role_policy" "ci_deploy_apply" {
  count = local.ci_enabled ? 1 : 0

  name   = "apply-and-shift"
  role   = aws_iam_role.ci_deploy[0].id
  policy = data.aws_iam_policy_document.ci_apply.json
}

output "ci_readonly_role_arn" {
  description = "AWS_READONLY_ROLE_ARN of the GitLab project (null without gitlab_project_path)."
  value       = one(aws_iam_role.ci_readonly[*].arn)
}

output "ci_deploy_role_arn" {
  description = "AWS_DEPLOY_ROLE_ARN of the GitLab project, a protected variable scoped to the environment (null without gitlab_project_path)."
  value       = one(aws_iam_role.ci_deploy[*].arn)
}
