package datacenter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Batch is what a datacenter may offer beyond Client (openapi.yaml,
// GET /v1/capabilities): following many jobs with one request, and looking
// many machines up with one. HTTPClient and fake.Client implement it. A call
// the datacenter does not offer fails at once, having sent nothing, with an
// error for which IsUnsupported is true: the caller then uses Client's single
// calls. JobFeed follows jobs with Changes and tells when to read them singly.
type Batch interface {
	// Changes returns the jobs changed since cursor, each as it is now, and
	// the cursor to pass next; while page.More, more changes follow. Cursor
	// "" starts at the head: no jobs, only the current cursor (read what you
	// already follow with GetJob after taking it). A job may appear more
	// than once. limit <= 0 asks for DefaultChangesLimit jobs at most.
	// IsCursorExpired(err): the datacenter no longer has the changes since
	// cursor; IsUnsupported(err): it does not offer the feed.
	Changes(ctx context.Context, cursor string, limit int) (*JobChanges, error)
	// LookupMachines looks machines up by MAC, in as few requests as the
	// datacenter allows (at most MaxLookupMACs each). The map holds those
	// it knows, keyed by the MACs as given; a MAC missing from it is not
	// known there (as IsNotFound from GetMachine). IsUnsupported(err): the
	// datacenter does not offer the lookup.
	LookupMachines(ctx context.Context, macs []string) (map[string]*MachineState, error)
}

// maxBatchAnswerBytes bounds the body of a page of the feed or of a lookup's
// answer: a thousand jobs, or five hundred machines, with room to spare.
const maxBatchAnswerBytes = 16 << 20

// offered is what a datacenter said it offers, kept for
// Config.CapabilitiesInterval.
type offered struct {
	mu sync.Mutex
	// at is when the datacenter was asked; zero: never.
	at   time.Time
	caps Capabilities
	// noFeed and noLookup say why the feed or the lookup is not offered.
	noFeed, noLookup string
}

// offer is a copy of what is offered.
type offer struct {
	caps             Capabilities
	noFeed, noLookup string
}

// Capabilities returns what the datacenter offers beyond Client, asking it
// (GET /v1/capabilities) at most once per Config.CapabilitiesInterval. A
// datacenter without the document offers nothing more: that is no error.
func (c *HTTPClient) Capabilities(ctx context.Context) (Capabilities, error) {
	o, err := c.offer(ctx)
	return o.caps, err
}

// offer returns what the datacenter offers, asking it again when its last
// answer is older than Config.CapabilitiesInterval. Only an answer is kept:
// after a refused token or a transient error, the next call asks again.
func (c *HTTPClient) offer(ctx context.Context) (offer, error) {
	c.offered.mu.Lock()
	if !c.offered.at.IsZero() && time.Since(c.offered.at) < c.cfg.CapabilitiesInterval {
		o := offer{caps: c.offered.caps, noFeed: c.offered.noFeed, noLookup: c.offered.noLookup}
		c.offered.mu.Unlock()
		return o, nil
	}
	c.offered.mu.Unlock()

	var caps Capabilities
	err := c.do(ctx, request{method: http.MethodGet, path: "/v1/capabilities", mayBeAbsent: true}, &caps)
	why := ""
	switch {
	case err == nil:
	case IsUnauthorized(err), IsTransient(err) && !notOffered(err):
		return offer{}, err // nothing learnt: asked again at the next call
	case IsUndecodable(err):
		caps, why = Capabilities{}, "its capabilities document could not be read ("+err.Error()+")"
	default: // a datacenter older than the document
		caps, why = Capabilities{}, "it has no capabilities document ("+err.Error()+")"
	}
	o := offer{caps: caps}
	if caps.JobChanges == nil {
		o.noFeed = orElse(why, "its capabilities document does not list the changes feed")
	}
	if caps.MachineLookup == nil {
		o.noLookup = orElse(why, "its capabilities document does not list the machine lookup")
	}
	c.offered.mu.Lock()
	c.offered.at, c.offered.caps, c.offered.noFeed, c.offered.noLookup = time.Now(), caps, o.noFeed, o.noLookup
	c.offered.mu.Unlock()
	return o, nil
}

func orElse(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// notOffered reports an answer that says the datacenter does not serve a
// call: 404 or 405 (no such route), 501, or 400 to a request the contract
// defines (it does not understand it). Any body: an old datacenter does not
// answer routes it never heard of in the contract's shape.
func notOffered(err error) bool {
	code, ok := statusOf(err)
	return ok && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed ||
		code == http.StatusNotImplemented || code == http.StatusBadRequest)
}

// withdraw remembers, until the capabilities are asked for again, that a
// call listed as offered answered as one that is not (a datacenter rolled back).
func (c *HTTPClient) withdraw(feed bool, err error) error {
	why := "it answered " + err.Error()
	var e *Error
	if errors.As(err, &e) {
		why = fmt.Sprintf("it answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
	}
	c.offered.mu.Lock()
	defer c.offered.mu.Unlock()
	if feed {
		c.offered.caps.JobChanges, c.offered.noFeed = nil, why
	} else {
		c.offered.caps.MachineLookup, c.offered.noLookup = nil, why
	}
	return UnsupportedError(opOf(feed), why)
}

func opOf(feed bool) string {
	if feed {
		return http.MethodGet + " /v1/jobs?changedSince"
	}
	return http.MethodPost + " /v1/machines:lookup"
}

// Changes implements Batch.
func (c *HTTPClient) Changes(ctx context.Context, cursor string, limit int) (*JobChanges, error) {
	o, err := c.offer(ctx)
	if err != nil {
		return nil, err
	}
	if o.caps.JobChanges == nil {
		return nil, UnsupportedError(opOf(true), o.noFeed)
	}
	limit = bounded(limit, DefaultChangesLimit, MaxChangesLimit, o.caps.JobChanges.MaxLimit)
	page := &JobChanges{}
	path := "/v1/jobs?changedSince=" + url.QueryEscape(cursor) + "&limit=" + strconv.Itoa(limit)
	err = c.do(ctx, request{method: http.MethodGet, path: path, limit: maxBatchAnswerBytes, mayBeAbsent: true}, page)
	if notOffered(err) {
		return nil, c.withdraw(true, err)
	}
	if err != nil {
		return nil, err
	}
	return page, validChanges(page)
}

// bounded is n, or byDefault when n <= 0, and never over the contract's
// maximum nor the datacenter's (when it says one).
func bounded(n, byDefault, contractMax, dcMax int) int {
	if n <= 0 {
		n = byDefault
	}
	n = min(n, contractMax)
	if dcMax > 0 {
		n = min(n, dcMax)
	}
	return n
}

// validChanges refuses a page that decoded but cannot be followed: no
// cursor, or a job without an ID or with a state the contract does not define.
func validChanges(page *JobChanges) error {
	if page.Cursor == "" {
		return &Error{Op: opOf(true), StatusCode: http.StatusOK, Message: "undecodable answer: no cursor"}
	}
	// The feed lists every job of the datacenter, not only Stargate's: one
	// in a state this contract does not define is left out (a Job that
	// follows it reads it on its own), not a reason to refuse the page.
	kept := page.Jobs[:0]
	for i := range page.Jobs {
		job := &page.Jobs[i]
		if job.ID == "" {
			return &Error{Op: opOf(true), StatusCode: http.StatusOK, Message: "undecodable answer: a job without an id"}
		}
		if validJob(job) == nil {
			kept = append(kept, *job)
		}
	}
	page.Jobs = kept
	return nil
}

// LookupMachines implements Batch.
func (c *HTTPClient) LookupMachines(ctx context.Context, macs []string) (map[string]*MachineState, error) {
	asked := unique(macs)
	found := make(map[string]*MachineState, len(asked))
	if len(asked) == 0 {
		return found, nil
	}
	o, err := c.offer(ctx)
	if err != nil {
		return nil, err
	}
	if o.caps.MachineLookup == nil {
		return nil, UnsupportedError(opOf(false), o.noLookup)
	}
	size := bounded(MaxLookupMACs, MaxLookupMACs, MaxLookupMACs, o.caps.MachineLookup.MaxMACs)
	for start := 0; start < len(asked); start += size {
		if err := c.lookup(ctx, asked[start:min(start+size, len(asked))], found); err != nil {
			return nil, err
		}
	}
	return found, nil
}

// lookup asks about one request's worth of MACs, adding what it finds to found.
func (c *HTTPClient) lookup(ctx context.Context, macs []string, found map[string]*MachineState) error {
	body, err := json.Marshal(MachineLookupRequest{MACs: macs})
	if err != nil {
		return err
	}
	var answer MachineLookup
	err = c.do(ctx, request{method: http.MethodPost, path: "/v1/machines:lookup", body: body,
		limit: maxBatchAnswerBytes, mayBeAbsent: true}, &answer)
	if notOffered(err) {
		return c.withdraw(false, err)
	}
	if err != nil {
		return err
	}
	return answer.into(macs, found)
}

// into puts the machines asked about into found, keyed by the MACs as asked.
// Every MAC asked about must be in the answer, found or not: an answer that
// forgets one says nothing of it, and is as unreadable as a cut body.
func (a *MachineLookup) into(asked []string, found map[string]*MachineState) error {
	known := make(map[string]*MachineState, len(a.Machines))
	for i := range a.Machines {
		m := &a.Machines[i]
		if m.MAC == "" {
			return &Error{Op: opOf(false), StatusCode: http.StatusOK, Message: "undecodable answer: a machine without a mac"}
		}
		known[canonicalMAC(m.MAC)] = m
	}
	missing := make(map[string]bool, len(a.NotFound))
	for _, mac := range a.NotFound {
		missing[canonicalMAC(mac)] = true
	}
	for _, mac := range asked {
		key := canonicalMAC(mac)
		switch m, ok := known[key]; {
		case ok:
			copied := *m
			found[mac] = &copied
		case !missing[key]:
			return &Error{Op: opOf(false), StatusCode: http.StatusOK,
				Message: fmt.Sprintf("undecodable answer: it says nothing of %s", mac)}
		}
	}
	return nil
}

// canonicalMAC spells a MAC address one way (aa:bb:cc:dd:ee:ff); what is
// not one stays as it is, lower case.
func canonicalMAC(s string) string {
	if hw, err := net.ParseMAC(strings.TrimSpace(s)); err == nil {
		return hw.String()
	}
	return strings.ToLower(strings.TrimSpace(s))
}

// unique is macs without repeats, in their first order.
func unique(macs []string) []string {
	seen := make(map[string]bool, len(macs))
	out := make([]string, 0, len(macs))
	for _, mac := range macs {
		if !seen[mac] {
			seen[mac] = true
			out = append(out, mac)
		}
	}
	return out
}
