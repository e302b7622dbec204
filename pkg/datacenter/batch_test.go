package datacenter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	testingclock "k8s.io/utils/clock/testing"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/datacenter"
)

// scripted is a datacenter on httptest whose answers a test writes, per
// route ("GET /v1/capabilities", "GET /v1/jobs", "POST /v1/machines:lookup"),
// and which records every request it gets.
type scripted struct {
	url string

	mu       sync.Mutex
	answers  map[string]func(w http.ResponseWriter, r *http.Request, body []byte)
	requests []seenRequest
}

type seenRequest struct {
	route, query, auth string
	body               []byte
}

func newScripted(t *testing.T) *scripted {
	t.Helper()
	s := &scripted{answers: map[string]func(http.ResponseWriter, *http.Request, []byte){}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		route := r.Method + " " + r.URL.Path
		s.mu.Lock()
		s.requests = append(s.requests, seenRequest{route: route, query: r.URL.RawQuery, auth: r.Header.Get("Authorization"), body: body})
		answer := s.answers[route]
		s.mu.Unlock()
		if answer == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("404 page not found"))
			return
		}
		answer(w, r, body)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// on sets the answer of route; a string answers it 200 with that body.
func (s *scripted) on(route string, answer interface{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch a := answer.(type) {
	case string:
		s.answers[route] = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(a))
		}
	case func(w http.ResponseWriter, r *http.Request, body []byte):
		s.answers[route] = a
	default:
		panic(fmt.Sprintf("answer %T", answer))
	}
}

func (s *scripted) seen() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.requests...)
}

func (s *scripted) client(t *testing.T, mutate ...func(*datacenter.Config)) *datacenter.HTTPClient {
	t.Helper()
	cfg := datacenter.Config{Endpoint: s.url, Backoff: fastBackoff, Timeout: 5 * time.Second}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := datacenter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const bothOffered = `{"jobChanges":{"maxLimit":1000,"retention":100},"machineLookup":{"maxMACs":500}}`

func status(code int, body string) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

// The feed against the mock: "" is the head and lists nothing; a page holds
// each job once, at most limit of them, and says when more follow; a job's
// end is listed after the cursor taken before it.
func TestChangesFollowTheMock(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Now())
	e := newEnv(t, func(o *mockdc.Options) { o.Clock = clk })
	c := e.client(t)
	ctx := context.Background()

	head, err := c.Changes(ctx, "", 0)
	if err != nil || len(head.Jobs) != 0 || head.More || head.Cursor == "" {
		t.Fatalf("from now: %v %+v, want no jobs and a cursor", err, head)
	}
	var ids []string
	for i := range 3 {
		req := datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: fmt.Sprintf("aa:00:00:00:00:0%d", i+1)}}
		j, err := c.Submit(ctx, fmt.Sprintf("uid-%d", i), req)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	// Each job changed twice (queued, then running at once): two a page.
	first, err := c.Changes(ctx, head.Cursor, 2)
	if err != nil || len(first.Jobs) != 2 || !first.More || first.Jobs[0].ID != ids[0] || first.Jobs[1].ID != ids[1] {
		t.Fatalf("first page: %v %+v, want jobs %v and more", err, first, ids[:2])
	}
	second, err := c.Changes(ctx, first.Cursor, 2)
	if err != nil || len(second.Jobs) != 1 || second.More || second.Jobs[0].ID != ids[2] {
		t.Fatalf("second page: %v %+v, want job %s and no more", err, second, ids[2])
	}
	// Nothing more until the jobs end; then each is listed, finished.
	if idle, err := c.Changes(ctx, second.Cursor, 0); err != nil || len(idle.Jobs) != 0 || idle.Cursor != second.Cursor {
		t.Errorf("no change: %v %+v", err, idle)
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	ended, err := c.Changes(ctx, second.Cursor, 0)
	if err != nil || len(ended.Jobs) != 3 || ended.More {
		t.Fatalf("after the jobs ended: %v %+v", err, ended)
	}
	for i, j := range ended.Jobs {
		if j.ID != ids[i] || j.State != datacenter.JobSucceeded {
			t.Errorf("listed %s %s, want %s succeeded", j.ID, j.State, ids[i])
		}
	}
}

// A cursor older than the mock keeps is 410: IsCursorExpired, not transient;
// a JobFeed then starts again and asks for a resync.
func TestExpiredCursor(t *testing.T) {
	e := newEnv(t, func(o *mockdc.Options) { o.ChangeRetention = 3 })
	c := e.client(t)
	ctx := context.Background()
	feed := datacenter.NewJobFeed(c, 0)
	if _, resync, err := feed.Next(ctx); err != nil || !resync {
		t.Fatalf("first Next: resync %v, %v; want a resync", resync, err)
	}
	head, err := c.Changes(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // four changes: more than the three kept
		req := datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: fmt.Sprintf("aa:00:00:00:00:0%d", i+1)}}
		if _, err := c.Submit(ctx, fmt.Sprintf("uid-%d", i), req); err != nil {
			t.Fatal(err)
		}
	}
	before := e.requests.Load()
	_, err = c.Changes(ctx, head.Cursor, 0)
	if !datacenter.IsCursorExpired(err) || datacenter.IsTransient(err) || datacenter.IsUnsupported(err) {
		t.Errorf("an expired cursor: %v, want IsCursorExpired only", err)
	}
	if n := e.requests.Load() - before; n != 1 {
		t.Errorf("a 410 was sent %d times; it is not retried", n)
	}
	if _, err := c.Changes(ctx, "not-a-cursor", 0); !datacenter.IsCursorExpired(err) {
		t.Errorf("a cursor the mock never gave: %v, want IsCursorExpired", err)
	}
	jobs, resync, err := feed.Next(ctx)
	if err != nil || !resync || len(jobs) != 0 {
		t.Errorf("Next after the feed moved past its cursor: %v resync %v jobs %v, want a resync", err, resync, jobs)
	}
	if jobs, resync, err := feed.Next(ctx); err != nil || resync || len(jobs) != 0 {
		t.Errorf("Next after the resync: %v resync %v jobs %v, want nothing", err, resync, jobs)
	}
}

// A datacenter that implements only the core contract (the mock with its
// batch endpoints off): the calls are IsUnsupported, having asked once for the
// capabilities and sent nothing else; the core calls work as before. Once it
// offers them, the next look at its capabilities (CapabilitiesInterval on)
// finds them.
func TestOldDatacenterFallsBack(t *testing.T) {
	e := newEnv(t, func(o *mockdc.Options) { o.NoBatch = true })
	c := e.client(t, func(c *datacenter.Config) { c.CapabilitiesInterval = 300 * time.Millisecond })
	ctx := context.Background()

	before := e.requests.Load()
	_, err := c.Changes(ctx, "", 0)
	if !datacenter.IsUnsupported(err) || datacenter.IsTransient(err) || !strings.Contains(err.Error(), "no capabilities document") {
		t.Fatalf("feed of an old datacenter: %v, want IsUnsupported saying why", err)
	}
	if _, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01"}); !datacenter.IsUnsupported(err) {
		t.Errorf("lookup at an old datacenter: %v, want IsUnsupported", err)
	}
	if caps, err := c.Capabilities(ctx); err != nil || caps.JobChanges != nil || caps.MachineLookup != nil {
		t.Errorf("capabilities of an old datacenter: %v %+v, want none", err, caps)
	}
	if n := e.requests.Load() - before; n != 1 {
		t.Errorf("%d requests, want 1 (the capabilities, asked once)", n)
	}
	if _, err := c.Submit(ctx, "uid-1", repave("aa:bb:cc:dd:ee:01")); err != nil {
		t.Errorf("submit to an old datacenter: %v", err)
	}
	if found, err := c.LookupMachines(ctx, nil); err != nil || len(found) != 0 {
		t.Errorf("looking nothing up: %v %v", err, found)
	}

	e.dc.SetBatchOffered(true)
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Changes(ctx, "", 0)
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("the feed once offered: %v", err)
	}
	if found, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01"}); err != nil || found["aa:bb:cc:dd:ee:01"] == nil {
		t.Errorf("lookup once offered: %v %v", err, found)
	}
}

// A datacenter whose document lists the batch calls but which answers them as
// unknown routes (rolled back): IsUnsupported, and nothing more is sent
// until its capabilities are asked for again. A 501 is not retried.
func TestWithdrawnEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, []byte)
	}{
		{"bare 404", status(http.StatusNotFound, "404 page not found")},
		{"405", status(http.StatusMethodNotAllowed, "")},
		{"501", status(http.StatusNotImplemented, `{"code":501,"message":"not implemented"}`)},
		{"400 of a core-only GET /v1/jobs", status(http.StatusBadRequest, `{"code":400,"message":"the idempotencyKey query parameter is required"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t)
			s.on("GET /v1/capabilities", bothOffered)
			s.on("GET /v1/jobs", tc.answer)
			s.on("POST /v1/machines:lookup", tc.answer)
			c := s.client(t)
			ctx := context.Background()
			if _, err := c.Changes(ctx, "", 0); !datacenter.IsUnsupported(err) || !strings.Contains(err.Error(), "it answered") {
				t.Errorf("feed: %v, want IsUnsupported", err)
			}
			if _, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01"}); !datacenter.IsUnsupported(err) {
				t.Errorf("lookup: %v, want IsUnsupported", err)
			}
			if n := len(s.seen()); n != 3 {
				t.Errorf("%d requests, want 3 (capabilities, one feed, one lookup: nothing retried)", n)
			}
			if _, err := c.Changes(ctx, "", 0); !datacenter.IsUnsupported(err) {
				t.Errorf("feed again: %v", err)
			}
			if n := len(s.seen()); n != 3 {
				t.Errorf("%d requests, want no more once withdrawn", n)
			}
		})
	}
}

// How the capabilities document is read: a 501 or a 404 of any shape is a
// datacenter that offers nothing more, remembered; an unreadable document
// the same; 401 and transient errors teach nothing and are asked again.
func TestCapabilitiesProbe(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		answer    func(http.ResponseWriter, *http.Request, []byte)
		wantErr   func(error) bool
		requests  int // after two Changes calls
		remembers bool
	}{
		{"501", status(http.StatusNotImplemented, "not implemented"), datacenter.IsUnsupported, 1, true},
		{"contract 404", status(http.StatusNotFound, `{"code":404,"message":"no route"}`), datacenter.IsUnsupported, 1, true},
		{"unreadable", status(http.StatusOK, `{"jobChanges":`), datacenter.IsUnsupported, 1, true},
		{"empty", status(http.StatusOK, `{}`), datacenter.IsUnsupported, 1, true},
		{"401", status(http.StatusUnauthorized, `{"code":401,"message":"no"}`), datacenter.IsUnauthorized, 2, false},
		{"503", status(http.StatusServiceUnavailable, `{"code":503,"message":"down"}`), datacenter.IsUnavailable, 2 * fastBackoff.Steps, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t)
			s.on("GET /v1/capabilities", tc.answer)
			c := s.client(t)
			for range 2 {
				if _, err := c.Changes(ctx, "", 0); !tc.wantErr(err) || (tc.remembers != datacenter.IsUnsupported(err)) {
					t.Errorf("Changes: %v", err)
				}
			}
			if n := len(s.seen()); n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
		})
	}
}

// Every batch request carries the token read from the file at that call,
// and the query the contract names; the page size is bounded by the
// contract and by what the datacenter says.
func TestBatchRequestsAreAuthenticatedAndBounded(t *testing.T) {
	s := newScripted(t)
	s.on("GET /v1/capabilities", `{"jobChanges":{"maxLimit":100},"machineLookup":{"maxMACs":2}}`)
	s.on("GET /v1/jobs", `{"jobs":[],"cursor":"c1","more":false}`)
	s.on("POST /v1/machines:lookup", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req datacenter.MachineLookupRequest
		_ = json.Unmarshal(body, &req)
		_ = json.NewEncoder(w).Encode(datacenter.MachineLookup{Machines: []datacenter.MachineState{}, NotFound: req.MACs})
	})
	file := t.TempDir() + "/token"
	writeToken(t, file, "token-1")
	c := s.client(t, func(c *datacenter.Config) { c.TokenFile = file })
	ctx := context.Background()
	if _, err := c.Changes(ctx, "a b&c", 5000); err != nil {
		t.Fatal(err)
	}
	writeToken(t, file, "token-2-rotated")
	if _, err := c.Changes(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	found, err := c.LookupMachines(ctx, []string{"aa:00:00:00:00:01", "aa:00:00:00:00:02", "aa:00:00:00:00:01", "aa:00:00:00:00:03"})
	if err != nil || len(found) != 0 {
		t.Fatalf("lookup: %v %v", err, found)
	}
	seen := s.seen()
	want := []seenRequest{
		{route: "GET /v1/capabilities", auth: "Bearer token-1"},
		{route: "GET /v1/jobs", query: "changedSince=a+b%26c&limit=100", auth: "Bearer token-1"},
		{route: "GET /v1/jobs", query: "changedSince=&limit=100", auth: "Bearer token-2-rotated"},
		{route: "POST /v1/machines:lookup", auth: "Bearer token-2-rotated", body: []byte(`{"macs":["aa:00:00:00:00:01","aa:00:00:00:00:02"]}`)},
		{route: "POST /v1/machines:lookup", auth: "Bearer token-2-rotated", body: []byte(`{"macs":["aa:00:00:00:00:03"]}`)},
	}
	if len(seen) != len(want) {
		t.Fatalf("requests %+v, want %+v", seen, want)
	}
	for i := range want {
		if seen[i].route != want[i].route || seen[i].query != want[i].query || seen[i].auth != want[i].auth ||
			(want[i].body != nil && string(seen[i].body) != string(want[i].body)) {
			t.Errorf("request %d: %s ?%s auth %q body %s; want %s ?%s auth %q body %s", i, seen[i].route, seen[i].query, seen[i].auth, seen[i].body,
				want[i].route, want[i].query, want[i].auth, want[i].body)
		}
	}

	// No token file: nothing is sent, the error names the file.
	missing := s.client(t, func(c *datacenter.Config) { c.TokenFile = t.TempDir() + "/none" })
	if _, err := missing.Changes(ctx, "", 0); !datacenter.IsUnauthorized(err) || datacenter.IsUnsupported(err) {
		t.Errorf("without credentials: %v", err)
	}
	if n := len(s.seen()); n != len(want) {
		t.Errorf("a call without credentials sent %d requests", n-len(want))
	}
}

// The lookup against the mock: 600 MACs (two requests), found keyed by the
// spelling asked, unknown and malformed ones absent.
func TestLookupMachinesAtTheMock(t *testing.T) {
	var inventory []mockdc.InventoryMachine
	var asked []string
	for i := range 600 {
		mac := fmt.Sprintf("AA-BB-CC-00-%02X-%02X", i/256, i%256)
		inventory = append(inventory, mockdc.InventoryMachine{MAC: mac, CurrentOS: fmt.Sprintf("os-%d", i)})
		asked = append(asked, mac)
	}
	asked = append(asked, "aa:bb:cc:ff:ff:ff", "not-a-mac", asked[0])
	e := newEnv(t, func(o *mockdc.Options) { o.Inventory = inventory })
	c := e.client(t)
	before := e.requests.Load()
	found, err := c.LookupMachines(context.Background(), asked)
	if err != nil {
		t.Fatal(err)
	}
	if n := e.requests.Load() - before; n != 3 {
		t.Errorf("%d requests, want 3 (capabilities, then 500 + 102 MACs)", n)
	}
	if len(found) != 600 {
		t.Errorf("found %d machines, want 600", len(found))
	}
	if m := found["AA-BB-CC-00-02-57"]; m == nil || m.CurrentOS != "os-599" || m.MAC != "aa:bb:cc:00:02:57" {
		t.Errorf("machine 599: %+v", m)
	}
	if found["aa:bb:cc:ff:ff:ff"] != nil || found["not-a-mac"] != nil {
		t.Error("an unknown or malformed MAC was found")
	}
}

// Answers that decode but cannot be used are errors (IsUndecodable), never
// empty results: a page without a cursor or with a job without an ID, a
// lookup that forgets a MAC, a body over the bound.
func TestUnusableBatchAnswers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, feed, lookup string
	}{
		{name: "empty objects", feed: `{}`, lookup: `{}`},
		{name: "a job without an id; a machine without a mac", feed: `{"jobs":[{"state":"running"}],"cursor":"c"}`,
			lookup: `{"machines":[{"state":"ready"}],"notFound":["aa:00:00:00:00:01"]}`},
		{name: "jobs of the wrong type; a forgotten MAC", feed: `{"jobs":{"id":"j"},"cursor":"c"}`,
			lookup: `{"machines":[{"mac":"aa:00:00:00:00:01","state":"ready","powerState":"on"}],"notFound":[]}`},
		{name: "cut", feed: `{"jobs":[`, lookup: `{"machines":`},
		{name: "over the bound", feed: `{"jobs":[],"cursor":"` + strings.Repeat("x", 17<<20) + `"}`,
			lookup: `{"machines":[],"notFound":["` + strings.Repeat("x", 17<<20) + `"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t)
			s.on("GET /v1/capabilities", bothOffered)
			s.on("GET /v1/jobs", tc.feed)
			s.on("POST /v1/machines:lookup", tc.lookup)
			c := s.client(t)
			if page, err := c.Changes(ctx, "c0", 0); !datacenter.IsUndecodable(err) || datacenter.IsTransient(err) {
				t.Errorf("feed: %v %+v, want IsUndecodable", err, page)
			}
			if found, err := c.LookupMachines(ctx, []string{"aa:00:00:00:00:01", "aa:00:00:00:00:02"}); !datacenter.IsUndecodable(err) {
				t.Errorf("lookup: %v %v, want IsUndecodable", err, found)
			}
		})
	}
}

// The feed lists every job of a datacenter, Stargate's or not: one in a
// state the contract does not define is left out of the page, which is
// still used (refusing it would stop the feed for good).
func TestAFeedEntryInAnUnknownStateIsLeftOut(t *testing.T) {
	s := newScripted(t)
	s.on("GET /v1/capabilities", bothOffered)
	s.on("GET /v1/jobs", `{"jobs":[{"id":"other","state":"paused"},{"id":"j","state":"succeeded"}],"cursor":"c1"}`)
	page, err := s.client(t).Changes(context.Background(), "c0", 0)
	if err != nil || page.Cursor != "c1" || len(page.Jobs) != 1 || page.Jobs[0].ID != "j" {
		t.Fatalf("got %+v, %v; want the page with job j only", page, err)
	}
}

// The bound of single calls' answers is an error too, no longer a silently
// cut body.
func TestSingleAnswerOverTheBound(t *testing.T) {
	s := newScripted(t)
	s.on("GET /v1/jobs/j1", `{"id":"j1","state":"running","message":"`+strings.Repeat("x", 1<<20)+`"}`)
	_, err := s.client(t).GetJob(context.Background(), "j1")
	if !datacenter.IsUndecodable(err) || !strings.Contains(err.Error(), "over") {
		t.Errorf("an answer over 1 MiB: %v", err)
	}
}

// Transient errors of the batch calls are retried like the others', and
// every attempt is observed under its route.
func TestBatchRetriesAndObserves(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	var ops []string
	c := e.client(t, func(c *datacenter.Config) {
		c.Observer = func(op string, code int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			ops = append(ops, fmt.Sprintf("%s %d", op, code))
		}
	})
	ctx := context.Background()
	if _, err := c.Changes(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01"}); err != nil {
		t.Fatal(err)
	}
	if err := e.dc.SetFaults(mockdc.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	before := e.requests.Load()
	if _, err := c.Changes(ctx, "", 0); !datacenter.IsTransient(err) {
		t.Errorf("feed with every answer 500: %v, want transient", err)
	}
	if n := e.requests.Load() - before; n != int64(fastBackoff.Steps) {
		t.Errorf("%d attempts, want %d", n, fastBackoff.Steps)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"GET /v1/capabilities 200", "GET /v1/jobs?changedSince 200", "POST /v1/machines:lookup 200"}
	for range fastBackoff.Steps {
		want = append(want, "GET /v1/jobs?changedSince 500")
	}
	if strings.Join(ops, ", ") != strings.Join(want, ", ") {
		t.Errorf("observed %v, want %v", ops, want)
	}
}

func writeTokenFile(t *testing.T, token string) string {
	t.Helper()
	file := t.TempDir() + "/token"
	if err := os.WriteFile(file, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// A token the datacenter echoes in an error never reaches the error.
func TestBatchErrorsHideTheToken(t *testing.T) {
	s := newScripted(t)
	s.on("GET /v1/capabilities", bothOffered)
	s.on("GET /v1/jobs", func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.WriteHeader(http.StatusGone)
		_, _ = w.Write([]byte(`{"code":410,"message":"cursor expired; you sent ` + r.Header.Get("Authorization") + `"}`))
	})
	c := s.client(t, func(c *datacenter.Config) { c.TokenFile = writeTokenFile(t, "secret-token") })
	_, err := c.Changes(context.Background(), "c0", 0)
	if !datacenter.IsCursorExpired(err) || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("410 echoing the token: %v", err)
	}
}
