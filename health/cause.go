package health

import (
	"context"
	"errors"
	"net/textproto"
	"os"
	"os/exec"
	"syscall"
)

// The causes of a failed probe (Result.Cause): a few classes that say
// what an operator should look at, few enough to label a metric by.
const (
	// CauseTimeout: no answer within the check's timeout.
	CauseTimeout = "timeout"
	// CauseRefused: the connection was refused (a TCP reset, or the ICMP
	// port unreachable a UDP probe gets): nothing listens there.
	CauseRefused = "refused"
	// CauseStatus: the server answered, and its answer said no: an HTTP
	// status not in the list, a DNS rcode, an SMTP reply code, an exec
	// check's exit status.
	CauseStatus = "status"
	// CauseBody: the answer's content did not match: an HTTP body
	// (body, body_regexp, body_md5), a UDP reply.
	CauseBody = "body"
	// CauseOther: anything else (unreachable network, TLS, a reset
	// mid-answer, an invalid check).
	CauseOther = "other"
)

// Causes lists every cause Result.Cause returns for a failure, so that a
// consumer can report each, zero included.
func Causes() []string {
	return []string{CauseTimeout, CauseRefused, CauseStatus, CauseBody, CauseOther}
}

// causeError marks err as of cause, without changing its text: the
// checkers' messages stay as operators know them.
type causeError struct {
	cause string
	err   error
}

func (e *causeError) Error() string { return e.err.Error() }
func (e *causeError) Unwrap() error { return e.err }

func withCause(cause string, err error) error { return &causeError{cause: cause, err: err} }

// Cause classifies a failed result (see the Cause constants); "" when r
// is OK.
func (r Result) Cause() string {
	if r.OK {
		return ""
	}
	err := r.Err
	var ce *causeError
	var exitErr *exec.ExitError
	var smtpErr *textproto.Error
	switch {
	// Before the others: a timed-out exec check is killed, which also
	// leaves an exit error.
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return CauseTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return CauseRefused
	case errors.As(err, &ce):
		return ce.cause
	case errors.As(err, &exitErr), errors.As(err, &smtpErr):
		return CauseStatus
	}
	return CauseOther
}
