package health

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// probe run and every connection a probe opens must end with its owner.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
