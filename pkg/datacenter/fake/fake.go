// Package fake is an in-memory datacenter.Client and datacenter.Batch for
// controller unit tests: no HTTP, no clock; the test decides when jobs finish,
// which calls fail, and whether the batch calls are offered.
package fake

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"sync"

	"stargate.io/stargate/pkg/datacenter"
)

// Client is an in-memory datacenter. The zero value is not usable; use New.
type Client struct {
	mu       sync.Mutex
	nextID   int
	jobs     map[string]*datacenter.Job
	byKey    map[string]string
	machines map[string]*datacenter.MachineState
	// Executions counts jobs started per idempotency key: more than one is a duplicate.
	executions map[string]int
	// errs are queued errors, per method, returned before acting.
	errs map[string][]error
	// Calls counts calls per method.
	calls map[string]int
	// changes lists the IDs of the jobs that changed, oldest first: the
	// changes feed; cursor n stands after changes[n-1].
	changes []string
	// epoch prefixes cursors; ExpireCursors moves it on.
	epoch int
	// noBatch turns Changes and LookupMachines off.
	noBatch bool
}

var (
	_ datacenter.Client = &Client{}
	_ datacenter.Batch  = &Client{}
)

// Method names for FailNext and Calls.
const (
	MethodSubmit  = "Submit"
	MethodGetJob  = "GetJob"
	MethodFindJob = "FindJob"
	MethodCancel  = "Cancel"
	MethodMachine = "GetMachine"
	MethodHealth  = "Health"
	// MethodChanges and MethodLookupMachines are the calls of datacenter.Batch.
	MethodChanges        = "Changes"
	MethodLookupMachines = "LookupMachines"
)

// New returns an empty fake datacenter.
func New() *Client {
	return &Client{jobs: map[string]*datacenter.Job{}, byKey: map[string]string{},
		machines: map[string]*datacenter.MachineState{}, executions: map[string]int{},
		errs: map[string][]error{}, calls: map[string]int{}}
}

// FailNext makes the next calls of method return errs, one per call, in order.
func (c *Client) FailNext(method string, errs ...error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs[method] = append(c.errs[method], errs...)
}

// Transient is a 500, as a datacenter in trouble answers.
func Transient() error {
	return &datacenter.Error{StatusCode: http.StatusInternalServerError, Message: "internal error (fake)", Op: "fake"}
}

// Unavailable is a 503, as a datacenter that is down answers.
func Unavailable() error {
	return &datacenter.Error{StatusCode: http.StatusServiceUnavailable, Message: "unavailable (fake)", Op: "fake"}
}

// CredentialsMissing is the error of a call made while the credentials file
// is missing: nothing reached the datacenter.
func CredentialsMissing(file string) error {
	return &datacenter.CredentialsError{File: file, Missing: true, Err: &fs.PathError{Op: "stat", Path: file, Err: fs.ErrNotExist}}
}

// Unauthorized is the datacenter refusing the token in file (401); file ""
// is a client configured without credentials.
func Unauthorized(file string) error {
	return &datacenter.CredentialsError{File: file,
		Err: &datacenter.Error{StatusCode: http.StatusUnauthorized, Message: "a valid bearer token is required (fake)", Op: "fake"}}
}

// AddMachine makes a machine known.
func (c *Client) AddMachine(m datacenter.MachineState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.machines[m.MAC] = &m
}

// Finish ends a job in state (succeeded, failed or cancelled). Machines are
// left as they are: set them with AddMachine where a test needs it.
func (c *Client) Finish(id string, state datacenter.JobState, message string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.jobs[id]
	if !ok {
		return fmt.Errorf("no job %s", id)
	}
	j.State, j.Message = state, message
	if state == datacenter.JobSucceeded {
		j.Progress = 100
	}
	c.changes = append(c.changes, id)
	return nil
}

// Executions returns how many times the job of an idempotency key was started.
func (c *Client) Executions(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.executions[key]
}

// Calls returns how many times method was called.
func (c *Client) Calls(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// called counts a call and pops its queued error. Called with c.mu held.
func (c *Client) called(method string) error {
	c.calls[method]++
	if q := c.errs[method]; len(q) > 0 {
		c.errs[method] = q[1:]
		return q[0]
	}
	return nil
}

// Submit implements datacenter.Client.
func (c *Client) Submit(ctx context.Context, key string, req datacenter.JobRequest) (*datacenter.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodSubmit); err != nil {
		return nil, err
	}
	if id, ok := c.byKey[key]; ok {
		j := *c.jobs[id]
		return &j, nil
	}
	c.nextID++
	j := &datacenter.Job{ID: fmt.Sprintf("fake-job-%d", c.nextID), Operation: req.Operation, MAC: req.Machine.MAC, State: datacenter.JobRunning}
	c.jobs[j.ID], c.byKey[key] = j, j.ID
	c.changes = append(c.changes, j.ID)
	c.executions[key]++
	if _, ok := c.machines[req.Machine.MAC]; !ok {
		c.machines[req.Machine.MAC] = &datacenter.MachineState{MAC: req.Machine.MAC, PowerState: datacenter.PowerOn, State: "ready"}
	}
	out := *j
	return &out, nil
}

// GetJob implements datacenter.Client.
func (c *Client) GetJob(ctx context.Context, id string) (*datacenter.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodGetJob); err != nil {
		return nil, err
	}
	j, ok := c.jobs[id]
	if !ok {
		return nil, datacenter.NotFoundError("fake", "job "+id+" not found")
	}
	out := *j
	return &out, nil
}

// FindJob implements datacenter.Client.
func (c *Client) FindJob(ctx context.Context, key string) (*datacenter.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodFindJob); err != nil {
		return nil, err
	}
	id, ok := c.byKey[key]
	if !ok {
		return nil, datacenter.NotFoundError("fake", "no job with key "+key)
	}
	out := *c.jobs[id]
	return &out, nil
}

// Cancel implements datacenter.Client.
func (c *Client) Cancel(ctx context.Context, id string) (*datacenter.Job, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodCancel); err != nil {
		return nil, err
	}
	j, ok := c.jobs[id]
	if !ok {
		return nil, datacenter.NotFoundError("fake", "job "+id+" not found")
	}
	if !j.State.Finished() {
		j.State = datacenter.JobCancelled
		c.changes = append(c.changes, j.ID)
	}
	out := *j
	return &out, nil
}

// GetMachine implements datacenter.Client.
func (c *Client) GetMachine(ctx context.Context, mac string) (*datacenter.MachineState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodMachine); err != nil {
		return nil, err
	}
	m, ok := c.machines[mac]
	if !ok {
		return nil, datacenter.NotFoundError("fake", "machine "+mac+" not known")
	}
	out := *m
	return &out, nil
}

// Health implements datacenter.Client.
func (c *Client) Health(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.called(MethodHealth)
}

// SetBatch offers the batch calls (Changes, LookupMachines), as New does, or
// not: then they fail with datacenter.IsUnsupported, as the HTTP client's do
// with a datacenter that implements only the core contract. Calls and
// FailNext count and fail them either way.
func (c *Client) SetBatch(offered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noBatch = !offered
}

// ExpireCursors makes every cursor given so far expire: Changes answers them
// as the datacenter that no longer keeps their changes (410 Gone).
func (c *Client) ExpireCursors() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
}

// Changes implements datacenter.Batch: each job submitted, finished or
// cancelled is listed after the cursor of the call before, as it is now.
func (c *Client) Changes(ctx context.Context, cursor string, limit int) (*datacenter.JobChanges, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodChanges); err != nil {
		return nil, err
	}
	if c.noBatch {
		return nil, datacenter.UnsupportedError("fake", "the batch calls are off (fake)")
	}
	from := len(c.changes)
	if cursor != "" && cursor != "0" {
		var epoch int
		if _, err := fmt.Sscanf(cursor, "fake-%d-%d", &epoch, &from); err != nil || epoch != c.epoch || from < 0 || from > len(c.changes) {
			return nil, datacenter.CursorExpiredError("fake", fmt.Sprintf("cursor %q expired (fake)", cursor))
		}
	}
	if limit <= 0 {
		limit = datacenter.DefaultChangesLimit
	}
	var ids []string
	listed := map[string]int{} // job ID -> index in ids
	next := from
	for ; next < len(c.changes); next++ {
		id := c.changes[next]
		i, seen := listed[id]
		if !seen && len(listed) == limit {
			break
		}
		if seen {
			ids[i] = "" // listed again later
		}
		listed[id] = len(ids)
		ids = append(ids, id)
	}
	page := &datacenter.JobChanges{Jobs: []datacenter.Job{}}
	for _, id := range ids {
		if id != "" {
			page.Jobs = append(page.Jobs, *c.jobs[id])
		}
	}
	page.Cursor, page.More = fmt.Sprintf("fake-%d-%d", c.epoch, next), next < len(c.changes)
	return page, nil
}

// LookupMachines implements datacenter.Batch, keying the machines found by
// the MACs as given (the fake knows a machine by the MAC it was added with).
func (c *Client) LookupMachines(ctx context.Context, macs []string) (map[string]*datacenter.MachineState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.called(MethodLookupMachines); err != nil {
		return nil, err
	}
	if c.noBatch {
		return nil, datacenter.UnsupportedError("fake", "the batch calls are off (fake)")
	}
	found := make(map[string]*datacenter.MachineState, len(macs))
	for _, mac := range macs {
		if m, ok := c.machines[mac]; ok {
			out := *m
			found[mac] = &out
		}
	}
	return found, nil
}
