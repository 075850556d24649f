# The commands of base.args, then nat-default-linux.args (libvirt inserts,
# so the later a rule is in this file, the nearer the top of its chain).
for ipt in iptables ip6tables; do
    $ipt -w --table filter --new-chain LIBVIRT_INP
    $ipt -w --table filter --insert INPUT --jump LIBVIRT_INP
    $ipt -w --table filter --new-chain LIBVIRT_OUT
    $ipt -w --table filter --insert OUTPUT --jump LIBVIRT_OUT
    $ipt -w --table filter --new-chain LIBVIRT_FWO
    $ipt -w --table filter --insert FORWARD --jump LIBVIRT_FWO
    $ipt -w --table filter --new-chain LIBVIRT_FWI
    $ipt -w --table filter --insert FORWARD --jump LIBVIRT_FWI
    $ipt -w --table filter --new-chain LIBVIRT_FWX
    $ipt -w --table filter --insert FORWARD --jump LIBVIRT_FWX
    $ipt -w --table nat --new-chain LIBVIRT_PRT
    $ipt -w --table nat --insert POSTROUTING --jump LIBVIRT_PRT
    $ipt -w --table mangle --new-chain LIBVIRT_PRT
    $ipt -w --table mangle --insert POSTROUTING --jump LIBVIRT_PRT
done
ipt="iptables -w"
$ipt --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol tcp --destination-port 67 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol udp --destination-port 67 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_OUT --out-interface virbr0 --protocol tcp --destination-port 68 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_OUT --out-interface virbr0 --protocol udp --destination-port 68 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol tcp --destination-port 53 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_INP --in-interface virbr0 --protocol udp --destination-port 53 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_OUT --out-interface virbr0 --protocol tcp --destination-port 53 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_OUT --out-interface virbr0 --protocol udp --destination-port 53 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_FWO --in-interface virbr0 --jump REJECT
$ipt --table filter --insert LIBVIRT_FWI --out-interface virbr0 --jump REJECT
$ipt --table filter --insert LIBVIRT_FWX --in-interface virbr0 --out-interface virbr0 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_FWO --source 192.168.122.0/24 --in-interface virbr0 --jump ACCEPT
$ipt --table filter --insert LIBVIRT_FWI --destination 192.168.122.0/24 --out-interface virbr0 --match conntrack --ctstate ESTABLISHED,RELATED --jump ACCEPT
$ipt --table nat --insert LIBVIRT_PRT --source 192.168.122.0/24 '!' --destination 192.168.122.0/24 --jump MASQUERADE
$ipt --table nat --insert LIBVIRT_PRT --source 192.168.122.0/24 -p udp '!' --destination 192.168.122.0/24 --jump MASQUERADE --to-ports 1024-65535
$ipt --table nat --insert LIBVIRT_PRT --source 192.168.122.0/24 -p tcp '!' --destination 192.168.122.0/24 --jump MASQUERADE --to-ports 1024-65535
$ipt --table nat --insert LIBVIRT_PRT --source 192.168.122.0/24 --destination 255.255.255.255/32 --jump RETURN
$ipt --table nat --insert LIBVIRT_PRT --source 192.168.122.0/24 --destination 224.0.0.0/24 --jump RETURN
$ipt --table mangle --insert LIBVIRT_PRT --out-interface virbr0 --protocol udp --destination-port 68 --jump CHECKSUM --checksum-fill
