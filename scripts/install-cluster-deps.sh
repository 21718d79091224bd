#!/usr/bin/env bash
# Installs what the Slurm and Ray executor tests need on a Debian machine: Slurm's daemons and client
# commands and munge, from Debian's packages. Ray comes from PyPI with the project's locked Python
# environment (`anneal setup`), not from here. Idempotent: quick when everything is already there.
set -euo pipefail

need=()
for cmd in sbatch squeue scontrol scancel slurmctld slurmd munged; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ "${#need[@]}" -eq 0 ]; then
  echo "cluster deps: slurm and munge already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "cluster deps: missing ${need[*]}; run this script as root (it uses apt-get)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
# The packages may start system daemons where an init system runs; the tests start their own on
# loopback with their own configuration and never use these.
echo "cluster deps: installed slurm $(sbatch --version | awk '{print $2}') and munge"
