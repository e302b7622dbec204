package datacenter_test

import (
	"context"
	"fmt"
	"testing"

	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/datacenter/fake"
)

func reboot(mac string) datacenter.JobRequest {
	return datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: mac}}
}

// states is what a Next returned, by job ID.
func states(jobs []datacenter.Job) map[string]datacenter.JobState {
	out := map[string]datacenter.JobState{}
	for _, j := range jobs {
		out[j.ID] = j.State
	}
	return out
}

// JobFeed reads every page, lists each job once in its latest state, and
// asks for a resync exactly when the feed cannot tell what changed.
func TestJobFeed(t *testing.T) {
	ctx := context.Background()
	dc := fake.New()
	feed := datacenter.NewJobFeed(dc, 2)

	if jobs, resync, err := feed.Next(ctx); err != nil || !resync || len(jobs) != 0 {
		t.Fatalf("first Next: %v %v %v, want a resync", jobs, resync, err)
	}
	var ids []string
	for i := range 5 {
		j, err := dc.Submit(ctx, fmt.Sprintf("k%d", i), reboot(fmt.Sprintf("aa:00:00:00:00:0%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	if err := dc.Finish(ids[0], datacenter.JobSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	// Six changes, two jobs a page: three pages in one Next; job 0 once, finished.
	before := dc.Calls(fake.MethodChanges)
	jobs, resync, err := feed.Next(ctx)
	if err != nil || resync || len(jobs) != 5 {
		t.Fatalf("Next: %v resync %v err %v, want the five jobs", jobs, resync, err)
	}
	if got := states(jobs); got[ids[0]] != datacenter.JobSucceeded || jobs[4].ID != ids[0] {
		t.Errorf("job %s listed as %v at the end of %v, want it once, succeeded, last", ids[0], got[ids[0]], jobs)
	}
	if n := dc.Calls(fake.MethodChanges) - before; n != 3 {
		t.Errorf("%d pages read, want 3", n)
	}
	if jobs, resync, err := feed.Next(ctx); err != nil || resync || len(jobs) != 0 {
		t.Errorf("Next with nothing new: %v %v %v", jobs, resync, err)
	}

	// An error on the second page consumes nothing: the next Next reads it all again.
	for _, id := range ids[1:4] {
		if err := dc.Finish(id, datacenter.JobFailed, "broken"); err != nil {
			t.Fatal(err)
		}
	}
	dc.FailNext(fake.MethodChanges, nil, fake.Transient())
	if jobs, resync, err := feed.Next(ctx); !datacenter.IsTransient(err) || resync || jobs != nil {
		t.Errorf("Next failing on its second page: %v %v %v", jobs, resync, err)
	}
	if jobs, _, err := feed.Next(ctx); err != nil || len(jobs) != 3 {
		t.Errorf("Next after the failure: %v %v, want the three changed jobs", jobs, err)
	}

	// The datacenter forgot the cursor: a resync, and on from a new cursor.
	dc.ExpireCursors()
	if jobs, resync, err := feed.Next(ctx); err != nil || !resync || len(jobs) != 0 {
		t.Errorf("Next with an expired cursor: %v %v %v, want a resync", jobs, resync, err)
	}
	if err := dc.Finish(ids[4], datacenter.JobSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	if jobs, resync, err := feed.Next(ctx); err != nil || resync || len(jobs) != 1 || jobs[0].ID != ids[4] {
		t.Errorf("Next after the resync: %v %v %v, want job %s", jobs, resync, err, ids[4])
	}

	// Not offered: IsUnsupported; offered again: a resync first.
	dc.SetBatch(false)
	if _, resync, err := feed.Next(ctx); !datacenter.IsUnsupported(err) || resync {
		t.Errorf("Next without the feed: %v %v", resync, err)
	}
	dc.SetBatch(true)
	if _, resync, err := feed.Next(ctx); err != nil || !resync {
		t.Errorf("Next with the feed back: %v %v, want a resync", resync, err)
	}

	// Reset asks for a resync; a failing restart does not claim one.
	feed.Reset()
	dc.FailNext(fake.MethodChanges, fake.Unavailable())
	if _, resync, err := feed.Next(ctx); !datacenter.IsUnavailable(err) || resync {
		t.Errorf("Next whose restart failed: %v %v", resync, err)
	}
	if _, resync, err := feed.Next(ctx); err != nil || !resync {
		t.Errorf("Next after a failed restart: %v %v, want a resync", resync, err)
	}
}
