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
	"sort"
	"strconv"
	"strings"
	"time"
)

// Modules are loaded at boot, so tests never depend on autoloading.
// ip_vs_twos exists only from Linux 6.2; it is loaded when present.
func Modules() []string {
	return []string{
		"ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_lc", "ip_vs_wlc", "ip_vs_lblc", "ip_vs_lblcr",
		"ip_vs_dh", "ip_vs_sh", "ip_vs_sed", "ip_vs_nq", "ip_vs_fo", "ip_vs_ovf", "ip_vs_mh", "ip_vs_twos",
		"nf_conntrack", "veth", "bridge", "sctp", "tun", "ipip",
	}
}

// hostTools are copied into the VM with their shared libraries. The guest's
// shell must not be busybox: its built-in ip and modprobe lack netns
// support, so bash and the real iproute2 and kmod go in.
func hostTools() []string {
	return []string{"/usr/bin/bash", "/usr/sbin/ip", "/usr/sbin/ipvsadm", "/usr/bin/kmod"}
}

// Kernel is an unpacked Debian kernel with its modules and modules.dep.
type Kernel struct {
	Release string // e.g. 6.1.0-56-cloud-amd64
	Vmlinuz string
	Root    string // holds lib/modules/<Release>
}

// CacheDir is where the kernel is unpacked: $LVSHA_VM_CACHE, else
// $XDG_CACHE_HOME/lvsha-vm, else ~/.cache/lvsha-vm.
func CacheDir() string {
	if d := os.Getenv("LVSHA_VM_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "lvsha-vm")
	}
	return filepath.Join(os.TempDir(), "lvsha-vm")
}

// PrepareKernel downloads (apt-get download) and unpacks the newest
// linux-image-*-cloud-amd64 the package index offers, once; later calls
// reuse the cache.
func PrepareKernel(ctx context.Context, cache string) (*Kernel, error) {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache %s: %w", cache, err)
	}
	if k, err := cachedKernel(cache); err == nil {
		return k, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("find the cloud kernel package (apt-cache depends linux-image-cloud-amd64; run apt-get update first?): %w: %s", err, out)
	}
	m := regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-cloud-amd64)\b`).FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no linux-image-*-cloud-amd64 in the package index (run apt-get update): %s", out)
	}
	pkg := string(m[1])
	dl := filepath.Join(cache, "download")
	os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files in %s", pkg, len(debs), dl)
	}
	root := filepath.Join(cache, "root.tmp")
	os.RemoveAll(root)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %w: %s", debs[0], err, out)
	}
	rels, _ := os.ReadDir(filepath.Join(root, "lib/modules"))
	if len(rels) != 1 {
		return nil, fmt.Errorf("%s: want one kernel release under lib/modules, found %d", debs[0], len(rels))
	}
	rel := rels[0].Name()
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, rel).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("depmod -b %s %s (is kmod installed?): %w: %s", root, rel, err, out)
	}
	final := filepath.Join(cache, "root")
	os.RemoveAll(final)
	if err := os.Rename(root, final); err != nil {
		return nil, err
	}
	os.RemoveAll(dl)
	return cachedKernel(cache)
}

func cachedKernel(cache string) (*Kernel, error) {
	root := filepath.Join(cache, "root")
	rels, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil || len(rels) != 1 {
		return nil, fmt.Errorf("no cached kernel in %s", cache)
	}
	k := &Kernel{Release: rels[0].Name(), Root: root, Vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+rels[0].Name())}
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
	// Output receives the guest console (the command's stdout and stderr
	// included); nil discards it.
	Output io.Writer
}

const exitMarker = "LVSHA-VM-EXIT="

// Run builds an initramfs for spec, boots k under qemu with software
// emulation (KVM is not used: /dev/kvm exists on the build hosts but
// hangs), and returns the command's exit status. ctx bounds the whole run.
func Run(ctx context.Context, k *Kernel, spec Spec) (int, error) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return -1, fmt.Errorf("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
	}
	work, err := os.MkdirTemp("", "lvsha-vm-")
	if err != nil {
		return -1, err
	}
	defer os.RemoveAll(work)
	initrd := filepath.Join(work, "initrd.cpio")
	if err := buildInitramfs(ctx, k, spec, filepath.Join(work, "root"), initrd); err != nil {
		return -1, err
	}
	mem, cpus := spec.Memory, spec.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 2
	}
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-net", "none",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init")
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return -1, err
	}
	var qerr bytes.Buffer
	cmd.Stderr = &qerr
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start qemu: %w", err)
	}
	code := -1
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if rest, ok := strings.CutPrefix(line, exitMarker); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				code = n
			}
			continue
		}
		if spec.Output != nil {
			fmt.Fprintln(spec.Output, line)
		}
	}
	werr := cmd.Wait()
	if code < 0 {
		if ctx.Err() != nil {
			return -1, fmt.Errorf("VM did not finish in time: %w", ctx.Err())
		}
		return -1, fmt.Errorf("VM ended without reporting an exit status (qemu: %v %s)", werr, strings.TrimSpace(qerr.String()))
	}
	return code, nil
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
	for _, f := range append(mods, "modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin", "modules.symbols", "modules.symbols.bin", "modules.builtin", "modules.builtin.bin", "modules.order") {
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
for m in ` + mods + `; do
  /sbin/modprobe -q $m 2>/dev/null || true
done
ip link set lo up
cat > /tmp/cmd.sh <<'LVSHA_CMD_EOF'
` + env.String() + `cd /
` + spec.Command + `
LVSHA_CMD_EOF
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
