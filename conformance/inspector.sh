# conform inspector: run INSIDE a container as `sh -c "$(cat inspector.sh)"` (busybox sh).
# Prints ONE JSON object with what the process sees of its container. Strings are escaped
# with sed; files become arrays of lines; nothing here needs more than busybox applets.
# A fact that cannot be read is null (numbers, namespace ids), never left out and never
# invalid JSON: a misbehaving runtime must give a readable view. Namespaces are read through
# /proc/self by the reading process (same namespaces as the shell): reading /proc/$$/ns/*
# from a child needs ptrace access, which a non-dumpable init (a runtime granting
# CAP_SYS_ADMIN...) denies.
# Field names are parsed by conformance/inspector.py: keep both in step.
me=$$
n() { case "$1" in ''|*[!0-9-]*) printf 'null' ;; *) printf '%s' "$1" ;; esac; }
q() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' -e 's/\r/\\r/g'; }
s() { printf '"%s"' "$(printf '%s' "$1" | q)"; }
l() { q | sed -e 's/^/"/' -e 's/$/",/' | tr -d '\n' | sed -e 's/,$//'; }
a() { printf '['; if [ -r "$1" ]; then l < "$1"; fi; printf ']'; }
al() { printf '['; l; printf ']'; }
st() { sed -n "s/^$1:[[:space:]]*//p" /proc/$me/status | head -n 1; }
printf '{'
printf '"pid":%s,' "$(n "$me")"
printf '"ppid":%s,' "$(n "$(st PPid)")"
printf '"pid1_ppid":%s,' "$(n "$(sed -n 's/^PPid:[[:space:]]*//p' /proc/1/status 2>/dev/null || echo -1)")"
printf '"hostname":%s,' "$(s "$(hostname)")"
printf '"etc_hostname_hex":%s,' "$(s "$(od -An -tx1 -v /etc/hostname 2>/dev/null | tr -d ' \n')")"
printf '"etc_hostname_exists":%s,' "$([ -e /etc/hostname ] && echo true || echo false)"
printf '"ns":{'
sep=''
for k in pid mnt uts ipc net user cgroup time; do
  id=$(stat -L -c '%d:%i' /proc/self/ns/$k 2>/dev/null)
  case "$id" in *:*) id=$(s "$id") ;; *) id=null ;; esac
  printf '%s"%s":{"id":%s,"link":%s}' "$sep" "$k" "$id" "$(s "$(readlink /proc/self/ns/$k 2>/dev/null)")"
  sep=','
done
printf '},'
printf '"uid_map":%s,' "$(a /proc/$me/uid_map)"
printf '"gid_map":%s,' "$(a /proc/$me/gid_map)"
printf '"setgroups":%s,' "$(s "$(cat /proc/$me/setgroups 2>/dev/null)")"
printf '"cgroup":%s,' "$(a /proc/$me/cgroup)"
printf '"mountinfo":%s,' "$(a /proc/$me/mountinfo)"
printf '"interfaces":%s,' "$(ls /sys/class/net 2>/dev/null | al)"
printf '"status":{'
sep=''
for k in Uid Gid Groups CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp Cpus_allowed_list Mems_allowed_list; do
  printf '%s"%s":%s' "$sep" "$k" "$(s "$(st $k)")"
  sep=','
done
printf '},'
printf '"pids":[%s],' "$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ',' | sed -e 's/,$//')"
printf '"self_link":%s,' "$(s "$(readlink /proc/self)")"
printf '"cwd":%s,' "$(s "$(pwd)")"
printf '"uid":%s,"gid":%s,' "$(n "$(id -u)")" "$(n "$(id -g)")"
printf '"env":%s' "$(env | al)"
printf '}\n'
