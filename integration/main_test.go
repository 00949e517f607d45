// Package integration proves lvsha against the real thing: kernel IPVS,
// real packets between network namespaces, real ipvsadm as a witness.
//
// Where the host kernel has IPVS (and we are root) the tests run directly.
// Where it has none, TestMain builds this test binary and lvsha statically,
// boots a Debian kernel under qemu (integration/vm) and runs them there.
// A host that can do neither fails: these tests never skip.
package integration

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsha/lvsha/integration/vm"
	"github.com/lvsha/lvsha/ipvs"
)

// Environment variables between the outer run and the run in the VM.
const (
	envInVM     = "LVSHA_IN_VM"     // "1": run the tests here, this kernel has IPVS
	envLvsha    = "LVSHA_BIN"       // path of the lvsha binary to test
	envLvshaErr = "LVSHA_BIN_ERROR" // why there is no lvsha binary
	envRole     = "LVSHA_ROLE"      // set: this process is a helper (web, get, hold)
	envCorpus   = "LVSHA_KA_CORPUS" // where the keepalived corpus is
	// envKernelArgs: words added to the VM kernel's command line (e.g.
	// "mitigations=off" for BenchmarkHealthChecks, see its comment).
	envKernelArgs = "LVSHA_VM_KERNEL_ARGS"
	// envProfile set: BenchmarkReload10k's lvsha writes a CPU profile of
	// its whole run and the bench prints it (profileOut).
	envProfile = "LVSHA_BENCH_PROFILE"
	hostCorpus = "../conf/keepalived/testdata/corpus"
	vmCorpus   = "/corpus"
	// vmBudget bounds a VM run when go test has no timeout (-timeout 0).
	vmBudget = 25 * time.Minute
	// vmMargin is kept from the outer deadline for building, booting and
	// reporting, so the inner run times out (and says which test hung)
	// before the outer one is killed.
	vmMargin = 90 * time.Second
)

func TestMain(m *testing.M) {
	flag.Parse()
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role))
	}
	if os.Getenv(envInVM) == "1" {
		keepTimestamps()
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: these tests need root (network namespaces, IPVS, qemu); run them as root")
		os.Exit(1)
	}
	if h, err := ipvs.Open(""); err == nil {
		h.Close()
		if os.Getenv(envLvsha) == "" {
			dir, err := os.MkdirTemp("", "lvsha-integration-")
			if err != nil {
				fmt.Fprintln(os.Stderr, "integration:", err)
				os.Exit(1)
			}
			setLvsha(context.Background(), dir)
			code := m.Run()
			os.RemoveAll(dir)
			os.Exit(code)
		}
		os.Exit(m.Run())
	}
	begin := time.Now()
	code := runOnHost(m)
	os.Exit(max(code, runInVM(begin)))
}

// hostTests are the tests and benchmarks that need no IPVS and that the
// VM's emulation would distort: a hundred VRRP instances a side, each
// sending ten adverts a second, hold their Master_Down_Interval (361 ms)
// only when every process gets the CPU within a few hundred
// milliseconds, and under tcg, with two daemons sharing the emulated
// vCPUs, a stall of that length is routine (a CI run saw keepalived take
// over one VRID from a healthy lvsha master). Issue #21 asks for them in
// namespaces on the host; where the host has no IPVS they run there, and
// the VM run skips them. Where the host has IPVS everything runs here.
// The advert flood and the BFD tests need no IPVS either, and time
// detection in tens of milliseconds; the cluster tests run VRRP and
// gossip only.
var hostTests = []string{"TestScaleLvsha", "TestScaleInterop", "BenchmarkScale", "TestAdvertFlood", "TestBFDFlood", "TestBFDAcceptFlood",
	"TestBFDRunners", "TestBFDTshark", "TestBFDKeepalived", "TestBFDTakeover", "TestBFDKeepalivedPeer", "TestBFDGracefulStop", "TestBFDTakeoverIPv6", "TestIPv6NoLinkLocal",
	"BenchmarkFailoverBFD", "BenchmarkBFDLoad", "TestClusterDirectors", "TestClusterSplitBrainResolve", "TestGossipFlood",
	"TestConvertKeepalivedSamples", "TestInterfaceDownFault", "TestSourceAddressGone", "TestDaemonSecurity", "TestDaemonScheduling"}

// runOnHost runs, in this process on the host, those of hostTests that
// -run (or -bench) selects; the status is m.Run's, or 0 if none is.
func runOnHost(m *testing.M) int {
	var tests, benches []string
	for _, name := range hostTests {
		if strings.HasPrefix(name, "Benchmark") {
			if selected(name, "test.bench", "") {
				benches = append(benches, name)
			}
		} else if selected(name, "test.run", ".") {
			tests = append(tests, name)
		}
	}
	if len(tests)+len(benches) == 0 {
		return 0
	}
	fmt.Printf("integration: running %s on the host (no IPVS needed)\n", strings.Join(append(tests, benches...), ", "))
	// The VM run that follows gets the patterns as given.
	run, bench := flag.Lookup("test.run").Value.String(), flag.Lookup("test.bench").Value.String()
	defer func() { flag.Set("test.run", run); flag.Set("test.bench", bench) }()
	runPat := "^$"
	if len(tests) > 0 {
		runPat = "^(" + strings.Join(tests, "|") + ")$" + subPattern(run)
	}
	flag.Set("test.run", runPat)
	if len(benches) > 0 {
		flag.Set("test.bench", "^("+strings.Join(benches, "|")+")$"+subPattern(bench))
	}
	dir, err := os.MkdirTemp("", "lvsha-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	setLvsha(context.Background(), dir)
	return m.Run()
}

// selected says whether the top level of the pattern in the flag named
// flagName (empty: def) matches name and its -skip does not, as go test
// would decide.
func selected(name, flagName, def string) bool {
	pat := def
	if f := flag.Lookup(flagName); f != nil && f.Value.String() != "" {
		pat = f.Value.String()
	}
	if pat == "" {
		return false
	}
	top, _, _ := strings.Cut(pat, "/")
	if ok, err := regexp.MatchString(top, name); err != nil || !ok {
		return false
	}
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
		skip, _, _ := strings.Cut(f.Value.String(), "/")
		if ok, _ := regexp.MatchString(skip, name); ok {
			return false
		}
	}
	return true
}

// subPattern is what follows the top level of a -run or -bench pattern
// ("/" and the subtests' patterns), to keep after a rewritten top level.
func subPattern(pat string) string {
	if _, sub, ok := strings.Cut(pat, "/"); ok {
		return "/" + sub
	}
	return ""
}

// keepTimestamps holds a socket with SO_TIMESTAMPNS open for the life of
// the process, so that the kernel's receive-timestamp static key stays on.
// lvsha's VRRP sockets and the benchmark's captures ask for timestamps,
// and each time the last such socket closed and a new one opened, the
// kernel rewrote the branch in netif_rx_internal with text_poke_bp; under
// qemu's tcg a vCPU once ran into that rewrite's int3 and the guest
// panicked ("Oops: int3" in netif_rx_internal, during a CI run). On real
// hardware the rewrite is safe, so only the VM does this.
func keepTimestamps() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: a socket to keep receive timestamps on:", err)
	}
	// The descriptor stays open until the process exits.
}

// setLvsha builds lvsha into dir and tells the tests where it is, or why
// it is not there: only the tests that run lvsha fail then (lvshaBin).
func setLvsha(ctx context.Context, dir string) {
	bin, err := buildLvsha(ctx, dir)
	if err != nil {
		os.Setenv(envLvshaErr, err.Error())
		return
	}
	os.Setenv(envLvsha, bin)
}

// lvshaBin is the lvsha binary under test; a test that needs it fails
// with the reason it is missing.
func lvshaBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(envLvsha)
	if bin == "" {
		t.Fatalf("no lvsha binary to test: %s", os.Getenv(envLvshaErr))
	}
	return bin
}

// runInVM rebuilds this package's tests and lvsha as static binaries and
// runs them inside a VM whose kernel has IPVS, passing -test.run, -test.v
// and the like through; the VM's exit status is this run's. It never
// skips: no qemu, no kernel or no IPVS in it is a failure.
func runInVM(begin time.Time) int {
	fmt.Println("integration: host kernel has no IPVS; running the tests in a Debian kernel under qemu (tcg)")
	budget := vmBudget
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			budget = d
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The outer deadline leaves a margin to report; the inner -test.timeout
	// leaves another for booting and for the inner run to print its panic.
	ctx, cancel := context.WithTimeout(ctx, budget-vmMargin/3)
	defer cancel()
	work, err := os.MkdirTemp("", "lvsha-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(work)
	testBin := filepath.Join(work, "integration.test")
	if out, err := goCmd(ctx, "test", "-c", "-o", testBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: build the test binary: %v\n%s", err, out)
		return 1
	}
	files := map[string]string{"/bin/integration.test": testBin}
	env := []string{envInVM + "=1", envCorpus + "=" + vmCorpus}
	for _, name := range []string{envTrace, envProfile} {
		if os.Getenv(name) != "" {
			env = append(env, name+"="+os.Getenv(name))
		}
	}
	// The scale tests' windows (scale_test.go), the health check bench's
	// (LVSHA_HC_WINDOW) and the chaos soak's length and seed
	// (chaos_test.go), for a manual run.
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LVSHA_SCALE_") || strings.HasPrefix(kv, "LVSHA_HC_") || strings.HasPrefix(kv, "LVSHA_CHAOS_") {
			env = append(env, kv)
		}
	}
	if err := addTree(files, vmCorpus, hostCorpus); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	if lvsha, err := buildLvsha(ctx, work); err != nil {
		env = append(env, envLvshaErr+"="+err.Error())
	} else {
		files["/bin/lvsha"] = lvsha
		env = append(env, envLvsha+"=/bin/lvsha")
	}
	k, err := vm.PrepareKernel(ctx, vm.CacheDir(), vm.KernelPackage())
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: prepare the VM kernel:", err)
		return 1
	}
	inner := budget - vmMargin - time.Since(begin)
	if inner < 30*time.Second {
		fmt.Fprintf(os.Stderr, "integration: -timeout %v leaves %v to boot a VM and run the tests in it; use -timeout 30m\n", budget, inner.Round(time.Second))
		return 1
	}
	args := []string{"/bin/integration.test", "-test.timeout", inner.Round(time.Second).String()}
	for _, name := range []string{"test.run", "test.v", "test.count", "test.failfast", "test.bench", "test.benchtime", "test.benchmem", "test.short"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != f.DefValue {
			args = append(args, "-"+name+"="+f.Value.String())
		}
	}
	skip := "^(" + strings.Join(hostTests, "|") + ")$"
	if user := flag.Lookup("test.skip").Value.String(); user != "" {
		skip = user + "|" + skip
	}
	args = append(args, "-test.skip="+skip)
	// keepalived is the peer lvsha is measured against, tcpdump a witness
	// and prometheus the server that scrapes lvsha (TestPrometheusScrape);
	// tests that need them fail (not skip) when they are missing.
	var tools []string
	for _, name := range []string{"keepalived", "tcpdump", "prometheus"} {
		if p, err := exec.LookPath(name); err == nil {
			tools = append(tools, p)
		}
	}
	res, err := vm.Run(ctx, k, vm.Spec{
		Tools:      tools,
		Files:      files,
		Command:    "cd /tmp && " + vm.Quote(args...),
		Env:        env,
		Output:     os.Stdout,
		KernelArgs: strings.Fields(os.Getenv(envKernelArgs)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: VM run:", err)
		return 1
	}
	fmt.Printf("integration: kernel %s (%s): booted to init in %v (guest uptime %v), VM run %v, whole run %v, status %d\n",
		k.Release, k.Package, res.Boot.Round(time.Millisecond), res.Uptime.Round(time.Millisecond),
		res.Total.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), res.ExitCode)
	return res.ExitCode
}

// addTree maps every file under the host directory src to dst in the VM.
func addTree(files map[string]string, dst, src string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		files[filepath.Join(dst, rel)] = p
		return nil
	})
}

// corpusDir is the keepalived corpus: copied into the VM, or in the tree.
func corpusDir() string {
	if d := os.Getenv(envCorpus); d != "" {
		return d
	}
	return hostCorpus
}

// buildLvsha builds cmd/lvsha statically into dir.
func buildLvsha(ctx context.Context, dir string) (string, error) {
	if _, err := os.Stat("../cmd/lvsha"); err != nil {
		return "", fmt.Errorf("cmd/lvsha does not exist yet: %w", err)
	}
	bin := filepath.Join(dir, "lvsha")
	if out, err := goCmd(ctx, "build", "-o", bin, "../cmd/lvsha").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build lvsha: %v\n%s", err, out)
	}
	return bin, nil
}

func goCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}
