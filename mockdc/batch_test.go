package mockdc

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stargate.io/stargate/pkg/datacenter"
)

// changes reads one page of the feed, failing the test on anything but 200.
func (d *testDC) changes(t *testing.T, cursor string, limit int) datacenter.JobChanges {
	t.Helper()
	var page datacenter.JobChanges
	path := fmt.Sprintf("/v1/jobs?changedSince=%s&limit=%d", cursor, limit)
	if code := d.call(t, http.MethodGet, path, nil, nil, &page); code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, code)
	}
	return page
}

func ids(jobs []datacenter.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID+"="+string(j.State))
	}
	return out
}

// Every state change is in the feed after the cursor taken before it, in
// order, each job once a page as it is now; progress alone is no change.
func TestChangesFeed(t *testing.T) {
	dc := newTestDC(t, func(o *Options) { o.MaxRunning = 1 })
	if head := dc.changes(t, "", 10); len(head.Jobs) != 0 || head.More || head.Cursor == "" {
		t.Fatalf("from now on an empty datacenter: %+v", head)
	}
	first, _ := dc.submit(t, "uid-1", repave("aa:00:00:00:00:01"))
	head := dc.changes(t, "", 10)
	if len(head.Jobs) != 0 {
		t.Errorf("from now lists %v", ids(head.Jobs))
	}
	if zero := dc.changes(t, "0", 10); len(zero.Jobs) != 0 || zero.Cursor != head.Cursor {
		t.Errorf(`"0": %+v, want the head %q`, zero, head.Cursor)
	}
	second, _ := dc.submit(t, "uid-2", repave("aa:00:00:00:00:02")) // queued behind the first
	page := dc.changes(t, head.Cursor, 10)
	if got := ids(page.Jobs); strings.Join(got, ",") != second.ID+"=queued" || page.More {
		t.Errorf("after a submit: %v more=%v, want the queued job", got, page.More)
	}
	dc.step(15 * time.Second) // progress only
	if idle := dc.changes(t, page.Cursor, 10); len(idle.Jobs) != 0 || idle.Cursor != page.Cursor {
		t.Errorf("progress listed as a change: %+v", idle)
	}
	dc.step(15 * time.Second) // the first ends, the second starts
	ended := dc.changes(t, page.Cursor, 10)
	if got := strings.Join(ids(ended.Jobs), ","); got != first.ID+"=succeeded,"+second.ID+"=running" {
		t.Errorf("after the first ended: %s", got)
	}
	dc.call(t, http.MethodPost, "/v1/jobs/"+second.ID+"/cancel", nil, nil, nil)
	if got := ids(dc.changes(t, ended.Cursor, 10).Jobs); strings.Join(got, ",") != second.ID+"=cancelled" {
		t.Errorf("after a cancel: %v", got)
	}
	// Paging: from the first cursor, one job a page.
	p1 := dc.changes(t, head.Cursor, 1)
	p2 := dc.changes(t, p1.Cursor, 1)
	p3 := dc.changes(t, p2.Cursor, 1)
	if !p1.More || !p2.More || p3.More || len(p1.Jobs)+len(p2.Jobs)+len(p3.Jobs) != 3 {
		t.Errorf("pages of one: %v %v %v (more %v %v %v)", ids(p1.Jobs), ids(p2.Jobs), ids(p3.Jobs), p1.More, p2.More, p3.More)
	}
}

// A cursor whose changes are no longer kept, from another run, or no cursor
// at all: 410 with the contract's error body. Bad limits: 400.
func TestChangesFeedRefusals(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	dc := newTestDC(t, func(o *Options) { o.ChangeRetention, o.StateFile = 3, stateFile })
	head := dc.changes(t, "", 10)
	dc.submit(t, "uid-1", repave("aa:00:00:00:00:01")) // two changes: queued, running
	kept := dc.changes(t, head.Cursor, 10)
	if len(kept.Jobs) != 1 {
		t.Fatalf("within retention: %v", ids(kept.Jobs))
	}
	dc.submit(t, "uid-2", repave("aa:00:00:00:00:02")) // four changes: one forgotten
	restarted := newTestDC(t, func(o *Options) { o.StateFile = stateFile })
	for _, tc := range []struct {
		name, path string
		on         *testDC
		code       int
	}{
		{"forgotten", "/v1/jobs?changedSince=" + head.Cursor, dc, http.StatusGone},
		{"from the future", "/v1/jobs?changedSince=" + strings.Split(head.Cursor, "-")[0] + "-99", dc, http.StatusGone},
		{"malformed", "/v1/jobs?changedSince=abc", dc, http.StatusGone},
		{"from before a restart", "/v1/jobs?changedSince=" + kept.Cursor, restarted, http.StatusGone},
		{"zero limit", "/v1/jobs?changedSince=&limit=0", dc, http.StatusBadRequest},
		{"junk limit", "/v1/jobs?changedSince=&limit=x", dc, http.StatusBadRequest},
		{"both queries", "/v1/jobs?changedSince=&idempotencyKey=uid-1", dc, http.StatusBadRequest},
	} {
		var e datacenter.ErrorBody
		if code := tc.on.call(t, http.MethodGet, tc.path, nil, nil, &e); code != tc.code || e.Code != tc.code || e.Message == "" {
			t.Errorf("%s: %d %+v, want %d with an error body", tc.name, code, e, tc.code)
		}
	}
	if still := dc.changes(t, kept.Cursor, 10); len(still.Jobs) != 1 {
		t.Errorf("a cursor within retention: %v", ids(still.Jobs))
	}
	if big := dc.changes(t, kept.Cursor, 1_000_000); len(big.Jobs) != 1 {
		t.Errorf("a limit over the maximum: %v", ids(big.Jobs))
	}
	// The restarted mock kept its jobs, and the find-by-key query still works beside the feed.
	var j datacenter.Job
	if code := restarted.call(t, http.MethodGet, "/v1/jobs?idempotencyKey=uid-1", nil, nil, &j); code != http.StatusOK || j.ID == "" {
		t.Errorf("find by key after restart: %d %+v", code, j)
	}
}

// The batch lookup: 500 MACs in one request, every one in exactly one list;
// more is 400; junk is 4xx, never 5xx.
func TestLookupMachines(t *testing.T) {
	var inventory []InventoryMachine
	var macs []string
	for i := range 500 {
		mac := fmt.Sprintf("aa:bb:cc:00:%02x:%02x", i/256, i%256)
		macs = append(macs, mac)
		if i%2 == 0 {
			inventory = append(inventory, InventoryMachine{MAC: mac, CurrentOS: "1.0"})
		}
	}
	dc := newTestDC(t, func(o *Options) { o.Inventory = inventory })
	macs[0] = strings.ToUpper(strings.ReplaceAll(macs[0], ":", "-"))
	macs[1] = "not-a-mac"
	var out datacenter.MachineLookup
	if code := dc.call(t, http.MethodPost, "/v1/machines:lookup", datacenter.MachineLookupRequest{MACs: macs}, nil, &out); code != http.StatusOK {
		t.Fatalf("lookup of 500: %d", code)
	}
	if len(out.Machines) != 250 || len(out.NotFound) != 250 || out.Machines[0].MAC != "aa:bb:cc:00:00:00" || out.NotFound[0] != "not-a-mac" {
		t.Errorf("lookup of 500: %d found (first %+v), %d not found (first %v)", len(out.Machines), out.Machines[0], len(out.NotFound), out.NotFound[:1])
	}
	var empty datacenter.MachineLookup
	if code := dc.call(t, http.MethodPost, "/v1/machines:lookup", []byte(`{"macs":[]}`), nil, &empty); code != http.StatusOK ||
		empty.Machines == nil || empty.NotFound == nil {
		t.Errorf("lookup of none: %d %+v, want two empty lists", code, empty)
	}
	for name, body := range map[string][]byte{
		"501 MACs": []byte(`{"macs":[` + strings.Repeat(`"aa:bb:cc:dd:ee:01",`, 500) + `"aa:bb:cc:dd:ee:01"]}`),
		"junk":     []byte(`{"macs":`), "unknown field": []byte(`{"macs":[],"x":1}`), "trailing": []byte(`{"macs":[]}{}`),
	} {
		var e datacenter.ErrorBody
		if code := dc.call(t, http.MethodPost, "/v1/machines:lookup", body, nil, &e); code != http.StatusBadRequest || e.Code != 400 {
			t.Errorf("%s: %d %+v, want 400", name, code, e)
		}
	}
}

// Off (--batch-endpoints=false), the mock answers like a datacenter that
// implements only the core contract; on again at run time, it offers them.
func TestBatchEndpointsOff(t *testing.T) {
	dc := newTestDC(t, func(o *Options) { o.NoBatch = true })
	var e datacenter.ErrorBody
	if code := dc.call(t, http.MethodGet, "/v1/capabilities", nil, nil, &e); code != http.StatusNotFound || !strings.Contains(e.Message, "no route") {
		t.Errorf("capabilities when off: %d %+v, want 404", code, e)
	}
	if code := dc.call(t, http.MethodPost, "/v1/machines:lookup", []byte(`{"macs":[]}`), nil, &e); code != http.StatusNotFound {
		t.Errorf("lookup when off: %d %+v, want 404", code, e)
	}
	if code := dc.call(t, http.MethodGet, "/v1/jobs?changedSince=", nil, nil, &e); code != http.StatusBadRequest || !strings.Contains(e.Message, "idempotencyKey") {
		t.Errorf("feed when off: %d %+v, want the core GET /v1/jobs's 400", code, e)
	}
	dc.SetBatchOffered(true)
	var caps datacenter.Capabilities
	if code := dc.call(t, http.MethodGet, "/v1/capabilities", nil, nil, &caps); code != http.StatusOK ||
		caps.JobChanges == nil || caps.JobChanges.Retention != DefaultChangeRetention || caps.MachineLookup == nil || caps.MachineLookup.MaxMACs != 500 {
		t.Errorf("capabilities when on: %d %+v", code, caps)
	}
}

// The batch endpoints take the token and the faults as the others do, and
// /metrics counts their requests by route, apart from GET /v1/jobs?idempotencyKey=.
func TestBatchAuthFaultsAndMetrics(t *testing.T) {
	dc := newTestDC(t)
	dc.changes(t, "", 10)
	dc.changes(t, "", 10)
	dc.call(t, http.MethodGet, "/v1/jobs?idempotencyKey=nope", nil, nil, nil)
	dc.call(t, http.MethodPost, "/v1/machines:lookup", []byte(`{"macs":["aa:bb:cc:dd:ee:01","aa:bb:cc:dd:ee:02"]}`), nil, nil)
	dc.call(t, http.MethodGet, "/v1/capabilities", nil, nil, nil)
	if err := dc.SetFaults(Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/capabilities", "/v1/jobs?changedSince="} {
		if code := dc.call(t, http.MethodGet, path, nil, nil, nil); code != http.StatusServiceUnavailable {
			t.Errorf("%s in an outage: %d, want 503", path, code)
		}
	}
	resp, err := http.Get(dc.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`mockdc_requests_total{code="200",route="/v1/jobs?changedSince"} 2`,
		`mockdc_requests_total{code="503",route="/v1/jobs?changedSince"} 1`,
		`mockdc_requests_total{code="404",route="/v1/jobs"} 1`,
		`mockdc_requests_total{code="200",route="/v1/machines:lookup"} 1`,
		`mockdc_requests_total{code="200",route="/v1/capabilities"} 1`,
		`mockdc_batch_items_total{route="/v1/machines:lookup"} 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authed := newTestDC(t, func(o *Options) { o.TokenFile = tokenFile })
	for _, req := range [][2]string{{http.MethodGet, "/v1/capabilities"}, {http.MethodGet, "/v1/jobs?changedSince="}, {http.MethodPost, "/v1/machines:lookup"}} {
		if code := authed.call(t, req[0], req[1], []byte(`{"macs":[]}`), nil, nil); code != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d", req[0], req[1], code)
		}
		if code := authed.call(t, req[0], req[1], []byte(`{"macs":[]}`), map[string]string{"Authorization": "Bearer secret"}, nil); code != http.StatusOK {
			t.Errorf("%s %s with the token: %d", req[0], req[1], code)
		}
	}
}
