# The host's own policy, as an administrator types it: SSH, loopback and
# replies in, everything else dropped, in both families.
for ipt in iptables ip6tables; do
    $ipt -A INPUT -i lo -j ACCEPT
    $ipt -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    $ipt -A INPUT -p tcp --dport 22 -j ACCEPT
    $ipt -P INPUT DROP
done
