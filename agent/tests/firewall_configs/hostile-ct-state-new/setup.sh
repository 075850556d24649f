#!/bin/bash
# hostile-ct-state-new: policy drop, then accept connection states new,
# established and related: every new inbound connection is accepted (only
# conntrack-invalid and untracked packets fall to the policy).
# Source: the firewall issue's third hostile state, verbatim (ruleset.nft).
#
# Run by agent/tests/firewall_configs.rs in the network lab's host namespace
# through Lab::sh_private (private mount and PID namespace, /run a tmpfs), with
# this directory as working directory; kernel.txt beside it is what the
# kernel lets in afterwards (UPDATE_EXPECT=1 rewrites it).
set -euo pipefail
nft -f ruleset.nft
