package mockdc

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"stargate.io/stargate/pkg/datacenter"
)

// submitRaw sends a submission and reports the status code, or 0 when the
// connection was dropped without an answer. Each goes on a new connection:
// net/http retries a request with an Idempotency-Key header by itself when a
// reused connection drops, which would hide the lost answer.
func (d *testDC) submitRaw(t *testing.T, key string, req datacenter.JobRequest) int {
	t.Helper()
	body, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPost, d.url+"/v1/jobs", bytes.NewReader(body))
	r.Header.Set(datacenter.IdempotencyKeyHeader, key)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(r)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLoseFirstAnswerThenFailResubmits(t *testing.T) {
	dc := newTestDC(t)
	if err := dc.SetFaults(Faults{LoseFirstAnswer: &LoseFirstAnswer{FailResubmits: 3, JobDuration: Duration{time.Minute}}}); err != nil {
		t.Fatal(err)
	}
	if code := dc.submitRaw(t, "k1", repave("aa:00:00:00:00:01")); code != 0 {
		t.Fatalf("first submission: answered %d, want the answer lost", code)
	}
	l := dc.Ledger()
	if len(l) != 1 || l[0].IdempotencyKey != "k1" {
		t.Fatalf("the lost submission must still start its job: %+v", l)
	}
	for i := range 3 {
		if code := dc.submitRaw(t, "k1", repave("aa:00:00:00:00:01")); code != http.StatusInternalServerError {
			t.Errorf("re-submission %d: %d, want 500", i+1, code)
		}
	}
	// Asking by key is never affected, and shows the job running.
	var found datacenter.Job
	if code := dc.call(t, http.MethodGet, "/v1/jobs?idempotencyKey=k1", nil, nil, &found); code != http.StatusOK || found.State != datacenter.JobRunning {
		t.Errorf("find by key during the streak: %d %+v", code, found)
	}
	job, code := dc.submit(t, "k1", repave("aa:00:00:00:00:01"))
	if code != http.StatusOK || job.ID != l[0].DCJobID {
		t.Errorf("after the streak: %d %+v, want 200 and the job that runs", code, job)
	}
	dc.step(59 * time.Second) // jobDuration, not the usual 30s
	if j := dc.job(t, job.ID); j.State != datacenter.JobRunning {
		t.Errorf("at 59s of a 1m jobDuration: %s", j.State)
	}
	dc.step(time.Second)
	if j := dc.job(t, job.ID); j.State != datacenter.JobSucceeded {
		t.Errorf("at 1m: %s", j.State)
	}
	// With no MACs every new key is struck; a second key gets its own streak.
	if code := dc.submitRaw(t, "k2", repave("aa:00:00:00:00:02")); code != 0 {
		t.Errorf("second key: answered %d, want the answer lost", code)
	}
	if len(dc.Ledger()) != 2 {
		t.Errorf("ledger %+v", dc.Ledger())
	}
	// Switched off, the streak ends at once.
	if err := dc.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	if _, code := dc.submit(t, "k2", repave("aa:00:00:00:00:02")); code != http.StatusOK {
		t.Errorf("after the fault was switched off: %d", code)
	}
}

func TestLoseFirstAnswerOncePerListedMachine(t *testing.T) {
	dc := newTestDC(t)
	set := Faults{LoseFirstAnswer: &LoseFirstAnswer{MACs: []string{"AA-00-00-00-00-01"}, FailResubmits: 1, Hold: Duration{100 * time.Millisecond}}}
	if code := dc.call(t, http.MethodPost, "/debug/faults", set, nil, nil); code != http.StatusOK {
		t.Fatalf("setting faults: %d", code)
	}
	start := time.Now()
	if code := dc.submitRaw(t, "a", repave("aa:00:00:00:00:01")); code != 0 {
		t.Fatalf("listed machine: answered %d, want the answer lost", code)
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("the answer was dropped after %s, want it held 100ms", elapsed)
	}
	if code := dc.submitRaw(t, "a", repave("aa:00:00:00:00:01")); code != http.StatusInternalServerError {
		t.Errorf("re-submission: %d, want 500", code)
	}
	if _, code := dc.submit(t, "a", repave("aa:00:00:00:00:01")); code != http.StatusOK {
		t.Errorf("after a streak of 1: %d, want 200", code)
	}
	// The same machine again, under a new key: not struck a second time.
	if _, code := dc.submit(t, "b", repave("aa:00:00:00:00:01")); code != http.StatusAccepted {
		t.Errorf("second key on a struck machine: %d, want 202", code)
	}
	// A machine not listed: never struck.
	if _, code := dc.submit(t, "c", repave("aa:00:00:00:00:02")); code != http.StatusAccepted {
		t.Errorf("unlisted machine: %d, want 202", code)
	}
	var got Faults
	dc.call(t, http.MethodGet, "/debug/faults", nil, nil, &got)
	if got.LoseFirstAnswer == nil || got.LoseFirstAnswer.MACs[0] != "aa:00:00:00:00:01" {
		t.Errorf("GET /debug/faults: %+v", got.LoseFirstAnswer)
	}
	var jobs []JobRecord
	dc.call(t, http.MethodGet, "/debug/jobs", nil, nil, &jobs)
	if len(jobs) != 3 || jobs[0].IdempotencyKey != "a" || jobs[0].State != datacenter.JobRunning || jobs[0].StartedAt == nil {
		t.Errorf("GET /debug/jobs: %+v", jobs)
	}
	var e datacenter.ErrorBody
	bad := []byte(`{"loseFirstAnswer":{"macs":["nope"]}}`)
	if code := dc.call(t, http.MethodPost, "/debug/faults", bad, nil, &e); code != http.StatusBadRequest || !strings.Contains(e.Message, "macs[0]") {
		t.Errorf("invalid MAC: %d %+v", code, e)
	}
}
