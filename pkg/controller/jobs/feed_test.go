package jobs

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
)

// feedHarness is a harness with n reboot Jobs in dc-west, each on its own
// Hardware, not yet sent.
func feedHarness(t *testing.T, n int) (*harness, []string) {
	t.Helper()
	objs := []runtime.Object{datacenterObj("dc-west", func(dc *v1alpha1.Datacenter) { dc.Spec.MaxConcurrentJobs = ptr.To[int32](1000) })}
	var names []string
	for i := range n {
		hw, name := fmt.Sprintf("server-%03d", i), fmt.Sprintf("reboot-%03d", i)
		objs = append(objs, hardwareObj("dc-west", hw, fmt.Sprintf("aa:bb:cc:dd:%02x:%02x", i/256, i%256)),
			jobObj("dc-west", name, hw, v1alpha1.OperationReboot))
		names = append(names, name)
	}
	h := newHarness(t, []string{"dc-west"}, objs...)
	// Safety reads far apart: none falls due in the few seconds a test steps
	// the clock (TestFeedSafetyRead sets its own).
	h.c.opts.SafetyPollInterval = 24 * time.Hour
	go func() { // the Events of many Jobs would fill the fake recorder
		for {
			select {
			case <-h.ctx.Done():
				return
			case <-h.recorder.Events:
			}
		}
	}()
	return h, names
}

// startAll sends every Job (they run at the datacenter) and waits for the
// cache to show them Running.
func (h *harness) startAll(names []string) {
	h.t.Helper()
	for _, name := range names {
		if _, err := h.sync("dc-west", name); err != nil {
			h.t.Fatal(err)
		}
		if j := h.job("dc-west", name); j.Status.Phase != v1alpha1.JobRunning {
			h.t.Fatalf("%s after its submit: %+v", name, j.Status)
		}
	}
	for _, name := range names {
		h.waitForCache("dc-west", name)
	}
}

// syncAll syncs every Job once and returns the requeue of each.
func (h *harness) syncAll(names []string) map[string]time.Duration {
	h.t.Helper()
	out := map[string]time.Duration{}
	for _, name := range names {
		after, err := h.sync("dc-west", name)
		if err != nil {
			h.t.Fatalf("sync %s: %v", name, err)
		}
		out[name] = after
	}
	return out
}

func (h *harness) phases(names []string) map[v1alpha1.JobPhase]int {
	out := map[v1alpha1.JobPhase]int{}
	for _, name := range names {
		out[h.job("dc-west", name).Status.Phase]++
	}
	return out
}

// With the feed on: once the feed has started and every Running Job was read
// once, Jobs whose datacenter jobs finish end through one read of the feed,
// with no GetJob of their own; a sync meanwhile (an event) sends nothing.
func TestFeedEndsJobsWithoutGetJobs(t *testing.T) {
	const n = 30
	h, names := feedHarness(t, n)
	dc := h.dcs["dc-west"]
	h.startAll(names)

	h.c.readFeed(h.ctx, "dc-west") // the feed starts: a cursor, then one single read per Job
	if got := dc.Calls(fake.MethodChanges); got != 1 {
		t.Fatalf("%d feed requests to start the feed, want 1", got)
	}
	gets := dc.Calls(fake.MethodGetJob)
	for name, after := range h.syncAll(names) {
		if after <= h.c.opts.PollInterval || after > h.c.opts.SafetyPollInterval {
			t.Errorf("%s, vouched for by the feed, comes back after %s: want its safety read, within (%s, %s]",
				name, after, h.c.opts.PollInterval, h.c.opts.SafetyPollInterval)
		}
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
		t.Fatalf("%d GetJobs after the feed started, want one per Job (%d)", got, n)
	}
	gets = dc.Calls(fake.MethodGetJob)
	h.syncAll(names) // events: the feed vouches, nothing is sent
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west") // nothing changed
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Fatalf("%d GetJobs while the feed vouches for the Jobs, want 0", got)
	}

	for _, name := range names {
		if err := dc.Finish(h.job("dc-west", name).Status.DCJobID, datacenter.JobSucceeded, ""); err != nil {
			t.Fatal(err)
		}
	}
	changes := dc.Calls(fake.MethodChanges)
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)
	if got := h.phases(names); got[v1alpha1.JobSucceeded] != n {
		t.Fatalf("phases %v, want all %d Succeeded", got, n)
	}
	if got := dc.Calls(fake.MethodChanges) - changes; got != 1 {
		t.Errorf("%d feed requests for %d finished jobs, want 1", got, n)
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Errorf("%d GetJobs for %d Jobs ended by the feed, want 0", got, n)
	}
}

// The controller run as a whole: the follower it starts reads the feed once
// per PollInterval, and Jobs end through it with no GetJob of their own.
func TestFeedFollowerRunsWithTheController(t *testing.T) {
	const n = 40
	h, names := feedHarness(t, n)
	dc := h.dcs["dc-west"]
	go h.c.Run(h.ctx)
	waitRunning := func() bool { return h.phases(names)[v1alpha1.JobRunning] == n }
	waitFor(t, waitRunning)
	// Until the follower's next round (the fake clock stands still) the Jobs
	// are polled singly, as without a feed.
	round := func() {
		t.Helper()
		before := dc.Calls(fake.MethodChanges)
		for range 100 {
			h.clock.Step(h.c.opts.PollInterval)
			for range 20 {
				if dc.Calls(fake.MethodChanges) > before {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		t.Fatal("the follower never read the feed")
	}
	round()
	vouched := func() bool {
		for _, name := range names {
			if _, ok := h.c.nextReadAt(h.job("dc-west", name)); !ok {
				return false
			}
		}
		return true
	}
	waitFor(t, vouched) // every Job read once since the feed started
	time.Sleep(300 * time.Millisecond)
	gets, changes := dc.Calls(fake.MethodGetJob), dc.Calls(fake.MethodChanges)
	for _, name := range names {
		if err := dc.Finish(h.job("dc-west", name).Status.DCJobID, datacenter.JobSucceeded, ""); err != nil {
			t.Fatal(err)
		}
	}
	round()
	waitFor(t, func() bool { return h.phases(names)[v1alpha1.JobSucceeded] == n })
	if got := dc.Calls(fake.MethodChanges) - changes; got != 1 {
		t.Errorf("%d feed requests in one PollInterval, want 1", got)
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Errorf("%d GetJobs for %d Jobs the feed ended, want 0", got, n)
	}
}

// A 410 (the datacenter no longer has the changes since the cursor): the
// feed starts afresh, every Running Job is read singly once, then the feed
// vouches again.
func TestFeedCursorExpiredReadsEachJobOnce(t *testing.T) {
	const n = 10
	h, names := feedHarness(t, n)
	dc := h.dcs["dc-west"]
	h.startAll(names)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)

	dc.ExpireCursors()
	h.clock.Step(h.c.opts.PollInterval)
	changes := dc.Calls(fake.MethodChanges)
	h.c.readFeed(h.ctx, "dc-west")
	if got := dc.Calls(fake.MethodChanges) - changes; got != 2 {
		t.Errorf("%d feed requests on a 410, want 2 (the expired cursor, a new one)", got)
	}
	gets := dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
		t.Fatalf("%d GetJobs after a 410, want one per Job (%d)", got, n)
	}
	gets = dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Fatalf("%d more GetJobs once each Job was read after the 410, want 0", got)
	}
	// The feed carries on from the new cursor.
	if err := dc.Finish(h.job("dc-west", names[0]).Status.DCJobID, datacenter.JobFailed, "disk on fire"); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)
	if j := h.job("dc-west", names[0]); j.Status.Phase != v1alpha1.JobFailed || j.Status.Reason != ReasonDatacenterJobFailed {
		t.Errorf("a job that failed after the 410: %+v", j.Status)
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Errorf("%d GetJobs, want 0", got)
	}
}

// A datacenter without the feed: Jobs are polled as they always were, with
// a GetJob at every sync and timers of at most PollInterval; one that stops
// offering it sends its Jobs back to that, and one that offers it again
// reads each Job once more.
func TestFeedOffPollsSingly(t *testing.T) {
	const n = 5
	h, names := feedHarness(t, n)
	dc := h.dcs["dc-west"]
	dc.SetBatch(false)
	h.startAll(names)
	h.clock.Step(10 * time.Second)
	h.c.readFeed(h.ctx, "dc-west")
	for round := range 3 {
		gets := dc.Calls(fake.MethodGetJob)
		for name, after := range h.syncAll(names) {
			if after != h.c.opts.PollInterval {
				t.Errorf("round %d: %s comes back after %s, want PollInterval %s as without a feed", round, name, after, h.c.opts.PollInterval)
			}
		}
		if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
			t.Errorf("round %d: %d GetJobs, want one per Job (%d)", round, got, n)
		}
		h.clock.Step(h.c.opts.PollInterval)
		h.c.readFeed(h.ctx, "dc-west")
	}

	dc.SetBatch(true) // offered again: a new cursor, each Job read once
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)
	gets := dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Errorf("%d GetJobs with the feed back, want 0", got)
	}

	dc.SetBatch(false) // withdrawn (a datacenter rolled back)
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west")
	gets = dc.Calls(fake.MethodGetJob)
	for name, after := range h.syncAll(names) {
		if after != h.c.opts.PollInterval {
			t.Errorf("with the feed withdrawn %s comes back after %s, want %s", name, after, h.c.opts.PollInterval)
		}
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
		t.Errorf("%d GetJobs with the feed withdrawn, want %d", got, n)
	}
}

// A feed that fails (or is not read for a while) vouches for nothing: the
// Jobs are read singly, and the reads made since its cursor count again once
// it works, without another read of each Job.
func TestFeedFailingPollsSingly(t *testing.T) {
	const n = 4
	h, names := feedHarness(t, n)
	dc := h.dcs["dc-west"]
	h.startAll(names)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)

	dc.FailNext(fake.MethodChanges, fake.Transient())
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west")
	gets := dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
		t.Errorf("%d GetJobs while the feed fails, want %d", got, n)
	}
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west") // works again, from the same cursor
	gets = dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Errorf("%d GetJobs once the feed works again, want 0", got)
	}
	// Not read for longer than it may vouch (a follower stuck or stopped).
	h.clock.Step((feedLiveFor + 1) * h.c.opts.PollInterval)
	gets = dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if got := dc.Calls(fake.MethodGetJob) - gets; got != n {
		t.Errorf("%d GetJobs with the feed unread for %s, want %d", got, (feedLiveFor+1)*h.c.opts.PollInterval, n)
	}
}

// The safety read: a Job the feed vouches for is still read on its own once
// per SafetyPollInterval, at a phase of its own.
func TestFeedSafetyRead(t *testing.T) {
	h, names := feedHarness(t, 1)
	h.c.opts.SafetyPollInterval = time.Minute
	dc := h.dcs["dc-west"]
	h.startAll(names)
	h.c.readFeed(h.ctx, "dc-west")
	after := h.syncAll(names)[names[0]]
	gets := dc.Calls(fake.MethodGetJob)
	for elapsed := time.Duration(0); elapsed+h.c.opts.PollInterval < after; elapsed += h.c.opts.PollInterval {
		h.clock.Step(h.c.opts.PollInterval)
		h.c.readFeed(h.ctx, "dc-west")
		h.syncAll(names)
	}
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 0 {
		t.Fatalf("%d GetJobs before the safety read is due (after %s), want 0", got, after)
	}
	h.clock.Step(h.c.opts.PollInterval)
	h.c.readFeed(h.ctx, "dc-west")
	next := h.syncAll(names)[names[0]]
	if got := dc.Calls(fake.MethodGetJob) - gets; got != 1 {
		t.Errorf("%d GetJobs once the safety read was due, want 1", got)
	}
	if next > h.c.opts.SafetyPollInterval || next < h.c.opts.SafetyPollInterval-h.c.opts.PollInterval {
		t.Errorf("the next safety read comes after %s, want about %s", next, h.c.opts.SafetyPollInterval)
	}
}

// A word from the feed older than what is known is not acted on: a page
// handled after a later word (the job finished) does not take the job back
// to running; a word about another machine under the same ID (a datacenter
// that lost its state and gave the ID again) is ignored and the job read.
func TestFeedNeverActsOnAnOlderWord(t *testing.T) {
	h, names := feedHarness(t, 2)
	dc := h.dcs["dc-west"]
	h.startAll(names)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)
	f := h.c.feeds.lookup("dc-west")
	now := h.clock.Now()

	first := h.job("dc-west", names[0])
	finished := datacenter.Job{ID: first.Status.DCJobID, Operation: datacenter.OperationReboot, MAC: first.Status.Submission.MAC,
		State: datacenter.JobSucceeded, Progress: 100}
	stale := finished
	stale.State, stale.Progress = datacenter.JobRunning, 50
	h.c.heard(f, "dc-west", finished, now)
	h.c.heard(f, "dc-west", stale, now) // from a page read before
	gets := dc.Calls(fake.MethodGetJob)
	if _, err := h.sync("dc-west", names[0]); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", names[0]); j.Status.Phase != v1alpha1.JobSucceeded || dc.Calls(fake.MethodGetJob) != gets {
		t.Errorf("after a finished word then an older running one: %s, %d GetJobs (want Succeeded on the feed's word, 0)",
			j.Status.Phase, dc.Calls(fake.MethodGetJob)-gets)
	}

	second := h.job("dc-west", names[1])
	other := datacenter.Job{ID: second.Status.DCJobID, Operation: datacenter.OperationReboot, MAC: "aa:bb:cc:dd:ff:ff",
		State: datacenter.JobFailed, Message: "another machine's job"}
	h.c.heard(f, "dc-west", other, now)
	if _, err := h.sync("dc-west", names[1]); err != nil {
		t.Fatal(err)
	}
	if j := h.job("dc-west", names[1]); j.Status.Phase != v1alpha1.JobRunning || dc.Calls(fake.MethodGetJob) != gets+1 {
		t.Errorf("after a word about another machine: %s, %d GetJobs (want Running as the datacenter says, 1)",
			j.Status.Phase, dc.Calls(fake.MethodGetJob)-gets)
	}

	// A single read made before the feed started afresh says nothing of the
	// new cursor: it is not kept.
	f.read(second.Status.DCJobID, &datacenter.Job{ID: second.Status.DCJobID, State: datacenter.JobRunning}, f.epoch-1, now)
	if w := f.said[second.Status.DCJobID]; w != nil && w.job.MAC != "aa:bb:cc:dd:ff:ff" {
		t.Errorf("a read from an earlier epoch was kept: %+v", w)
	}
}

// A Job waiting on its datacenter (down) is read, whatever the feed says:
// its wait ends on a fresh answer.
func TestFeedDoesNotVouchForAWaitingJob(t *testing.T) {
	h, names := feedHarness(t, 1)
	dc := h.dcs["dc-west"]
	h.startAll(names)
	h.c.readFeed(h.ctx, "dc-west")
	h.syncAll(names)
	h.clock.Step(h.c.opts.SafetyPollInterval) // the safety read is due
	h.c.readFeed(h.ctx, "dc-west")
	dc.FailNext(fake.MethodGetJob, fake.Unavailable())
	h.syncAll(names)
	if j := h.job("dc-west", names[0]); j.Status.Reason != ReasonDatacenterDown {
		t.Fatalf("a Job whose datacenter is down: %+v", j.Status)
	}
	gets := dc.Calls(fake.MethodGetJob)
	h.syncAll(names)
	if j := h.job("dc-west", names[0]); dc.Calls(fake.MethodGetJob) != gets+1 || j.Status.Reason != ReasonRunning {
		t.Errorf("a waiting Job: %d GetJobs (want 1), reason %s (want %s)", dc.Calls(fake.MethodGetJob)-gets, j.Status.Reason, ReasonRunning)
	}
}

// nextRead spreads the safety reads of Jobs read at one moment over the
// interval, once an interval each.
func TestNextReadSpreadsJobs(t *testing.T) {
	h, _ := feedHarness(t, 0)
	h.c.opts.SafetyPollInterval = DefaultSafetyPollInterval
	every := h.c.opts.SafetyPollInterval
	var buckets [10]int
	for i := range 1000 {
		job := jobObj("dc-west", fmt.Sprintf("j%d", i), "hw", v1alpha1.OperationReboot)
		next := h.c.nextRead(job, t0)
		if !next.After(t0) || next.Sub(t0) > every {
			t.Fatalf("%s: next read %s after the read, want within (0, %s]", job.Name, next.Sub(t0), every)
		}
		if again := h.c.nextRead(job, next); again.Sub(next) != every {
			t.Fatalf("%s: reads %s apart, want %s", job.Name, again.Sub(next), every)
		}
		buckets[int(next.Sub(t0)*10/(every+1))]++
	}
	for i, b := range buckets {
		if b < 50 || b > 150 {
			t.Errorf("tenth %d of the interval holds %d of 1000 safety reads: not spread (%v)", i, b, buckets)
		}
	}
}
