#!/usr/bin/env bash
# An ssh stand-in for Open MPI's launcher (--mca plm_rsh_agent) in the two-host test:
# "netns-agent.sh HOST COMMAND..." runs COMMAND in the network namespace that plays HOST,
# under that host's own name (a UTS namespace), as ssh would run it on the host.
# TURBINE_NETNS_HOSTS maps hosts: "ADDRESS=NAMESPACE=HOSTNAME ..." (mpirun passes it on).
set -euo pipefail
host=$1
shift
for entry in ${TURBINE_NETNS_HOSTS:?}; do
  IFS== read -r address namespace name <<< "$entry"
  if [[ $host == "$address" ]]; then
    exec ip netns exec "$namespace" unshare --uts sh -c "hostname $name; $*"
  fi
done
echo "netns-agent: unknown host $host (TURBINE_NETNS_HOSTS: $TURBINE_NETNS_HOSTS)" >&2
exit 255
