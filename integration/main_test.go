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
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/lvsha/lvsha/integration/vm"
	"github.com/lvsha/lvsha/ipvs"
)

// Environment variables between the outer run and the run in the VM.
const (
	envInVM  = "LVSHA_IN_VM" // "1": we are the inner run
	envLvsha = "LVSHA_BIN"   // path of the lvsha binary to test
	envRole  = "LVSHA_ROLE"  // set: this process is a helper (web, get, hold)
	vmBudget = 25 * time.Minute
)

func TestMain(m *testing.M) {
	flag.Parse()
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runRole(role))
	}
	if os.Getenv(envInVM) == "1" {
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration: these tests need root (network namespaces, IPVS, qemu); run them as root")
		os.Exit(1)
	}
	if h, err := ipvs.Open(""); err == nil {
		h.Close()
		if os.Getenv(envLvsha) == "" {
			bin, err := buildLvsha(os.TempDir())
			if err != nil {
				fmt.Fprintln(os.Stderr, "integration:", err)
				os.Exit(1)
			}
			os.Setenv(envLvsha, bin)
		}
		os.Exit(m.Run())
	}
	os.Exit(runInVM())
}

// runInVM rebuilds this package's tests and lvsha as static binaries and
// runs them inside a VM whose kernel has IPVS, passing -test.run and
// -test.v through; the VM's exit status is this run's.
func runInVM() int {
	fmt.Println("integration: host kernel has no IPVS; running the tests in a Debian kernel under qemu (tcg)")
	deadline := vmBudget
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			deadline = d - 30*time.Second // leave the outer run time to report
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	work, err := os.MkdirTemp("", "lvsha-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	testBin := filepath.Join(work, "integration.test")
	if out, err := goCmd(ctx, "test", "-c", "-o", testBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "integration: build the test binary: %v\n%s", err, out)
		return 1
	}
	lvsha, err := buildLvsha(work)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	k, err := vm.PrepareKernel(ctx, vm.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: prepare the VM kernel:", err)
		return 1
	}
	args := []string{"/bin/integration.test", "-test.timeout", (deadline - time.Minute).String()}
	for _, name := range []string{"test.run", "test.v", "test.count", "test.failfast", "test.skip", "test.bench", "test.benchtime", "test.benchmem"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != f.DefValue {
			args = append(args, "-"+name+"="+f.Value.String())
		}
	}
	// keepalived is the peer lvsha is measured against and tcpdump a
	// witness; tests that need them fail (not skip) when they are missing.
	var tools []string
	for _, name := range []string{"keepalived", "tcpdump"} {
		if p, err := exec.LookPath(name); err == nil {
			tools = append(tools, p)
		}
	}
	start := time.Now()
	code, err := vm.Run(ctx, k, vm.Spec{
		Tools:   tools,
		Files:   map[string]string{"/bin/integration.test": testBin, "/bin/lvsha": lvsha},
		Command: "cd /tmp && " + vm.Quote(args...),
		Env:     []string{envInVM + "=1", envLvsha + "=/bin/lvsha"},
		Output:  os.Stdout,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: VM run:", err)
		return 1
	}
	fmt.Printf("integration: VM run (%s, kernel %s) finished in %v with status %d\n", runtime.GOARCH, k.Release, time.Since(start).Round(time.Millisecond), code)
	return code
}

// buildLvsha builds cmd/lvsha statically into dir.
func buildLvsha(dir string) (string, error) {
	bin := filepath.Join(dir, "lvsha")
	if out, err := goCmd(context.Background(), "build", "-o", bin, "../cmd/lvsha").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build lvsha: %v\n%s", err, out)
	}
	return bin, nil
}

func goCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}
