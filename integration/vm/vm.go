// Package vm boots a Debian kernel that has IPVS under qemu (software
// emulation) and runs one command in it. lvsha's integration tests use it
// when the host kernel lacks IPVS and cannot load modules: the same test
// binary then runs inside the VM, against a real kernel.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Modules are loaded at boot, so tests never depend on autoloading.
// ip_vs_twos exists only from Linux 6.2; it is loaded when present.
func Modules() []string {
	return []string{
		"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr",
		"ip_vs_dh", "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_mh", "ip_vs_twos",
		"nf_conntrack", "veth", "bridge", "sctp", "tun", "ipip", "sch_netem",
	}
}

// hostTools are copied into the VM with their shared libraries. The guest's
// shell must not be busybox: its built-in ip and modprobe lack netns
// support, so bash and the real iproute2 and kmod go in.
func hostTools() []string {
	return []string{"/usr/bin/bash", "/usr/sbin/ip", "/usr/sbin/ipvsadm", "/usr/bin/kmod", "/usr/sbin/tc"}
}

// Kernel is an unpacked Debian kernel with its modules and modules.dep.
type Kernel struct {
	Package string // the Debian package it came from
	Release string // e.g. 6.12.117+deb12-cloud-amd64
	Vmlinuz string
	Root    string // holds lib/modules/<Release>
}

// DefaultKernelPackage is the kernel the VM boots unless $LVSHA_VM_KERNEL
// names another: Debian bookworm's 6.12 cloud kernel, the newest LTS the
// bookworm archive carries. 6.1 (linux-image-cloud-amd64) lacks ip_vs_twos.
const DefaultKernelPackage = "linux-image-6.12-cloud-amd64"

// KernelPackage is $LVSHA_VM_KERNEL, else DefaultKernelPackage. It may be
// a meta-package (resolved with apt-cache depends) or a versioned one.
func KernelPackage() string {
	if p := os.Getenv("LVSHA_VM_KERNEL"); p != "" {
		return p
	}
	return DefaultKernelPackage
}

// CacheDir is where kernels are unpacked: $LVSHA_VM_CACHE, else
// $XDG_CACHE_HOME/lvsha-vm, else ~/.cache/lvsha-vm; outside the
// repository so a clean checkout reuses it.
func CacheDir() string {
	if d := os.Getenv("LVSHA_VM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "lvsha-vm")
	}
	return filepath.Join(os.TempDir(), "lvsha-vm")
}

// PrepareKernel downloads (apt-get download) and unpacks kernel package
// pkg into cache/pkg once and runs depmod on it; later calls reuse it, so
// only the first run needs the package index and the network.
func PrepareKernel(ctx context.Context, cache, pkg string) (*Kernel, error) {
	if !regexp.MustCompile(`^linux-image-[a-z0-9.+~-]+$`).MatchString(pkg) {
		return nil, fmt.Errorf("kernel package %q: not a linux-image-* package name", pkg)
	}
	dir := filepath.Join(cache, pkg)
	if k, err := cachedKernel(dir, pkg); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache %s: %w", dir, err)
	}
	// go test ./integration/... runs this package's tests and the
	// integration tests at once: on a cold cache only one may fill it.
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if k, err := cachedKernel(dir, pkg); err == nil {
		return k, nil
	}
	real, err := resolveKernelPackage(ctx, pkg)
	if err != nil {
		return nil, err
	}
	dl := filepath.Join(dir, "download")
	os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache %s: %w", dl, err)
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", real)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", real, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files in %s, want 1", real, len(debs), dl)
	}
	root := filepath.Join(dir, "root.tmp")
	os.RemoveAll(root)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", debs[0], err, out)
	}
	rels, _ := os.ReadDir(filepath.Join(root, "lib/modules"))
	if len(rels) != 1 {
		return nil, fmt.Errorf("unpack %s: want one kernel release under lib/modules, found %d", debs[0], len(rels))
	}
	rel := rels[0].Name()
	if err := decompressModules(ctx, filepath.Join(root, "lib/modules", rel)); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, rel).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod -b %s %s (is kmod installed?): %w: %s", root, rel, err, out)
	}
	// Renamed into place last, so an interrupted preparation is redone
	// rather than half used.
	final := filepath.Join(dir, "root")
	os.RemoveAll(final)
	if err := os.Rename(root, final); err != nil {
		return nil, fmt.Errorf("kernel cache %s: %w", final, err)
	}
	os.RemoveAll(dl)
	return cachedKernel(dir, pkg)
}

// lockDir takes an exclusive flock on dir/.lock, waiting for it as long
// as ctx allows.
func lockDir(ctx context.Context, dir string) (func(), error) {
	name := filepath.Join(dir, ".lock")
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kernel cache lock %s: %w", name, err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kernel cache lock %s: %w", name, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kernel cache lock %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// decompressModules unpacks xz- or zstd-compressed modules (Debian
// compresses them from 6.12) once on the host: under emulation the guest
// would spend seconds decompressing them at every boot.
func decompressModules(ctx context.Context, dir string) error {
	byTool := map[string][]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".ko.xz"):
			byTool["xz"] = append(byTool["xz"], p)
		case strings.HasSuffix(p, ".ko.zst"):
			byTool["zstd"] = append(byTool["zstd"], p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list modules in %s: %w", dir, err)
	}
	for tool, files := range byTool {
		for len(files) > 0 {
			n := min(len(files), 500)
			args := []string{"-d", "-q"} // xz removes what it unpacks
			if tool == "zstd" {
				args = append(args, "--rm")
			}
			args = append(args, files[:n]...)
			if out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput(); err != nil {
				return fmt.Errorf("decompress kernel modules with %s (apt-get install xz-utils zstd): %w: %s", tool, err, out)
			}
			files = files[n:]
		}
	}
	return nil
}

// resolveKernelPackage turns a meta-package (linux-image-cloud-amd64) into
// the versioned image package it depends on; a versioned name is itself.
func resolveKernelPackage(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", pkg).CombinedOutput()
	if err != nil || !bytes.HasPrefix(bytes.TrimSpace(out), []byte(pkg)) {
		return "", fmt.Errorf("kernel package %s is not in the package index (run apt-get update, or set LVSHA_VM_KERNEL to one apt-cache search linux-image lists): %v: %s", pkg, err, bytes.TrimSpace(out))
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*)`).FindSubmatch(out)
	if m == nil {
		return pkg, nil
	}
	return string(m[1]), nil
}

func cachedKernel(dir, pkg string) (*Kernel, error) {
	root := filepath.Join(dir, "root")
	rels, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil || len(rels) != 1 {
		return nil, fmt.Errorf("no cached kernel in %s", dir)
	}
	k := &Kernel{Package: pkg, Release: rels[0].Name(), Root: root, Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+rels[0].Name())}
	if _, err := os.Stat(filepath.Join(root, "lib/modules", k.Release, "modules.dep")); err != nil {
		return nil, err
	}
	if _, err := os.Stat(k.Vmlinuz); err != nil {
		return nil, err
	}
	return k, nil
}

// Spec says what to run in the VM.
type Spec struct {
	// Files maps a path inside the VM to a host file copied there
	// (statically linked binaries: the test binary, lvsha).
	Files map[string]string
	// Command is run by bash inside the VM after boot, as root, with
	// /bin:/sbin on PATH. Its exit status is the VM's result.
	Command string
	// Env is added to the command's environment.
	Env []string
	// Tools are further dynamically linked host programs copied into the
	// VM with their libraries (e.g. /usr/sbin/keepalived, a peer to compare
	// with).
	Tools []string
	// Memory in MiB (default 1024) and CPUs (default 2).
	Memory, CPUs int
	// KernelArgs are added to the kernel's command line, e.g.
	// "mitigations=off" for a benchmark whose figures the emulation of
	// page-table switches on every system call would otherwise swamp.
	KernelArgs []string
	// Output receives the guest console (the command's stdout and stderr
	// included); nil discards it.
	Output io.Writer
}

// Markers init prints on the console around the command's output.
const (
	startMarker = "LVSHA-VM-START"
	exitMarker  = "LVSHA-VM-EXIT="
	// noIPVSMarker says the booted kernel has no IPVS even after loading
	// its modules: the run must fail, not test nothing.
	noIPVSMarker = "LVSHA-VM-NO-IPVS"
)

// Result is how a VM run went.
type Result struct {
	// ExitCode is the command's exit status inside the VM.
	ExitCode int
	// Boot is from starting qemu to init starting the command; Uptime is
	// the guest kernel's own uptime at that moment.
	Boot, Uptime time.Duration
	// Total is from starting qemu to qemu's exit.
	Total time.Duration
}

// Run builds an initramfs for spec, boots k under qemu with software
// emulation (KVM is not used: /dev/kvm exists on the build hosts but
// hangs), runs spec.Command and returns its exit status. ctx bounds the
// whole run: when it ends qemu is killed. The console before the command
// starts (firmware, kernel) is shown only when the VM fails to report an
// exit status, as that is when it explains something.
func Run(ctx context.Context, k *Kernel, spec Spec) (Result, error) {
	res := Result{ExitCode: -1}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
	}
	work, err := os.MkdirTemp("", "lvsha-vm-")
	if err != nil {
		return res, fmt.Errorf("VM work directory: %w", err)
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := buildInitramfs(ctx, k, spec, filepath.Join(work, "root"), initrd); err != nil {
		return res, err
	}
	mem, cpus := spec.Memory, spec.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	// Under emulation the guest kernel now and then dies before init (an
	// int3 oops while it patches its own text was seen): that is the
	// emulator, not the code under test, so boot again a bounded number of
	// times. A guest that reached init is never rerun.
	for attempt := 1; ; attempt++ {
		res, started, err := boot(ctx, qemu, k, initrd, mem, cpus, spec.KernelArgs, out)
		if err == nil || started || ctx.Err() != nil || attempt == maxBoots {
			return res, err
		}
		fmt.Fprintf(out, "vm: the guest died before init (boot %d of %d: %v); booting again\n", attempt, maxBoots, err)
	}
}

// maxBoots bounds the boots of one Run whose guest dies before init.
const maxBoots = 3

// boot runs qemu once; started reports whether the guest reached init.
func boot(ctx context.Context, qemu string, k *Kernel, initrd string, mem, cpus int, args []string, out io.Writer) (res Result, started bool, err error) {
	res = Result{ExitCode: -1}
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", strings.Join(append([]string{"console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init"}, args...), " "))
	// qemu must not outlive a test binary killed by go test's own timeout
	// (SIGQUIT, then SIGKILL), which no context sees.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, started, fmt.Errorf("qemu console: %w", err)
	}
	var qerr bytes.Buffer
	cmd.Stderr = &qerr
	// Pdeathsig fires when the thread that started qemu ends; keep this
	// goroutine on it until qemu is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, started, fmt.Errorf("start qemu: %w", err)
	}
	var early bytes.Buffer // console before the command starts
	ended, noIPVS := false, false
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		// The firmware's screen reset has no newline of its own, so it
		// prefixes the first line init prints.
		marker := stripEscapes(line)
		switch {
		case ended:
			// poweroff chatter
		case !started && strings.Contains(marker, startMarker):
			// The firmware's last message ("Booting from ROM..") may lack
			// its newline too and precede the marker on the same line.
			started = true
			res.Boot = time.Since(start)
			_, after, _ := strings.Cut(marker, startMarker)
			if f := strings.Fields(after); len(f) > 0 {
				if up, err := strconv.ParseFloat(f[0], 64); err == nil {
					res.Uptime = time.Duration(up * float64(time.Second))
				}
			}
		case !started:
			if early.Len() < 256<<10 {
				early.WriteString(marker + "\n")
			}
		case line == noIPVSMarker:
			noIPVS = true
		case strings.HasPrefix(line, exitMarker):
			if n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, exitMarker))); err == nil {
				res.ExitCode = n
				ended = true
			}
		default:
			fmt.Fprintln(out, line)
		}
	}
	werr := cmd.Wait()
	res.Total = time.Since(start)
	if !ended {
		if !started {
			out.Write(early.Bytes())
		}
		if ctx.Err() != nil {
			return res, started, fmt.Errorf("VM did not finish in time (booted: %v): %w", started, ctx.Err())
		}
		return res, started, fmt.Errorf("VM ended without reporting an exit status (booted: %v; qemu: %v %s)", started, werr, strings.TrimSpace(qerr.String()))
	}
	if noIPVS {
		return res, started, fmt.Errorf("kernel %s booted but has no IPVS after loading its modules", k.Release)
	}
	return res, true, nil
}

// stripEscapes drops terminal control sequences (the firmware clears the
// screen) so a console dump stays readable.
func stripEscapes(s string) string {
	return regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`).ReplaceAllString(s, "")
}

// moduleClosure returns the module files (relative to lib/modules/<rel>)
// the named modules need, dependencies included; names not built as
// modules (built in, or absent in this kernel) are skipped.
func moduleClosure(k *Kernel, names []string) ([]string, error) {
	dep, err := os.ReadFile(filepath.Join(k.Root, "lib/modules", k.Release, "modules.dep"))
	if err != nil {
		return nil, err
	}
	byName := map[string][]string{}
	for _, line := range strings.Split(string(dep), "\n") {
		file, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		name = strings.TrimSuffix(name, ".ko")
		byName[name] = append([]string{file}, strings.Fields(deps)...)
	}
	set := map[string]bool{}
	for _, n := range names {
		for _, f := range byName[n] {
			set[f] = true
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

func buildInitramfs(ctx context.Context, k *Kernel, spec Spec, root, out string) error {
	for _, d := range []string{"bin", "sbin", "proc", "sys", "dev", "run", "tmp", "etc", "var", "lib/modules/" + k.Release} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	copyFile := func(dst, src string, mode os.FileMode) error {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, mode)
	}
	busybox := "/bin/busybox"
	if out, err := exec.Command(busybox, "--help").CombinedOutput(); err != nil || !bytes.Contains(out, []byte("BusyBox")) {
		return fmt.Errorf("%s is missing (apt-get install busybox-static): %v", busybox, err)
	}
	if err := copyFile(filepath.Join(root, "bin/busybox"), busybox, 0o755); err != nil {
		return err
	}
	for _, tool := range append(hostTools(), spec.Tools...) {
		if err := copyFile(filepath.Join(root, "bin", filepath.Base(tool)), tool, 0o755); err != nil {
			return fmt.Errorf("copy %s into the VM (apt-get install iproute2 ipvsadm kmod): %w", tool, err)
		}
		libs, err := sharedLibs(ctx, tool)
		if err != nil {
			return err
		}
		for _, l := range libs {
			if err := copyFile(filepath.Join(root, l), l, 0o755); err != nil {
				return err
			}
		}
	}
	mods, err := moduleClosure(k, Modules())
	if err != nil {
		return err
	}
	mroot := filepath.Join(k.Root, "lib/modules", k.Release)
	for _, f := range append(mods, "modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.symbols", "modules.symbols.bin", "modules.builtin", "modules.builtin.bin", "modules.order", "modules.softdep") {
		src := filepath.Join(mroot, f)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := copyFile(filepath.Join(root, "lib/modules", k.Release, f), src, 0o644); err != nil {
			return err
		}
	}
	for dst, src := range spec.Files {
		if err := copyFile(filepath.Join(root, dst), src, 0o755); err != nil {
			return fmt.Errorf("copy %s into the VM: %w", src, err)
		}
	}
	// As on Debian, /var/run is /run: ip netns uses one, tests the other.
	if err := os.Symlink("/run", filepath.Join(root, "var/run")); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(initScript(spec)), 0o755); err != nil {
		return err
	}
	// Programs look their users up (tcpdump -Z root; tests running as
	// nobody).
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644); err != nil {
		return err
	}
	// cpio newc, uncompressed: the kernel unpacks it faster than it would
	// gunzip under emulation.
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cpio := exec.CommandContext(ctx, "/bin/busybox", "cpio", "-o", "-H", "newc")
	cpio.Dir = root
	var list bytes.Buffer
	err = filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel != "." {
			list.WriteString(rel + "\n")
		}
		return nil
	})
	if err != nil {
		return err
	}
	cpio.Stdin = &list
	cpio.Stdout = f
	var cerr bytes.Buffer
	cpio.Stderr = &cerr
	if err := cpio.Run(); err != nil {
		return fmt.Errorf("build initramfs: %w: %s", err, cerr.String())
	}
	return nil
}

// sharedLibs lists the shared libraries (and loader) a dynamic binary
// needs, as ldd reports them.
func sharedLibs(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var libs []string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			libs = append(libs, f)
		}
	}
	if len(libs) == 0 {
		return nil, errors.New("ldd " + bin + ": no libraries found")
	}
	return libs, nil
}

func initScript(spec Spec) string {
	var env strings.Builder
	for _, e := range spec.Env {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&env, "export %s=%s\n", k, shellQuote(v))
	}
	mods := strings.Join(Modules(), " ")
	return `#!/bin/busybox sh
/bin/busybox mkdir -p /usr/bin /usr/sbin
/bin/busybox --install -s /bin 2>/dev/null
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
ln -sf /bin/bash /bin/sh
for t in modprobe insmod lsmod depmod rmmod; do ln -sf /bin/kmod /sbin/$t; done
ln -sf /bin/ip /sbin/ip; ln -sf /bin/ipvsadm /sbin/ipvsadm
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/netns
# Loaded here, not on demand: a test must not depend on autoloading. A
# module this kernel lacks is named on the console (ip_vs_twos before 6.2).
# One modprobe for all (each process start costs ~0.3 s under emulation);
# only if that fails, one by one to learn which.
failed=
if ! /sbin/modprobe -a ` + mods + ` >/dev/null 2>&1; then
  for m in ` + mods + `; do
    /sbin/modprobe $m >/dev/null 2>&1 || failed="$failed $m"
  done
fi
if [ ! -e /proc/net/ip_vs ]; then
  echo "` + startMarker + `"
  echo "lvsha-vm: modules this kernel could not load:$failed"
  echo "lvsha-vm: no IPVS in this kernel (/proc/net/ip_vs missing)"
  echo "` + noIPVSMarker + `"
  echo "` + exitMarker + `1"
  poweroff -f
fi
ip link set lo up
cat > /tmp/cmd.sh <<'LVSHA_CMD_EOF'
` + env.String() + `cd /
` + spec.Command + `
LVSHA_CMD_EOF
read up _ < /proc/uptime
echo "` + startMarker + ` $up"
[ -z "$failed" ] || echo "lvsha-vm: modules this kernel could not load:$failed"
/bin/bash /tmp/cmd.sh
echo "` + exitMarker + `$?"
sync
poweroff -f
`
}

// Quote renders argv as one bash command line.
func Quote(argv ...string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
