package datacenter

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"time"
)

// Error is an error answer from a datacenter API, or a failure to get one.
type Error struct {
	// StatusCode is the HTTP status, or 0 when no answer came (connection
	// refused, reset, timed out).
	StatusCode int
	// Message is the datacenter's message, or the transport error.
	Message string
	// RetryAfter is the wait a 429 or 503 asked for.
	RetryAfter time.Duration
	// Op names the call, e.g. "POST /v1/jobs".
	Op  string
	err error
}

func (e *Error) Error() string {
	if e.StatusCode == 0 {
		return fmt.Sprintf("datacenter %s: %s", e.Op, e.Message)
	}
	return fmt.Sprintf("datacenter %s: %d %s: %s", e.Op, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

func (e *Error) Unwrap() error { return e.err }

func statusOf(err error) (int, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode, true
	}
	return 0, false
}

// IsNotFound reports a 404: the job or machine does not exist there.
func IsNotFound(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusNotFound
}

// IsConflict reports a 409: e.g. an idempotency key reused with another body.
func IsConflict(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusConflict
}

// IsUnauthorized reports a 401 or 403: the token is missing, wrong or lacks rights.
func IsUnauthorized(err error) bool {
	code, ok := statusOf(err)
	return ok && (code == http.StatusUnauthorized || code == http.StatusForbidden)
}

// IsUnavailable reports a datacenter that is down rather than failing: it
// answered 503, or refused the connection. Nothing was started there.
func IsUnavailable(err error) bool {
	code, ok := statusOf(err)
	return ok && (code == http.StatusServiceUnavailable || (code == 0 && errors.Is(err, syscall.ECONNREFUSED)))
}

// IsTransient reports an error worth retrying: no answer at all, a 5xx, or a
// 429. A 4xx other than 429 says the request itself is wrong and never is.
func IsTransient(err error) bool {
	code, ok := statusOf(err)
	if !ok {
		return false
	}
	return code == 0 || code == http.StatusTooManyRequests || code >= 500
}
