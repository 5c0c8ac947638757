#!/bin/sh
# /usr/local/lib/proxy-deploy/sshd-rollback
# Managed by this deploy (tasks/sshd.py). Do not edit by hand: the next run puts this file back.
#
# Puts the last *confirmed* sshd_config back when a new one was not confirmed by a fresh SSH login
# in time. Runs from proxy-deploy-sshd-rollback.timer (two minutes after a deploy armed it) and
# at boot before ssh.service (a host rebooted mid-change starts sshd on the confirmed file).
# Without the `pending` marker it does nothing: the marker exists only while a change is unconfirmed.
set -eu
state=/var/lib/proxy-deploy/sshd
[ -e "$state/pending" ] || exit 0
# `sshd -t` needs its privilege separation directory; at boot ssh.service has not made it yet.
mkdir -p -m 0755 /run/sshd
if ! [ -s "$state/confirmed" ] || ! /usr/sbin/sshd -t -f "$state/confirmed"; then
    echo "sshd-rollback: no valid confirmed sshd_config kept; the live file stays" >&2
    exit 1
fi
cp -p "$state/confirmed" /etc/ssh/sshd_config.rollback
mv -f /etc/ssh/sshd_config.rollback /etc/ssh/sshd_config
# sshd no longer runs what the deploy wanted: its record goes, so the next run re-applies it.
rm -f /var/lib/proxy-deploy/active/sshd "$state/pending"
echo "sshd-rollback: the unconfirmed sshd_config was replaced by the last confirmed one"
# --no-block: this service is ordered Before=ssh.service, so a reload job that waited for it to
# finish would wait forever; queued, it runs as soon as this service is done.
if systemctl is-active --quiet ssh.service; then
    systemctl reload --no-block ssh.service
fi
