package datacenter_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/datacenter"
)

func repave(mac string) datacenter.JobRequest {
	return datacenter.JobRequest{Operation: datacenter.OperationRepave, Machine: datacenter.Machine{MAC: mac},
		Image: &datacenter.Image{URL: "https://images.example.com/os.img", Version: "2.0.0"}}
}

// fastBackoff keeps retry tests quick: 4 attempts 10ms apart.
var fastBackoff = wait.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 4}

type env struct {
	dc        *mockdc.Server
	url       string
	tokenFile string
	requests  atomic.Int64
}

// newEnv runs a mock datacenter (with a token) behind httptest, counting requests.
func newEnv(t *testing.T, mutate ...func(*mockdc.Options)) *env {
	t.Helper()
	e := &env{tokenFile: filepath.Join(t.TempDir(), "dc-token")}
	if err := os.WriteFile(e.tokenFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := mockdc.DefaultOptions("dc-west")
	opts.TokenFile, opts.Seed = e.tokenFile, 7
	for _, m := range mutate {
		m(&opts)
	}
	dc, err := mockdc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.dc = dc
	h := dc.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/debug") {
			e.requests.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

func (e *env) client(t *testing.T, mutate ...func(*datacenter.Config)) *datacenter.HTTPClient {
	t.Helper()
	cfg := datacenter.Config{Endpoint: e.url, TokenFile: e.tokenFile, Timeout: 2 * time.Second, Backoff: fastBackoff}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := datacenter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSubmitPollAndIdempotentResubmit(t *testing.T) {
	e := newEnv(t, func(o *mockdc.Options) { o.RepaveDuration = 50 * time.Millisecond })
	c := e.client(t)
	ctx := context.Background()
	job, err := c.Submit(ctx, "uid-1", repave("aa:bb:cc:dd:ee:01"))
	if err != nil || job.ID == "" || job.State != datacenter.JobRunning {
		t.Fatalf("submit: %v %+v", err, job)
	}
	again, err := c.Submit(ctx, "uid-1", repave("aa:bb:cc:dd:ee:01"))
	if err != nil || again.ID != job.ID {
		t.Fatalf("resubmit: %v %+v, want job %s", err, again, job.ID)
	}
	if found, err := c.FindJob(ctx, "uid-1"); err != nil || found.ID != job.ID {
		t.Errorf("find by key: %v %+v, want job %s", err, found, job.ID)
	}
	if _, err := c.FindJob(ctx, "never-submitted"); !datacenter.IsNotFound(err) {
		t.Errorf("find by an unused key: %v, want not found", err)
	}
	if _, err := c.Submit(ctx, "", repave("aa:bb:cc:dd:ee:01")); err == nil {
		t.Error("a submit without idempotency key was sent")
	}
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := c.GetJob(ctx, job.ID)
		return err == nil && j.State.Finished(), err
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.GetMachine(ctx, "aa:bb:cc:dd:ee:01")
	if err != nil || m.CurrentOS != "2.0.0" {
		t.Errorf("machine: %v %+v", err, m)
	}
	if n := len(e.dc.Ledger()); n != 1 {
		t.Errorf("%d executions, want 1", n)
	}
	if err := c.Health(ctx); err != nil {
		t.Errorf("health: %v", err)
	}
}

func TestErrorClasses(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()

	_, err := c.GetJob(ctx, "missing")
	if !datacenter.IsNotFound(err) || datacenter.IsTransient(err) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown job: %v", err)
	}
	_, err = c.GetMachine(ctx, "aa:bb:cc:00:00:99")
	if !datacenter.IsNotFound(err) {
		t.Errorf("unknown machine: %v", err)
	}
	if _, err := c.Submit(ctx, "k", repave("aa:bb:cc:dd:ee:01")); err != nil {
		t.Fatal(err)
	}
	other := repave("aa:bb:cc:dd:ee:01")
	other.Image.Version = "9"
	if _, err = c.Submit(ctx, "k", other); !datacenter.IsConflict(err) || datacenter.IsTransient(err) {
		t.Errorf("key reuse: %v", err)
	}
	before := e.requests.Load()
	bad := datacenter.JobRequest{Operation: "explode", Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}}
	if _, err = c.Submit(ctx, "k2", bad); err == nil || datacenter.IsTransient(err) {
		t.Errorf("bad request: %v", err)
	}
	if n := e.requests.Load() - before; n != 1 {
		t.Errorf("a 400 was sent %d times; 4xx must never be retried", n)
	}

	unauthorized := e.client(t, func(c *datacenter.Config) { c.TokenFile = "" })
	if _, err = unauthorized.GetJob(ctx, "x"); !datacenter.IsUnauthorized(err) || datacenter.IsTransient(err) {
		t.Errorf("no token: %v", err)
	}
}

// Nothing listening is an outage too: connection refused, nothing started.
func TestARefusedConnectionIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	e := newEnv(t)
	c := e.client(t, func(c *datacenter.Config) { c.Endpoint = "http://" + addr })
	if err := c.Health(context.Background()); !datacenter.IsUnavailable(err) {
		t.Errorf("nothing listening: %v, want it reported unavailable", err)
	}
}

func TestRetriesTransientErrors(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()

	// Every attempt fails: the client gives up after Steps attempts with a transient error.
	if err := e.dc.SetFaults(mockdc.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	before := e.requests.Load()
	_, err := c.Submit(ctx, "k", repave("aa:bb:cc:dd:ee:01"))
	if !datacenter.IsTransient(err) || datacenter.IsUnavailable(err) {
		t.Fatalf("got %v, want a transient error that is not an outage", err)
	}
	if n := e.requests.Load() - before; n != int64(fastBackoff.Steps) {
		t.Errorf("%d attempts, want %d", n, fastBackoff.Steps)
	}

	// An outage: 503s, retried, then success once it ends. A long retry
	// budget keeps this independent of scheduling on a loaded machine.
	if err := e.dc.SetFaults(mockdc.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); !datacenter.IsUnavailable(err) {
		t.Errorf("during an outage: %v, want it reported unavailable", err)
	}
	c = e.client(t, func(c *datacenter.Config) { c.Backoff.Steps = 500 })
	go func() {
		time.Sleep(15 * time.Millisecond)
		_ = e.dc.SetFaults(mockdc.Faults{})
	}()
	if _, err := c.Submit(ctx, "k", repave("aa:bb:cc:dd:ee:01")); err != nil {
		t.Fatalf("after the outage ended: %v", err)
	}

	// A lost answer: the retry with the same key finds the job already started.
	if err := e.dc.SetFaults(mockdc.Faults{DropAfterAcceptRate: 1}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(15 * time.Millisecond)
		_ = e.dc.SetFaults(mockdc.Faults{})
	}()
	job, err := c.Submit(ctx, "dropped", repave("aa:bb:cc:dd:ee:02"))
	if err != nil {
		t.Fatalf("dropped answer then retry: %v", err)
	}
	var executions int
	for _, l := range e.dc.Ledger() {
		if l.IdempotencyKey == "dropped" {
			executions++
			if l.DCJobID != job.ID {
				t.Errorf("client got job %s, the datacenter ran %s", job.ID, l.DCJobID)
			}
		}
	}
	if executions != 1 {
		t.Errorf("%d executions for one idempotency key", executions)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"code":429,"message":"saturated"}`))
			return
		}
		w.Write([]byte(`{"id":"j1","state":"queued"}`))
	}))
	defer srv.Close()
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.URL, Backoff: fastBackoff})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	job, err := c.Submit(context.Background(), "k", repave("aa:bb:cc:dd:ee:01"))
	if err != nil || job.ID != "j1" {
		t.Fatalf("%v %+v", err, job)
	}
	if elapsed := time.Since(start); elapsed < time.Second {
		t.Errorf("retried after %s; the datacenter asked for 1s", elapsed)
	}

	// The mock's own 429 carries Retry-After too, and is classed transient.
	e := newEnv(t, func(o *mockdc.Options) { o.MaxRunning, o.RejectWhenFull = 1, true })
	mc := e.client(t, func(c *datacenter.Config) { c.Backoff.Steps = 1 })
	if _, err := mc.Submit(context.Background(), "a", repave("aa:00:00:00:00:01")); err != nil {
		t.Fatal(err)
	}
	_, err = mc.Submit(context.Background(), "b", repave("aa:00:00:00:00:02"))
	var dcErr *datacenter.Error
	if !errors.As(err, &dcErr) || dcErr.StatusCode != 429 || dcErr.RetryAfter < time.Second || !datacenter.IsTransient(err) {
		t.Errorf("saturated datacenter: %v", err)
	}
}

func TestTimeoutsAndCancellation(t *testing.T) {
	e := newEnv(t)
	if err := e.dc.SetFaults(mockdc.Faults{TimeoutRate: 1}); err != nil {
		t.Fatal(err)
	}
	c := e.client(t, func(c *datacenter.Config) { c.Timeout, c.Backoff.Steps = 100*time.Millisecond, 2 })
	start := time.Now()
	_, err := c.GetJob(context.Background(), "x")
	if !datacenter.IsTransient(err) {
		t.Errorf("a timed-out call: %v, want transient", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("two 100ms attempts took %s", elapsed)
	}

	ctx, cancel := context.WithCancel(context.Background())
	slow := e.client(t, func(c *datacenter.Config) { c.Timeout = time.Minute })
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start = time.Now()
	if _, err := slow.GetJob(ctx, "x"); err == nil || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled context: err %v after %s", err, time.Since(start))
	}
}

func TestTokenRotationAndSecrecy(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	ctx := context.Background()
	if _, err := c.GetMachine(ctx, "aa:bb:cc:00:00:01"); !datacenter.IsNotFound(err) {
		t.Fatalf("with token-1: %v", err)
	}
	// Rotate: the datacenter and the client read the same file again.
	if err := os.WriteFile(e.tokenFile, []byte("token-2-longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetMachine(ctx, "aa:bb:cc:00:00:01"); !datacenter.IsNotFound(err) {
		t.Errorf("after rotation: %v, want the call to authenticate with the new token", err)
	}
	// A client holding an old token file gets 401, and the error does not show any token.
	stale := filepath.Join(t.TempDir(), "stale")
	os.WriteFile(stale, []byte("token-1"), 0o600)
	_, err := e.client(t, func(c *datacenter.Config) { c.TokenFile = stale }).GetJob(ctx, "x")
	if !datacenter.IsUnauthorized(err) || strings.Contains(err.Error(), "token-1") || strings.Contains(err.Error(), "token-2") {
		t.Errorf("stale token: %v", err)
	}
	// A client may be built before its token file exists (TestCredentialsFileAddedLateRotatedAndRefused).
	missing, err := datacenter.New(datacenter.Config{Endpoint: e.url, TokenFile: "/nonexistent/token"})
	if err != nil {
		t.Fatalf("a client whose token file is not there yet: %v", err)
	}
	if _, ok := datacenter.IsCredentials(missing.Health(ctx)); !ok {
		t.Error("a call without its token file did not fail with a CredentialsError")
	}
}

func TestObserverSeesEveryAttempt(t *testing.T) {
	e := newEnv(t)
	var ops []string
	c := e.client(t, func(c *datacenter.Config) {
		c.Observer = func(op string, code int, _ time.Duration) { ops = append(ops, op+" "+http.StatusText(code)) }
	})
	c.GetJob(context.Background(), "dc-west-job-42")
	if len(ops) != 1 || ops[0] != "GET /v1/jobs/{id} Not Found" {
		t.Errorf("observed %v", ops)
	}
}

func TestNewRejectsBadEndpoints(t *testing.T) {
	for _, ep := range []string{"", "dc-west:8080", "ftp://x", "http://"} {
		if _, err := datacenter.New(datacenter.Config{Endpoint: ep}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
}

// A 2xx whose body cannot be read is told apart from every other failure: a
// submit answered so may have started a job.
func TestUndecodableAnswerIsItsOwnKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"id": "job-1", "state":`))
	}))
	defer srv.Close()
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(context.Background(), "key-1", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}})
	if !datacenter.IsUndecodable(err) || datacenter.IsTransient(err) || datacenter.IsUnavailable(err) || datacenter.IsNotFound(err) {
		t.Errorf("a 202 with a cut body: %v (undecodable %v)", err, datacenter.IsUndecodable(err))
	}
	if datacenter.IsUndecodable(&datacenter.Error{StatusCode: http.StatusBadRequest}) || datacenter.IsUndecodable(nil) {
		t.Error("only 2xx answers are undecodable")
	}
}

// Only the contract's own 404 (a JSON ErrorBody with code 404) says a job is
// not there; a bare 404 from a proxy or another server does not. A 2xx that
// decodes to no job id or an unknown state is as unreadable as a cut body.
func TestOnlyTheContractSaysNotFound(t *testing.T) {
	var answer func(w http.ResponseWriter)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { answer(w) }))
	defer srv.Close()
	c, err := datacenter.New(datacenter.Config{Endpoint: srv.URL, Backoff: wait.Backoff{Steps: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	answer = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<html><body>404 Not Found</body></html>"))
	}
	if _, err := c.GetJob(ctx, "j1"); err == nil || datacenter.IsNotFound(err) {
		t.Errorf("a bare 404 taken for the contract's: %v", err)
	}
	answer = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":404,"message":"job j1 not found"}`))
	}
	if _, err := c.GetJob(ctx, "j1"); !datacenter.IsNotFound(err) {
		t.Errorf("the contract's 404: %v", err)
	}
	answer = func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{}`))
	}
	if _, err := c.GetJob(ctx, "j1"); !datacenter.IsUndecodable(err) {
		t.Errorf("a 200 with no job in it: %v", err)
	}
}
