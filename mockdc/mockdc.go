// Package mockdc is a mock datacenter API that behaves like a real, imperfect
// one: operations take time, capacity is limited, faults can be switched on
// at run time, and every execution it starts is written to a ledger that
// tests use to prove nothing ran twice. It implements the contract in
// pkg/datacenter/openapi.yaml. cmd/mockdc serves it; tests wrap Handler() in
// httptest.
package mockdc

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/datacenter"
)

// Options configure one mock datacenter.
type Options struct {
	// Name is the datacenter's name, e.g. dc-west; it prefixes job IDs.
	Name string
	// TokenFile holds the bearer token clients must send. Empty: no authentication.
	TokenFile string
	// RepaveDuration, RebootDuration and PowerDuration are how long operations run.
	RepaveDuration, RebootDuration, PowerDuration time.Duration
	// MaxRunning caps jobs running at once; more queue (or get 429 with RejectWhenFull).
	MaxRunning     int
	RejectWhenFull bool
	// Inventory lists the machines known from the start; others are registered
	// on first sight of their MAC.
	Inventory []InventoryMachine
	// StateFile, if set, keeps jobs, machines and the ledger across restarts.
	StateFile string
	// Faults are the faults switched on at start; POST /debug/faults changes them.
	Faults Faults
	// Clock drives job timing; a fake clock makes tests exact. Default: real time.
	Clock clock.PassiveClock
	// Seed makes fault injection repeatable. 0: random.
	Seed uint64
	// NoBatch turns the batch endpoints off (GET /v1/capabilities, the
	// changes feed GET /v1/jobs?changedSince=, POST /v1/machines:lookup):
	// the mock then answers like a datacenter that implements only the core
	// contract. SetBatchOffered changes it at run time.
	NoBatch bool
	// ChangeRetention is how many job changes the changes feed keeps; a
	// follower further behind gets 410 Gone. 0: DefaultChangeRetention.
	ChangeRetention int
}

// DefaultOptions are the seed's timings: a 30 s repave.
func DefaultOptions(name string) Options {
	return Options{Name: name, RepaveDuration: 30 * time.Second, RebootDuration: 5 * time.Second,
		PowerDuration: time.Second, MaxRunning: 10}
}

// InventoryMachine is one machine of the --inventory file.
type InventoryMachine struct {
	MAC        string                `json:"mac"`
	Name       string                `json:"name,omitempty"`
	IPv4       string                `json:"ipv4,omitempty"`
	PowerState datacenter.PowerState `json:"powerState,omitempty"`
	CurrentOS  string                `json:"currentOS,omitempty"`
}

// LedgerEntry records one execution the datacenter actually started.
type LedgerEntry struct {
	DCJobID        string               `json:"dcJobID"`
	Operation      datacenter.Operation `json:"operation"`
	MAC            string               `json:"mac"`
	IdempotencyKey string               `json:"idempotencyKey"`
	StartedAt      time.Time            `json:"startedAt"`
}

// job is a datacenter job and what the simulation needs to run it.
type job struct {
	datacenter.Job
	IdempotencyKey string             `json:"idempotencyKey"`
	RequestHash    string             `json:"requestHash"`
	SubmittedAt    time.Time          `json:"submittedAt"`
	Duration       time.Duration      `json:"duration"`
	WillFail       bool               `json:"willFail,omitempty"`
	Image          *datacenter.Image  `json:"image,omitempty"`
	Machine        datacenter.Machine `json:"machine"`
}

func (j *job) endsAt() time.Time { return j.StartedAt.Add(j.Duration) }

// state is everything a datacenter remembers; it is what the state file holds.
type state struct {
	NextID   int                                 `json:"nextID"`
	Jobs     map[string]*job                     `json:"jobs"`
	ByKey    map[string]string                   `json:"byKey"`
	Machines map[string]*datacenter.MachineState `json:"machines"`
	Ledger   []LedgerEntry                       `json:"ledger"`
}

// Server is one mock datacenter.
type Server struct {
	opts    Options
	clock   clock.PassiveClock
	tokens  *datacenter.TokenFile
	metrics *serverMetrics
	logger  klog.Logger

	mu sync.Mutex
	st state
	// dirty says st changed since it was last saved; unlock saves it then.
	dirty  bool
	faults Faults
	rng    *rand.Rand
	// lostStruck and lostStreak are the LoseFirstAnswer fault's progress:
	// the machines struck, and per struck key the 500s still to answer.
	// SetFaults resets them.
	lostStruck map[string]bool
	lostStreak map[string]int
	// changes is the history of the changes feed (not in the state file).
	changes *changeLog
	// noBatch turns the batch endpoints off.
	noBatch atomic.Bool
}

// lock takes the state lock and runs the simulation up to now.
func (s *Server) lock() time.Time {
	s.mu.Lock()
	now := s.clock.Now()
	s.advance(now)
	return now
}

// unlock writes the state file if anything changed, then releases the lock:
// polls that change nothing write nothing.
func (s *Server) unlock() {
	if s.dirty {
		s.save()
		s.dirty = false
	}
	s.mu.Unlock()
}

// New returns a mock datacenter, loading its state file if there is one.
func New(opts Options) (*Server, error) {
	if opts.Name == "" {
		return nil, fmt.Errorf("a mock datacenter needs a name")
	}
	if opts.MaxRunning <= 0 {
		return nil, fmt.Errorf("max running jobs must be at least 1, got %d", opts.MaxRunning)
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.ChangeRetention < 0 {
		return nil, fmt.Errorf("change retention must not be negative, got %d", opts.ChangeRetention)
	}
	if opts.ChangeRetention == 0 {
		opts.ChangeRetention = DefaultChangeRetention
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		opts:    opts,
		clock:   opts.Clock,
		metrics: newServerMetrics(),
		logger:  klog.Background().WithValues("datacenter", opts.Name),
		faults:  opts.Faults.clone(),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5eed)),

		lostStruck: map[string]bool{},
		lostStreak: map[string]int{},
		st: state{Jobs: map[string]*job{}, ByKey: map[string]string{},
			Machines: map[string]*datacenter.MachineState{}},
		changes: newChangeLog(opts.ChangeRetention),
	}
	s.noBatch.Store(opts.NoBatch)
	if opts.TokenFile != "" {
		s.tokens = datacenter.NewTokenFile(opts.TokenFile)
		if _, err := s.tokens.Get(); err != nil {
			return nil, err
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	for _, m := range opts.Inventory {
		mac, ok := normalizeMAC(m.MAC)
		if !ok {
			return nil, fmt.Errorf("inventory: %q is not a MAC address", m.MAC)
		}
		if _, known := s.st.Machines[mac]; known {
			continue // the state file knows better than the inventory
		}
		power := m.PowerState
		if power == "" {
			power = datacenter.PowerOn
		}
		s.st.Machines[mac] = &datacenter.MachineState{MAC: mac, PowerState: power, CurrentOS: m.CurrentOS, State: stateFor(power)}
	}
	return s, nil
}

func stateFor(p datacenter.PowerState) string {
	if p == datacenter.PowerOff {
		return "off"
	}
	return "ready"
}

func normalizeMAC(s string) (string, bool) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

// submitResult is what a submission did.
type submitResult struct {
	job      datacenter.Job
	replayed bool
	// lose says the LoseFirstAnswer fault struck: the job started, and its
	// answer is to be held for hold, then dropped.
	lose bool
	hold time.Duration
}

// errInjected is a submission answered 500 by the LoseFirstAnswer fault.
type errInjected struct{}

func (errInjected) Error() string {
	return "internal error (injected: a resubmission after a lost answer)"
}

// errKeyReused is returned when an idempotency key comes back with another body.
type errKeyReused struct{ id string }

func (e errKeyReused) Error() string {
	return fmt.Sprintf("idempotency key already used for job %s with a different request", e.id)
}

// errFull is returned when the datacenter is saturated and rejects instead of queueing.
type errFull struct{ retryAfter time.Duration }

func (e errFull) Error() string { return "datacenter is running at capacity; retry later" }

// errTooLate is returned for a new submit that arrived after its Not-After deadline.
type errTooLate struct{ notAfter time.Time }

func (e errTooLate) Error() string {
	return fmt.Sprintf("the request arrived after its %s deadline %s; nothing was started",
		datacenter.NotAfterHeader, e.notAfter.Format(time.RFC3339Nano))
}

// submit starts (or queues) a job, or returns the job already submitted under
// key. A new job is not started from a request past notAfter (zero: none),
// judged on the wall clock, which is what the sender's deadline is set in.
func (s *Server) submit(key string, req datacenter.JobRequest, notAfter time.Time) (submitResult, error) {
	hash := requestHash(req)
	now := s.lock()
	defer s.unlock()
	lost := s.faults.LoseFirstAnswer
	if left := s.lostStreak[key]; left > 0 && lost != nil {
		if left == 1 {
			delete(s.lostStreak, key)
		} else {
			s.lostStreak[key] = left - 1
		}
		return submitResult{}, errInjected{}
	}
	if id, ok := s.st.ByKey[key]; ok {
		j := s.st.Jobs[id]
		if j.RequestHash != hash {
			return submitResult{}, errKeyReused{id: id}
		}
		return submitResult{job: s.view(j, now), replayed: true}, nil
	}
	if !notAfter.IsZero() && time.Now().After(notAfter) {
		return submitResult{}, errTooLate{notAfter: notAfter}
	}
	if s.opts.RejectWhenFull && s.running() >= s.opts.MaxRunning {
		return submitResult{}, errFull{retryAfter: s.untilNextFinish(now)}
	}
	s.st.NextID++
	j := &job{
		Job: datacenter.Job{ID: fmt.Sprintf("%s-job-%d", s.opts.Name, s.st.NextID), Operation: req.Operation,
			MAC: req.Machine.MAC, State: datacenter.JobQueued},
		IdempotencyKey: key, RequestHash: hash, SubmittedAt: now, Duration: s.durationOf(req.Operation),
		WillFail: s.faults.JobFailureRate > 0 && s.rng.Float64() < s.faults.JobFailureRate,
		Image:    req.Image, Machine: req.Machine,
	}
	res := submitResult{}
	if lost != nil && (len(lost.MACs) == 0 || slices.Contains(lost.MACs, j.MAC) && !s.lostStruck[j.MAC]) {
		res.lose, res.hold = true, lost.Hold.Duration
		s.lostStruck[j.MAC] = true
		if lost.FailResubmits > 0 {
			s.lostStreak[key] = lost.FailResubmits
		}
		if lost.JobDuration.Duration > 0 {
			j.Duration = lost.JobDuration.Duration
		}
	}
	s.st.Jobs[j.ID] = j
	s.st.ByKey[key] = j.ID
	s.changes.add(j.ID)
	if _, known := s.st.Machines[j.MAC]; !known {
		s.st.Machines[j.MAC] = &datacenter.MachineState{MAC: j.MAC, PowerState: datacenter.PowerOn, State: "ready"}
	}
	s.dirty = true
	s.startQueued(now)
	res.job = s.view(j, now)
	return res, nil
}

func requestHash(req datacenter.JobRequest) string {
	data, _ := json.Marshal(req)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func (s *Server) durationOf(op datacenter.Operation) time.Duration {
	switch op {
	case datacenter.OperationRepave:
		return s.opts.RepaveDuration
	case datacenter.OperationReboot:
		return s.opts.RebootDuration
	}
	return s.opts.PowerDuration
}

// advance runs the simulation up to now: running jobs whose time is up
// finish at the exact time they were due, and each freed slot starts the
// oldest queued job at that same time.
func (s *Server) advance(now time.Time) {
	cursor := now
	for {
		s.startQueued(cursor)
		next := s.nextToFinish()
		if next == nil || next.endsAt().After(now) {
			return
		}
		cursor = next.endsAt()
		s.finish(next, cursor)
	}
}

func (s *Server) running() int {
	n := 0
	for _, j := range s.st.Jobs {
		if j.State == datacenter.JobRunning {
			n++
		}
	}
	return n
}

func (s *Server) nextToFinish() *job {
	var next *job
	for _, j := range s.st.Jobs {
		if j.State == datacenter.JobRunning && (next == nil || j.endsAt().Before(next.endsAt()) ||
			j.endsAt().Equal(next.endsAt()) && j.ID < next.ID) {
			next = j
		}
	}
	return next
}

func (s *Server) untilNextFinish(now time.Time) time.Duration {
	if next := s.nextToFinish(); next != nil {
		return max(next.endsAt().Sub(now), time.Second)
	}
	return time.Second
}

// startQueued starts queued jobs, oldest first, while there is capacity.
func (s *Server) startQueued(at time.Time) {
	free := s.opts.MaxRunning - s.running()
	if free <= 0 {
		return
	}
	var queued []*job
	for _, j := range s.st.Jobs {
		if j.State == datacenter.JobQueued {
			queued = append(queued, j)
		}
	}
	sort.Slice(queued, func(a, b int) bool {
		if !queued[a].SubmittedAt.Equal(queued[b].SubmittedAt) {
			return queued[a].SubmittedAt.Before(queued[b].SubmittedAt)
		}
		return queued[a].ID < queued[b].ID
	})
	for _, j := range queued[:min(free, len(queued))] {
		start := at
		if j.SubmittedAt.After(start) {
			start = j.SubmittedAt
		}
		j.State, j.StartedAt = datacenter.JobRunning, &start
		s.dirty = true
		s.changes.add(j.ID)
		s.st.Ledger = append(s.st.Ledger, LedgerEntry{DCJobID: j.ID, Operation: j.Operation, MAC: j.MAC,
			IdempotencyKey: j.IdempotencyKey, StartedAt: start})
		m := s.st.Machines[j.MAC]
		switch j.Operation {
		case datacenter.OperationRepave:
			m.State = "provisioning"
		case datacenter.OperationReboot:
			m.State = "rebooting"
		}
		s.metrics.jobsStarted.WithLabelValues(string(j.Operation)).Inc()
		s.logger.V(1).Info("Job started", "job", j.ID, "operation", j.Operation, "mac", j.MAC)
	}
}

// finish ends a running job at time at, with the operation's effect on its machine.
func (s *Server) finish(j *job, at time.Time) {
	s.dirty = true
	s.changes.add(j.ID)
	j.FinishedAt = &at
	m := s.st.Machines[j.MAC]
	if j.WillFail {
		j.State, j.Message = datacenter.JobFailed, fmt.Sprintf("%s failed on %s (injected failure)", j.Operation, j.MAC)
		m.State = "error"
	} else {
		j.State, j.Progress = datacenter.JobSucceeded, 100
		switch j.Operation {
		case datacenter.OperationRepave:
			if j.Image != nil {
				m.CurrentOS = j.Image.Version
			}
			m.PowerState, m.State = datacenter.PowerOn, "ready"
		case datacenter.OperationReboot, datacenter.OperationPowerOn:
			m.PowerState, m.State = datacenter.PowerOn, "ready"
		case datacenter.OperationPowerOff:
			m.PowerState, m.State = datacenter.PowerOff, "off"
		}
	}
	s.metrics.jobsFinished.WithLabelValues(string(j.Operation), string(j.State)).Inc()
	s.logger.V(1).Info("Job finished", "job", j.ID, "state", j.State)
}

// view is a job as clients see it at now.
func (s *Server) view(j *job, now time.Time) datacenter.Job {
	v := j.Job
	if v.State == datacenter.JobRunning && j.Duration > 0 {
		v.Progress = min(int(now.Sub(*j.StartedAt)*100/j.Duration), 99)
	}
	return v
}

func (s *Server) getJob(id string) (datacenter.Job, bool) {
	now := s.lock()
	defer s.unlock()
	j, ok := s.st.Jobs[id]
	if !ok {
		return datacenter.Job{}, false
	}
	return s.view(j, now), true
}

// FindJob returns the job submitted under an idempotency key.
func (s *Server) FindJob(key string) (datacenter.Job, bool) {
	now := s.lock()
	defer s.unlock()
	id, ok := s.st.ByKey[key]
	if !ok {
		return datacenter.Job{}, false
	}
	return s.view(s.st.Jobs[id], now), true
}

// cancel stops a queued or running job; a finished job is returned unchanged.
func (s *Server) cancel(id string) (datacenter.Job, bool) {
	now := s.lock()
	defer s.unlock()
	j, ok := s.st.Jobs[id]
	if !ok {
		return datacenter.Job{}, false
	}
	if !j.State.Finished() {
		if j.State == datacenter.JobRunning {
			// An interrupted repave or reboot leaves the machine in doubt.
			if m := s.st.Machines[j.MAC]; j.Operation == datacenter.OperationRepave || j.Operation == datacenter.OperationReboot {
				m.State = "error"
			}
		}
		j.Progress = s.view(j, now).Progress
		j.State, j.FinishedAt, j.Message = datacenter.JobCancelled, &now, "cancelled by request"
		s.changes.add(j.ID)
		s.metrics.jobsFinished.WithLabelValues(string(j.Operation), string(j.State)).Inc()
		s.dirty = true
		s.startQueued(now)
	}
	return s.view(j, now), true
}

func (s *Server) machine(mac string) (datacenter.MachineState, bool) {
	s.lock()
	defer s.unlock()
	m, ok := s.st.Machines[mac]
	if !ok {
		return datacenter.MachineState{}, false
	}
	return *m, true
}

// Ledger returns every execution started so far, oldest first.
func (s *Server) Ledger() []LedgerEntry {
	s.lock()
	defer s.unlock()
	return append([]LedgerEntry(nil), s.st.Ledger...)
}

// SetFaults replaces the active faults. The LoseFirstAnswer fault starts
// afresh: streaks under way end, and its machines can be struck again.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	f = f.clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	clear(s.lostStruck)
	clear(s.lostStreak)
	s.logger.Info("Faults changed", "faults", f)
	return nil
}

// Faults returns the active faults.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.clone()
}

// JobRecord is a job as GET /debug/jobs shows it: as clients see it, with
// the idempotency key it was submitted under.
type JobRecord struct {
	datacenter.Job
	IdempotencyKey string    `json:"idempotencyKey"`
	SubmittedAt    time.Time `json:"submittedAt"`
}

// Jobs returns every job the datacenter knows, in the order submitted. With
// the ledger it tells what ran when: a job's startedAt and finishedAt (its
// end, or when it was cancelled) bound the time it ran.
func (s *Server) Jobs() []JobRecord {
	now := s.lock()
	defer s.unlock()
	out := make([]JobRecord, 0, len(s.st.Jobs))
	for _, j := range s.st.Jobs {
		out = append(out, JobRecord{Job: s.view(j, now), IdempotencyKey: j.IdempotencyKey, SubmittedAt: j.SubmittedAt})
	}
	sort.Slice(out, func(a, b int) bool {
		if !out[a].SubmittedAt.Equal(out[b].SubmittedAt) {
			return out[a].SubmittedAt.Before(out[b].SubmittedAt)
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// roll reports, with probability rate, that a fault fires.
func (s *Server) roll(rate float64) bool {
	if rate <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < rate
}
