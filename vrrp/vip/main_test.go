package vip

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them. With
// envHelper set the binary is TestHostKilledLeavesNoHolder's daemon.
func TestMain(m *testing.M) {
	if vips := os.Getenv(envHelper); vips != "" {
		os.Exit(holdUntilKilled(vips))
	}
	goleak.VerifyTestMain(m)
}
