#!/bin/bash
# Prints what crisp's tests could leave behind on this machine, one item a
# line, sorted: run it before and after the suite and compare.
{
  grep -E 'crisp|nsfs' /proc/self/mountinfo | awk '{print "mount " $5}'
  ip netns list 2>/dev/null | awk '{print "netns " $1}'
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(veth|crisp)' | sed 's/^/link /'
  for c in /sys/fs/cgroup/*/; do
    find "$c" -maxdepth 1 -type d -name 'crisp*' 2>/dev/null | sed 's/^/cgroup /'
  done
  # Zombies are left out: on machines whose PID 1 does not reap, an orphan
  # that died after its test process exited cannot be collected by anyone.
  ps -eo pid=,stat=,comm= | awk '$2 !~ /^Z/ && ($3=="crisp-pause" || $3=="crisp-shim" || $3=="crispd") {print "process " $3 " " $1}'
} | sort
