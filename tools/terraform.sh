#!/bin/sh
# Run Terraform in terraform/ against the GitLab-managed state of $ENVIRONMENT.
#
#   tools/terraform.sh validate   fmt check + validate (no state, no AWS credentials needed)
#   tools/terraform.sh plan       init + plan, saved to terraform/plan.cache (+ plan.txt to read)
#   tools/terraform.sh apply      init + apply terraform/plan.cache (exactly what was planned),
#                                 then outputs to terraform/outputs.json and lb_subnet_cidrs checked
#                                 against group_data (tools/firewall_tfvars.py --check-lb-subnets)
#   tools/terraform.sh CMD ...    init + any other terraform command (output, state list, ...)
#
# State: the "http" backend pointed at GitLab's Terraform state API, state name $TF_STATE_NAME
# (default: $ENVIRONMENT). In GitLab CI the project, API URL and CI_JOB_TOKEN come from GitLab.
# On a laptop set GITLAB_PROJECT_ID, GITLAB_USER and GITLAB_TOKEN (a personal access token with
# the api scope), and GITLAB_API_URL when not on gitlab.com. Credentials go to Terraform through
# TF_HTTP_* variables only: never on a command line, never in a file.
#
# Inputs, later ones winning: TF_VAR_* variables, terraform/environments/$ENVIRONMENT.tfvars, and
# the firewall lists admin_cidrs / allowed_http_cidrs of group_data/env_$ENVIRONMENT.py (the very
# lists the hosts' nftables firewall gets; read by tools/firewall_tfvars.py, which needs python3).
set -eu

: "${ENVIRONMENT:?set ENVIRONMENT (the Environment tag, e.g. production)}"
cd "$(dirname "$0")/../terraform"

export TF_IN_AUTOMATION=1 TF_INPUT=0
export TF_VAR_environment="$ENVIRONMENT"

backend() {
    api="${CI_API_V4_URL:-${GITLAB_API_URL:-https://gitlab.com/api/v4}}"
    project="${CI_PROJECT_ID:-${GITLAB_PROJECT_ID:?set GITLAB_PROJECT_ID (the GitLab project holding the state)}}"
    address="$api/projects/$project/terraform/state/${TF_STATE_NAME:-$ENVIRONMENT}"
    export TF_HTTP_ADDRESS="$address"
    export TF_HTTP_LOCK_ADDRESS="$address/lock" TF_HTTP_LOCK_METHOD=POST
    export TF_HTTP_UNLOCK_ADDRESS="$address/lock" TF_HTTP_UNLOCK_METHOD=DELETE
    export TF_HTTP_RETRY_WAIT_MIN=5
    if [ -n "${CI_JOB_TOKEN:-}" ]; then
        export TF_HTTP_USERNAME=gitlab-ci-token TF_HTTP_PASSWORD="$CI_JOB_TOKEN"
    else
        export TF_HTTP_USERNAME="${GITLAB_USER:?set GITLAB_USER}"
        export TF_HTTP_PASSWORD="${GITLAB_TOKEN:?set GITLAB_TOKEN (a personal access token, api scope)}"
    fi
    terraform init -input=false -reconfigure >/dev/null
}

var_files=""
if [ -f "environments/$ENVIRONMENT.tfvars" ]; then
    var_files="-var-file=environments/$ENVIRONMENT.tfvars"
fi
firewall_lists() {
    group_data="../group_data/env_$ENVIRONMENT.py"
    if [ -f "$group_data" ]; then
        python3 ../tools/firewall_tfvars.py "$group_data" firewall.tfvars.json
        var_files="$var_files -var-file=firewall.tfvars.json"
    fi
}

action="${1:-plan}"
[ "$#" -gt 0 ] && shift
case "$action" in
    validate)
        terraform fmt -check -recursive -diff
        terraform init -input=false -backend=false >/dev/null
        terraform validate
        ;;
    plan)
        backend
        firewall_lists
        # shellcheck disable=SC2086 # $var_files: zero to two words without spaces
        terraform plan -input=false -lock-timeout=5m -out=plan.cache $var_files "$@"
        terraform show -no-color plan.cache >plan.txt
        echo "plan saved: terraform/plan.cache (readable: terraform/plan.txt)"
        ;;
    apply)
        backend
        terraform apply -input=false -lock-timeout=5m "$@" plan.cache
        # The load balancer's subnets just built must be the deploy's lb_subnet_cidrs (the
        # trusted proxies; the firewall must admit them): a mismatch fails the apply's job here,
        # before any deploy, and prints the line to write in group_data.
        terraform output -json >outputs.json
        group_data="../group_data/env_$ENVIRONMENT.py"
        if [ -f "$group_data" ]; then
            python3 ../tools/firewall_tfvars.py --check-lb-subnets outputs.json "$group_data"
        else
            echo "note: no $group_data: lb_subnet_cidrs not checked against Terraform's" >&2
        fi
        ;;
    *)
        backend
        terraform "$action" "$@"
        ;;
esac
