#!/usr/bin/env bash
# scripts/tipc-vm/run.sh CMD [ARG...]
#
# Runs CMD inside a throw-away qemu guest whose kernel has TIPC, and exits with CMD's status.
# The host kernel has no AF_TIPC; Debian's stock kernel has it as a module, so we boot that one
# (setup.sh fetches it, without installing it) on top of the host's own file system:
#   - the guest's / is the host's /, read-only over 9p, under a tmpfs overlay: the same python,
#     venv, bash, ip and tipc as on the host; writes outside the working directory are discarded;
#   - the current directory is shared read-write at the same path: CMD runs there, and what it
#     writes (reports, __pycache__) lands on the host, owned by root;
#   - CMD gets the caller's environment, PYCLM_TIPC_GUEST=1, stdin /dev/null, and runs as root
#     in the guest with the tipc module loaded; other modules (veth, bridge, sch_netem,
#     nf_tables, ...) load on demand.  The guest has no network but lo: make namespaces and
#     veths inside it.  Its /run is an empty tmpfs, so the host's /run/netns stays out.
# CMD's stdout and stderr arrive here as it writes them (virtio-serial ports -> FIFOs -> cat).
#
# Cost: qemu emulates the CPU (TCG; the /dev/kvm on our CI machines is PVM, which cannot run a
# stock kernel), so the boot takes ~3 s and Python runs ~15x slower than on the host.  Put all
# the work of a CI step into one CMD.
#
# Exit status: CMD's; 124 when the run (setup included) took longer than PYCLM_TIPC_TIMEOUT; 125
# when the harness itself failed (setup, boot, mounts): then the tail of the guest's serial
# console is printed.  A CMD that itself exits 124 or 125 is told apart by our message on stderr.
#
# Env:
#   PYCLM_TIPC_TIMEOUT  seconds for the whole run, setup and downloads included (default 900)
#   PYCLM_TIPC_CACHE    kernel/busybox/initramfs cache (default ~/.cache/pyclm/tipc-vm; setup.sh)
#   PYCLM_TIPC_MEM      guest MiB (default 1024; the overlay's tmpfs may take half of it)
#   PYCLM_TIPC_SMP      guest CPUs (default 2)
#   PYCLM_TIPC_ACCEL    tcg or kvm (default: kvm only with real VT-x/AMD-V and no PVM; untested)
#   PYCLM_TIPC_MODULES  modules loaded before CMD starts (default "tipc")
#   PYCLM_TIPC_WORKDIR_CACHE  9p caching of the working directory: loose (default: the guest
#                       caches, ~10x faster Python start-up there) or none (every access goes to
#                       the host: coherent with host-side changes during the run, but slow)
#   PYCLM_TIPC_VERBOSE=1  print timings;  PYCLM_TIPC_KEEP=1  keep the run directory (console log)
set -uo pipefail   # no -e: every failure below must turn into exit status 125, with a reason

readonly timed_out=124 harness_failed=125
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { echo "pyclm tipc-vm: $*" >&2; }

if [ $# -eq 0 ]; then
    echo "usage: scripts/tipc-vm/run.sh CMD [ARG...]   (runs CMD in a guest whose kernel has TIPC)" >&2
    exit 2
fi
budget="${PYCLM_TIPC_TIMEOUT:-900}"
[[ "$budget" =~ ^[1-9][0-9]*$ ]] || { say "PYCLM_TIPC_TIMEOUT must be a number of seconds"; exit 2; }
workdir_cache="${PYCLM_TIPC_WORKDIR_CACHE:-loose}"
case "$workdir_cache" in loose | none) ;; *) say "PYCLM_TIPC_WORKDIR_CACHE must be loose or none"; exit 2 ;; esac
accel="${PYCLM_TIPC_ACCEL:-}"
if [ -z "$accel" ]; then
    # KVM only with real hardware virtualisation.  Our CI machines have a /dev/kvm backed by PVM
    # (module kvm_pvm), which runs only PVM-enabled guest kernels: a stock one hangs at boot.
    accel=tcg
    if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; fi
fi
case "$accel" in
    kvm) cpu=(-accel kvm -cpu host) ;;
    tcg) cpu=(-accel "tcg,thread=multi" -cpu max) ;;
    *) say "PYCLM_TIPC_ACCEL must be tcg or kvm"; exit 2 ;;
esac

t_start="$(date +%s.%N)"
seconds_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# --- processes we start, and how they end --------------------------------------------------
run="$(mktemp -d "${TMPDIR:-/tmp}/pyclm-tipc-vm.XXXXXX")" || exit "$harness_failed"
bounded_pid=""   # the timeout(1) around setup.sh or qemu
readers=()       # the two cats copying the guest's stdout/stderr
# shellcheck disable=SC2317  # (run by the EXIT trap)
cleanup() {
    if [ -n "$bounded_pid" ]; then kill -TERM "$bounded_pid" 2>/dev/null; wait "$bounded_pid"; fi
    for pid in "${readers[@]}"; do kill "$pid" 2>/dev/null; done
    if [ "${PYCLM_TIPC_KEEP:-0}" = 1 ]; then say "run directory kept: $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT
# Interrupted: timeout(1) passes the TERM on to setup.sh or qemu, cleanup reaps the rest.
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM HUP

# Like timeout(1), but interruptible: a foreground child would delay our traps until it ends.
# timeout puts the child in a process group of its own and, when time is up, signals that group,
# so it ends just what it started (apt-get under setup.sh; qemu), and KILLs 10 s after a TERM.
run_bounded() {
    local seconds="$1"
    shift
    timeout -k 10 "$seconds" "$@" &
    bounded_pid=$!
    wait "$bounded_pid"
    local status=$?
    bounded_pid=""
    return "$status"
}
remaining() { awk -v s="$t_start" -v now="$(date +%s.%N)" -v b="$budget" 'BEGIN { r = int(s + b - now); print (r > 0 ? r : 0) }'; }

console_tail() {
    [ -s "$run/console.log" ] || { say "(the guest's serial console is empty)"; return; }
    say "last lines of the guest's serial console:"
    tail -n 30 "$run/console.log" | tr -cd '[:print:]\t\n' >&2
}

# --- 1. kernel, modules, initramfs -------------------------------------------------------
run_bounded "$budget" bash "$here/setup.sh" >"$run/setup.out"
status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    say "setup did not finish within PYCLM_TIPC_TIMEOUT=${budget}s"
    exit "$timed_out"
fi
{ read -r build && read -r initrd; } <"$run/setup.out"
if [ "$status" != 0 ] || [ ! -d "${build:-}" ] || [ ! -s "${initrd:-}" ]; then
    say "setup failed (scripts/tipc-vm/setup.sh, exit status $status)"
    exit "$harness_failed"
fi
t_setup="$(seconds_since "$t_start")"
case "$build" in
    # The guest has its own /run, /proc, /sys and /dev: a cache in there would be out of its sight.
    /run/* | /proc/* | /sys/* | /dev/*) say "PYCLM_TIPC_CACHE must not be under /run, /proc, /sys or /dev"; exit 2 ;;
esac
kernel_version="$(cat "$build/kver")"
kernel="$build/vmlinux"
[ -s "$kernel" ] || kernel="$build/vmlinuz"
# A newer kernel's setup deletes older builds, but not one a guest is running from.
exec 8<"$build/in-use"
flock -s 8

# --- 2. what the guest runs ----------------------------------------------------------------
ctl="$run/ctl"
mkdir "$ctl"
workdir="$(pwd -P)"
# The host's / is already in the guest (read-only); sharing it read-write as "the working
# directory" would let the guest write all over the host.
[ "$workdir" = / ] && workdir=""
{
    printf 'KERNEL_VERSION=%q\n' "$kernel_version"
    printf 'MODULES_DIR=%q\n' "$build/root/lib/modules/$kernel_version"
    printf 'WORKDIR=%q\n' "$workdir"
    printf 'WORKDIR_CACHE=%q\n' "$workdir_cache"
    printf 'PRELOAD_MODULES=%q\n' "${PYCLM_TIPC_MODULES:-tipc}"
} >"$ctl/guest.conf"

# The caller's exported variables, except those that describe this shell, this login session
# or the host's /run (which the guest does not have).
{
    while read -r name; do
        case "$name" in
            PWD | OLDPWD | SHLVL | _ | SHELLOPTS | BASHOPTS | XDG_RUNTIME_DIR | DBUS_SESSION_BUS_ADDRESS | \
                SSH_AUTH_SOCK | SSH_AGENT_PID | DISPLAY | WAYLAND_DISPLAY | XAUTHORITY) continue ;;
        esac
        printf 'export %s=%q\n' "$name" "${!name}"
    done < <(compgen -e)
    echo 'export PYCLM_TIPC_GUEST=1'
    # A pyenv shim is a bash script that runs `pyenv` (more bash) before Python: ~3 s per start
    # under TCG.  Put the interpreter it resolves to first on PATH.  (A venv's python is already
    # a symlink to the real interpreter, so `.venv/bin/python` is fast either way.)
    if python3="$(command -v python3)" && [[ "$python3" == */shims/* ]]; then
        # shellcheck disable=SC2016  # $PATH is for the guest's shell to expand
        real="$(python3 -c 'import os, sys; print(os.path.dirname(os.path.realpath(sys.executable)))' 2>/dev/null)" &&
            printf 'export PATH=%q:"$PATH"\n' "$real"
    fi
} >"$ctl/environment"

{
    echo ". /run/pyclm-vm/ctl/environment"
    printf 'cd -- %q || { echo "cannot enter %q in the guest" >>/run/pyclm-vm/ctl/error; exit 1; }\n' \
        "${workdir:-/}" "${workdir:-/}"
    printf 'exec'
    printf ' %q' "$@"
    echo
} >"$ctl/command.sh"

# --- 3. boot ---------------------------------------------------------------------------------
# The guest's stdout/stderr: qemu writes each virtio-serial port into a FIFO, a cat copies it
# to ours as it comes.  We hold the FIFOs open for writing ourselves, so the cats see end of
# file only when we close them after qemu has exited, not whenever qemu reopens them.
mkfifo "$run/stdout" "$run/stderr"
cat "$run/stdout" &
readers+=($!)
cat "$run/stderr" >&2 &
readers+=($!)
exec 3>"$run/stdout" 4>"$run/stderr"

share() {   # share TAG DIR OPTIONS: a 9p export of a host directory (qemu escapes "," as ",,")
    qemu_share+=(-fsdev "local,id=$1,path=${2//,/,,},$3" -device "virtio-9p-pci,fsdev=$1,mount_tag=$1")
}
qemu_share=()
# security_model=none: the root share is read-only anyway.  passthrough: what the guest's root
# creates in the working directory belongs to root on the host, as when run there.
# multidevs=remap: both trees span several file systems; keeps their inode numbers apart.
share hostroot / "security_model=none,readonly=on,multidevs=remap"
[ -n "$workdir" ] && share hostcwd "$workdir" "security_model=passthrough,multidevs=remap"
share pyclmctl "$ctl" "security_model=none"

# quiet, loglevel=4: the console log should hold problems, not the boot chatter.
# mitigations=off, tsc=reliable, no_timer_check: nothing to protect, and under TCG the timer
# checks and speculation workarounds only cost time.  panic=-1 with -no-reboot: a guest that
# panics makes qemu exit at once instead of hanging until the timeout.
append="console=ttyS0 quiet loglevel=4 panic=-1 mitigations=off tsc=reliable no_timer_check random.trust_cpu=on"
t_boot="$(date +%s.%N)"
left="$(remaining)"
[ "$left" -gt 0 ] || { say "no time left to boot after setup (PYCLM_TIPC_TIMEOUT=${budget}s)"; exit "$timed_out"; }
run_bounded "$left" qemu-system-x86_64 \
    "${cpu[@]}" -machine q35 -smp "${PYCLM_TIPC_SMP:-2}" -m "${PYCLM_TIPC_MEM:-1024}" \
    -nodefaults -no-user-config -display none -no-reboot -monitor none \
    -kernel "$kernel" -initrd "$initrd" -append "$append" \
    -serial "file:${run//,/,,}/console.log" \
    "${qemu_share[@]}" \
    -device virtio-serial-pci \
    -chardev "file,id=stdout,path=${run//,/,,}/stdout" -device virtserialport,chardev=stdout,name=stdout \
    -chardev "file,id=stderr,path=${run//,/,,}/stderr" -device virtserialport,chardev=stderr,name=stderr \
    </dev/null 3>&- 4>&- 2>"$run/qemu.err"
qemu_status=$?
exec 3>&- 4>&-
wait "${readers[@]}"
readers=()

if [ "${PYCLM_TIPC_VERBOSE:-0}" = 1 ]; then
    say "accel $accel, kernel $kernel_version; setup ${t_setup}s, qemu $(seconds_since "$t_boot")s;" \
        "guest clock: $(tr '\n' ' ' <"$ctl/times" 2>/dev/null)"
fi

# --- 4. the verdict --------------------------------------------------------------------------
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
    say "timed out: the run took more than PYCLM_TIPC_TIMEOUT=${budget}s; qemu was stopped"
    console_tail
    exit "$timed_out"
fi
if [ -s "$ctl/error" ]; then
    say "the guest could not run the command: $(cat "$ctl/error")"
    console_tail
    exit "$harness_failed"
fi
if [ ! -s "$ctl/status" ]; then
    say "the guest stopped without reporting an exit status (qemu exit status $qemu_status)"
    [ -s "$run/qemu.err" ] && { say "qemu said:"; cat "$run/qemu.err" >&2; }
    console_tail
    exit "$harness_failed"
fi
status="$(cat "$ctl/status")"
# The command failed: if the guest kernel complained meanwhile (an oops, a warning from TIPC),
# that may be why.  quiet + loglevel=4 keep everything else out of the console log.
if [ "$status" != 0 ] && grep -qv 'reboot: Power down' "$run/console.log" 2>/dev/null; then
    console_tail
fi
exit "$status"
