// Package datacenter is Stargate's client of a datacenter API: the wire types
// of the contract in openapi.yaml, a small interface, and its HTTP
// implementation with timeouts, retries of transient errors only, and typed
// errors. Real datacenter teams implement openapi.yaml; mockdc implements it
// for development and tests.
package datacenter

import "time"

// Operation is what a datacenter job does to a machine.
type Operation string

const (
	OperationRepave   Operation = "repave"
	OperationReboot   Operation = "reboot"
	OperationPowerOff Operation = "power-off"
	OperationPowerOn  Operation = "power-on"
)

// Valid reports whether op is one the contract defines.
func (op Operation) Valid() bool {
	switch op {
	case OperationRepave, OperationReboot, OperationPowerOff, OperationPowerOn:
		return true
	}
	return false
}

// JobState is the state of a datacenter job.
type JobState string

const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Finished reports whether the job will not change state again.
func (s JobState) Finished() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// Machine identifies the machine a job runs on.
type Machine struct {
	MAC  string `json:"mac"`
	IPv4 string `json:"ipv4,omitempty"`
	Name string `json:"name,omitempty"`
}

// Image is the OS image a repave installs.
type Image struct {
	URL      string `json:"url"`
	Version  string `json:"version"`
	Checksum string `json:"checksum,omitempty"`
}

// JobRequest is the body of POST /v1/jobs.
type JobRequest struct {
	Operation Operation `json:"operation"`
	Machine   Machine   `json:"machine"`
	Image     *Image    `json:"image,omitempty"`
	UserData  string    `json:"userData,omitempty"`
}

// Job is a datacenter job as GET /v1/jobs/{id} returns it.
type Job struct {
	ID         string     `json:"id"`
	Operation  Operation  `json:"operation"`
	MAC        string     `json:"mac,omitempty"`
	State      JobState   `json:"state"`
	Progress   int        `json:"progress"`
	Message    string     `json:"message,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// PowerState is whether a machine is on.
type PowerState string

const (
	PowerOn  PowerState = "on"
	PowerOff PowerState = "off"
)

// MachineState is a machine as GET /v1/machines/{mac} returns it.
type MachineState struct {
	MAC        string     `json:"mac"`
	PowerState PowerState `json:"powerState"`
	CurrentOS  string     `json:"currentOS"`
	// State is ready, provisioning, rebooting, off or error.
	State string `json:"state"`
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// IdempotencyKeyHeader carries the key that makes POST /v1/jobs safe to repeat.
const IdempotencyKeyHeader = "Idempotency-Key"

// NotAfterHeader carries a submit's deadline (RFC 3339): a datacenter must not
// start a job from a request it receives after it, and answers 412 instead.
const NotAfterHeader = "Not-After"

// Capabilities is the document GET /v1/capabilities returns: what a
// datacenter offers beyond the core calls of Client. A datacenter without the
// document (it answers 404, 405 or 501) offers nothing more.
type Capabilities struct {
	// JobChanges is set when GET /v1/jobs?changedSince= is offered.
	JobChanges *JobChangesCapability `json:"jobChanges,omitempty"`
	// MachineLookup is set when POST /v1/machines:lookup is offered.
	MachineLookup *MachineLookupCapability `json:"machineLookup,omitempty"`
}

// JobChangesCapability describes a datacenter's changes feed.
type JobChangesCapability struct {
	// MaxLimit is the most jobs one page holds (at most MaxChangesLimit).
	MaxLimit int `json:"maxLimit,omitempty"`
	// Retention is how many changes the datacenter keeps: a follower further
	// behind than that gets 410 Gone.
	Retention int `json:"retention,omitempty"`
}

// MachineLookupCapability describes a datacenter's batch machine lookup.
type MachineLookupCapability struct {
	// MaxMACs is the most MACs one lookup may ask about (at most MaxLookupMACs).
	MaxMACs int `json:"maxMACs,omitempty"`
}

// JobChanges is a page of the changes feed, GET /v1/jobs?changedSince=.
type JobChanges struct {
	// Jobs changed after the cursor asked about, each as it is now, in the
	// order of their latest change. A job may appear again on a later page.
	Jobs []Job `json:"jobs"`
	// Cursor is where the page ends: pass it as changedSince next time.
	Cursor string `json:"cursor"`
	// More says more changes follow the page's cursor already.
	More bool `json:"more"`
}

// MachineLookupRequest is the body of POST /v1/machines:lookup.
type MachineLookupRequest struct {
	MACs []string `json:"macs"`
}

// MachineLookup is the answer of POST /v1/machines:lookup: every MAC asked
// about is in exactly one of the lists.
type MachineLookup struct {
	// Machines are the machines the datacenter knows, their MACs in its spelling.
	Machines []MachineState `json:"machines"`
	// NotFound are the MACs (as asked) that it does not know.
	NotFound []string `json:"notFound"`
}

const (
	// MaxChangesLimit is the contract's largest page of the changes feed.
	MaxChangesLimit = 1000
	// DefaultChangesLimit is the page size a client asks for when not told.
	DefaultChangesLimit = 500
	// MaxLookupMACs is the contract's most MACs per machine lookup.
	MaxLookupMACs = 500
)
