package datacenter

import (
	"errors"
	"fmt"
	"io/fs"
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
	// contract: the body was the contract's ErrorBody with this status code.
	contract bool
}

// NotFoundError is the contract's 404: the datacenter API itself says the
// job or machine does not exist (fakes and tests build it with this).
func NotFoundError(op, message string) *Error {
	return &Error{Op: op, StatusCode: http.StatusNotFound, Message: message, contract: true}
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

// IsNotFound reports the contract's 404 (a JSON ErrorBody with code 404):
// the job or machine does not exist there. A bare 404 (a proxy, a wrong path
// or server) is not one: Stargate never ends a Job on it.
func IsNotFound(err error) bool {
	var e *Error
	if !errors.As(err, &e) || !e.contract {
		return false
	}
	code, ok := statusOf(err)
	return ok && code == http.StatusNotFound
}

// IsConflict reports a 409: e.g. an idempotency key reused with another body.
func IsConflict(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusConflict
}

// IsUnauthorized reports a call without valid credentials: a 401 or 403 (the
// token is wrong or lacks rights), or a credentials file that could not be
// read (nothing was sent). IsCredentials tells which, and names the file.
func IsUnauthorized(err error) bool {
	if _, ok := IsCredentials(err); ok {
		return true
	}
	code, ok := statusOf(err)
	return ok && (code == http.StatusUnauthorized || code == http.StatusForbidden)
}

// IsTooLate reports a 412: the submit arrived after its Not-After deadline
// and the datacenter started nothing.
func IsTooLate(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusPreconditionFailed
}

// IsUndecodable reports a 2xx answer whose body could not be read: the
// datacenter did what was asked and did not say what came of it, so for a
// submit the outcome is unknown (a job may be running) until asked again.
func IsUndecodable(err error) bool {
	code, ok := statusOf(err)
	return ok && code >= 200 && code < 300
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

// CredentialsError says that a call went without valid credentials: the
// credentials file is missing, unreadable or empty (Missing), or the
// datacenter refused the token in it (401 or 403). Its text names the file
// and never the token. Neither case is transient (the client does not retry
// it): it lasts until an operator fixes the file, which every call checks
// again, so no restart is needed.
type CredentialsError struct {
	// File is the credentials (bearer token) file; "" when none is configured.
	File string
	// Missing is true when the file could not be read or held no token, so
	// nothing was sent; false when the datacenter refused the token.
	Missing bool
	// Err is the cause: the file system error, an error saying the file is
	// empty, or the datacenter's answer (an *Error).
	Err error
}

// errEmptyCredentials is the cause of a CredentialsError for a file that holds no token.
var errEmptyCredentials = errors.New("the file holds no token")

func (e *CredentialsError) Error() string {
	if e.Missing {
		var pathErr *fs.PathError
		switch {
		case errors.Is(e.Err, fs.ErrNotExist):
			return fmt.Sprintf("credentials file %s is missing: put the datacenter's bearer token there", e.File)
		case errors.Is(e.Err, errEmptyCredentials):
			return fmt.Sprintf("credentials file %s is empty: put the datacenter's bearer token there", e.File)
		case errors.As(e.Err, &pathErr):
			return fmt.Sprintf("credentials file %s cannot be read: %v", e.File, pathErr.Err)
		}
		return fmt.Sprintf("credentials file %s cannot be read: %v", e.File, e.Err)
	}
	status, message := "refused", ""
	var dcErr *Error
	if errors.As(e.Err, &dcErr) {
		status, message = fmt.Sprintf("%d %s", dcErr.StatusCode, http.StatusText(dcErr.StatusCode)), dcErr.Message
	} else if e.Err != nil {
		message = e.Err.Error()
	}
	if message != "" {
		message = ": " + message
	}
	if e.File == "" {
		return fmt.Sprintf("the datacenter refused the request (%s)%s; no credentials file is configured, so no token was sent: "+
			"set --datacenter-credentials-dir and put the datacenter's bearer token in <that directory>/<datacenter name>", status, message)
	}
	return fmt.Sprintf("the datacenter refused the credentials in %s (%s)%s", e.File, status, message)
}

func (e *CredentialsError) Unwrap() error { return e.Err }

// IsCredentials returns the CredentialsError in err's chain, if there is one:
// the credentials file is missing or unreadable, or the datacenter refused it.
func IsCredentials(err error) (*CredentialsError, bool) {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return ce, true
	}
	return nil, false
}

// errUnsupported marks the errors of calls a datacenter does not offer.
var errUnsupported = errors.New("not offered by this datacenter")

// UnsupportedError is the error of a Batch call the datacenter does not
// offer (fakes and tests build it with this): reason says how that is known.
func UnsupportedError(op, reason string) error {
	return fmt.Errorf("datacenter %s: %w: %s", op, errUnsupported, reason)
}

// IsUnsupported reports a Batch call that the datacenter does not offer
// (its capabilities document does not list it, or it answered 404, 405 or
// 501): use the single calls of Client instead. The call started nothing.
func IsUnsupported(err error) bool {
	return errors.Is(err, errUnsupported)
}

// CursorExpiredError is the contract's 410 for a changes-feed cursor the
// datacenter no longer has the history of (fakes and tests build it with this).
func CursorExpiredError(op, message string) *Error {
	return &Error{Op: op, StatusCode: http.StatusGone, Message: message, contract: true}
}

// IsCursorExpired reports a 410 Gone from the changes feed: the datacenter no
// longer keeps the changes since the cursor. The follower must read every job
// it follows again (GetJob), having first taken a new cursor (Changes with "").
func IsCursorExpired(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusGone
}
