package datacenter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Client is what Stargate needs from a datacenter API.
type Client interface {
	// Submit starts a job, or returns the one already started with the same
	// idempotency key: repeating a Submit never runs an operation twice.
	Submit(ctx context.Context, idempotencyKey string, req JobRequest) (*Job, error)
	// GetJob returns a job's current state.
	GetJob(ctx context.Context, id string) (*Job, error)
	// FindJob returns the job submitted with an idempotency key; IsNotFound
	// when none was. It never starts anything.
	FindJob(ctx context.Context, idempotencyKey string) (*Job, error)
	// Cancel asks the datacenter to stop a job; cancelling a finished job is a no-op.
	Cancel(ctx context.Context, id string) (*Job, error)
	// GetMachine looks a machine up by MAC; IsNotFound when the datacenter does not know it.
	GetMachine(ctx context.Context, mac string) (*MachineState, error)
	// Health returns nil when the datacenter API answers its health check.
	Health(ctx context.Context) error
}

// Observer is told about every HTTP attempt (for metrics): the call, the
// status code (0 when no answer came) and how long it took.
type Observer func(op string, code int, elapsed time.Duration)

// Config configures an HTTP client of one datacenter.
type Config struct {
	// Endpoint is the base URL, e.g. https://dc-west.example.
	Endpoint string
	// TokenFile holds the bearer token. It need not exist when the client is
	// built: it is read at each call (again only when it changed), and while
	// it is missing or empty calls fail with a *CredentialsError without
	// sending anything. Empty: no token is sent.
	TokenFile string
	// Timeout bounds each attempt. Default 10s.
	Timeout time.Duration
	// Backoff paces retries of transient errors; Steps is the number of attempts.
	// Default: 4 attempts, 200ms doubling with jitter, capped at 5s.
	Backoff wait.Backoff
	// MaxRetryAfter caps how long a Retry-After answer may make a call wait. Default 30s.
	MaxRetryAfter time.Duration
	// Transport is the HTTP transport; default a clone of http.DefaultTransport.
	Transport http.RoundTripper
	// Observer, if set, is told about every attempt.
	Observer Observer
	// CapabilitiesInterval is how long the client trusts what a datacenter
	// said it offers (GET /v1/capabilities) before asking again. Default 10m.
	CapabilitiesInterval time.Duration
}

// DefaultBackoff is the retry schedule when Config.Backoff is empty.
var DefaultBackoff = wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.5, Steps: 4, Cap: 5 * time.Second}

// HTTPClient is the Client of one datacenter API over HTTP, and its Batch
// when the datacenter offers the batch calls.
type HTTPClient struct {
	base     *url.URL
	http     *http.Client
	token    *TokenFile
	cfg      Config
	observer Observer

	// offered is what the datacenter said it offers, and when it said so.
	offered offered
}

var (
	_ Client = &HTTPClient{}
	_ Batch  = &HTTPClient{}
)

// New returns a client of the datacenter at cfg.Endpoint.
func New(cfg Config) (*HTTPClient, error) {
	base, err := url.Parse(strings.TrimSuffix(cfg.Endpoint, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("datacenter endpoint %q is not an http(s) URL", cfg.Endpoint)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Backoff.Steps <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = 30 * time.Second
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if cfg.CapabilitiesInterval <= 0 {
		cfg.CapabilitiesInterval = 10 * time.Minute
	}
	c := &HTTPClient{base: base, http: &http.Client{Transport: cfg.Transport}, cfg: cfg, observer: cfg.Observer}
	if cfg.TokenFile != "" {
		// Not read now: a file that appears later is used from then on.
		c.token = NewTokenFile(cfg.TokenFile)
	}
	return c, nil
}

// Submit implements Client.
func (c *HTTPClient) Submit(ctx context.Context, idempotencyKey string, req JobRequest) (*Job, error) {
	if idempotencyKey == "" {
		return nil, errors.New("datacenter submit: an idempotency key is required")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	header := http.Header{IdempotencyKeyHeader: {idempotencyKey}}
	if deadline, ok := ctx.Deadline(); ok {
		// The datacenter must not start a job from this request once the
		// deadline has passed: a submit delayed on its way (or sent by a
		// paused process) cannot start anything after Stargate stopped waiting.
		header.Set(NotAfterHeader, deadline.UTC().Format(time.RFC3339Nano))
	}
	job := &Job{}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs", body: body, header: header}, job); err != nil {
		return job, err
	}
	return job, validJob(job)
}

// GetJob implements Client.
func (c *HTTPClient) GetJob(ctx context.Context, id string) (*Job, error) {
	job := &Job{}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs/" + url.PathEscape(id)}, job); err != nil {
		return job, err
	}
	return job, validJob(job)
}

// FindJob implements Client.
func (c *HTTPClient) FindJob(ctx context.Context, idempotencyKey string) (*Job, error) {
	job := &Job{}
	if err := c.do(ctx, request{method: http.MethodGet, path: "/v1/jobs?idempotencyKey=" + url.QueryEscape(idempotencyKey)}, job); err != nil {
		return job, err
	}
	return job, validJob(job)
}

// Cancel implements Client.
func (c *HTTPClient) Cancel(ctx context.Context, id string) (*Job, error) {
	job := &Job{}
	if err := c.do(ctx, request{method: http.MethodPost, path: "/v1/jobs/" + url.PathEscape(id) + "/cancel"}, job); err != nil {
		return job, err
	}
	return job, validJob(job)
}

// validJob refuses a 2xx answer that decoded but says nothing usable (no ID,
// a state the contract does not define): like an unreadable body, the
// datacenter did something and did not say what.
func validJob(job *Job) error {
	switch job.State {
	case JobQueued, JobRunning, JobSucceeded, JobFailed, JobCancelled:
		if job.ID != "" {
			return nil
		}
	}
	return &Error{Op: "answer", StatusCode: http.StatusOK,
		Message: fmt.Sprintf("undecodable answer: job id %q, state %q", job.ID, job.State)}
}

// GetMachine implements Client.
func (c *HTTPClient) GetMachine(ctx context.Context, mac string) (*MachineState, error) {
	m := &MachineState{}
	return m, c.do(ctx, request{method: http.MethodGet, path: "/v1/machines/" + url.PathEscape(mac)}, m)
}

// Health implements Client.
func (c *HTTPClient) Health(ctx context.Context) error {
	return c.do(ctx, request{method: http.MethodGet, path: "/healthz"}, nil)
}

// maxAnswerBytes bounds the body of an answer to a single call; a longer
// one is an error (undecodable, for a 2xx).
const maxAnswerBytes = 1 << 20

// request is one call to a datacenter.
type request struct {
	method, path string
	body         []byte
	header       http.Header
	// limit bounds the answer's body; 0: maxAnswerBytes.
	limit int64
	// mayBeAbsent marks a call a datacenter need not offer: its 501 (Not
	// Implemented) is an answer, not retried.
	mayBeAbsent bool
}

// do runs one call, retrying transient failures with jittered exponential
// backoff (or the wait a Retry-After asked for), and decodes a 2xx body into out.
func (c *HTTPClient) do(ctx context.Context, r request, out interface{}) error {
	op := r.method + " " + routeOf(r.path)
	backoff := c.cfg.Backoff
	var lastErr error
	for attempt := 1; ; attempt++ {
		lastErr = c.once(ctx, op, r, out)
		if lastErr == nil || !IsTransient(lastErr) || attempt >= c.cfg.Backoff.Steps ||
			r.mayBeAbsent && notOffered(lastErr) {
			return lastErr
		}
		delay := backoff.Step()
		var dcErr *Error
		if errors.As(lastErr, &dcErr) && dcErr.RetryAfter > delay {
			delay = min(dcErr.RetryAfter, c.cfg.MaxRetryAfter)
		}
		klog.FromContext(ctx).V(4).Info("Retrying datacenter call", "op", op, "attempt", attempt, "delay", delay, "err", lastErr)
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(delay):
		}
	}
}

func (c *HTTPClient) once(ctx context.Context, op string, r request, out interface{}) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.method, c.base.String()+r.path, bytes.NewReader(r.body))
	if err != nil {
		return err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	var token string
	if c.token != nil {
		if token, err = c.token.Get(); err != nil {
			return err // a *CredentialsError: nothing was sent
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(op, 0, start)
		// The URL in a transport error holds no secret; the token is in a header.
		return &Error{Op: op, Message: err.Error(), err: err}
	}
	defer resp.Body.Close()
	limit := r.limit
	if limit <= 0 {
		limit = maxAnswerBytes
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	c.observe(op, resp.StatusCode, start)
	if err != nil {
		return &Error{Op: op, Message: "reading the answer: " + err.Error(), err: err}
	}
	tooLong := int64(len(data)) > limit
	data = data[:min(int64(len(data)), limit)]
	if resp.StatusCode >= 300 {
		e := &Error{Op: op, StatusCode: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		var eb ErrorBody
		text := string(data)
		if json.Unmarshal(data, &eb) == nil && eb.Message != "" {
			text = eb.Message
			// Only a body in the contract's own shape speaks for the API: a
			// 404 from a proxy or another server says nothing about a job.
			e.contract = eb.Code == resp.StatusCode
		}
		if token != "" {
			// Should a datacenter echo what it was sent, the token still stays
			// out of errors: scrubbed before anything is cut, raw and escaped.
			escaped, _ := json.Marshal(token)
			text = strings.ReplaceAll(strings.ReplaceAll(text, token, "[token]"), strings.Trim(string(escaped), `"`), "[token]")
		}
		e.Message = strings.TrimSpace(text[:min(len(text), 256)])
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return &CredentialsError{File: c.cfg.TokenFile, Err: e}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if tooLong {
		return &Error{Op: op, StatusCode: resp.StatusCode, Message: fmt.Sprintf("undecodable answer: over %d bytes", limit)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Op: op, StatusCode: resp.StatusCode, Message: "undecodable answer: " + err.Error(), err: err}
	}
	return nil
}

func (c *HTTPClient) observe(op string, code int, start time.Time) {
	if c.observer != nil {
		c.observer(op, code, time.Since(start))
	}
}

// routeOf turns a path into its route for logs and metrics, without IDs.
func routeOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/v1/jobs/") && strings.HasSuffix(path, "/cancel"):
		return "/v1/jobs/{id}/cancel"
	case strings.HasPrefix(path, "/v1/jobs/"):
		return "/v1/jobs/{id}"
	case strings.HasPrefix(path, "/v1/machines/"):
		return "/v1/machines/{mac}"
	case strings.HasPrefix(path, "/v1/jobs?changedSince="):
		return "/v1/jobs?changedSince"
	}
	return path
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
