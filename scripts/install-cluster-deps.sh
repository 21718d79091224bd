#!/usr/bin/env bash
# Installs what the Slurm and Ray executor tests need on a Debian machine: Slurm's daemons and client
# commands and munge, from Debian's packages. Ray comes from PyPI with the project's locked Python
# environment (`anneal setup`), not from here. `npm test` runs it first. Idempotent: when everything is
# there it only checks (a few milliseconds) and installs nothing.
#
# apt-get needs root: run as root it installs directly; otherwise it uses `sudo -n` (sudo without a
# password prompt) when that works, and else stops with exit 1 and the command to run as root. (The
# Slurm tests run their own slurmctld/slurmd as root too, so a non-root `npm test` cannot pass them.)
set -euo pipefail

need=()
for cmd in sbatch squeue scontrol scancel slurmctld slurmd munged; do
  # daemons live in /usr/sbin, which is not on a non-root user's PATH
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || need+=("$cmd")
done
if [ "${#need[@]}" -eq 0 ]; then
  echo "cluster deps: slurm and munge already installed"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "cluster deps: missing ${need[*]} (Slurm and munge, for the Slurm executor tests); installing them needs root:" \
      "run \`sudo bash scripts/install-cluster-deps.sh\` (Debian: apt-get install slurmctld slurmd slurm-client munge), then npm test again" >&2
    exit 1
  fi
fi

echo "cluster deps: installing ${need[*]} with apt-get (slurmctld slurmd slurm-client munge)"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
# The packages may start system daemons where an init system runs; the tests start their own on
# loopback with their own configuration and never use these.
echo "cluster deps: installed slurm $(sbatch --version | awk '{print $2}') and munge"
