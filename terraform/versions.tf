# Terraform and provider versions, and where the state lives.
#
# State: GitLab-managed Terraform state (the "http" backend). Nothing is configured here on purpose:
# the address, lock address and credentials come from TF_HTTP_* environment variables, which
# tools/terraform.sh sets from the GitLab project (CI_JOB_TOKEN in CI, a personal access token on a
# laptop). Keeping them out of this file keeps credentials out of .terraform/ and out of plan files.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.81, < 7.0" # 5.81: aws_iam_openid_connect_provider without thumbprint_list (iam_ci.tf)
    }
  }

  backend "http" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.extra_tags, {
      Project   = "nginx-retry-proxies"
      ManagedBy = "terraform"
    })
  }
}
