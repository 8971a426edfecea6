# Stage 2 of the guest's start-up: PID 1 in the overlay root, run by the busybox that stage 1
# copied to /run/pyclm-vm (the host may have no busybox of its own).
#
# Finishes the system (pseudo file systems, lo, kernel modules, the host's working directory),
# runs the command run.sh left in the control share with its stdout and stderr on two
# virtio-serial ports, writes its exit status back to the share and powers off.  The
# control share is run.sh's only source of truth: no status file means the guest failed.
bb=/run/pyclm-vm/busybox
ctl=/run/pyclm-vm/ctl
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

now() { $bb cut -d' ' -f1 /proc/uptime; }
echo "stage2_start=$(now)" >"$ctl/times"

fail() {
    echo "$*" >>"$ctl/error"
    echo "pyclm tipc-vm stage 2: $*" >/dev/console
    $bb sync
    $bb poweroff -f
    $bb sleep 10
}

# KERNEL_VERSION, MODULES_DIR, WORKDIR, WORKDIR_CACHE, PRELOAD_MODULES: written by run.sh.
# shellcheck source=/dev/null
. "$ctl/guest.conf" || fail "no guest.conf in the control share"

$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o nosuid,nodev shm /dev/shm
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# devtmpfs has no /dev/fd: bash's process substitution and /dev/stdin users need these.
$bb ln -sf /proc/self/fd /dev/fd
$bb ln -sf /proc/self/fd/0 /dev/stdin
$bb ln -sf /proc/self/fd/1 /dev/stdout
$bb ln -sf /proc/self/fd/2 /dev/stderr
$bb hostname pyclm-tipc-vm
$bb ip link set lo up

# The guest kernel's modules live in the host's cache (setup.sh), visible through the root share.
$bb mkdir -p "/lib/modules/$KERNEL_VERSION"
$bb mount --bind "$MODULES_DIR" "/lib/modules/$KERNEL_VERSION" || fail "bind-mount $MODULES_DIR"
# The kernel autoloads modules (veth, bridge, sch_netem, nf_tables, ...) by running this helper:
# busybox's modprobe, since the host may have no kmod (ours has none).  And the same tools on
# PATH, where the host has none.
$bb ln -s $bb /run/pyclm-vm/modprobe
echo /run/pyclm-vm/modprobe >/proc/sys/kernel/modprobe
# (Checked by path: busybox's `command -v` would name its own applets.)
$bb mkdir -p /usr/local/sbin
for tool in modprobe insmod rmmod lsmod; do
    [ -e /usr/sbin/$tool ] || [ -e /sbin/$tool ] || [ -e /usr/bin/$tool ] || [ -e /bin/$tool ] ||
        $bb ln -s $bb /usr/local/sbin/$tool
done
# tipc.ko has no "net-pf-30" alias, so socket(AF_TIPC) alone would not load it.
for m in $PRELOAD_MODULES; do
    $bb modprobe "$m" || fail "modprobe $m"
done

# The caller's working directory, read-write at the same path.  WORKDIR_CACHE is "loose" unless
# the caller asks for "none": with "none" every stat and open is a round trip to the host, and a
# pytest start-up that imports ~500 modules (the venv lives in the working directory) takes
# minutes instead of seconds.  "loose" means the guest trusts its cache: files the host changes
# during the run may look unchanged, and the guest's writes reach the host at the `sync` below
# at the latest.  Neither matters for a test run.
if [ -n "$WORKDIR" ]; then
    $bb mkdir -p "$WORKDIR"
    $bb mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144,cache=$WORKDIR_CACHE" hostcwd "$WORKDIR" ||
        fail "mount the working directory $WORKDIR (9p tag hostcwd)"
fi

out=/dev/null
err=/dev/null
for port in /sys/class/virtio-ports/*; do
    case "$($bb cat "$port/name" 2>/dev/null)" in
        stdout) out="/dev/${port##*/}" ;;
        stderr) err="/dev/${port##*/}" ;;
    esac
done
if [ "$out" = /dev/null ] || [ "$err" = /dev/null ]; then fail "virtio-serial ports stdout/stderr not found"; fi

echo "command_start=$(now)" >>"$ctl/times"
/bin/bash "$ctl/command.sh" </dev/null >"$out" 2>"$err"
status=$?
echo "command_end=$(now)" >>"$ctl/times"
# Written last, after the command's output: its presence tells run.sh the command ran.
echo "$status" >"$ctl/status"
$bb sync
$bb poweroff -f
