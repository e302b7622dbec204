package jobs

// TestModel is a model-based, seeded, randomised test of the Job controller
// (issue 13, "Proof"): schedules of random steps (Jobs created, cancelled and
// deleted through the API, datacenter jobs finishing, datacenter faults, the
// Datacenter paused, deleted and re-created, the Template and Hardware
// edited, the clock advancing, and the controller crashed and restarted
// between any two steps or inside a sync) run against an in-memory datacenter
// and the fake clientset made to behave like Stargate's API server
// (serveLikeStargate). After every step these invariants are checked:
//
//	(1) at most one datacenter operation runs per machine (MAC);
//	(2) no Job is finished (or gone) while a datacenter job under its key runs;
//	(3) every datacenter job belongs to exactly one Job: its key is the UID
//	    of a Job that exists or existed, and one job runs per key;
//	(4) a Hardware is locked exactly while an unfinished Job holds it: a
//	    datacenter job that runs has its Job's name in its Hardware's
//	    status.activeJob, an unfinished Job holds its Hardware, and a lock
//	    never names a Job that is finished or gone;
//	(5) Running never goes back to Pending, nor a finished Job to anything
//	    (seen in every write, and in every write attempted);
//	(6) no more datacenter jobs run than the Datacenter's maxConcurrentJobs;
//	(7) every submit under a key carries the request of the first;
//	(8) what Stargate says is what the datacenter did: a Succeeded Job's
//	    datacenter job succeeded, a Failed Job's did not;
//	(9) every submit carries a deadline (its ctx's, sent as Not-After), no
//	    later than the window after the lastAttemptTime its Job records in
//	    etcd when it leaves (what lookUp counts from).
//
// The datacenter does not always act at the moment of the call: a Submit
// faulted "in-flight-timeout" times out for its caller and stays on its way;
// a later step (or a later call, as it arrives meanwhile) delivers it, and
// the datacenter then starts it (or replays the job under its key) unless
// its clock is past the request's Not-After. (2) covers such a submit too:
// while one could still arrive and start a job, its Job must not have ended.
// Nothing on its way is lost before its deadline; healing delivers it all.
//
// Two controllers may act on the same Jobs: a step pauses the leader, and
// another replica takes the lead with fresh caches; the paused one (the
// "former leader") keeps its own caches (lagging on odd seeds), still
// passes its Leading() checks until it notices, and its syncs interleave
// with the leader's steps, some stopped right after a Leading() check passed
// (on a goroutine of their own, one goroutine running at a time) while other
// steps run, then resumed. Only resourceVersion preconditions, the fenced
// pre-attempt write and Not-After keep the two apart.
//
// At the end of each schedule everything is healed (no faults, the
// Datacenter present and resumed, every datacenter job finished) and the
// controller is synced until nothing changes: then every Job must have
// ended, no datacenter job run and no Hardware stay locked.
//
// Everything runs on the test's goroutine: the controller's informer caches
// are fed by hand from watches on the fake clientset's tracker, so a schedule
// is a pure function of its seed and a failing seed replays exactly (with
// the same -model.steps):
//
//	go test -count=1 -run 'TestModel$' -v ./pkg/controller/jobs/ -model.seed=N
//	STARGATE_MODEL_SEED=N go test -count=1 -run 'TestModel$' -v ./pkg/controller/jobs/
//
// Even seeds sync with caches that have caught up with the API (as
// harness.sync waits for). Odd seeds also let a third of the syncs see
// caches that lag: each informer delivers its events in order and never goes
// back, but may not yet have delivered the controller's own last writes.
// -model.lag=false runs even seeds only.
//
// testdata/model-seeds.txt holds seeds that failed once, and a few that
// exercise rare paths; they are replayed first on every run. A seed names a
// schedule only for this version of the step generator: a change to how
// steps are drawn makes the corpus replay other schedules.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
	clientfake "stargate.io/stargate/pkg/generated/clientset/versioned/fake"
	informers "stargate.io/stargate/pkg/generated/informers/externalversions"
)

var (
	flagModelSeed      = flag.String("model.seed", "", "TestModel: replay this one seed (also env STARGATE_MODEL_SEED), logging its schedule")
	flagModelBase      = flag.String("model.base", "", "TestModel: first seed of the random schedules (default: from the time)")
	flagModelSchedules = flag.Int("model.schedules", 0, "TestModel: random schedules to run (default 2000, 300 with -short)")
	flagModelSteps     = flag.Int("model.steps", 0, "TestModel: steps per schedule (default 40)")
	flagModelBudget    = flag.Duration("model.budget", 60*time.Second, "TestModel: start no new schedule after this long")
	flagModelLag       = flag.Bool("model.lag", true, "TestModel: run the odd seeds too, whose schedules let informer caches lag behind the API (false: even seeds only, and no lagging-cache tests)")
)

const (
	modelNS       = "dc-west"
	modelTemplate = "os-2-0-0"
	modelCredFile = "/etc/stargate/datacenters/dc-west"
)

var (
	templatesResource   = v1alpha1.SchemeGroupVersion.WithResource("templates")
	datacentersResource = v1alpha1.SchemeGroupVersion.WithResource("datacenters")
	errCrashed          = errors.New("the controller process crashed")
)

// ---------------------------------------------------------------------------
// The in-memory datacenter.

// faultKind is how the datacenter answers a call it is told to fault.
type faultKind int

const (
	fault500           faultKind = iota // 500, nothing done
	fault503                            // 503: down for this call, nothing done
	fault429                            // 429, nothing done
	faultTimeoutBefore                  // no answer (timeout), nothing done
	faultLost500                        // carried out, answered 500
	faultLostTimeout                    // carried out, no answer (timeout)
	faultJunk                           // carried out, 2xx whose body cannot be decoded
	faultJunkBefore                     // 2xx that cannot be decoded, nothing done (a proxy's answer)
	fault400                            // refused, nothing done
	fault409                            // refused, nothing done
	faultCredsMissing                   // the credentials file is missing: nothing sent
	faultUnauthorized                   // 401: nothing done
	// faultInFlight: no answer (timeout) and nothing done yet, but a Submit
	// stays on its way: a later step delivers it, and the datacenter starts
	// it then unless the clock is past the request's Not-After deadline.
	// Other calls time out as faultTimeoutBefore.
	faultInFlight
	numFaultKinds
)

var faultNames = [...]string{"500", "503", "429", "timeout-before", "lost-500", "lost-timeout", "junk-2xx", "junk-2xx-before", "400", "409", "creds-missing", "401", "in-flight-timeout"}

func (k faultKind) String() string { return faultNames[k] }

// carriedOut reports whether a call faulted this way was carried out.
func (k faultKind) carriedOut() bool {
	return k == faultLost500 || k == faultLostTimeout || k == faultJunk
}

func (k faultKind) err(op string) error {
	switch k {
	case fault500, faultLost500:
		return &datacenter.Error{StatusCode: http.StatusInternalServerError, Op: op, Message: "internal error (model)"}
	case fault503:
		return &datacenter.Error{StatusCode: http.StatusServiceUnavailable, Op: op, Message: "unavailable (model)"}
	case fault429:
		return &datacenter.Error{StatusCode: http.StatusTooManyRequests, Op: op, Message: "slow down (model)", RetryAfter: time.Second}
	case faultTimeoutBefore, faultLostTimeout, faultInFlight:
		return &datacenter.Error{StatusCode: 0, Op: op, Message: "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"}
	case faultJunk, faultJunkBefore:
		code := http.StatusOK
		if op == fake.MethodSubmit {
			code = http.StatusAccepted
		}
		return &datacenter.Error{StatusCode: code, Op: op, Message: "undecodable answer: unexpected EOF"}
	case fault400:
		return &datacenter.Error{StatusCode: http.StatusBadRequest, Op: op, Message: "bad request (model)"}
	case fault409:
		return &datacenter.Error{StatusCode: http.StatusConflict, Op: op, Message: "conflict (model)"}
	case faultCredsMissing:
		return fake.CredentialsMissing(modelCredFile)
	case faultUnauthorized:
		return fake.Unauthorized(modelCredFile)
	}
	panic("unknown fault")
}

type dcFault struct {
	kind   faultKind
	method string // "" for any
}

// modelInFlight is a submit the datacenter has not received yet: its caller
// timed out, and the request is still on its way. It arrives at a later step
// (or inside a later call); the datacenter starts it then only if its clock
// is not past the request's Not-After deadline (the deadline of the Submit
// call's ctx), as the datacenter API's contract says.
type modelInFlight struct {
	key      string
	req      datacenter.JobRequest
	deadline time.Time
	sentAt   time.Time
	by       string // which controller sent it
}

type modelDCJob struct {
	job         datacenter.Job
	key         string
	req         datacenter.JobRequest
	cancelAsked bool // acknowledged a cancel it has not carried out yet
}

// modelDC is an in-memory datacenter that can lose answers, fail in streaks,
// time out, answer junk, go down, refuse, and be slow to cancel. Its jobs
// are visible to the invariant checks.
type modelDC struct {
	m        *model
	jobs     []*modelDCJob // in submission order
	byID     map[string]*modelDCJob
	byKey    map[string]*modelDCJob
	machines map[string]*datacenter.MachineState
	faults   []dcFault
	down     bool
	// slowCancels: the next cancels are acknowledged, and the job runs on.
	slowCancels int
	nextID      int
	// inflight: submits on their way, in the order they were sent; hold makes
	// the call being entered (a Submit) one of them.
	inflight []*modelInFlight
	hold     bool
	// changes lists the IDs of the jobs whose state changed, oldest first:
	// the changes feed (modelFeedDC), cursor n standing after changes[n-1];
	// feedEpoch prefixes cursors (expireCursors moves it on), and feedOff
	// withdraws the feed.
	changes   []string
	feedEpoch int
	feedOff   bool
	// calls counts the calls that reached the datacenter, per method.
	calls map[string]int
}

var _ datacenter.Client = &modelDC{}

// changed records that job id's state changed, for the changes feed.
func (d *modelDC) changed(id string) { d.changes = append(d.changes, id) }

func newModelDC(m *model) *modelDC {
	return &modelDC{m: m, byID: map[string]*modelDCJob{}, byKey: map[string]*modelDCJob{},
		machines: map[string]*datacenter.MachineState{}, calls: map[string]int{}}
}

// enter decides how a call goes: before is an error to answer without acting;
// otherwise the call is carried out and answered with after (nil: normally).
func (d *modelDC) enter(method string) (before, after error) {
	if carried, err := d.m.crash.call(d.m.rng); err != nil {
		if carried {
			return nil, err
		}
		return err, nil
	}
	d.m.stats.dcCalls++
	d.calls[method]++
	if len(d.inflight) > 0 && d.m.rng.IntN(6) == 0 {
		// A submit on its way arrives while the controller is busy with this call.
		d.deliver(d.m.rng.IntN(len(d.inflight)), "before a "+method)
	}
	if d.down {
		return fault503.err(method), nil
	}
	for i, f := range d.faults {
		if f.method == "" || f.method == method {
			d.faults = slices.Delete(d.faults, i, i+1)
			d.m.stats.faultsHit++
			if f.kind == faultInFlight && method == fake.MethodSubmit {
				d.hold = true
			}
			if f.kind.carriedOut() {
				return nil, f.kind.err(method)
			}
			return f.kind.err(method), nil
		}
	}
	return nil, nil
}

func (d *modelDC) Submit(ctx context.Context, key string, req datacenter.JobRequest) (*datacenter.Job, error) {
	if d.m.acting == "former leader" {
		d.m.stats.formerSubmits++
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		d.m.violate("(9) a submit under key %s carries no deadline (no Not-After)", key)
	}
	before, after := d.enter(fake.MethodSubmit)
	if d.hold {
		d.hold = false
		d.m.checkNotAfter(key, deadline)
		d.inflight = append(d.inflight, &modelInFlight{key: key, req: req, deadline: deadline,
			sentAt: d.m.clock.Now(), by: d.m.acting})
		d.m.stats.held++
		return nil, before
	}
	if before != nil {
		return nil, before
	}
	if ok {
		d.m.checkNotAfter(key, deadline)
		if d.m.clock.Now().After(deadline) {
			// Arrived past its Not-After: the datacenter starts nothing.
			d.m.violate("(9) a submit under key %s was sent at %s, past its own Not-After %s", key,
				d.m.clock.Now().Format(time.TimeOnly), deadline.Format(time.TimeOnly))
			return nil, &datacenter.Error{StatusCode: http.StatusBadRequest, Op: fake.MethodSubmit, Message: "past Not-After (model)"}
		}
	}
	out, err := d.apply(key, req)
	if after != nil {
		return nil, after
	}
	return out, err
}

// deliver makes the i-th submit on its way arrive: the datacenter refuses it
// past its Not-After deadline, and otherwise carries it out as it carries out
// any submit (starting a job, or replaying the one under its key). Its
// caller gave up long ago: nobody hears the answer.
func (d *modelDC) deliver(i int, when string) {
	f := d.inflight[i]
	d.inflight = slices.Delete(d.inflight, i, i+1)
	now := d.m.clock.Now()
	if !f.deadline.IsZero() && now.After(f.deadline) { // no deadline: (9) was reported when it was sent
		d.m.stats.lateRefused++
		d.m.logf("a submit under key %s sent by the %s at %s arrives %s, past its Not-After %s: refused",
			f.key, f.by, f.sentAt.Format(time.TimeOnly), when, f.deadline.Format(time.TimeOnly))
		return
	}
	_, existed := d.byKey[f.key]
	out, err := d.apply(f.key, f.req)
	d.m.stats.lateApplied++
	what := "starts"
	if existed {
		what = "replays"
		d.m.stats.lateReplayed++
	}
	if err == nil {
		what += " datacenter job " + out.ID
	} else {
		what += ": " + err.Error()
	}
	d.m.logf("a submit under key %s sent by the %s at %s arrives %s, before its Not-After %s: it %s",
		f.key, f.by, f.sentAt.Format(time.TimeOnly), when, f.deadline.Format(time.TimeOnly), what)
}

// apply carries out a submit that reached the datacenter in time.
func (d *modelDC) apply(key string, req datacenter.JobRequest) (*datacenter.Job, error) {
	j, ok := d.byKey[key]
	if ok {
		if !reflect.DeepEqual(j.req, req) {
			d.m.violate("(7) a re-submit under key %s carried another request: first %+v, now %+v", key, j.req, req)
			return nil, &datacenter.Error{StatusCode: http.StatusConflict, Op: fake.MethodSubmit, Message: "idempotency key reused with another body"}
		}
	} else {
		d.nextID++
		j = &modelDCJob{key: key, req: req, job: datacenter.Job{ID: fmt.Sprintf("dc-job-%d", d.nextID),
			Operation: req.Operation, MAC: req.Machine.MAC, State: datacenter.JobRunning}}
		switch d.m.rng.IntN(10) {
		case 0, 1, 2:
			j.job.State = datacenter.JobQueued
		case 3:
			d.finish(j, datacenter.JobSucceeded) // a quick operation
		}
		d.jobs = append(d.jobs, j)
		d.byID[j.job.ID], d.byKey[key] = j, j
		d.changed(j.job.ID)
		d.m.stats.dcJobs++
		if _, known := d.m.uids[types.UID(key)]; !known {
			d.m.violate("(3) datacenter job %s started under key %s, which is no Job's UID", j.job.ID, key)
		}
	}
	out := j.job
	return &out, nil
}

func (d *modelDC) GetJob(_ context.Context, id string) (*datacenter.Job, error) {
	before, after := d.enter(fake.MethodGetJob)
	if before != nil {
		return nil, before
	}
	j, ok := d.byID[id]
	if !ok {
		before = datacenter.NotFoundError(fake.MethodGetJob, "job "+id+" not found")
	}
	if after != nil {
		return nil, after
	}
	if before != nil {
		return nil, before
	}
	out := j.job
	return &out, nil
}

func (d *modelDC) FindJob(_ context.Context, key string) (*datacenter.Job, error) {
	before, after := d.enter(fake.MethodFindJob)
	if before != nil {
		return nil, before
	}
	if after != nil {
		return nil, after
	}
	j, ok := d.byKey[key]
	if !ok {
		return nil, datacenter.NotFoundError(fake.MethodFindJob, "no job with key "+key)
	}
	out := j.job
	return &out, nil
}

func (d *modelDC) Cancel(_ context.Context, id string) (*datacenter.Job, error) {
	before, after := d.enter(fake.MethodCancel)
	if before != nil {
		return nil, before
	}
	j, ok := d.byID[id]
	if !ok {
		if after != nil {
			return nil, after
		}
		return nil, datacenter.NotFoundError(fake.MethodCancel, "job "+id+" not found")
	}
	if !j.job.State.Finished() {
		if d.slowCancels > 0 {
			d.slowCancels--
			j.cancelAsked = true
		} else {
			j.job.State, j.job.Message = datacenter.JobCancelled, "cancelled on request"
			d.changed(j.job.ID)
		}
	}
	if after != nil {
		return nil, after
	}
	out := j.job
	return &out, nil
}

func (d *modelDC) GetMachine(_ context.Context, mac string) (*datacenter.MachineState, error) {
	before, after := d.enter(fake.MethodMachine)
	if before != nil {
		return nil, before
	}
	if after != nil {
		return nil, after
	}
	ms, ok := d.machines[mac]
	if !ok {
		return nil, datacenter.NotFoundError(fake.MethodMachine, "machine "+mac+" not known")
	}
	out := *ms
	return &out, nil
}

func (d *modelDC) Health(context.Context) error {
	before, after := d.enter(fake.MethodHealth)
	return errors.Join(before, after)
}

// modelFeedDC is the model datacenter offering the changes feed
// (datacenter.Batch), which fails as its other calls do, forgets cursors
// (expireCursors) and can be withdrawn (feedOff).
type modelFeedDC struct{ *modelDC }

var _ datacenter.Batch = modelFeedDC{}

// Changes lists each job whose state changed after cursor once, as it is now.
func (d modelFeedDC) Changes(_ context.Context, cursor string, limit int) (*datacenter.JobChanges, error) {
	before, after := d.enter(fake.MethodChanges)
	if before != nil {
		return nil, before
	}
	if d.feedOff {
		return nil, datacenter.UnsupportedError(fake.MethodChanges, "the feed is withdrawn (model)")
	}
	from := len(d.changes)
	if cursor != "" {
		var epoch int
		if _, err := fmt.Sscanf(cursor, "model-%d-%d", &epoch, &from); err != nil || epoch != d.feedEpoch || from > len(d.changes) {
			return nil, datacenter.CursorExpiredError(fake.MethodChanges, fmt.Sprintf("cursor %q expired (model)", cursor))
		}
	}
	if limit <= 0 {
		limit = datacenter.DefaultChangesLimit
	}
	page := &datacenter.JobChanges{Jobs: []datacenter.Job{}}
	listed := map[string]int{} // job ID -> index in page.Jobs
	next := from
	for ; next < len(d.changes); next++ {
		id := d.changes[next]
		i, seen := listed[id]
		if !seen && len(listed) == limit {
			break
		}
		if seen {
			page.Jobs[i].ID = "" // listed again later
		}
		listed[id] = len(page.Jobs)
		page.Jobs = append(page.Jobs, datacenter.Job{ID: id})
	}
	kept := page.Jobs[:0]
	for _, j := range page.Jobs {
		if j.ID != "" {
			kept = append(kept, d.byID[j.ID].job)
		}
	}
	page.Jobs = kept
	page.Cursor, page.More = fmt.Sprintf("model-%d-%d", d.feedEpoch, next), next < len(d.changes)
	if after != nil {
		return nil, after
	}
	return page, nil
}

// LookupMachines is not offered.
func (d modelFeedDC) LookupMachines(context.Context, []string) (map[string]*datacenter.MachineState, error) {
	return nil, datacenter.UnsupportedError(fake.MethodLookupMachines, "not offered (model)")
}

// unfinished returns the jobs still queued or running, in submission order.
func (d *modelDC) unfinished() []*modelDCJob {
	var out []*modelDCJob
	for _, j := range d.jobs {
		if !j.job.State.Finished() {
			out = append(out, j)
		}
	}
	return out
}

// finish ends a datacenter job as the datacenter decides.
func (d *modelDC) finish(j *modelDCJob, state datacenter.JobState) {
	j.job.State = state
	d.changed(j.job.ID)
	switch state {
	case datacenter.JobSucceeded:
		j.job.Progress, j.job.Message = 100, ""
		if ms, ok := d.machines[j.req.Machine.MAC]; ok && j.req.Image != nil {
			ms.CurrentOS = j.req.Image.Version
		}
	case datacenter.JobFailed:
		j.job.Message = "disk on fire (model)"
	case datacenter.JobCancelled:
		j.job.Message = "cancelled by the datacenter (model)"
	}
}

// ---------------------------------------------------------------------------
// Crashes inside a sync.

// crashPlan makes the controller's process die inside a sync: after budget
// calls (API or datacenter), every call fails and has no effect. The call
// at the crash point may have been carried out (its answer is lost).
type crashPlan struct {
	armed   bool
	budget  int
	crashed bool
}

func (c *crashPlan) call(rng *rand.Rand) (carriedOut bool, err error) {
	if !c.armed {
		return false, nil
	}
	if c.crashed {
		return false, errCrashed
	}
	if c.budget == 0 {
		c.crashed = true
		return rng.IntN(2) == 0, errCrashed
	}
	c.budget--
	return false, nil
}

// ---------------------------------------------------------------------------
// The model.

type modelJobRef struct {
	name, hardware string
}

// modelCache is one informer cache of the controller, fed by hand from a
// watch: pending holds the events the informer has not delivered yet.
type modelCache struct {
	gvr     schema.GroupVersionResource
	w       watch.Interface
	pending []watch.Event
	store   cache.Indexer
}

type modelStats struct {
	steps, syncs, restarts, crashesInSync, dcCalls, dcJobs, faultsHit, staleSyncs, created, refused int
	// submits held on their way, and how they ended: carried out late
	// (replaying the job under their key, or starting one), or refused as
	// past their Not-After.
	held, lateApplied, lateReplayed, lateRefused int
	// leader changes, syncs run by a paused former leader, the ones paused
	// at a Leading() check while other steps ran, its submits, and its syncs
	// that a write's resourceVersion precondition stopped.
	leaderChanges, formerSyncs, formerPaused, formerSubmits, formerFenced int
	feedReads, endedOnFeed                                                int
	reasons                                                               map[string]int
}

func (s *modelStats) add(o *modelStats) {
	s.steps += o.steps
	s.syncs += o.syncs
	s.restarts += o.restarts
	s.crashesInSync += o.crashesInSync
	s.dcCalls += o.dcCalls
	s.dcJobs += o.dcJobs
	s.faultsHit += o.faultsHit
	s.staleSyncs += o.staleSyncs
	s.created += o.created
	s.refused += o.refused
	s.held += o.held
	s.lateApplied += o.lateApplied
	s.lateReplayed += o.lateReplayed
	s.lateRefused += o.lateRefused
	s.leaderChanges += o.leaderChanges
	s.feedReads += o.feedReads
	s.endedOnFeed += o.endedOnFeed
	s.formerSyncs += o.formerSyncs
	s.formerPaused += o.formerPaused
	s.formerSubmits += o.formerSubmits
	s.formerFenced += o.formerFenced
	if s.reasons == nil {
		s.reasons = map[string]int{}
	}
	for r, n := range o.reasons {
		s.reasons[r] += n
	}
}

type modelConfig struct {
	steps int
	// feed: the datacenter offers the changes feed, and steps read it.
	feed bool
}

// modelCtl is one controller process: a Controller with its own informer
// caches, fed by hand from its own watches.
type modelCtl struct {
	name   string
	ctl    *Controller
	caches []*modelCache
	// failAt makes the controller stop at that failpoint; notLeading makes
	// it believe it lost the leader election.
	failAt     string
	notLeading bool
	// A paused former leader: pauseNext makes its next Leading() check pass
	// and then stop the sync's goroutine until the test resumes it (abort:
	// the check fails instead). paused is that sync, stopped.
	pauseNext, abort bool
	paused           *modelPausedSync
}

// modelPausedSync is a sync stopped right after a Leading() check passed,
// running on its own goroutine; only one goroutine runs at a time, so
// schedules stay a function of their seed.
type modelPausedSync struct {
	key    string
	resume chan struct{}
	done   chan modelSyncResult
}

type modelSyncResult struct {
	after  time.Duration
	err    error
	paused bool // not a result: the sync stopped after a Leading() check
}

type model struct {
	seed   uint64
	cfg    modelConfig
	rng    *rand.Rand
	ctx    context.Context
	clock  *testingclock.FakeClock
	client *clientfake.Clientset
	server *apiServer
	dc     *modelDC
	// lead is the controller that leads; former, when set, a former leader
	// that was paused and still believes it leads (its Leading() passes).
	lead, former *modelCtl
	acting       string // the controller whose sync runs, for the log
	crash        crashPlan
	lastCrashed  bool
	lastKey      string

	// lagging (odd seeds): some syncs see informer caches that lag behind
	// the API, as far back as the last cache the controller saw (an
	// informer never goes back), so even behind the controller's own writes.
	lagging  bool
	hardware []string
	maxJobs  int
	jobN     int
	uids     map[types.UID]modelJobRef // every Job ever created
	phase    map[types.UID]v1alpha1.JobPhase
	step     int
	schedule []string
	broken   []string // violations found during the current step
	stats    modelStats
}

// modelFailure is a schedule that broke an invariant.
type modelFailure struct {
	test      string
	seed      uint64
	step      int
	violation []string
	schedule  []string
	state     string
}

func (f *modelFailure) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: invariant violated at step %d:\n", f.seed, f.step)
	for _, v := range f.violation {
		fmt.Fprintf(&b, "    %s\n", v)
	}
	fmt.Fprintf(&b, "  replay: go test -count=1 -run '%s$' -v ./pkg/controller/jobs/ -model.seed=%d\n  schedule:\n", f.test, f.seed)
	for _, s := range f.schedule {
		fmt.Fprintf(&b, "    %s\n", s)
	}
	fmt.Fprintf(&b, "  state:\n%s", f.state)
	return b.String()
}

func newModel(seed uint64, cfg modelConfig) *model {
	m := &model{seed: seed, cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		ctx: klog.NewContext(context.Background(), klog.Logger{}), clock: testingclock.NewFakeClock(t0),
		uids: map[types.UID]modelJobRef{}, phase: map[types.UID]v1alpha1.JobPhase{}, stats: modelStats{reasons: map[string]int{}}}
	m.dc = newModelDC(m)
	m.lagging = seed%2 == 1
	m.maxJobs = 1 + m.rng.IntN(4)
	objs := []runtime.Object{datacenterObj(modelNS, func(dc *v1alpha1.Datacenter) { dc.Spec.MaxConcurrentJobs = ptr.To(int32(m.maxJobs)) })}
	tmpl := templateObj(modelNS)
	tmpl.Spec.CloudInit = &v1alpha1.CloudInit{UserData: "#cloud-config\ntoken: v1\n"}
	objs = append(objs, tmpl)
	for i := range 4 {
		name, mac := fmt.Sprintf("server-%d", i), fmt.Sprintf("aa:bb:cc:dd:ee:%02x", i)
		m.hardware = append(m.hardware, name)
		objs = append(objs, hardwareObj(modelNS, name, mac))
		m.dc.machines[mac] = &datacenter.MachineState{MAC: mac, PowerState: datacenter.PowerOn, CurrentOS: "1.0.0", State: "ready"}
	}
	m.client = clientfake.NewClientset(objs...)
	m.server = serveLikeStargate(m.client, objs)
	m.client.PrependReactor("*", "*", m.observe) // runs before the server's rules
	m.lead = &modelCtl{name: "leader", caches: m.watchSet()}
	m.restart()
	m.stats.restarts = 0
	return m
}

// observe sees every API call before the server's rules: it delivers watch
// events into the pending queues (so their channels never fill), makes calls
// fail once the controller has crashed, and catches a write that would take
// a Job back from Running even if the server's validation refuses it.
func (m *model) observe(action clienttesting.Action) (bool, runtime.Object, error) {
	m.drain()
	if _, err := m.crash.call(m.rng); err != nil {
		return true, nil, err
	}
	if up, ok := action.(clienttesting.UpdateAction); ok && up.GetSubresource() == "status" && action.GetResource() == jobsResource {
		in := up.GetObject().(*v1alpha1.Job)
		if obj, err := m.client.Tracker().Get(jobsResource, in.Namespace, in.Name); err == nil {
			stored := obj.(*v1alpha1.Job)
			if stored.ResourceVersion == in.ResourceVersion && stored.UID == in.UID {
				if stored.Status.Phase == v1alpha1.JobRunning && in.Status.Phase == v1alpha1.JobPending {
					m.violate("(5) the controller wrote Job %s back from Running to Pending (reason %s)", in.Name, in.Status.Reason)
				}
				if isFinished(stored.Status.Phase) && in.Status.Phase != stored.Status.Phase {
					m.violate("(5) the controller wrote finished Job %s (%s) as %s", in.Name, stored.Status.Phase, in.Status.Phase)
				}
			}
		}
	}
	return false, nil, nil
}

// watchSet opens the watches that feed one controller's informer caches.
func (m *model) watchSet() []*modelCache {
	var out []*modelCache
	for _, gvr := range []schema.GroupVersionResource{jobsResource, hardwaresResource, templatesResource, datacentersResource} {
		w, err := m.client.Tracker().Watch(gvr, "")
		if err != nil {
			panic(err)
		}
		out = append(out, &modelCache{gvr: gvr, w: w})
	}
	return out
}

// drain takes the events the watches hold into the pending queues, checking
// each Job's phase history on the way (from the leader's watches: every
// set sees the same events).
func (m *model) drain() {
	m.drainSet(m.lead.caches, true)
	if m.former != nil {
		m.drainSet(m.former.caches, false)
	}
}

func (m *model) drainSet(caches []*modelCache, observe bool) {
	for _, c := range caches {
		for more := true; more; {
			select {
			case ev := <-c.w.ResultChan():
				c.pending = append(c.pending, ev)
				if job, ok := ev.Object.(*v1alpha1.Job); ok && observe && ev.Type != watch.Deleted {
					m.observePhase(job)
				}
			default:
				more = false
			}
		}
	}
}

func (m *model) observePhase(job *v1alpha1.Job) {
	prev, seen := m.phase[job.UID]
	now := job.Status.Phase
	switch {
	case seen && prev == v1alpha1.JobRunning && now == v1alpha1.JobPending:
		m.violate("(5) Job %s went back from Running to Pending (reason %s)", job.Name, job.Status.Reason)
	case seen && isFinished(prev) && now != prev:
		m.violate("(5) finished Job %s (%s) became %s", job.Name, prev, now)
	}
	m.phase[job.UID] = now
	if job.Status.Reason != "" {
		m.stats.reasons[job.Status.Reason]++
	}
}

func (m *model) violate(format string, args ...any) {
	m.broken = append(m.broken, fmt.Sprintf(format, args...))
}

// restart throws the controller away, with everything it held in memory, and
// builds a new one over the same API and datacenter, with fresh caches (an
// informer starts from a list).
func (m *model) restart() {
	m.stats.restarts++
	m.crash = crashPlan{}
	m.start(m.lead)
}

// start builds mc's Controller, with caches listed from the API.
func (m *model) start(mc *modelCtl) {
	mc.failAt, mc.notLeading = "", false
	factory := informers.NewSharedInformerFactory(m.client, 0)
	v1 := factory.Stargate().V1alpha1()
	jobs, hws, tmpls, dcs := v1.Jobs(), v1.Hardwares(), v1.Templates(), v1.Datacenters()
	clientFor := func(*v1alpha1.Datacenter) (datacenter.Client, error) {
		if m.cfg.feed {
			return modelFeedDC{m.dc}, nil
		}
		return m.dc, nil
	}
	c, err := New(m.client, jobs, tmpls, dcs, clientFor, Options{Clock: m.clock, PollInterval: time.Second,
		MinPollInterval: 100 * time.Millisecond, WaitInterval: 5 * time.Second,
		Failpoint: func(point string) error {
			if point == mc.failAt {
				return errors.New("crash injected at " + point)
			}
			return nil
		},
		Leading: func(context.Context, string) error { return m.leading(mc) }})
	if err != nil {
		panic(err)
	}
	mc.ctl = c
	m.drain()
	stores := []cache.Indexer{jobs.Informer().GetIndexer(), hws.Informer().GetIndexer(), tmpls.Informer().GetIndexer(), dcs.Informer().GetIndexer()}
	for i, mc := range mc.caches {
		mc.store, mc.pending = stores[i], nil
		objs, err := m.client.Tracker().List(mc.gvr, v1alpha1.SchemeGroupVersion.WithKind(kindOf(mc.gvr)), "")
		if err != nil {
			panic(err)
		}
		items, err := listItems(objs)
		if err != nil {
			panic(err)
		}
		for _, o := range items {
			if err := mc.store.Add(o); err != nil {
				panic(err)
			}
		}
	}
}

func kindOf(gvr schema.GroupVersionResource) string {
	switch gvr {
	case jobsResource:
		return "Job"
	case hardwaresResource:
		return "Hardware"
	case templatesResource:
		return "Template"
	}
	return "Datacenter"
}

func listItems(obj runtime.Object) ([]runtime.Object, error) {
	var out []runtime.Object
	switch l := obj.(type) {
	case *v1alpha1.JobList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.HardwareList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.TemplateList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *v1alpha1.DatacenterList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected list %T", obj)
	}
	return out, nil
}

// deliver hands the informer n of a cache's pending events, in order (all
// when n < 0).
func (m *model) deliver(c *modelCache, n int) {
	if n < 0 || n > len(c.pending) {
		n = len(c.pending)
	}
	for _, ev := range c.pending[:n] {
		var err error
		switch ev.Type {
		case watch.Added:
			err = c.store.Add(ev.Object)
		case watch.Modified:
			err = c.store.Update(ev.Object)
		case watch.Deleted:
			err = c.store.Delete(ev.Object)
		}
		if err != nil {
			panic(err)
		}
	}
	c.pending = c.pending[n:]
}

// catchUp makes every cache of the leader current, as harness.sync waits for.
func (m *model) catchUp() { m.catchUpCaches(m.lead.caches) }

func (m *model) catchUpCaches(caches []*modelCache) {
	m.drain()
	for _, c := range caches {
		m.deliver(c, -1)
	}
}

// lag delivers a random part of each of the leader's caches' pending events.
func (m *model) lag() { m.lagCaches(m.lead.caches) }

func (m *model) lagCaches(caches []*modelCache) {
	m.drain()
	for _, c := range caches {
		switch m.rng.IntN(3) {
		case 0:
			m.deliver(c, -1)
		case 1:
			m.deliver(c, m.rng.IntN(len(c.pending)+1))
		}
	}
}

// sync runs one sync of key on the leader; the caller has prepared the caches.
func (m *model) sync(key string) (time.Duration, error) {
	m.acting = m.lead.name
	defer func() { m.acting = "" }()
	m.stats.syncs++
	phase := func() v1alpha1.JobPhase {
		_, name, _ := cache.SplitMetaNamespaceKey(key)
		if obj, err := m.client.Tracker().Get(jobsResource, modelNS, name); err == nil {
			return obj.(*v1alpha1.Job).Status.Phase
		}
		return ""
	}
	was, reads := phase(), m.dc.calls[fake.MethodGetJob]+m.dc.calls[fake.MethodCancel]+m.dc.calls[fake.MethodFindJob]
	after, err := m.lead.ctl.sync(m.ctx, key)
	if was == v1alpha1.JobRunning && isFinished(phase()) &&
		m.dc.calls[fake.MethodGetJob]+m.dc.calls[fake.MethodCancel]+m.dc.calls[fake.MethodFindJob] == reads {
		m.stats.endedOnFeed++ // no read of its own: the feed's word ended it
	}
	return after, m.synced(err)
}

// synced ends a sync: the crash plan is spent, the watches drained.
func (m *model) synced(err error) error {
	crashed := m.crash.crashed
	m.lastCrashed = crashed
	m.crash = crashPlan{}
	m.drain()
	if err != nil && !crashed && (apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) {
		m.violate("the controller made a write the API server refuses: %v", err)
	}
	return err
}

// leading is mc's Leading(): an error once it knows it does not lead. A
// former leader told to pause passes the check and stops right after it,
// until the test resumes it: it acts on what it saw before other steps ran.
func (m *model) leading(mc *modelCtl) error {
	if mc.notLeading {
		return errors.New("not leading")
	}
	if p := mc.paused; p != nil && mc.pauseNext {
		mc.pauseNext = false
		p.done <- modelSyncResult{paused: true} // to the test's goroutine
		<-p.resume
		m.acting = mc.name
		if mc.abort {
			return errors.New("not leading (stopped while paused)")
		}
	}
	return nil
}

// syncFormer runs a sync of key on the former leader. With pause, it runs on
// a goroutine of its own that stops right after its next Leading() check
// passes (if it reaches one) and waits for resumeFormer; only one goroutine
// runs at a time.
func (m *model) syncFormer(key string, pause bool) (r modelSyncResult, paused bool) {
	f := m.former
	m.stats.syncs++
	m.stats.formerSyncs++
	if !pause {
		m.acting = f.name
		after, err := f.ctl.sync(m.ctx, key)
		m.acting = ""
		return modelSyncResult{after: after, err: m.synced(err)}, false
	}
	p := &modelPausedSync{key: key, resume: make(chan struct{}), done: make(chan modelSyncResult)}
	f.paused, f.pauseNext = p, true
	go func() {
		m.acting = f.name
		after, err := f.ctl.sync(m.ctx, key)
		p.done <- modelSyncResult{after: after, err: err}
	}()
	if r = <-p.done; !r.paused {
		f.paused, f.pauseNext = nil, false // it reached no Leading() check
		m.acting = ""
		return modelSyncResult{after: r.after, err: m.synced(r.err)}, false
	}
	m.acting = ""
	m.stats.formerPaused++
	return r, true
}

// resumeFormer lets the former leader's paused sync go on (abort: its
// Leading() check fails after all) and waits for its end.
func (m *model) resumeFormer(abort bool) modelSyncResult {
	f := m.former
	p := f.paused
	f.abort = abort
	p.resume <- struct{}{}
	r := <-p.done
	f.paused, f.abort = nil, false
	m.acting = ""
	r.err = m.synced(r.err)
	if apierrors.IsConflict(r.err) || apierrors.IsNotFound(r.err) {
		m.stats.formerFenced++
	}
	return r
}

// retireFormer ends the former leader's process (a paused sync is stopped
// where it is) and closes its watches.
func (m *model) retireFormer(why string) {
	f := m.former
	if f == nil {
		return
	}
	if f.paused != nil {
		m.resumeFormer(true)
	}
	for _, c := range f.caches {
		c.w.Stop()
	}
	m.former = nil
	m.logf("the former leader %s", why)
}

// ---------------------------------------------------------------------------
// The API as the test sees it (never through the crash plan).

func (m *model) jobs() []v1alpha1.Job {
	list, err := m.client.StargateV1alpha1().Jobs(modelNS).List(m.ctx, metav1.ListOptions{})
	if err != nil {
		panic(err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func (m *model) hardwares() map[string]*v1alpha1.Hardware {
	list, err := m.client.StargateV1alpha1().Hardwares(modelNS).List(m.ctx, metav1.ListOptions{})
	if err != nil {
		panic(err)
	}
	out := map[string]*v1alpha1.Hardware{}
	for i := range list.Items {
		out[list.Items[i].Name] = &list.Items[i]
	}
	return out
}

func (m *model) datacenterObj() (*v1alpha1.Datacenter, bool) {
	dc, err := m.client.StargateV1alpha1().Datacenters().Get(m.ctx, modelNS, metav1.GetOptions{})
	if err != nil {
		return nil, false
	}
	return dc, true
}

// ---------------------------------------------------------------------------
// Steps.

func (m *model) logf(format string, args ...any) {
	m.schedule = append(m.schedule, fmt.Sprintf("%3d: ", m.step)+fmt.Sprintf(format, args...))
}

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

type modelStep struct {
	weight int
	run    func(m *model)
}

var modelSteps = []modelStep{
	{12, (*model).stepCreateJob},
	{24, (*model).stepSync},
	{8, (*model).stepSyncAgain},
	{4, (*model).stepSyncAll},
	{9, (*model).stepFinishDCJob},
	{9, (*model).stepFault},
	{3, (*model).stepDown},
	{3, (*model).stepSlowCancel},
	{4, (*model).stepCancelJob},
	{4, (*model).stepDeleteJob},
	{3, (*model).stepPause},
	{2, (*model).stepDatacenterObject},
	{5, (*model).stepClock},
	{5, (*model).stepRestart},
	{2, (*model).stepTemplate},
	{1, (*model).stepHardwareIP},
	{2, (*model).stepDeliver},
	{4, (*model).stepDeliverSubmit},
	{2, (*model).stepLeaderChange},
	{8, (*model).stepFormer},
}

// modelFeedSteps are the steps when the datacenter offers the changes feed.
var modelFeedSteps = append(slices.Clone(modelSteps),
	modelStep{10, (*model).stepReadFeed},
	modelStep{3, (*model).stepFeedFault},
)

func stepTotal(steps []modelStep) int {
	n := 0
	for _, s := range steps {
		n += s.weight
	}
	return n
}

var modelStepTotal, modelFeedStepTotal = stepTotal(modelSteps), stepTotal(modelFeedSteps)

func (m *model) randomStep() {
	steps, total := modelSteps, modelStepTotal
	if m.cfg.feed {
		steps, total = modelFeedSteps, modelFeedStepTotal
	}
	n := m.rng.IntN(total)
	for _, s := range steps {
		if n < s.weight {
			s.run(m)
			return
		}
		n -= s.weight
	}
}

var modelOps = []v1alpha1.Operation{v1alpha1.OperationRepave, v1alpha1.OperationRepave, v1alpha1.OperationReboot,
	v1alpha1.OperationPowerOff, v1alpha1.OperationPowerOn}

func (m *model) stepCreateJob() {
	m.jobN++
	name := fmt.Sprintf("j%d", m.jobN)
	if m.rng.IntN(6) == 0 && m.jobN > 1 {
		// The name of a Job since deleted (with a new UID). Never the name of
		// a Job that exists: serveLikeStargate takes the Hardware lock before
		// the name is found taken, which the real server does not.
		old := fmt.Sprintf("j%d", 1+m.rng.IntN(m.jobN-1))
		if _, err := m.client.StargateV1alpha1().Jobs(modelNS).Get(m.ctx, old, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			name = old
		}
	}
	hw, op := pick(m.rng, m.hardware), pick(m.rng, modelOps)
	job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: modelNS, UID: types.UID(fmt.Sprintf("uid-%s-%d", name, m.jobN))},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hw}, Operation: op, BackoffLimit: ptr.To(int32(m.rng.IntN(4)))}}
	if op == v1alpha1.OperationRepave {
		job.Spec.TemplateRef = &v1alpha1.LocalObjectReference{Name: modelTemplate}
	}
	desc := fmt.Sprintf("create Job %s (%s) on %s, %s backoffLimit %d", name, job.UID, hw, op, *job.Spec.BackoffLimit)
	if m.rng.IntN(3) == 0 {
		job.Spec.ActiveDeadlineSeconds = ptr.To(int64(10 + m.rng.IntN(300)))
		desc += fmt.Sprintf(" activeDeadlineSeconds %d", *job.Spec.ActiveDeadlineSeconds)
	}
	if m.rng.IntN(12) == 0 {
		job.Spec.Cancel = true
		desc += " cancel"
	}
	if m.rng.IntN(10) == 0 {
		job.Spec.TTLSecondsAfterFinished = ptr.To(int32(m.rng.IntN(120)))
		desc += fmt.Sprintf(" ttl %ds", *job.Spec.TTLSecondsAfterFinished)
	}
	_, err := m.client.StargateV1alpha1().Jobs(modelNS).Create(m.ctx, job, metav1.CreateOptions{})
	switch {
	case err == nil:
		m.uids[job.UID] = modelJobRef{name: name, hardware: hw}
		m.stats.created++
		m.logf("%s: created", desc)
	default:
		m.stats.refused++
		m.logf("%s: %v", desc, shortErr(err))
	}
}

func shortErr(err error) string {
	switch {
	case apierrors.IsConflict(err):
		return "409 " + err.Error()
	case apierrors.IsAlreadyExists(err):
		return "409 AlreadyExists"
	}
	return err.Error()
}

// syncKey picks a Job to sync: one that exists, now and then one that does not.
func (m *model) syncKey() (string, bool) {
	jobs := m.jobs()
	if len(jobs) == 0 || m.rng.IntN(20) == 0 {
		if m.jobN == 0 {
			return "", false
		}
		return fmt.Sprintf("%s/j%d", modelNS, 1+m.rng.IntN(m.jobN)), true
	}
	return modelNS + "/" + pick(m.rng, jobs).Name, true
}

func (m *model) stepSync() {
	key, ok := m.syncKey()
	if !ok {
		m.logf("sync: no Jobs")
		return
	}
	m.syncStep(key, "sync")
}

// stepSyncAgain syncs the Job synced last once more, as a requeue does
// (after an error, a wait, or an event that came in during the sync).
func (m *model) stepSyncAgain() {
	if m.lastKey == "" {
		m.stepSync()
		return
	}
	m.syncStep(m.lastKey, "sync again")
}

func (m *model) syncStep(key, how string) {
	m.lastKey = key
	if m.lagging && m.rng.IntN(3) == 0 {
		m.lag()
		m.stats.staleSyncs++
		how += " (lagging caches)"
	} else {
		m.catchUp()
	}
	restart := false
	switch r := m.rng.IntN(20); {
	case r < 3:
		m.crash = crashPlan{armed: true, budget: m.rng.IntN(8)}
		how += fmt.Sprintf(", crashing after %d calls", m.crash.budget)
		restart = true
	case r < 4:
		m.lead.failAt = pick(m.rng, []string{FailpointBeforeSubmit, FailpointAfterSubmit, FailpointWhilePolling})
		how += ", crashing at " + m.lead.failAt
		restart = true
	case r < 5:
		m.lead.notLeading = true
		how += ", having lost the lead"
		restart = true
	}
	after, err := m.sync(key)
	crashed := m.lastCrashed
	m.logf("%s %s: after %s, err %v%s", how, key, after, errText(err), m.jobSummary(key))
	if restart {
		if crashed {
			m.stats.crashesInSync++
		}
		m.restart()
		m.logf("controller restarted")
	}
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

func (m *model) jobSummary(key string) string {
	_, name, _ := cache.SplitMetaNamespaceKey(key)
	j, err := m.client.StargateV1alpha1().Jobs(modelNS).Get(m.ctx, name, metav1.GetOptions{})
	if err != nil {
		return " -> (gone)"
	}
	s := fmt.Sprintf(" -> %s/%s attempts %d dcJob %q", j.Status.Phase, j.Status.Reason, j.Status.Attempts, j.Status.DCJobID)
	if j.DeletionTimestamp != nil {
		s += " (deleting)"
	}
	return s
}

func (m *model) stepSyncAll() {
	names := []string{}
	for _, j := range m.jobs() {
		names = append(names, j.Name)
	}
	for _, n := range names {
		m.catchUp()
		m.sync(modelNS + "/" + n)
	}
	m.logf("sync every Job %v", names)
}

func (m *model) stepFinishDCJob() {
	open := m.dc.unfinished()
	if len(open) == 0 {
		m.logf("finish a datacenter job: none runs")
		return
	}
	j := pick(m.rng, open)
	var state datacenter.JobState
	switch r := m.rng.IntN(20); {
	case j.job.State == datacenter.JobQueued && r < 6:
		j.job.State = datacenter.JobRunning
		m.dc.changed(j.job.ID)
		m.logf("datacenter job %s (key %s) starts running", j.job.ID, j.key)
		return
	case j.cancelAsked && r < 14:
		state = datacenter.JobCancelled
	case r < 10:
		state = datacenter.JobSucceeded
	case r < 17:
		state = datacenter.JobFailed
	default:
		state = datacenter.JobCancelled
	}
	m.dc.finish(j, state)
	m.logf("datacenter job %s (key %s, %s) ends %s", j.job.ID, j.key, j.req.Machine.MAC, state)
}

var modelMethods = []string{"", "", fake.MethodSubmit, fake.MethodSubmit, fake.MethodFindJob, fake.MethodGetJob, fake.MethodCancel, fake.MethodMachine}

func (m *model) stepFault() {
	kind, method := faultKind(m.rng.IntN(int(numFaultKinds))), pick(m.rng, modelMethods)
	if m.rng.IntN(4) == 0 {
		kind, method = faultInFlight, fake.MethodSubmit // submits delayed on their way: the rarest, most delicate path
	}
	n := 1 + m.rng.IntN(3)
	if m.rng.IntN(4) == 0 {
		n += m.rng.IntN(6) // a streak
	}
	for range n {
		m.dc.faults = append(m.dc.faults, dcFault{kind: kind, method: method})
	}
	target := method
	if target == "" {
		target = "any call"
	}
	m.logf("the datacenter answers the next %d %s with %s (queued faults: %d)", n, target, kind, len(m.dc.faults))
}

// stepReadFeed makes the leader (or now and then the former leader) read
// the changes feed once, as its follower does every PollInterval, from
// caches that may lag on odd seeds.
func (m *model) stepReadFeed() {
	mc := m.lead
	if m.former != nil && m.former.paused == nil && m.rng.IntN(3) == 0 {
		mc = m.former
	}
	how := "the " + mc.name + " reads the changes feed"
	if m.lagging && m.rng.IntN(3) == 0 {
		m.lagCaches(mc.caches)
		how += " (lagging caches)"
	} else {
		m.catchUpCaches(mc.caches)
	}
	m.acting = mc.name
	mc.ctl.readFeed(m.ctx, modelNS)
	m.acting = ""
	m.drain()
	f := mc.ctl.feeds.get(modelNS)
	f.mu.Lock()
	defer f.mu.Unlock()
	m.stats.feedReads++
	m.logf("%s: epoch %d, vouching %v, %d words kept", how, f.epoch, f.live(m.clock.Now(), mc.ctl.opts.PollInterval), len(f.said))
}

// stepFeedFault makes the changes feed misbehave: it forgets every cursor
// (410), is withdrawn or offered again, or fails its next reads.
func (m *model) stepFeedFault() {
	switch m.rng.IntN(4) {
	case 0:
		m.dc.feedEpoch++
		m.logf("the datacenter forgets the changes feed's cursors (410 Gone)")
	case 1:
		m.dc.feedOff = !m.dc.feedOff
		m.logf("the datacenter's changes feed is withdrawn: %v", m.dc.feedOff)
	default:
		kind := pick(m.rng, []faultKind{fault500, fault503, faultTimeoutBefore, faultJunkBefore, fault400, faultUnauthorized})
		n := 1 + m.rng.IntN(3)
		for range n {
			m.dc.faults = append(m.dc.faults, dcFault{kind: kind, method: fake.MethodChanges})
		}
		m.logf("the datacenter answers the next %d reads of its changes feed with %s", n, kind)
	}
}

func (m *model) stepDown() {
	m.dc.down = !m.dc.down
	m.logf("the datacenter is down: %v", m.dc.down)
}

func (m *model) stepSlowCancel() {
	n := 1 + m.rng.IntN(3)
	m.dc.slowCancels += n
	m.logf("the datacenter acknowledges the next %d cancels and goes on", m.dc.slowCancels)
}

func (m *model) pickJob(unfinished bool) (*v1alpha1.Job, bool) {
	var cands []v1alpha1.Job
	for _, j := range m.jobs() {
		if !unfinished || !isFinished(j.Status.Phase) {
			cands = append(cands, j)
		}
	}
	if len(cands) == 0 {
		return nil, false
	}
	j := pick(m.rng, cands)
	return &j, true
}

func (m *model) stepCancelJob() {
	j, ok := m.pickJob(true)
	if !ok {
		m.logf("cancel a Job: none unfinished")
		return
	}
	j.Spec.Cancel = true
	_, err := m.client.StargateV1alpha1().Jobs(modelNS).Update(m.ctx, j, metav1.UpdateOptions{})
	m.logf("set spec.cancel on Job %s (%s/%s): err %v", j.Name, j.Status.Phase, j.Status.Reason, errText(err))
}

func (m *model) stepDeleteJob() {
	j, ok := m.pickJob(m.rng.IntN(3) > 0)
	if !ok {
		m.logf("delete a Job: none")
		return
	}
	err := m.client.StargateV1alpha1().Jobs(modelNS).Delete(m.ctx, j.Name, metav1.DeleteOptions{})
	m.logf("delete Job %s (%s/%s, finalizers %v): err %v%s", j.Name, j.Status.Phase, j.Status.Reason, j.Finalizers, errText(err), m.jobSummary(modelNS+"/"+j.Name))
}

func (m *model) stepPause() {
	dc, ok := m.datacenterObj()
	if !ok {
		m.logf("pause: no Datacenter")
		return
	}
	dc.Spec.Paused = !dc.Spec.Paused
	_, err := m.client.StargateV1alpha1().Datacenters().Update(m.ctx, dc, metav1.UpdateOptions{})
	m.logf("Datacenter paused: %v (err %v)", dc.Spec.Paused, errText(err))
}

func (m *model) unfinishedJobs() []string {
	var out []string
	for _, j := range m.jobs() {
		if !isFinished(j.Status.Phase) {
			out = append(out, j.Name)
		}
	}
	return out
}

// stepDatacenterObject deletes the Datacenter object, or re-creates it. The
// real server refuses to delete one with unfinished Jobs; half the time that
// refusal is modelled, half the time it is deleted anyway: the controller
// must stay safe either way.
func (m *model) stepDatacenterObject() {
	dcs := m.client.StargateV1alpha1().Datacenters()
	if _, ok := m.datacenterObj(); !ok {
		dc := datacenterObj(modelNS, func(dc *v1alpha1.Datacenter) {
			dc.Spec.MaxConcurrentJobs = ptr.To(int32(m.maxJobs))
			dc.Spec.Paused = m.rng.IntN(4) == 0
		})
		_, err := dcs.Create(m.ctx, dc, metav1.CreateOptions{})
		m.logf("re-create the Datacenter (paused %v): err %v", dc.Spec.Paused, errText(err))
		return
	}
	if open := m.unfinishedJobs(); len(open) > 0 && m.rng.IntN(2) == 0 {
		m.logf("delete the Datacenter: refused, as the server does, for unfinished Jobs %v", open)
		return
	}
	err := dcs.Delete(m.ctx, modelNS, metav1.DeleteOptions{})
	m.logf("delete the Datacenter (unfinished Jobs %v): err %v", m.unfinishedJobs(), errText(err))
}

func (m *model) stepClock() {
	d := time.Duration(1+m.rng.IntN(120)) * time.Second
	if m.rng.IntN(8) == 0 {
		d = time.Duration(5+m.rng.IntN(10)) * time.Minute
	}
	m.clock.Step(d)
	m.logf("the clock advances %s", d)
}

func (m *model) stepRestart() {
	m.restart()
	m.logf("the controller crashes and restarts")
}

func (m *model) stepTemplate() {
	tmpls := m.client.StargateV1alpha1().Templates(modelNS)
	t, err := tmpls.Get(m.ctx, modelTemplate, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		t := templateObj(modelNS)
		t.Spec.CloudInit = &v1alpha1.CloudInit{UserData: fmt.Sprintf("#cloud-config\ntoken: v%d\n", m.rng.IntN(3))}
		_, err := tmpls.Create(m.ctx, t, metav1.CreateOptions{})
		m.logf("re-create the Template: err %v", errText(err))
		return
	}
	if m.rng.IntN(3) == 0 {
		err := tmpls.Delete(m.ctx, modelTemplate, metav1.DeleteOptions{})
		m.logf("delete the Template: err %v", errText(err))
		return
	}
	t.Spec.CloudInit = &v1alpha1.CloudInit{UserData: fmt.Sprintf("#cloud-config\ntoken: v%d\n", m.rng.IntN(3))}
	_, err = tmpls.Update(m.ctx, t, metav1.UpdateOptions{})
	m.logf("the Template's user data becomes %q: err %v", t.Spec.CloudInit.UserData, errText(err))
}

func (m *model) stepHardwareIP() {
	name := pick(m.rng, m.hardware)
	hw := m.hardwares()[name]
	hw.Spec.IPv4 = fmt.Sprintf("10.0.1.%d", 2+m.rng.IntN(200))
	_, err := m.client.StargateV1alpha1().Hardwares(modelNS).Update(m.ctx, hw, metav1.UpdateOptions{})
	m.logf("Hardware %s's IPv4 becomes %s: err %v", name, hw.Spec.IPv4, errText(err))
}

// stepDeliver lets the informers deliver some of what they lag behind.
func (m *model) stepDeliver() {
	if !m.lagging {
		m.logf("informers deliver (nothing lags)")
		return
	}
	m.lag()
	m.logf("informers deliver part of what they lag behind")
}

// stepDeliverSubmit makes a submit on its way arrive at the datacenter.
func (m *model) stepDeliverSubmit() {
	if len(m.dc.inflight) == 0 {
		m.logf("a submit on its way arrives: none is")
		return
	}
	m.dc.deliver(m.rng.IntN(len(m.dc.inflight)), "now")
}

// stepLeaderChange pauses the leader (a long GC pause, a stopped VM): its
// lease expires, another replica takes the lead with fresh caches, and the
// paused one, when it runs again, still believes it leads. A former leader
// paused before exits first.
func (m *model) stepLeaderChange() {
	m.retireFormer("exits")
	m.drain()
	m.former, m.lead = m.lead, &modelCtl{name: "leader", caches: m.watchSet()}
	m.former.name = "former leader"
	m.crash = crashPlan{}
	m.start(m.lead)
	m.stats.leaderChanges++
	m.logf("the leader pauses and another replica takes the lead; the paused one still believes it leads")
}

// stepFormer lets the former leader act: a sync (from caches it may not
// have caught up, stopping now and then right after a Leading() check while
// other steps run), the end of such a paused sync, or its noticing it lost
// the lead. Without a former leader it is a sync of the leader.
func (m *model) stepFormer() {
	f := m.former
	if f == nil {
		m.stepSync()
		return
	}
	if f.paused != nil {
		key := f.paused.key
		r := m.resumeFormer(false)
		m.logf("the former leader's paused sync of %s goes on: after %s, err %v%s", key, r.after, errText(r.err), m.jobSummary(key))
		return
	}
	if m.rng.IntN(8) == 0 {
		f.notLeading = true
		m.logf("the former leader sees it lost the lead (its Leading() fails from now on)")
		return
	}
	key, ok := m.syncKey()
	if !ok {
		m.logf("the former leader syncs: no Jobs")
		return
	}
	how := "the former leader syncs"
	if m.lagging && m.rng.IntN(2) == 0 {
		m.lagCaches(f.caches)
		m.stats.staleSyncs++
		how += " (lagging caches)"
	} else {
		m.catchUpCaches(f.caches)
	}
	pause := m.rng.IntN(2) == 0
	r, paused := m.syncFormer(key, pause)
	if paused {
		m.logf("%s %s: paused right after its Leading() check passed%s", how, key, m.jobSummary(key))
		return
	}
	if apierrors.IsConflict(r.err) || apierrors.IsNotFound(r.err) {
		m.stats.formerFenced++
	}
	m.logf("%s %s: after %s, err %v%s", how, key, r.after, errText(r.err), m.jobSummary(key))
}

// ---------------------------------------------------------------------------
// Invariants.

func (m *model) check() {
	jobs := m.jobs()
	hws := m.hardwares()
	byUID := map[types.UID]*v1alpha1.Job{}
	byName := map[string]*v1alpha1.Job{}
	for i := range jobs {
		byUID[jobs[i].UID], byName[jobs[i].Name] = &jobs[i], &jobs[i]
	}
	perMAC := map[string][]string{}
	perKey := map[string]int{}
	running := 0
	for _, dj := range m.dc.jobs {
		perKey[dj.key]++
		if perKey[dj.key] == 2 {
			m.violate("(3) two datacenter jobs under key %s", dj.key)
		}
		ref, known := m.uids[types.UID(dj.key)]
		if !known {
			m.violate("(3) datacenter job %s runs under key %s, which is no Job's UID", dj.job.ID, dj.key)
			continue
		}
		job := byUID[types.UID(dj.key)]
		if job != nil && isFinished(job.Status.Phase) {
			// What Stargate says is what the datacenter did.
			switch {
			case job.Status.Phase == v1alpha1.JobSucceeded && dj.job.State != datacenter.JobSucceeded:
				m.violate("(8) Job %s Succeeded, its datacenter job %s is %s", job.Name, dj.job.ID, dj.job.State)
			case job.Status.Phase == v1alpha1.JobFailed && dj.job.State == datacenter.JobSucceeded:
				m.violate("(8) Job %s Failed (%s), its datacenter job %s succeeded", job.Name, job.Status.Reason, dj.job.ID)
			}
		}
		if dj.job.State.Finished() {
			continue
		}
		running++
		perMAC[dj.req.Machine.MAC] = append(perMAC[dj.req.Machine.MAC], dj.job.ID)
		switch {
		case job == nil:
			m.violate("(2) datacenter job %s (key %s) runs, and Job %s is gone", dj.job.ID, dj.key, ref.name)
		case isFinished(job.Status.Phase):
			m.violate("(2) Job %s is %s (%s: %s) while datacenter job %s under its key runs", job.Name, job.Status.Phase,
				job.Status.Reason, job.Status.Message, dj.job.ID)
		}
		if hw := hws[ref.hardware]; hw == nil || hw.Status.ActiveJob != ref.name {
			holder := "(no Hardware)"
			if hw != nil {
				holder = strconv.Quote(hw.Status.ActiveJob)
			}
			m.violate("(4) datacenter job %s of Job %s runs and Hardware %s is held by %s", dj.job.ID, ref.name, ref.hardware, holder)
		}
	}
	for mac, ids := range perMAC {
		if len(ids) > 1 {
			m.violate("(1) %d datacenter operations run on machine %s: %v", len(ids), mac, ids)
		}
	}
	if running > m.maxJobs {
		m.violate("(6) %d datacenter jobs run, maxConcurrentJobs is %d", running, m.maxJobs)
	}
	// (2) again, for a submit still on its way: if it may arrive before its
	// Not-After and would start a job (none runs under its key yet), its
	// Job must not have ended.
	now := m.clock.Now()
	for _, f := range m.dc.inflight {
		if _, started := m.dc.byKey[f.key]; started || (!f.deadline.IsZero() && now.After(f.deadline)) {
			continue
		}
		switch job := byUID[types.UID(f.key)]; {
		case job == nil:
			m.violate("(2) Job %s is gone while a submit under its key (sent by the %s at %s) may still arrive and start, until %s",
				m.uids[types.UID(f.key)].name, f.by, f.sentAt.Format(time.TimeOnly), f.deadline.Format(time.TimeOnly))
		case isFinished(job.Status.Phase):
			m.violate("(2) Job %s is %s (%s: %s) while a submit under its key (sent by the %s at %s) may still arrive and start, until %s",
				job.Name, job.Status.Phase, job.Status.Reason, job.Status.Message, f.by, f.sentAt.Format(time.TimeOnly), f.deadline.Format(time.TimeOnly))
		}
	}
	for _, name := range m.hardware {
		hw := hws[name]
		if holder := hw.Status.ActiveJob; holder != "" {
			if j := byName[holder]; j == nil || isFinished(j.Status.Phase) {
				m.violate("(4) Hardware %s is held by Job %q, which is finished or gone", name, holder)
			}
		}
	}
	for _, j := range jobs {
		if !isFinished(j.Status.Phase) {
			if hw := hws[j.Spec.HardwareRef.Name]; hw == nil || hw.Status.ActiveJob != j.Name {
				m.violate("(4) unfinished Job %s (%s/%s) does not hold Hardware %s", j.Name, j.Status.Phase, j.Status.Reason, j.Spec.HardwareRef.Name)
			}
		}
	}
}

// checkNotAfter checks a submit as it leaves: its Not-After deadline is no
// later than the window after the lastAttemptTime its Job records in etcd,
// the time lookUp counts from before it takes "nothing under the key" as
// final. (A Job that is gone or another by now is left to (2) and (3).)
func (m *model) checkNotAfter(key string, deadline time.Time) {
	ref, ok := m.uids[types.UID(key)]
	if !ok || deadline.IsZero() {
		return
	}
	obj, err := m.client.Tracker().Get(jobsResource, modelNS, ref.name)
	if err != nil || obj.(*v1alpha1.Job).UID != types.UID(key) {
		return
	}
	job := obj.(*v1alpha1.Job)
	window := m.lead.ctl.opts.SubmitWindow
	switch last := job.Status.LastAttemptTime; {
	case last == nil:
		m.violate("(9) a submit of Job %s leaves while the Job records no lastAttemptTime (Not-After %s)", ref.name, deadline.Format(time.TimeOnly))
	case deadline.After(last.Add(window)):
		m.violate("(9) a submit of Job %s carries Not-After %s, past its recorded lastAttemptTime %s + %s", ref.name,
			deadline.Format(time.TimeOnly), last.Format(time.TimeOnly), window)
	}
}

// state describes the API and the datacenter, for failure reports.
func (m *model) state() string {
	var b strings.Builder
	for _, j := range m.jobs() {
		fmt.Fprintf(&b, "    Job %s uid %s on %s: %s/%s attempts %d dcJob %q submission %v deleting %v cancel %v finalizers %v: %s\n",
			j.Name, j.UID, j.Spec.HardwareRef.Name, j.Status.Phase, j.Status.Reason, j.Status.Attempts, j.Status.DCJobID,
			j.Status.Submission != nil, j.DeletionTimestamp != nil, j.Spec.Cancel, j.Finalizers, j.Status.Message)
	}
	hws := m.hardwares()
	for _, name := range m.hardware {
		fmt.Fprintf(&b, "    Hardware %s: activeJob %q state %s\n", name, hws[name].Status.ActiveJob, hws[name].Status.State)
	}
	for _, dj := range m.dc.jobs {
		fmt.Fprintf(&b, "    datacenter job %s key %s mac %s: %s cancelAsked %v\n", dj.job.ID, dj.key, dj.req.Machine.MAC, dj.job.State, dj.cancelAsked)
	}
	for _, f := range m.dc.inflight {
		fmt.Fprintf(&b, "    submit on its way: key %s mac %s sent by the %s at %s, Not-After %s\n", f.key, f.req.Machine.MAC, f.by,
			f.sentAt.Format(time.TimeOnly), f.deadline.Format(time.TimeOnly))
	}
	fmt.Fprintf(&b, "    clock %s; former leader: %v\n", m.clock.Now().Format(time.TimeOnly), m.former != nil)
	dc, ok := m.datacenterObj()
	fmt.Fprintf(&b, "    Datacenter present %v paused %v; datacenter down %v, %d faults queued, %d slow cancels\n",
		ok, ok && dc.Spec.Paused, m.dc.down, len(m.dc.faults), m.dc.slowCancels)
	return b.String()
}

func (m *model) failure() *modelFailure {
	test := "TestModel"
	if m.cfg.feed {
		test = "TestModelFeed"
	}
	return &modelFailure{test: test, seed: m.seed, step: m.step, violation: m.broken, schedule: m.schedule, state: m.state()}
}

// ---------------------------------------------------------------------------
// A schedule.

func (m *model) run() *modelFailure {
	for m.step = 1; m.step <= m.cfg.steps; m.step++ {
		m.randomStep()
		m.stats.steps++
		m.check()
		if len(m.broken) > 0 {
			f := m.failure()
			m.retireFormer("stops: the schedule failed")
			return f
		}
	}
	return m.heal()
}

// heal ends every fault, brings the Datacenter back, finishes every
// datacenter job and syncs until nothing changes: then every Job must have
// ended, nothing run at the datacenter and no Hardware stay locked.
func (m *model) heal() *modelFailure {
	m.step = m.cfg.steps + 1
	m.dc.faults, m.dc.down, m.dc.slowCancels, m.dc.feedOff = nil, false, 0, false
	if dc, ok := m.datacenterObj(); !ok {
		if _, err := m.client.StargateV1alpha1().Datacenters().Create(m.ctx, datacenterObj(modelNS, func(dc *v1alpha1.Datacenter) {
			dc.Spec.MaxConcurrentJobs = ptr.To(int32(m.maxJobs))
		}), metav1.CreateOptions{}); err != nil {
			panic(err)
		}
	} else if dc.Spec.Paused {
		dc.Spec.Paused = false
		if _, err := m.client.StargateV1alpha1().Datacenters().Update(m.ctx, dc, metav1.UpdateOptions{}); err != nil {
			panic(err)
		}
	}
	if f := m.former; f != nil && f.paused != nil {
		key := f.paused.key
		r := m.resumeFormer(false)
		m.logf("heal: the former leader's paused sync of %s goes on: after %s, err %v%s", key, r.after, errText(r.err), m.jobSummary(key))
	}
	m.retireFormer("exits")
	m.logf("heal: no faults, the Datacenter present and resumed, the controller restarted")
	m.restart()
	// Every submit on its way arrives: half of them now, the rest after the
	// clock has passed their Not-After (refused, unless one carries none).
	for i := 0; i < len(m.dc.inflight); {
		if m.rng.IntN(2) == 0 {
			m.dc.deliver(i, "as the faults heal")
		} else {
			i++
		}
	}
	quiet := 0
	for round := 0; round < 40 && quiet < 2; round++ {
		for _, j := range m.dc.unfinished() {
			state := datacenter.JobSucceeded
			if j.cancelAsked || m.rng.IntN(4) == 0 {
				state = datacenter.JobCancelled
			}
			m.dc.finish(j, state)
		}
		m.clock.Step(70 * time.Second) // past any submit window: "nothing under the key" is final
		for len(m.dc.inflight) > 0 {
			m.dc.deliver(0, "after the heal's clock step")
		}
		before := m.fingerprint()
		if m.cfg.feed {
			// The feed is read as its follower reads it, before the syncs.
			m.catchUp()
			m.lead.ctl.readFeed(m.ctx, modelNS)
		}
		for _, j := range m.jobs() {
			m.catchUp()
			m.sync(modelNS + "/" + j.Name)
			m.check()
			if len(m.broken) > 0 {
				m.logf("heal round %d: sync %s", round, j.Name)
				return m.failure()
			}
		}
		if m.fingerprint() == before && len(m.dc.unfinished()) == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
	for _, j := range m.jobs() {
		if !isFinished(j.Status.Phase) {
			m.violate("(end) after healing, Job %s is still %s/%s (deleting %v): %s", j.Name, j.Status.Phase, j.Status.Reason,
				j.DeletionTimestamp != nil, j.Status.Message)
		}
	}
	for _, dj := range m.dc.unfinished() {
		m.violate("(end) after healing, datacenter job %s (key %s) still runs", dj.job.ID, dj.key)
	}
	for _, f := range m.dc.inflight {
		m.violate("(end) after healing, a submit under key %s is still on its way", f.key)
	}
	for name, hw := range m.hardwares() {
		if hw.Status.ActiveJob != "" {
			m.violate("(end) after healing, Hardware %s is still held by %q", name, hw.Status.ActiveJob)
		}
	}
	if len(m.broken) > 0 {
		return m.failure()
	}
	return nil
}

// fingerprint changes whenever the API or the datacenter does.
func (m *model) fingerprint() string {
	var b strings.Builder
	for _, j := range m.jobs() {
		b.WriteString(j.Name + "@" + j.ResourceVersion + ";")
	}
	for _, dj := range m.dc.jobs {
		b.WriteString(dj.job.ID + "=" + string(dj.job.State) + ";")
	}
	return b.String()
}

func runModel(seed uint64, cfg modelConfig) (*modelFailure, *model) {
	m := newModel(seed, cfg)
	f := m.run()
	return f, m
}

// ---------------------------------------------------------------------------
// The tests.

// modelCorpus reads testdata/model-seeds.txt: a seed per line, "#" starts a comment.
func modelCorpus(t *testing.T) []uint64 {
	t.Helper()
	f, err := os.Open("testdata/model-seeds.txt")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seeds []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		fields := strings.Fields(line)
		seed, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			t.Fatalf("testdata/model-seeds.txt: %q: %v", line, err)
		}
		seeds = append(seeds, seed)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return seeds
}

func modelStepsPerSchedule() int {
	if *flagModelSteps > 0 {
		return *flagModelSteps
	}
	return 40
}

func TestModel(t *testing.T) {
	testModel(t, modelConfig{steps: modelStepsPerSchedule()}, 2000, 300)
}

// TestModelFeed is TestModel with a datacenter that offers the changes feed
// (feed.go): steps read it (the leader's follower, or the former leader's),
// make it forget its cursors (410), withdraw it and offer it again, and fail
// its reads. Its own schedules: the steps are drawn from another table, so a
// seed of TestModel's corpus names another schedule here.
func TestModelFeed(t *testing.T) {
	testModel(t, modelConfig{steps: modelStepsPerSchedule(), feed: true}, 1000, 150)
}

// testModel runs the corpus (not with the feed) and schedules random ones
// (short with -short), or replays the one seed asked for.
func testModel(t *testing.T, cfg modelConfig, schedules, short int) {
	replay := *flagModelSeed
	if replay == "" {
		replay = os.Getenv("STARGATE_MODEL_SEED")
	}
	if replay != "" {
		seed, err := strconv.ParseUint(replay, 10, 64)
		if err != nil {
			t.Fatalf("seed %q: %v", replay, err)
		}
		f, m := runModel(seed, cfg)
		t.Logf("seed %d: %d steps, caches lagging: %v, maxConcurrentJobs %d", seed, cfg.steps, m.lagging, m.maxJobs)
		for _, s := range m.schedule {
			t.Log(s)
		}
		t.Logf("reasons written: %v", m.stats.reasons)
		if f != nil {
			t.Fatal(f)
		}
		t.Logf("end state:\n%s", m.state())
		return
	}

	start := time.Now()
	var total modelStats
	var failed []uint64
	try := func(seed uint64) {
		f, m := runModel(seed, cfg)
		total.add(&m.stats)
		if f != nil {
			failed = append(failed, seed)
			if len(failed) <= 3 {
				t.Error(f)
			}
		}
	}
	corpus, skipped := modelCorpus(t), 0
	if cfg.feed {
		corpus = nil // seeds of TestModel's schedules
	}
	for _, seed := range corpus {
		if seed%2 == 1 && !*flagModelLag {
			skipped++
			continue
		}
		try(seed)
	}

	n := schedules
	if testing.Short() {
		n = short
	}
	if *flagModelSchedules > 0 {
		n = *flagModelSchedules
	}
	base := uint64(time.Now().UnixNano())
	if *flagModelBase != "" {
		var err error
		if base, err = strconv.ParseUint(*flagModelBase, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	ran := 0
	for i := range uint64(n) {
		if time.Since(start) > *flagModelBudget {
			t.Logf("time budget %s spent: stopping after %d of %d random schedules", *flagModelBudget, ran, n)
			break
		}
		seed := base + i
		if !*flagModelLag {
			seed = (base + 2*i) &^ 1 // even seeds only: caches never lag
		}
		try(seed)
		ran++
		if len(failed) >= 20 {
			t.Logf("stopping after %d failed schedules", len(failed))
			break
		}
	}
	reasons := make([]string, 0, len(total.reasons))
	for r, c := range total.reasons {
		reasons = append(reasons, fmt.Sprintf("%s=%d", r, c))
	}
	sort.Strings(reasons)
	t.Logf("%d corpus (%d skipped) + %d random schedules from seed %d, %d steps each, in %s: %d steps, %d syncs (%d with lagging caches), "+
		"%d crash-restarts (%d inside a sync), %d datacenter calls, %d faults hit, %d datacenter jobs, %d Jobs created, %d creates refused",
		len(corpus)-skipped, skipped, ran, base, cfg.steps, time.Since(start).Round(time.Millisecond), total.steps, total.syncs,
		total.staleSyncs, total.restarts, total.crashesInSync, total.dcCalls, total.faultsHit, total.dcJobs, total.created, total.refused)
	t.Logf("submits held on their way %d: arrived in time %d (%d replaying the job under their key), refused past their Not-After %d; "+
		"leader changes %d: former-leader syncs %d (%d paused after a Leading() check), its submits %d, its syncs stopped by a precondition %d",
		total.held, total.lateApplied, total.lateReplayed, total.lateRefused,
		total.leaderChanges, total.formerSyncs, total.formerPaused, total.formerSubmits, total.formerFenced)
	if cfg.feed {
		t.Logf("changes feed reads %d; Jobs ended on the feed's word, with no read of their own: %d", total.feedReads, total.endedOnFeed)
	}
	t.Logf("Job reasons written: %s", strings.Join(reasons, " "))
	if len(failed) > 0 {
		t.Errorf("%d schedules failed (the first 3 shown above); seeds, for testdata/model-seeds.txt: %v", len(failed), failed)
	}
}

// A schedule is a function of its seed: replaying one gives the same steps
// and the same end.
func TestModelReplaysExactly(t *testing.T) {
	for _, feed := range []bool{false, true} {
		cfg := modelConfig{steps: 60, feed: feed}
		for _, seed := range []uint64{1, 2, 3} {
			f1, m1 := runModel(seed, cfg)
			f2, m2 := runModel(seed, cfg)
			if !slices.Equal(m1.schedule, m2.schedule) || m1.state() != m2.state() || (f1 == nil) != (f2 == nil) {
				t.Errorf("seed %d (feed %v) ran two ways:\n%s\n---\n%s", seed, feed, strings.Join(m1.schedule, "\n"), strings.Join(m2.schedule, "\n"))
			}
		}
	}
}

// A Job settled as "nothing ran at the datacenter" (a refusal, or the backoff
// limit, after FindJob said nothing runs under its key) must never be
// submitted again, even by a sync whose Job cache has not yet delivered the
// settling write: informers lag, and a requeue (an error's retry, a wait's
// timer, a Datacenter waking its Jobs) can sync the key before they catch
// up. This is the failure of the corpus seeds 105633, 114443 and 1533, made
// deterministic.
func TestModelLaggingCacheNeverResubmitsASettledJob(t *testing.T) {
	if !*flagModelLag {
		t.Skip("-model.lag=false")
	}
	for _, c := range []struct {
		name   string
		limit  int32
		faults [][]dcFault // per sync, before the lagging one
		reason string
	}{
		{"refused", 2, [][]dcFault{
			{{fault400, fake.MethodSubmit}, {fault500, fake.MethodFindJob}}, // refused; cannot ask: SubmitOutcomeUnknown
			{{fault400, fake.MethodSubmit}},                                 // refused; nothing runs: Failed
		}, ReasonRejected},
		{"backoff limit", 1, [][]dcFault{
			{{fault500, fake.MethodSubmit}}, // RetryingSubmit, attempts 1
			{{fault500, fake.MethodSubmit}}, // attempts 2 > 1; nothing runs: Failed
		}, ReasonBackoffLimitExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := newModel(2, modelConfig{})
			job := &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j1", Namespace: modelNS, UID: "uid-j1"},
				Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-0"},
					Operation: v1alpha1.OperationReboot, BackoffLimit: ptr.To(c.limit)}}
			if _, err := m.client.StargateV1alpha1().Jobs(modelNS).Create(m.ctx, job, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			m.uids[job.UID] = modelJobRef{name: "j1", hardware: "server-0"}
			for _, faults := range c.faults {
				m.dc.faults = faults
				m.catchUp()
				m.sync(modelNS + "/j1")
			}
			// The lookup finds nothing; it is final past the submit window.
			m.clock.Step(70 * time.Second)
			m.catchUp()
			m.sync(modelNS + "/j1")
			got, _ := m.client.StargateV1alpha1().Jobs(modelNS).Get(m.ctx, "j1", metav1.GetOptions{})
			if got.Status.Phase != v1alpha1.JobFailed || got.Status.Reason != c.reason {
				t.Fatalf("the setup did not settle the Job: %+v", got.Status)
			}
			m.drain() // the Job informer has not delivered the settling write yet
			_, err := m.sync(modelNS + "/j1")
			m.check()
			for _, v := range m.broken {
				t.Errorf("synced from a cache behind the settling write (sync: %v): %s", err, v)
			}
			if t.Failed() {
				t.Log(m.state())
			}
		})
	}
}
