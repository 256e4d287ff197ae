#!/usr/bin/env bash
# Make sure the real cluster programs the tests start are installed: Debian's SLURM
# (slurmctld, slurmd, their client commands), MUNGE (SLURM's authentication) and PgBouncer.
# Installs them with apt-get when run as root; otherwise says how. The packages' own services
# are not used: the tests start the daemons themselves, from configs in temporary folders.
set -euo pipefail
need=(mungekey munged slurmctld slurmd sbatch squeue scancel sinfo scontrol pgbouncer)
missing=()
for program in "${need[@]}"; do
  command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || missing+=("$program")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing slurmctld, slurmd, munge and pgbouncer (Debian packages) for the cluster" \
       "tests (missing: ${missing[*]})" >&2
  apt-get update -qq
  # policy-rc.d: the packages must not start their own daemons (no init system here, and the
  # tests start their own on free ports).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge \
    pgbouncer >/dev/null
  exit 0
fi
echo "the cluster tests need Debian's slurmctld, slurmd, slurm-client, munge and pgbouncer:" \
     "sudo apt-get install slurmctld slurmd slurm-client munge pgbouncer" >&2
exit 1
