// Package fake is an in-memory datacenter.Client for controller unit tests:
// no HTTP, no clock; the test decides when jobs finish and which calls fail.
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
}

var _ datacenter.Client = &Client{}

// Method names for FailNext and Calls.
const (
	MethodSubmit  = "Submit"
	MethodGetJob  = "GetJob"
	MethodFindJob = "FindJob"
	MethodCancel  = "Cancel"
	MethodMachine = "GetMachine"
	MethodHealth  = "Health"
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
