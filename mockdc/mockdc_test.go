package mockdc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"stargate.io/stargate/pkg/datacenter"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// testDC is a mock datacenter on a fake clock behind httptest.
type testDC struct {
	*Server
	clock *testingclock.FakePassiveClock
	url   string
}

func newTestDC(t *testing.T, mutate ...func(*Options)) *testDC {
	t.Helper()
	opts := DefaultOptions("dc-test")
	clk := testingclock.NewFakePassiveClock(t0)
	opts.Clock, opts.Seed = clk, 42
	for _, m := range mutate {
		m(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testDC{Server: s, clock: clk, url: srv.URL}
}

func (d *testDC) step(by time.Duration) { d.clock.SetTime(d.clock.Now().Add(by)) }

func repave(mac string) datacenter.JobRequest {
	return datacenter.JobRequest{Operation: datacenter.OperationRepave, Machine: datacenter.Machine{MAC: mac, Name: "server-001"},
		Image: &datacenter.Image{URL: "https://images.example.com/os.img", Version: "2.0.0"}}
}

// call sends one request and decodes the answer into out (if not nil).
func (d *testDC) call(t *testing.T, method, path string, body interface{}, header map[string]string, out interface{}) int {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		data = b
	default:
		data, _ = json.Marshal(b)
	}
	req, _ := http.NewRequest(method, d.url+path, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: undecodable answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (d *testDC) submit(t *testing.T, key string, req datacenter.JobRequest) (datacenter.Job, int) {
	t.Helper()
	var job datacenter.Job
	code := d.call(t, http.MethodPost, "/v1/jobs", req, map[string]string{datacenter.IdempotencyKeyHeader: key}, &job)
	return job, code
}

func (d *testDC) job(t *testing.T, id string) datacenter.Job {
	t.Helper()
	var job datacenter.Job
	if code := d.call(t, http.MethodGet, "/v1/jobs/"+id, nil, nil, &job); code != http.StatusOK {
		t.Fatalf("GET job %s: %d", id, code)
	}
	return job
}

func TestRepaveTakesItsTimeAndInstallsTheOS(t *testing.T) {
	dc := newTestDC(t)
	job, code := dc.submit(t, "uid-1", repave("AA-BB-CC-DD-EE-01"))
	if code != http.StatusAccepted || job.State != datacenter.JobRunning || job.MAC != "aa:bb:cc:dd:ee:01" {
		t.Fatalf("submit: %d %+v", code, job)
	}
	var m datacenter.MachineState
	dc.call(t, http.MethodGet, "/v1/machines/aa:bb:cc:dd:ee:01", nil, nil, &m)
	if m.State != "provisioning" {
		t.Errorf("machine during repave: %+v", m)
	}

	dc.step(15 * time.Second)
	if j := dc.job(t, job.ID); j.State != datacenter.JobRunning || j.Progress != 50 {
		t.Errorf("half-way: %+v", j)
	}
	dc.step(15 * time.Second)
	j := dc.job(t, job.ID)
	if j.State != datacenter.JobSucceeded || j.Progress != 100 || !j.FinishedAt.Equal(t0.Add(30*time.Second)) {
		t.Errorf("after 30s: %+v", j)
	}
	dc.call(t, http.MethodGet, "/v1/machines/aa:bb:cc:dd:ee:01", nil, nil, &m)
	if m.CurrentOS != "2.0.0" || m.State != "ready" || m.PowerState != datacenter.PowerOn {
		t.Errorf("machine after repave: %+v", m)
	}
}

func TestPowerAndRebootChangePowerState(t *testing.T) {
	dc := newTestDC(t)
	mac := "aa:bb:cc:dd:ee:02"
	off, _ := dc.submit(t, "off", datacenter.JobRequest{Operation: datacenter.OperationPowerOff, Machine: datacenter.Machine{MAC: mac}})
	dc.step(time.Second)
	var m datacenter.MachineState
	dc.call(t, http.MethodGet, "/v1/machines/"+mac, nil, nil, &m)
	if dc.job(t, off.ID).State != datacenter.JobSucceeded || m.PowerState != datacenter.PowerOff || m.State != "off" {
		t.Errorf("after power-off: %+v", m)
	}
	reboot, _ := dc.submit(t, "reboot", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: mac}})
	dc.step(4 * time.Second)
	dc.call(t, http.MethodGet, "/v1/machines/"+mac, nil, nil, &m)
	if m.State != "rebooting" {
		t.Errorf("during reboot: %+v", m)
	}
	dc.step(time.Second)
	dc.call(t, http.MethodGet, "/v1/machines/"+mac, nil, nil, &m)
	if dc.job(t, reboot.ID).State != datacenter.JobSucceeded || m.PowerState != datacenter.PowerOn || m.State != "ready" {
		t.Errorf("after reboot: %+v", m)
	}
}

func TestIdempotency(t *testing.T) {
	dc := newTestDC(t)
	first, code := dc.submit(t, "uid-1", repave("aa:bb:cc:dd:ee:01"))
	if code != http.StatusAccepted {
		t.Fatal(code)
	}
	again, code := dc.submit(t, "uid-1", repave("AA:BB:CC:DD:EE:01")) // same request, other spelling
	if code != http.StatusOK || again.ID != first.ID {
		t.Errorf("replay: %d %+v, want 200 and job %s", code, again, first.ID)
	}
	other := repave("aa:bb:cc:dd:ee:01")
	other.Image.Version = "3.0.0"
	var e datacenter.ErrorBody
	if code := dc.call(t, http.MethodPost, "/v1/jobs", other, map[string]string{datacenter.IdempotencyKeyHeader: "uid-1"}, &e); code != http.StatusConflict || e.Code != 409 {
		t.Errorf("key reused with another body: %d %+v", code, e)
	}
	if l := dc.Ledger(); len(l) != 1 || l[0].IdempotencyKey != "uid-1" || l[0].DCJobID != first.ID {
		t.Errorf("ledger %+v, want exactly one execution", l)
	}
	if code := dc.call(t, http.MethodPost, "/v1/jobs", repave("aa:bb:cc:dd:ee:01"), nil, nil); code != http.StatusBadRequest {
		t.Errorf("no idempotency key: %d, want 400", code)
	}
}

func TestCapacityQueuesOldestFirst(t *testing.T) {
	dc := newTestDC(t, func(o *Options) { o.MaxRunning = 2 })
	var ids []string
	for i, mac := range []string{"aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:03", "aa:00:00:00:00:04"} {
		job, _ := dc.submit(t, "k"+mac, repave(mac))
		ids = append(ids, job.ID)
		if want := map[bool]datacenter.JobState{true: datacenter.JobRunning, false: datacenter.JobQueued}[i < 2]; job.State != want {
			t.Errorf("job %d: %s, want %s", i, job.State, want)
		}
		dc.step(time.Second)
	}
	// The first finishes at 30s; the third starts exactly then.
	dc.step(26 * time.Second) // now t0+30s
	third := dc.job(t, ids[2])
	if third.State != datacenter.JobRunning || !third.StartedAt.Equal(t0.Add(30*time.Second)) {
		t.Errorf("third job: %+v, want started at t0+30s", third)
	}
	if fourth := dc.job(t, ids[3]); fourth.State != datacenter.JobQueued {
		t.Errorf("fourth job: %+v", fourth)
	}
	dc.step(time.Hour)
	for _, id := range ids {
		if j := dc.job(t, id); j.State != datacenter.JobSucceeded {
			t.Errorf("%s: %s", id, j.State)
		}
	}
	if n := len(dc.Ledger()); n != 4 {
		t.Errorf("ledger has %d entries, want 4", n)
	}
}

func TestRejectWhenFull(t *testing.T) {
	dc := newTestDC(t, func(o *Options) { o.MaxRunning, o.RejectWhenFull = 1, true })
	dc.submit(t, "a", repave("aa:00:00:00:00:01"))
	dc.step(10 * time.Second)
	req, _ := http.NewRequest(http.MethodPost, dc.url+"/v1/jobs", strings.NewReader(`{"operation":"reboot","machine":{"mac":"aa:00:00:00:00:02"}}`))
	req.Header.Set(datacenter.IdempotencyKeyHeader, "b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "20" {
		t.Errorf("got %d Retry-After=%q, want 429 and 20 (seconds until the running repave ends)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestCancel(t *testing.T) {
	dc := newTestDC(t, func(o *Options) { o.MaxRunning = 1 })
	running, _ := dc.submit(t, "a", repave("aa:00:00:00:00:01"))
	queued, _ := dc.submit(t, "b", repave("aa:00:00:00:00:02"))
	var got datacenter.Job
	dc.call(t, http.MethodPost, "/v1/jobs/"+queued.ID+"/cancel", nil, nil, &got)
	if got.State != datacenter.JobCancelled {
		t.Errorf("cancel queued: %+v", got)
	}
	dc.step(10 * time.Second)
	dc.call(t, http.MethodPost, "/v1/jobs/"+running.ID+"/cancel", nil, nil, &got)
	if got.State != datacenter.JobCancelled || got.Progress != 33 {
		t.Errorf("cancel running: %+v", got)
	}
	dc.step(time.Hour)
	if j := dc.job(t, running.ID); j.State != datacenter.JobCancelled {
		t.Errorf("a cancelled job came back as %s", j.State)
	}
	dc.call(t, http.MethodPost, "/v1/jobs/"+running.ID+"/cancel", nil, nil, &got)
	if got.State != datacenter.JobCancelled {
		t.Errorf("cancelling twice: %+v", got)
	}
	if l := dc.Ledger(); len(l) != 1 || l[0].DCJobID != running.ID {
		t.Errorf("the cancelled queued job must never have executed: ledger %+v", l)
	}
	if code := dc.call(t, http.MethodPost, "/v1/jobs/nope/cancel", nil, nil, nil); code != http.StatusNotFound {
		t.Errorf("cancel unknown: %d", code)
	}
}

func TestUnknownMachineAndJob(t *testing.T) {
	dc := newTestDC(t, func(o *Options) {
		o.Inventory = []InventoryMachine{{MAC: "AA:BB:CC:00:00:01", CurrentOS: "1.0.0", PowerState: datacenter.PowerOff}}
	})
	var m datacenter.MachineState
	if code := dc.call(t, http.MethodGet, "/v1/machines/aa-bb-cc-00-00-01", nil, nil, &m); code != 200 || m.CurrentOS != "1.0.0" || m.State != "off" {
		t.Errorf("inventory machine: %d %+v", code, m)
	}
	var e datacenter.ErrorBody
	if code := dc.call(t, http.MethodGet, "/v1/machines/aa:bb:cc:00:00:09", nil, nil, &e); code != 404 || e.Code != 404 || e.Message == "" {
		t.Errorf("unknown machine: %d %+v", code, e)
	}
	if code := dc.call(t, http.MethodGet, "/v1/machines/xyz", nil, nil, &e); code != 400 {
		t.Errorf("bad MAC: %d", code)
	}
	if code := dc.call(t, http.MethodGet, "/v1/jobs/dc-test-job-99", nil, nil, &e); code != 404 {
		t.Errorf("unknown job: %d", code)
	}
}

func TestAuthentication(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dc := newTestDC(t, func(o *Options) { o.TokenFile = tokenFile })
	for _, path := range []string{"/v1/jobs/x", "/v1/machines/aa:bb:cc:dd:ee:01", "/debug/ledger", "/metrics"} {
		if code := dc.call(t, http.MethodGet, path, nil, nil, nil); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", path, code)
		}
		if code := dc.call(t, http.MethodGet, path, nil, map[string]string{"Authorization": "Bearer wrong"}, nil); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
	}
	if code := dc.call(t, http.MethodGet, "/healthz", nil, nil, nil); code != http.StatusOK {
		t.Errorf("/healthz must not need a token: %d", code)
	}
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if code := dc.call(t, http.MethodGet, "/debug/ledger", nil, auth, nil); code != http.StatusOK {
		t.Errorf("right token: %d", code)
	}
	// Rotation: the new token works at once, the old one no longer.
	if err := os.WriteFile(tokenFile, []byte("rotated-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := dc.call(t, http.MethodGet, "/debug/ledger", nil, map[string]string{"Authorization": "Bearer rotated-token"}, nil); code != http.StatusOK {
		t.Errorf("rotated token: %d", code)
	}
	if code := dc.call(t, http.MethodGet, "/debug/ledger", nil, auth, nil); code != http.StatusUnauthorized {
		t.Errorf("old token after rotation: %d", code)
	}
}

func TestFaults(t *testing.T) {
	dc := newTestDC(t)
	set := func(f Faults) {
		t.Helper()
		if code := dc.call(t, http.MethodPost, "/debug/faults", f, nil, nil); code != http.StatusOK {
			t.Fatalf("setting faults: %d", code)
		}
	}

	set(Faults{Outage: true})
	if code := dc.call(t, http.MethodGet, "/healthz", nil, nil, nil); code != http.StatusServiceUnavailable {
		t.Errorf("outage: healthz %d", code)
	}
	if _, code := dc.submit(t, "o", repave("aa:00:00:00:00:01")); code != http.StatusServiceUnavailable {
		t.Errorf("outage: submit %d", code)
	}

	set(Faults{ErrorRate: 1})
	if _, code := dc.submit(t, "e", repave("aa:00:00:00:00:01")); code != http.StatusInternalServerError {
		t.Errorf("error rate 1: %d", code)
	}
	if len(dc.Ledger()) != 0 {
		t.Error("a request answered 500 by fault injection must not start anything")
	}

	set(Faults{Latency: Duration{150 * time.Millisecond}})
	start := time.Now()
	dc.call(t, http.MethodGet, "/healthz", nil, nil, nil)
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("latency fault: answered in %s", elapsed)
	}

	set(Faults{TimeoutRate: 1})
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := client.Get(dc.url + "/healthz"); err == nil {
		t.Error("timeout fault: got an answer")
	}

	set(Faults{DropAfterAcceptRate: 1})
	body, _ := json.Marshal(repave("aa:00:00:00:00:02"))
	req, _ := http.NewRequest(http.MethodPost, dc.url+"/v1/jobs", bytes.NewReader(body))
	req.Header.Set(datacenter.IdempotencyKeyHeader, "dropped")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("drop after accept: got an answer %d", resp.StatusCode)
	}
	if l := dc.Ledger(); len(l) != 1 || l[0].IdempotencyKey != "dropped" {
		t.Errorf("drop after accept must still start the job: %+v", l)
	}
	set(Faults{})
	if job, code := dc.submit(t, "dropped", repave("aa:00:00:00:00:02")); code != http.StatusOK || job.ID != dc.Ledger()[0].DCJobID {
		t.Errorf("resubmitting after a dropped answer: %d %+v", code, job)
	}

	set(Faults{JobFailureRate: 1})
	job, _ := dc.submit(t, "f", repave("aa:00:00:00:00:03"))
	dc.step(time.Minute)
	if j := dc.job(t, job.ID); j.State != datacenter.JobFailed || j.Message == "" {
		t.Errorf("job failure: %+v", j)
	}

	var e datacenter.ErrorBody
	if code := dc.call(t, http.MethodPost, "/debug/faults", []byte(`{"errorRate": 2}`), nil, &e); code != 400 || !strings.Contains(e.Message, "errorRate") {
		t.Errorf("invalid faults: %d %+v", code, e)
	}
}

func TestStateFileSurvivesRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	dc := newTestDC(t, func(o *Options) { o.StateFile = stateFile })
	job, _ := dc.submit(t, "uid-1", repave("aa:00:00:00:00:01"))

	restarted := newTestDC(t, func(o *Options) { o.StateFile = stateFile })
	restarted.clock.SetTime(dc.clock.Now().Add(time.Minute))
	if again, code := restarted.submit(t, "uid-1", repave("aa:00:00:00:00:01")); code != http.StatusOK || again.ID != job.ID {
		t.Errorf("after restart the same key must give the same job: %d %+v", code, again)
	}
	if j := restarted.job(t, job.ID); j.State != datacenter.JobSucceeded {
		t.Errorf("after restart the job is %s", j.State)
	}
	if l := restarted.Ledger(); len(l) != 1 {
		t.Errorf("ledger after restart: %+v", l)
	}
	next, _ := restarted.submit(t, "uid-2", repave("aa:00:00:00:00:02"))
	if next.ID == job.ID {
		t.Errorf("a restarted datacenter reused job ID %s", next.ID)
	}
}

func TestLoadInventory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.yaml")
	os.WriteFile(path, []byte("- mac: aa:bb:cc:dd:ee:01\n  name: server-001\n  currentOS: 1.0.0\n"), 0o600)
	machines, err := LoadInventory(path)
	if err != nil || len(machines) != 1 || machines[0].CurrentOS != "1.0.0" {
		t.Fatalf("%v %+v", err, machines)
	}
	os.WriteFile(path, []byte("- mac: aa:bb:cc:dd:ee:01\n  colour: red\n"), 0o600)
	if _, err := LoadInventory(path); err == nil {
		t.Error("an unknown field was accepted")
	}
}

// A submit that arrives after its Not-After deadline starts nothing (412);
// one under a key already running is still answered with that job.
func TestNotAfterDeadline(t *testing.T) {
	dc := newTestDC(t)
	past := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
	future := time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	var e datacenter.ErrorBody
	code := dc.call(t, http.MethodPost, "/v1/jobs", repave("aa:00:00:00:00:01"),
		map[string]string{datacenter.IdempotencyKeyHeader: "late", datacenter.NotAfterHeader: past}, &e)
	if code != http.StatusPreconditionFailed || e.Code != http.StatusPreconditionFailed || len(dc.Ledger()) != 0 {
		t.Fatalf("a late submit: %d %+v, %d executions", code, e, len(dc.Ledger()))
	}
	var job datacenter.Job
	if code := dc.call(t, http.MethodPost, "/v1/jobs", repave("aa:00:00:00:00:01"),
		map[string]string{datacenter.IdempotencyKeyHeader: "on-time", datacenter.NotAfterHeader: future}, &job); code != http.StatusAccepted {
		t.Fatalf("a submit in time: %d", code)
	}
	var again datacenter.Job
	if code := dc.call(t, http.MethodPost, "/v1/jobs", repave("aa:00:00:00:00:01"),
		map[string]string{datacenter.IdempotencyKeyHeader: "on-time", datacenter.NotAfterHeader: past}, &again); code != http.StatusOK || again.ID != job.ID {
		t.Errorf("a late replay of a started job: %d %+v", code, again)
	}
	if code := dc.call(t, http.MethodPost, "/v1/jobs", repave("aa:00:00:00:00:02"),
		map[string]string{datacenter.IdempotencyKeyHeader: "bad", datacenter.NotAfterHeader: "tomorrow"}, &e); code != http.StatusBadRequest {
		t.Errorf("an unreadable deadline: %d", code)
	}
}
